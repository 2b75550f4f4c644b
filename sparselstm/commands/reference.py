"""`sparselstm reference`: the float64 forward pass of a model file (the baseline everything is compared to)."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    add_model_arguments(parser, "the one to run")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sw.reference import reference_forward

    check_output_file(args.output)
    model = load_model_file(args.checkpoint, args)
    y = reference_forward(model, load_frames(args.input, model.input_size))
    save_npy(args.output, y)
    frames = y.shape[-2] * (y.shape[0] if y.ndim == 3 else 1)
    print(f"wrote {args.output}: shape {y.shape}, {frames} frame(s) through {model.describe()}")
    return 0
