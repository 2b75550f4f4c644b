"""`sparselstm compress`: prune a trained model to a target density with fine-tuning, encode it, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._delta import add_delta_argument, real_thresholds_argument
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
                    "and from the bit-exact golden model of the encoded model. With --delta-threshold the "
                    "pruned model is then fine-tuned in delta mode and scored with the thresholds.")
    add_task_arguments(parser)
    parser.add_argument("--target-density", type=float, required=True, metavar="D",
                        help="overall density to reach (non-zeros / weights of all matrices), in (0, 1]; "
                             "ESE: 0.1")
    parser.add_argument("--pes", type=int, default=16, metavar="N", help="number of PEs (default 16)")
    balance = parser.add_mutually_exclusive_group()
    balance.add_argument("--balance", choices=("row", "column", "none"), default=None,
                         help="row: every PE keeps the same number of weights of every matrix (ESE; default); "
                              "column: moreover every column keeps the same number in every PE, so that delta "
                              "mode, which multiplies only the columns sent, stays balanced; none: plain "
                              "magnitude pruning (for comparison)")
    balance.add_argument("--unbalanced", action="store_true", help="as --balance none")
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
                        help="iterative: extra masked epochs at the end; a model already at the target (e.g. "
                             "--start-from an earlier run's result) gets only these (default 0)")
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
                        help="also compress with unbalanced pruning, with row-balanced pruning (when --balance "
                             "column), and (with --sensitivity) with uniform densities, for the report (each run "
                             "starts from the dense model)")
    add_delta_argument(parser, "After pruning, the model is fine-tuned --delta-epochs epochs with the thresholds "
                               "in the forward pass (straight-through); the report gives accuracy, columns skipped "
                               "and work per frame against the weight-sparse model; pruned.* and encoded/ hold the "
                               "fine-tuned model, the manifest the thresholds, weight-sparse.* the model before "
                               "(docs/compression.md, 'Delta mode').")
    parser.add_argument("--delta-epochs", type=int, default=1, metavar="E",
                        help="with --delta-threshold: fine-tuning epochs with the thresholds (default 1; 0: score "
                             "the thresholds on the pruned model without fine-tuning)")
    parser.add_argument("--delta-sweep", default=None, metavar="T,...",
                        help="with --delta-threshold: more settings, each fine-tuned from the same pruned model and "
                             "scored, for the report's table and delta.png (accuracy against MACs per frame); "
                             "comma-separated, each T (every side) or X/Y/M (per side, every layer), e.g. "
                             "0.05,0.1,0.2/0.2/0.02")
    parser.add_argument("--start-from", type=Path, default=None, metavar="PRUNED",
                        help="continue from this earlier compressed model of CHECKPOINT (e.g. an earlier run's "
                             "pruned.pt, or a shipped LSTM .npz with its PRUNED.head.npz beside it) instead of "
                             "the dense weights: the schedule goes from its density to the target; CHECKPOINT "
                             "stays the dense model of the report and the --distill teacher")
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
    if args.start_from is not None and not args.start_from.exists():
        raise ParameterError(f"--start-from {args.start_from}: file not found")
    if args.sensitivity is not None and not args.sensitivity.exists():
        raise ParameterError(f"{args.sensitivity}: sensitivity file or directory not found")
    check_at_least(args.delta_epochs, 0, "--delta-epochs")
    if args.delta_threshold is None and args.delta_sweep is not None:
        raise ParameterError("--delta-sweep needs --delta-threshold (the setting written out)")
    real_thresholds_argument(args.delta_threshold)    # a bad file fails before the task loads


def parse_delta_sweep(text: str | None, layers: int) -> list:
    """'0.1,0.2/0.2/0.02' -> [0.1, [{"x": 0.2, "y": 0.2, "m": 0.02}] * layers]; checked later, per layer."""
    from ..spec.errors import ParameterError

    if text is None:
        return []
    settings = []
    for item in (part.strip() for part in text.split(",")):
        try:
            values = [float(v) for v in item.split("/")]
        except ValueError:
            raise ParameterError(f"--delta-sweep: {item!r} is not T or X/Y/M (numbers)") from None
        if len(values) == 1:
            settings.append(values[0])
        elif len(values) == 3:
            settings.append([dict(zip(("x", "y", "m"), values)) for _ in range(layers)])
        else:
            raise ParameterError(f"--delta-sweep: {item!r} has {len(values)} values; expected T or X/Y/M")
    return settings


def delta_settings(args, model) -> tuple:
    """(--delta-threshold, the --delta-sweep settings), each checked against the model's layers."""
    from ..spec.errors import ParameterError
    from ..sw.delta import real_thresholds

    thresholds = real_thresholds_argument(args.delta_threshold)
    if thresholds is None:
        return None, []
    sweep = parse_delta_sweep(args.delta_sweep, len(model.layers))
    projection = [layer.w_proj is not None for layer in model.layers]
    # Errors name the file of a per-layer --delta-threshold, else the option.
    first = args.delta_threshold if isinstance(thresholds, list) else "--delta-threshold"
    for where, setting in [(first, thresholds)] + [("--delta-sweep", t) for t in sweep]:
        try:
            real_thresholds(setting, projection)
        except (ParameterError, TypeError) as error:
            raise ParameterError(f"{where}: {error}") from None
    return thresholds, sweep


def _line_writer(args):
    """Where progress lines go: between the progress bars, or straight to stdout with -q (which drops the
    bars, not the lines: a long run must still show where it is)."""
    from tqdm import tqdm

    return (lambda line: print(line, flush=True)) if args.quiet else tqdm.write


def balance_of(args) -> tuple[bool, bool]:
    """(balanced, column-balanced) from --balance or --unbalanced."""
    balance = args.balance or ("none" if args.unbalanced else "row")
    return balance != "none", balance == "column"


def compress_run(args, task, model, balanced: bool, curves, columns: bool = False):
    """One compression of the dense `model`: (CompressionResult, allocation dict or None). A model already at
    or below the target density is taken as it is (its zeros held in any later fine-tuning)."""
    from ..sw.compress.density import allocate, overall_density
    from ..sw.compress.iterative import already_pruned, iterative_compression, mask_variant

    def allocation_at(overall: float):
        if curves is None:
            return overall
        return allocate(curves, overall, args.rule, min(args.min_density, overall)).densities

    log = _line_writer(args)
    if overall_density(model) <= args.target_density + 1e-12:
        log(f"the model is already at overall density {overall_density(model):.4f} <= {args.target_density}: "
            f"no pruning, its zeros are held{f'; {args.final_epochs} final epochs' if args.final_epochs else ''}")
        result = already_pruned(model, task, args.target_density, args.pes, balanced, columns, args.val_split,
                                args.final_epochs, log)
    elif args.method == "mask":
        result = mask_variant(model, task, allocation_at(args.target_density), args.pes, balanced, args.epochs,
                              args.epochs, args.val_split, progress=not args.quiet, log=log, columns=columns)
    else:
        result = iterative_compression(model, task, args.target_density, args.pes, allocation_at, balanced,
                                       args.steps, args.epochs, args.max_loss, args.max_backoffs,
                                       args.final_epochs, args.force_target, args.val_split,
                                       progress=not args.quiet, log=log, columns=columns)
    allocation = None
    if curves is not None:
        allocation = allocate(curves, args.target_density, args.rule,
                              min(args.min_density, args.target_density)).to_dict()
    return result, allocation


def start_model(task, dense, path):
    """The model of --start-from, checked against the dense model's matrices (the task holds its state)."""
    from ..spec.errors import ParameterError
    from ..sw.compress.density import overall_density

    start = task.start_from(path)
    shapes = {name: w.shape for name, w in dense.matrices().items()}
    theirs = {name: w.shape for name, w in start.matrices().items()}
    if theirs != shapes:
        raise ParameterError(f"--start-from {path}: its matrices {theirs} are not those of the checkpoint {shapes}")
    print(f"starting from {path}: overall density {overall_density(start):.4f}", flush=True)
    return start


def _compress_variant(shared, variant):
    """One run from the dense model and the dense task state (an executor task, maybe on another machine):
    (CompressionResult, its evaluation on the test split, the task state it ends in)."""
    from ..sw.compress.report import evaluate_run

    args, task, model, dense_state, settings, announce = shared
    name, balanced, columns, curves = variant
    task.restore(dense_state)
    if hasattr(task, "restart_shuffles"):   # the built-in task: the same shuffles in every run, on any worker
        task.restart_shuffles()
    if announce:
        balance = "column-balanced" if columns else "row-balanced" if balanced else "unbalanced"
        print(f"--- run {name!r}: {balance}, {'sensitivity' if curves is not None else 'uniform'} densities",
              flush=True)
    result, allocation = compress_run(args, task, model, balanced, curves, columns)
    return result, evaluate_run(task, result, args.test_split, settings, allocation), task.snapshot()


def delta_encoded(model, result, numerics, thresholds):
    """(the encoded model of the delta-fine-tuned `model` with the thresholds in its manifest, its report)."""
    from dataclasses import replace

    from ..sw.delta import thresholds_from_real
    from ..sw.pipeline import compress_and_encode, compression_report

    compressed = compress_and_encode(model, result.n_pes, 1.0, result.balanced, numerics,
                                     columns=result.column_balanced)
    words = thresholds_from_real(thresholds, numerics, (layer.w_proj is not None for layer in model.layers))
    report = compression_report(compressed)
    report["delta_thresholds"] = [layer.to_dict() for layer in words]
    return replace(compressed.encoded, delta_thresholds=words), report


def run(args: argparse.Namespace) -> int:
    with open_executor(args) as executor:   # first: a missing Ray is reported before the task loads
        return _run(args, executor)


def _run(args: argparse.Namespace, executor) -> int:
    from ..sw.compress.delta import delta_compression
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

    thresholds, sweep = delta_settings(args, model)
    if thresholds is not None and args.delta_epochs and not task.can_finetune_delta:
        raise ParameterError(f"--delta-epochs {args.delta_epochs}: task {task.name!r} cannot fine-tune with delta "
                             f"thresholds in its forward pass (only the built-in task can); use --delta-epochs 0 "
                             f"to score the thresholds alone")
    balanced, columns = balance_of(args)
    variants = [("primary", balanced, columns, curves)]
    if args.compare:
        if columns:
            variants.append(("row-balanced", True, False, curves))
        if balanced:
            variants.append(("unbalanced", False, False, curves))
        if curves is not None:
            variants.append(("uniform", balanced, columns, None))
    args.output.mkdir(parents=True, exist_ok=True)
    dense = evaluate_dense(task, model, args.test_split, settings)   # before fine-tuning touches the task
    if args.start_from is not None:
        model = start_model(task, model, args.start_from)
    shared = (args, task, model, task.snapshot(), settings, len(variants) > 1)
    labels = [f"run {variant[0]!r}" for variant in variants]
    outcomes = executor.map(_compress_variant, variants, shared=shared, labels=labels, seed=args.seed,
                            description="compress runs")
    runs = {variant[0]: evaluation for variant, (_, evaluation, _) in zip(variants, outcomes)}
    primary_result, _, primary_state = outcomes[0]
    # The task (e.g. the classifier head) must hold the primary run's fine-tuned state to save it.
    task.restore(primary_state)
    primary = runs["primary"]
    encoded, encode_report = primary["encoded"][f"w{args.weight_bits}"]
    final_model, extra = primary_result.model, {}
    if thresholds is not None:
        # The model before delta fine-tuning too: other thresholds can start from it later.
        extra["weight_sparse"] = [str(p) for p in task.save_model(
            primary_result.model, args.output / "weight-sparse", command=command_line(),
            compression=primary_result.summary())]
        extra["delta"], final_model = delta_compression(task, primary_result, thresholds, args.delta_epochs,
                                                        settings[f"w{args.weight_bits}"], args.test_split, sweep,
                                                        _line_writer(args))
        encoded, encode_report = delta_encoded(final_model, primary_result, settings[f"w{args.weight_bits}"],
                                               thresholds)
    saved = task.save_model(final_model, args.output / "pruned", command=command_line(),
                            compression=primary_result.summary())
    write_encoded(encoded, args.output / "encoded")
    save_json(args.output / "encoded" / "report.json", encode_report)
    save_json(args.output / "densities.json", primary_result.densities)
    report = build_report(task, dense, runs, "primary", args.test_split,
                          extra={"command": command_line(),
                                 "checkpoint": str(args.checkpoint), "pruned": [str(p) for p in saved],
                                 **({"start_from": str(args.start_from)} if args.start_from else {}),
                                 "encoded": str(args.output / "encoded"), **extra})
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
