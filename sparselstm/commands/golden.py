"""`sparselstm golden`: the bit-exact fixed-point forward pass of an encoded model (what the FPGA computes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ._arrays import load_npy


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "golden",
        help="run the bit-exact fixed-point golden model of an encoded model",
        description="Run the fixed-point golden model (docs/numerics.md) of an encoded model directory over "
                    "the frames of --input: exactly the words the accelerator produces. Float inputs are "
                    "quantised to act words first (saturated words are reported); outputs are written as "
                    "float64, or as the integer act words with --raw.",
    )
    parser.add_argument("encoded", type=Path, metavar="OUTDIR", help="encoded model directory (sparselstm encode)")
    parser.add_argument("--input", "-i", type=Path, required=True, metavar="X.npy",
                        help="input frames, shape (T, I) or (B, T, I): real values (quantised to act words), or with "
                             "--raw and an integer dtype, act words as they are")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="Y.npy",
                        help="where to write the outputs, shape (T, out) or (B, T, out)")
    parser.add_argument("--raw", action="store_true",
                        help="write the integer act words (int64) instead of floats; an integer --input is then "
                             "taken as act words too")
    parser.add_argument("--starts", type=Path, default=None, metavar="S.npy",
                        help="optional bool (T,) or (B, T): True where a frame starts a new sequence (state "
                             "cleared); frame 0 always does")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sw.format import load_encoded
    from ..spec.errors import ParameterError
    from ..sw.fixedpoint import dequantize_output, quantize_input
    from ..sw.golden import golden_forward_encoded

    encoded = load_encoded(args.encoded)
    numerics = encoded.numerics
    x = load_npy(args.input, "input")
    if x.dtype.kind not in "fiu":
        raise ParameterError(f"{args.input}: expected a real-valued numeric array, got dtype {x.dtype}")
    starts = None if args.starts is None else load_npy(args.starts, "sequence starts")

    if args.raw and x.dtype.kind in "iu":
        x_q = x                                     # already act words; golden checks their range
    else:
        try:
            x_q, saturated = quantize_input(x, numerics)
        except ParameterError as error:
            raise ParameterError(f"{args.input}: {error}") from None
        if saturated:
            limit = 2.0 ** (numerics.act_bits - 1 - numerics.act_frac)
            print(f"sparselstm golden: warning: {saturated} of {x.size} input value(s) saturated to the act "
                  f"range [{-limit:g}, {limit:g})", file=sys.stderr)
    saturation: list[dict] = []
    try:
        y_q = golden_forward_encoded(encoded, x_q, sequence_starts=starts, saturation=saturation)
    except ParameterError as error:
        where = args.starts if str(error).startswith("sequence_starts") else args.input
        raise ParameterError(f"{where}: {error}") from None

    _report_saturation(saturation)

    y = y_q if args.raw else dequantize_output(y_q, numerics)
    try:
        # Through a file object: np.save(name) would append ".npy" to a name without it.
        with open(args.output, "wb") as stream:
            np.save(stream, y)
    except OSError as error:
        raise ParameterError(f"{args.output}: cannot write the output ({error.strerror or error})") from None
    frames = y.shape[-2] * (y.shape[0] if y.ndim == 3 else 1)
    kind = "act words (int64)" if args.raw else "float64"
    print(f"wrote {args.output}: {kind}, shape {y.shape}, {frames} frame(s) through the encoded model "
          f"{args.encoded} ({len(encoded.layers)} layer(s), {encoded.n_pes} PEs)")
    return 0


_SATURATION_NAMES = (("pre", "pre-activation"), ("cell", "cell"), ("tanh_in", "tanh(c) input"), ("y", "output"))


def _report_saturation(saturation: list[dict]) -> None:
    """One stderr line per layer in which some word saturated: how often the formats were too narrow.

    Saturated pre-activations and tanh inputs are harmless (sigmoid/tanh are flat there); saturated cells
    and outputs change the result and suggest a wider cell word or a smaller act_frac.
    """
    for k, counts in enumerate(saturation):
        parts = [f"{counts[key]} of {counts[key + '_words']} {name}" for key, name in _SATURATION_NAMES
                 if counts[key]]
        if parts:
            print(f"sparselstm golden: note: layer {k}: saturated {', '.join(parts)} words", file=sys.stderr)
