"""`sparselstm golden`: the bit-exact fixed-point forward pass of an encoded model (what the FPGA computes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._delta import (add_delta_argument, format_delta_counts, format_thresholds, real_thresholds_argument,
                     word_thresholds)
from ._files_and_checks import (add_frame_arguments, check_output_file, load_frames, load_sequence_starts,
                                quantize_frames, save_npy)


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
    add_frame_arguments(parser)
    add_delta_argument(parser, "Default: the encoded model's thresholds (none: off); 0 gives the outputs of "
                               "delta mode off, bit for bit. The columns skipped are printed per layer and side.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sw.format import load_encoded
    from ..sw.fixedpoint import dequantize_output
    from ..sw.golden import golden_forward_encoded

    check_output_file(args.output)
    real_thresholds_argument(args.delta_threshold)
    encoded = load_encoded(args.encoded)
    numerics = encoded.numerics
    delta = encoded.delta_thresholds
    if args.delta_threshold is not None:
        delta = word_thresholds(args.delta_threshold, numerics,
                                (layer.proj_size is not None for layer in encoded.layers))
    x = load_frames(args.input, encoded.layers[0].input_size)
    starts = None if args.starts is None else load_sequence_starts(args.starts, x.shape[:-1])
    x_q, _ = quantize_frames(x, numerics, args.raw, "golden", args.input)
    saturation: list[dict] = []
    delta_counts = None if delta is None else []
    y_q = golden_forward_encoded(encoded, x_q, sequence_starts=starts, saturation=saturation, delta=delta,
                                 delta_counts=delta_counts)

    _report_saturation(saturation)
    if delta is not None:
        print(f"delta mode (thresholds in words: {format_thresholds(delta)})")
        for line in format_delta_counts(delta_counts):
            print(line)

    y = y_q if args.raw else dequantize_output(y_q, numerics)
    save_npy(args.output, y)
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
