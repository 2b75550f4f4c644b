"""`sparselstm reference`: the float64 forward pass of a model file (the baseline everything is compared to)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._delta import add_delta_argument, format_delta_counts, real_thresholds_argument
from ._files_and_checks import add_model_arguments, check_output_file, load_frames, load_model_file, save_npy


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reference",
        help="run the float64 reference forward pass of a model file",
        description="Read a model (sparselstm .npz, PyTorch .pt/.pth, ONNX .onnx), run the float64 LSTMP forward "
                    "pass over the frames of --input and write the outputs as .npy.",
    )
    parser.add_argument("checkpoint", type=Path, help="model file (.npz, .pt/.pth, .onnx)")
    parser.add_argument("--input", "-i", type=Path, required=True, metavar="X.npy",
                        help="input frames, float, shape (T, I) or (B, T, I)")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="Y.npy",
                        help="where to write the outputs, float64, shape (T, out) or (B, T, out)")
    add_delta_argument(parser, "The float model a delta-aware training would use; the columns skipped are "
                               "printed per layer and side.")
    add_model_arguments(parser, "the one to run")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sw.reference import reference_forward

    check_output_file(args.output)
    delta = real_thresholds_argument(args.delta_threshold)
    model = load_model_file(args.checkpoint, args)
    delta_counts = None if delta is None else []
    y = reference_forward(model, load_frames(args.input, model.input_size), delta=delta, delta_counts=delta_counts)
    save_npy(args.output, y)
    frames = y.shape[-2] * (y.shape[0] if y.ndim == 3 else 1)
    print(f"wrote {args.output}: shape {y.shape}, {frames} frame(s) through {model.describe()}")
    for line in format_delta_counts(delta_counts or []):
        print(line)
    return 0
