"""`sparselstm accuracy`: dense float vs compressed fixed-point accuracy of the shipped models (no PyTorch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._files_and_checks import check_output_file, save_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "accuracy",
        help="score the shipped models and their compressed versions (golden model) on the shipped test sets",
        description="For every model in MODELS/models.json: accuracy on its shipped test features of the dense "
                    "float model (float64 reference + head) and of its compressed version through the "
                    "bit-exact golden model of the encoded model. The compressed version (from `sparselstm "
                    "compress`) is the entry's \"compressed\", else MODELS/<stem>-compressed/ (its OUTDIR), else "
                    "MODELS/<stem>-sparse.npz + .head.npz (its pruned.npz and pruned.head.npz); "
                    "without one, the dense model is pruned in one shot to --density (no fine-tuning: the "
                    "JSON says so). Writes a JSON file with dense_float_accuracy, compressed_golden_accuracy "
                    "and overall_density (of the first model) and every model's numbers under \"models\".")
    parser.add_argument("--models", type=Path, default=Path("models"), metavar="DIR",
                        help="directory holding models.json (default models)")
    parser.add_argument("--pes", type=int, default=16, metavar="N",
                        help="PEs to encode for, when no encoded model is shipped (default 16)")
    parser.add_argument("--density", type=float, default=0.1, metavar="D",
                        help="overall density of a one-shot fallback compression (default 0.1)")
    parser.add_argument("-o", "--output", type=Path, default=Path("build/accuracy.json"), metavar="FILE.json",
                        help="where to write the numbers (default build/accuracy.json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _delta_note(result: dict) -> str:
    if "delta_thresholds" not in result:
        return ""
    return (f" in delta mode ({result['delta_thresholds']}; weight-sparse golden "
            f"{result['weight_sparse_golden_accuracy']:.4f})")


def run(args: argparse.Namespace) -> int:
    from ..sw.compress.accuracy import evaluate_shipped
    from ..sw.compress.density import check_target
    from ..sw.pruning import check_pe_count

    check_target(args.density)
    check_pe_count(args.pes)
    check_output_file(args.output)
    results = evaluate_shipped(args.models, args.pes, args.density, progress=not args.quiet)
    save_json(args.output, results)
    for m in results["models"]:
        ratio = f", {m['compression']:.1f}x smaller" if m["compression"] else ""
        print(f"{m['checkpoint']} on {m['test_set']} ({m['utterances']} utterances): dense float "
              f"{m['dense_float_accuracy']:.4f}; compressed (density {m['overall_density']:.4f}{ratio}) float "
              f"{m['compressed_float_accuracy']:.4f}, golden {m['weight_bits']}-bit "
              f"{m['compressed_golden_accuracy']:.4f}{_delta_note(m)} [{m['method']}]")
    print(f"wrote {args.output}")
    return 0
