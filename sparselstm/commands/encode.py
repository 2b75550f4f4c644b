"""`sparselstm encode`: prune, quantise and encode a model file into an encoded model directory."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ._delta import add_delta_argument, format_thresholds, real_thresholds_argument, word_thresholds
from ._files_and_checks import add_model_arguments, check_output_dir, load_json, load_model_file, save_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="prune, quantise and encode a model for N PEs (writes the encoded model directory)",
        description="Read a model (sparselstm .npz, PyTorch .pt/.pth, ONNX .onnx), prune it (load-balance-aware "
                    "by default), quantise it to fixed point and write the sparse memory images of every PE "
                    "(docs/format.md) plus OUTDIR/report.json, and print a summary per matrix.",
    )
    parser.add_argument("checkpoint", type=Path, help="model file (.npz, .pt/.pth, .onnx)")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="OUTDIR",
                        help="directory to write the encoded model to (created if needed)")
    parser.add_argument("--pes", type=int, default=32, metavar="N", help="number of processing elements (default 32)")
    density = parser.add_mutually_exclusive_group()
    density.add_argument("--density", type=float, default=None, metavar="D",
                         help="fraction of weights kept in every matrix, in [0, 1] (default 1.0: no pruning, "
                              "the model's own zeros are kept; ESE used 0.1)")
    density.add_argument("--densities", type=Path, default=None, metavar="FILE.json",
                         help='JSON object mapping matrix names ("L0.input.i" ... "L0.proj") to densities; '
                              'a "default" key covers the names it does not list')
    balance = parser.add_mutually_exclusive_group()
    balance.add_argument("--balanced", dest="balanced", action="store_true", default=True,
                         help="every PE keeps the same number of weights of every matrix (default)")
    balance.add_argument("--unbalanced", dest="balanced", action="store_false",
                         help="global magnitude pruning per matrix (for comparison)")
    balance.add_argument("--balance", choices=("row", "column", "none"), default=None,
                         help="row: as --balanced; none: as --unbalanced; column: moreover every column keeps the "
                              "same number of weights in every PE, so that delta mode, which multiplies only the "
                              "columns sent, stays balanced (docs/compression.md, 'Delta mode')")
    cells = parser.add_mutually_exclusive_group()
    cells.add_argument("--balance-cells", dest="balance_cells", action="store_true", default=True,
                       help="reorder each layer's cells where that lowers the busiest PE's non-zeros, e.g. a "
                            "model pruned for 16 PEs encoded for 32; the outputs are the same (default; "
                            "docs/format.md, 'Cell order')")
    cells.add_argument("--no-balance-cells", dest="balance_cells", action="store_false",
                       help="keep every layer's cells in the model's order")
    parser.add_argument("--weight-bits", type=int, default=None, metavar="B", help="weight word width (default 12)")
    parser.add_argument("--index-bits", type=int, default=None, metavar="K",
                        help="relative row index width (default 4)")
    parser.add_argument("--act-frac", type=int, default=None, metavar="F",
                        help="fractional bits of the 16-bit activations x_t, y_t (default 11)")
    add_delta_argument(parser, "Written to the manifest as words (x, y: act words, m: unit words), which "
                               "`sparselstm golden` then runs with; default: off.")
    add_model_arguments(parser, "the one to encode")
    parser.set_defaults(func=run)


def read_densities(path: Path) -> dict:
    """A densities JSON file as a dict (matrix names and values are checked by the pruning step)."""
    from ..spec.errors import ParameterError

    densities = load_json(path, "densities")
    if not isinstance(densities, dict):
        raise ParameterError(f"{path}: expected a JSON object mapping matrix names to densities, "
                             f"got {type(densities).__name__}")
    for name, value in densities.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f"{path}: densities[{name!r}]: expected a number in [0, 1], got {value!r}")
    return densities


def run(args: argparse.Namespace) -> int:
    from ..sw.format import write_encoded
    from ..spec.errors import ParameterError
    from ..sw.fixedpoint import Numerics
    from ..sw.pipeline import compress_and_encode, compression_report, format_report, index_width_options
    from ..sw.pruning import check_pe_count

    check_output_dir(args.output)
    check_pe_count(args.pes)                        # the model's bound is checked once it is loaded
    overrides = {name: value for name, value in (("weight_bits", args.weight_bits), ("index_bits", args.index_bits),
                                                 ("act_frac", args.act_frac)) if value is not None}
    numerics = Numerics(**overrides)
    density = 1.0 if args.density is None else args.density
    if args.densities is not None:
        density = read_densities(args.densities)
    real_thresholds_argument(args.delta_threshold)    # a bad file fails before the model is read
    model = load_model_file(args.checkpoint, args)
    thresholds = word_thresholds(args.delta_threshold, numerics,
                                 (layer.w_proj is not None for layer in model.layers))
    try:
        balanced = args.balanced if args.balance is None else args.balance != "none"
        result = compress_and_encode(model, args.pes, density, balanced, numerics, columns=args.balance == "column",
                                     balance_cells=args.balance_cells)
    except ParameterError as error:
        if args.densities is not None and str(error).startswith("densities"):
            raise ParameterError(f"{args.densities}: {error}") from None
        raise
    report = compression_report(result)
    report["index_width_options"] = index_width_options(result.qmodel, args.pes, balance_cells=args.balance_cells)
    encoded = result.encoded
    if thresholds is not None:
        encoded = replace(encoded, delta_thresholds=thresholds)
        report["delta_thresholds"] = [layer.to_dict() for layer in thresholds]
    write_encoded(encoded, args.output)
    save_json(args.output / "report.json", report)
    print(f"{args.checkpoint}: {model.describe()}")
    print(format_report(report))
    if thresholds is not None:
        print(f"delta mode thresholds (words): {format_thresholds(thresholds)}")
    print(f"wrote {args.output}")
    return 0
