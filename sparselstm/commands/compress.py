"""`sparselstm compress`: prune a trained model to a target density with fine-tuning, encode it, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._files_and_checks import check_at_least, check_output_dir, command_line, save_json
from .sensitivity import add_task_arguments, open_executor, open_task


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compress",
        help="prune with fine-tuning to a target density, encode for N PEs, and report accuracy and size",
        description="Compress a trained model: per-matrix densities (uniform, or from `sparselstm sensitivity` "
                    "curves), load-balance-aware pruning for --pes PEs, fine-tuning with the masks held "
                    "(iterative schedule with back-off, or the prune/dense-retrain/re-prune/masked-retrain "
                    "mask variant), then quantisation and encoding. Writes OUTDIR/pruned.* (the pruned "
                    "checkpoint), OUTDIR/encoded/ (the encoded model), OUTDIR/densities.json and "
                    "OUTDIR/report.{md,json} with plots. Scores on the test split come from the float model "
                    "and from the bit-exact golden model of the encoded model.")
    add_task_arguments(parser)
    parser.add_argument("--target-density", type=float, required=True, metavar="D",
                        help="overall density to reach (non-zeros / weights of all matrices), in (0, 1]; "
                             "ESE: 0.1")
    parser.add_argument("--pes", type=int, default=16, metavar="N", help="number of PEs (default 16)")
    parser.add_argument("--unbalanced", action="store_true", help="plain magnitude pruning (for comparison)")
    parser.add_argument("--sensitivity", type=Path, default=None, metavar="DIR",
                        help="per-matrix densities from these curves (sparselstm sensitivity -o DIR); "
                             "default: every matrix at the target density")
    parser.add_argument("--rule", choices=("threshold", "knee"), default="threshold",
                        help="with --sensitivity: densities at a common loss threshold, or at each curve's "
                             "knee (docs/compression.md); either is then scaled to the target")
    parser.add_argument("--min-density", type=float, default=0.01, metavar="D",
                        help="no matrix below this density (default 0.01)")
    parser.add_argument("--method", choices=("iterative", "mask"), default="iterative",
                        help="iterative: prune in --steps steps, fine-tuning each (default); mask: prune, "
                             "retrain dense, prune with the same mask, retrain masked")
    parser.add_argument("--steps", type=int, default=4, metavar="K", help="iterative: pruning steps (default 4)")
    parser.add_argument("--epochs", type=int, default=1, metavar="E",
                        help="fine-tuning epochs per step (mask variant: per retraining) (default 1)")
    parser.add_argument("--final-epochs", type=int, default=0, metavar="E",
                        help="iterative: extra masked epochs at the end (default 0)")
    parser.add_argument("--max-loss", type=float, default=0.01, metavar="L",
                        help="iterative: largest accepted validation loss against the dense model, in metric "
                             "units (default 0.01 = 1 accuracy point); a costlier step is backed off")
    parser.add_argument("--max-backoffs", type=int, default=2, metavar="B",
                        help="iterative: back-offs per step before stopping (default 2)")
    parser.add_argument("--force-target", action="store_true",
                        help="iterative: when the back-offs are used up, take the step anyway (marked forced)")
    parser.add_argument("--lr", type=float, default=1e-3, help="built-in task: fine-tuning learning rate")
    parser.add_argument("--seed", type=int, default=0, help="built-in task: shuffling seed")
    parser.add_argument("--distill", type=float, default=0.0, metavar="W",
                        help="built-in task: weight in [0, 1] of knowledge distillation from the dense model "
                             "in fine-tuning (default 0: labels only)")
    parser.add_argument("--temperature", type=float, default=2.0, metavar="T",
                        help="built-in task: distillation temperature (default 2)")
    parser.add_argument("--weight-bits", type=int, default=12, metavar="B",
                        help="weight width of the encoded model (default 12)")
    parser.add_argument("--narrow-weight-bits", type=int, default=8, metavar="B",
                        help="also score the golden model at this weight width (default 8)")
    parser.add_argument("--compare", action="store_true",
                        help="also compress with unbalanced pruning, and (with --sensitivity) with uniform "
                             "densities, for the report (each run starts from the dense model)")
    parser.add_argument("--val-split", default="val", help="split that steers compression (default val)")
    parser.add_argument("--test-split", default="test", help="held-out split of the report (default test)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output directory")
    parser.set_defaults(func=run)


def _check_arguments(args) -> None:
    from ..sw.compress.density import check_target
    from ..spec.errors import ParameterError

    check_target(args.target_density)
    check_output_dir(args.output)
    for name in ("steps", "epochs", "final_epochs", "max_backoffs"):
        check_at_least(getattr(args, name), 1 if name == "steps" else 0, f"--{name.replace('_', '-')}")
    if not 0.0 <= args.min_density <= args.target_density:
        raise ParameterError(f"--min-density must lie in [0, target density], got {args.min_density}")
    if args.max_loss < 0:
        raise ParameterError(f"--max-loss must be >= 0, got {args.max_loss}")
    if args.sensitivity is not None and not args.sensitivity.exists():
        raise ParameterError(f"{args.sensitivity}: sensitivity file or directory not found")


def _line_writer(args):
    """Where progress lines go: between the progress bars, or straight to stdout with -q (which drops the
    bars, not the lines: a long run must still show where it is)."""
    from tqdm import tqdm

    return (lambda line: print(line, flush=True)) if args.quiet else tqdm.write


def compress_run(args, task, model, balanced: bool, curves):
    """One compression of the dense `model`: (CompressionResult, allocation dict or None)."""
    from ..sw.compress.density import allocate
    from ..sw.compress.iterative import iterative_compression, mask_variant

    def allocation_at(overall: float):
        if curves is None:
            return overall
        return allocate(curves, overall, args.rule, min(args.min_density, overall)).densities

    log = _line_writer(args)
    if args.method == "mask":
        result = mask_variant(model, task, allocation_at(args.target_density), args.pes, balanced, args.epochs,
                              args.epochs, args.val_split, progress=not args.quiet, log=log)
    else:
        result = iterative_compression(model, task, args.target_density, args.pes, allocation_at, balanced,
                                       args.steps, args.epochs, args.max_loss, args.max_backoffs,
                                       args.final_epochs, args.force_target, args.val_split,
                                       progress=not args.quiet, log=log)
    allocation = None
    if curves is not None:
        allocation = allocate(curves, args.target_density, args.rule,
                              min(args.min_density, args.target_density)).to_dict()
    return result, allocation


def _compress_variant(shared, variant):
    """One run from the dense model and the dense task state (an executor task, maybe on another machine):
    (CompressionResult, its evaluation on the test split, the task state it ends in)."""
    from ..sw.compress.report import evaluate_run

    args, task, model, dense_state, settings, announce = shared
    name, balanced, curves = variant
    task.restore(dense_state)
    if hasattr(task, "restart_shuffles"):   # the built-in task: the same shuffles in every run, on any worker
        task.restart_shuffles()
    if announce:
        print(f"--- run {name!r}: {'balanced' if balanced else 'unbalanced'}, "
              f"{'sensitivity' if curves is not None else 'uniform'} densities", flush=True)
    result, allocation = compress_run(args, task, model, balanced, curves)
    return result, evaluate_run(task, result, args.test_split, settings, allocation), task.snapshot()


def run(args: argparse.Namespace) -> int:
    with open_executor(args) as executor:   # first: a missing Ray is reported before the task loads
        return _run(args, executor)


def _run(args: argparse.Namespace, executor) -> int:
    from ..sw.compress.report import build_report, evaluate_dense, write_report
    from ..sw.compress.sensitivity import SensitivityCurves
    from ..sw.format import write_encoded
    from ..spec.errors import ParameterError
    from ..sw.fixedpoint import Numerics
    from ..sw.pipeline import format_report

    _check_arguments(args)
    settings = {f"w{args.weight_bits}": Numerics(weight_bits=args.weight_bits)}
    if args.narrow_weight_bits and args.narrow_weight_bits != args.weight_bits:
        settings[f"w{args.narrow_weight_bits}"] = Numerics(weight_bits=args.narrow_weight_bits)
    curves = None
    if args.sensitivity is not None:
        curves = SensitivityCurves.load(args.sensitivity)
    task, model = open_task(args)
    if hasattr(task, "finetune_lr"):
        task.finetune_lr, task.seed = args.lr, args.seed
    if hasattr(task, "log"):   # the built-in task: one line per fine-tuning epoch, bars or not
        write = _line_writer(args)
        task.log = lambda line: write(f"  fine-tuning {line}")
    if args.distill:
        if not hasattr(task, "set_distillation"):
            raise ParameterError(f"--distill: task {task.name!r} is not the built-in one; distil in its finetune")
        task.set_distillation(args.distill, args.temperature)
    if hasattr(task, "require_splits"):
        task.require_splits(args.val_split, args.test_split, *(["train"] if args.epochs or args.final_epochs else []))
    if curves is not None:
        curves.check_model(model)
    print(f"{task.name}: {model.describe()}; target overall density {args.target_density} on {args.pes} PEs "
          f"({args.method}{', densities from ' + str(args.sensitivity) + ' (' + args.rule + ')' if curves else ''})",
          flush=True)

    balanced = not args.unbalanced
    variants = [("primary", balanced, curves)]
    if args.compare:
        if balanced:
            variants.append(("unbalanced", False, curves))
        if curves is not None:
            variants.append(("uniform", balanced, None))
    args.output.mkdir(parents=True, exist_ok=True)
    dense = evaluate_dense(task, model, args.test_split, settings)   # before fine-tuning touches the task
    shared = (args, task, model, task.snapshot(), settings, len(variants) > 1)
    labels = [f"run {name!r}" for name, _, _ in variants]
    outcomes = executor.map(_compress_variant, variants, shared=shared, labels=labels, seed=args.seed,
                            description="compress runs")
    runs = {name: evaluation for (name, _, _), (_, evaluation, _) in zip(variants, outcomes)}
    primary_result, _, primary_state = outcomes[0]
    # The task (e.g. the classifier head) must hold the primary run's fine-tuned state to save it.
    task.restore(primary_state)
    saved = task.save_model(primary_result.model, args.output / "pruned", command=command_line(),
                            compression=primary_result.summary())

    primary = runs["primary"]
    encoded, encode_report = primary["encoded"][f"w{args.weight_bits}"]
    write_encoded(encoded, args.output / "encoded")
    save_json(args.output / "encoded" / "report.json", encode_report)
    save_json(args.output / "densities.json", primary_result.densities)
    report = build_report(task, dense, runs, "primary", args.test_split,
                          extra={"command": command_line(),
                                 "checkpoint": str(args.checkpoint), "pruned": [str(p) for p in saved],
                                 "encoded": str(args.output / "encoded")})
    written = write_report(report, args.output)

    print(format_report(encode_report))
    dense = report["dense"]["float_score"]
    for name, run in report["runs"].items():
        golden = ", ".join(f"golden {w} {s:.4f}" for w, s in run["golden_score"].items())
        print(f"{name}: overall density {run['overall_density']:.4f}; {task.metric} on {args.test_split}: dense "
              f"{dense:.4f}, float {run['float_score']:.4f}, {golden}")
    if not primary_result.reached_target:
        print(f"warning: the target density {args.target_density} was NOT reached (stopped at "
              f"{primary_result.overall_density:.4f}): raise --max-loss, --epochs or --steps, or use --force-target")
    print("wrote " + ", ".join(str(p) for p in [*saved, args.output / "encoded", *written]))
    return 0
