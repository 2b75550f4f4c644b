"""`sparselstm sensitivity`: prune every weight matrix alone to a range of densities and score each model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..sw.compress.sensitivity import DEFAULT_DENSITIES
from ._files_and_checks import check_at_least, check_output_dir

TASK_HELP = ("a corpus directory or feature set .npz (the built-in keyword task around the classifier "
             "CHECKPOINT), or FILE.py[:FUNCTION], a task of your own: FUNCTION (default make_task) takes the "
             "checkpoint path and returns a sparselstm.sw.compress.task.CompressionTask (docs/compression.md)")


def parse_density_list(text: str) -> tuple[float, ...]:
    """'0.05,0.1,0.2' -> (0.05, 0.1, 0.2); argparse reports a bad list as a usage error."""
    from ..sw.compress.sensitivity import check_densities
    from ..spec.errors import ParameterError

    try:
        return check_densities(float(v) for v in text.split(",") if v.strip())
    except (ValueError, ParameterError) as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated densities in (0, 1], got {text!r} ({error})")


def add_task_arguments(parser) -> None:
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT",
                        help="the trained dense model (for the built-in task: a classifier from `sparselstm train`)")
    parser.add_argument("--task", required=True, metavar="DATA", help=TASK_HELP)
    parser.add_argument("--val-limit", type=int, default=None, metavar="N",
                        help="built-in task: score at most N utterances per word of the validation split, "
                             "which steers compression (faster; the test split is never cut)")
    parser.add_argument("--train-limit", type=int, default=None, metavar="N",
                        help="built-in task: fine-tune on at most N utterances per word")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1: a shared machine)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_executor_arguments(parser)


def add_executor_arguments(parser) -> None:
    """--executor and --ray-address (also read by bench/compression_experiment.py)."""
    from ..sw.compress.executor import EXECUTORS, INSTALL_RAY

    parser.add_argument("--executor", choices=EXECUTORS, default="serial",
                        help="where the independent pieces run: here, one after the other (default), or as "
                             f"Ray tasks on a cluster (needs {INSTALL_RAY}; docs/compression.md)")
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="with --executor ray: the cluster, any address Ray accepts (HOST:6379, auto, "
                             "ray://HOST:10001); default: a local Ray started for this machine's cores")


def open_executor(args):
    """The executor of --executor and --ray-address (a context manager that stops what it started)."""
    from ..sw.compress.executor import make_executor

    return make_executor(args.executor, args.ray_address, progress=not args.quiet)


def open_task(args):
    """The CompressionTask and the dense LSTMPModel the arguments name, with --pes checked against it."""
    from ..sw.compress.task import load_task
    from ..spec.errors import ParameterError
    from ..sw.pruning import check_pe_count, check_pe_count_for_model

    for name in ("val_limit", "train_limit"):
        if getattr(args, name) is not None:
            check_at_least(getattr(args, name), 1, f"--{name.replace('_', '-')}")
    check_pe_count(args.pes)
    if not args.checkpoint.exists():
        raise ParameterError(f"{args.checkpoint}: checkpoint not found")
    try:
        import torch

        torch.set_num_threads(max(1, args.threads))
    except ImportError:
        pass  # a task of the user's own may not need PyTorch
    task = load_task(args.task, args.checkpoint, val_limit=args.val_limit, train_limit=args.train_limit,
                     progress=not args.quiet)
    task.progress = not args.quiet
    model = task.load_model(args.checkpoint)
    check_pe_count_for_model(args.pes, model)
    return task, model


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sensitivity",
        help="prune each weight matrix alone to several densities and score it (JSON + PNG curves)",
        description="For every weight matrix (gate blocks of the input and recurrent side of every layer, "
                    "the projection), prune it alone to each density (load-balanced for --pes PEs, or "
                    "--unbalanced), keep the rest dense, and score the model on a split of the task. Writes "
                    "OUTDIR/sensitivity.json (read by `sparselstm compress --sensitivity`) and "
                    "OUTDIR/sensitivity.png.")
    add_task_arguments(parser)
    parser.add_argument("--densities", type=parse_density_list, default=DEFAULT_DENSITIES, metavar="D,D,...",
                        help="densities to try (default " + ",".join(map(str, DEFAULT_DENSITIES)) + ")")
    parser.add_argument("--pes", type=int, default=16, metavar="N", help="PEs the pruning balances for (default 16)")
    parser.add_argument("--unbalanced", action="store_true", help="plain magnitude pruning per matrix")
    parser.add_argument("--split", default="val", help="split to score (default val; never tune on test)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sw.compress.density import allocate
    from ..sw.compress.sensitivity import plot_sensitivity, sensitivity_analysis

    check_output_dir(args.output)
    with open_executor(args) as executor:   # first: a missing Ray is reported before the task loads
        task, model = open_task(args)
        curves = sensitivity_analysis(model, task, args.densities, args.pes, not args.unbalanced, args.split,
                                      executor=executor)
    json_path = curves.save(args.output / "sensitivity.json")
    written = [json_path]
    try:
        written.append(plot_sensitivity(curves, args.output / "sensitivity.png"))
    except ImportError:
        print("matplotlib is not installed (pip install 'sparselstm[plots]'): no plot")
    print(f"{task.name}: dense {task.metric} on {args.split} {curves.baseline:.4f}; {model.describe()}")
    print(f"{'matrix':<16}" + "".join(f"{d:>8.3f}" for d in curves.densities) + "   (loss in points)")
    for name in curves.matrices:
        print(f"{name:<16}" + "".join(f"{100 * v:>8.2f}" for v in curves.error_increase(name)))
    knees = allocate(curves, min(0.5, max(curves.densities)), rule="knee").shape
    print("knee densities: " + ", ".join(f"{n} {d:.2f}" for n, d in knees.items()))
    print(f"{len(curves.matrices) * len(curves.densities)} models scored in {curves.seconds} s; wrote "
          + ", ".join(str(p) for p in written))
    return 0
