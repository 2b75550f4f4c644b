"""The full compression experiment: the numbers the README quotes, checked against the issue's targets.

    make compression-experiment          # the 35-word model on data/corpus/words-full (about an hour)
    .venv/bin/python bench/compression_experiment.py --checkpoint CHECKPOINT.pt --data CORPUS_DIR -o OUTDIR

Runs `sparselstm sensitivity` (load-balanced for --pes PEs, on the validation split), then one `sparselstm
compress` per variant, each from the dense model to the same target density, --jobs at a time (separate
processes: 2 cores finish 3 runs in 2 run-times):
  primary     sensitivity-derived densities, load-balanced, iterative pruning with fine-tuning;
  unbalanced  the same densities, plain magnitude pruning;
  uniform     every matrix at the target density, load-balanced;
  mask        (with --mask-variant) prune, dense retrain, re-prune with the same mask, masked retrain.
Every run is scored on the held-out test split (test voices) in float and through the bit-exact golden
model of its encoded model (12-bit and 8-bit weights). Prints and writes OUTDIR/targets.json:

  1. golden (12-bit weights, --pes PEs, balanced) accuracy within 1.0 point of the dense float model, at
     overall density <= the target (0.10: >= 10x fewer weights);
  2. load-balanced within 0.3 points of unbalanced pruning at the same density;
  3. sensitivity-derived densities at least as accurate as one uniform density;
  4. the ESE-style size ratio: dense float32 weights vs entries (weight + index) + pointers.

Each run's output (pruned checkpoint, encoded model, report) is OUTDIR/<variant>/, its log OUTDIR/<variant>.log.
--executor ray [--ray-address ADDRESS]: the sensitivity points and the variants run as Ray tasks (a local Ray,
or a cluster: docs/compression.md). The checkpoint, the corpus and the curves are shipped to the workers
through Ray's object store (no shared file system); each variant's output directory comes back as an archive.
--quick: a CI-sized run (a few utterances per word, one step, one epoch), for checking the script.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sparselstm.commands.sensitivity import add_executor_arguments
from sparselstm.spec.errors import SparseLSTMError
from sparselstm.sw.compress.executor import import_ray, make_executor

ROOT = Path(__file__).resolve().parent.parent


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "words-lstmp.pt")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "corpus" / "words-full",
                        help="corpus directory with train/val/test.npz (sparselstm data)")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "build" / "compression-words")
    parser.add_argument("--target-density", type=float, default=0.1)
    parser.add_argument("--pes", type=int, default=16)
    parser.add_argument("--densities", default="0.03,0.05,0.1,0.15,0.2,0.3,0.5,0.7",
                        help="sensitivity densities")
    parser.add_argument("--rule", choices=("threshold", "knee"), default="threshold")
    # The defaults fit the budget (about an hour on 2 cores) for a 256/128 model on 42 000 training
    # utterances: 5 steps x 2 epochs + 10 final epochs per run, distilled from the dense model, 2 runs at a time.
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs per step")
    parser.add_argument("--final-epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--distill", type=float, default=0.5, help="distillation weight (sparselstm compress)")
    parser.add_argument("--max-loss", type=float, default=0.01)
    parser.add_argument("--max-backoffs", type=int, default=0)
    parser.add_argument("--val-limit", type=int, default=50, help="validation utterances per word that steer")
    parser.add_argument("--train-limit", type=int, default=0, help="fine-tuning utterances per word (0: all)")
    parser.add_argument("--mask-variant", action="store_true", help="also run the mask variant")
    parser.add_argument("--reuse-sensitivity", action="store_true",
                        help="keep OUTDIR/sensitivity/sensitivity.json from an earlier run of the same model")
    parser.add_argument("--quick", action="store_true", help="CI size: tiny limits, one step, one epoch")
    parser.add_argument("--jobs", type=int, default=2,
                        help="local compress runs at a time (default 2; Ray fills the cluster's CPUs instead)")
    parser.add_argument("--only", default=None, metavar="V1,V2",
                        help="run only these variants (e.g. mask, after changing its budget); the others' "
                             "reports in OUTDIR are reused for targets.json")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads per run")
    add_executor_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.val_limit, args.train_limit = min(args.val_limit, 10), min(args.train_limit or 20, 20)
        args.steps, args.epochs, args.final_epochs, args.densities = 1, 1, 0, "0.1,0.3"
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.ray_address is not None and args.executor != "ray":
        parser.error("--ray-address needs --executor ray")
    if args.executor == "ray":
        try:
            import_ray()
        except SparseLSTMError as error:
            parser.error(str(error))
    return args


def executor_options(args) -> list[str]:
    return ["--executor", args.executor, *(["--ray-address", args.ray_address] if args.ray_address else [])]


def sparselstm_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "sparselstm", *arguments]


def run_logged(name: str, command: list[str], log_path: Path, echo_lock: threading.Lock) -> int:
    """Run one command, its output to log_path and, line by line with the variant's name, to stdout."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, bufsize=1) as process:
        log.write(" ".join(command) + "\n")
        for line in process.stdout:
            log.write(line)
            log.flush()
            # Step lines and errors, not the encoder tables: enough to see where each run is.
            if line.startswith(("step ", "final", "prune", "dense", "masked", "primary:", "warning", "sparselstm",
                                "  fine-tuning")):
                with echo_lock:
                    print(f"[{name}] {line.rstrip()}", flush=True)
        return process.wait()


def task_arguments(args, data: Path) -> list[str]:
    task = ["--task", str(data), "--val-limit", str(args.val_limit), "-q"]
    if args.train_limit:  # 0 or None: the whole training split
        task += ["--train-limit", str(args.train_limit)]
    return task


def variant_commands(args, checkpoint: Path, data: Path, sensitivity_dir: Path) -> dict[str, list[str]]:
    """The `sparselstm compress` arguments of each variant (without -o), reading the files at these paths."""
    compress = ["compress", str(checkpoint), *task_arguments(args, data), "--threads", str(args.threads),
                "--target-density", str(args.target_density), "--pes", str(args.pes), "--steps", str(args.steps),
                "--epochs", str(args.epochs),
                "--final-epochs", str(args.final_epochs), "--lr", str(args.lr), "--max-loss", str(args.max_loss),
                "--max-backoffs", str(args.max_backoffs), "--distill", str(args.distill),
                # Every run must reach the same density to be compared; costly steps are marked "forced".
                "--force-target"]
    with_curves = ["--sensitivity", str(sensitivity_dir), "--rule", args.rule]
    variants = {"primary": [*compress, *with_curves],
                "unbalanced": [*compress, *with_curves, "--unbalanced"],
                "uniform": compress}
    if args.mask_variant:
        # The same fine-tuning budget as the iterative runs: half dense retraining, half masked retraining.
        budget = (args.steps * args.epochs + args.final_epochs + 1) // 2
        mask = list(compress)
        mask[mask.index("--epochs") + 1] = str(budget)
        variants["mask"] = [*mask, *with_curves, "--method", "mask"]
    return variants


def input_files(args, sensitivity_dir: Path) -> dict[str, bytes]:
    """What a variant reads, by its path on a worker: the checkpoint, the corpus files, the curves."""
    # Under the corpus's own name: the task is named after it.
    data = {f"data/{args.data.name}": args.data} if args.data.is_file() else \
        {f"data/{args.data.name}/{path.name}": path for path in sorted(args.data.iterdir()) if path.is_file()}
    return {f"checkpoint/{args.checkpoint.name}": args.checkpoint.read_bytes(),
            **{relative: path.read_bytes() for relative, path in data.items()},
            "sensitivity/sensitivity.json": (sensitivity_dir / "sensitivity.json").read_bytes()}


def run_shipped_variant(shared, name: str) -> tuple[int, str, bytes]:
    """One variant on a Ray worker, from the shipped files in a scratch directory: (exit code, log,
    the output directory as a .tar.gz)."""
    args, files = shared
    with tempfile.TemporaryDirectory(prefix="sparselstm-variant-") as scratch:
        root = Path(scratch)
        for relative, content in files.items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(content)
        command = variant_commands(args, root / "checkpoint" / args.checkpoint.name, root / "data" / args.data.name,
                                   root / "sensitivity")[name]
        output = root / "output"
        code = run_logged(name, sparselstm_command(*command, "-o", str(output)), root / "log", threading.Lock())
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            if output.is_dir():
                tar.add(output, arcname=".")
        return code, (root / "log").read_text(), archive.getvalue()


def run_variants_on_ray(args, selected: list[str], sensitivity_dir: Path, started: float) -> dict[str, int]:
    """The variants as Ray tasks; their outputs and logs land where the local runs would write them."""
    if not selected:
        return {}
    for name in selected:
        print(f"[{name}] started", flush=True)
    with make_executor("ray", args.ray_address) as executor:
        outcomes = executor.map(run_shipped_variant, selected, shared=(args, input_files(args, sensitivity_dir)),
                                labels=[f"variant {name!r}" for name in selected], description="variants")
    codes = {}
    for name, (code, log, archive) in zip(selected, outcomes):
        (args.output / f"{name}.log").write_text(log)
        shutil.rmtree(args.output / name, ignore_errors=True)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(args.output / name, filter="data")
        print(f"[{name}] {'done' if code == 0 else 'FAILED (exit %d)' % code} after "
              f"{(time.time() - started) / 60:.1f} min", flush=True)
        codes[name] = code
    return codes


def main(argv=None) -> int:
    args = parse_arguments(argv)
    started = time.time()
    task = task_arguments(args, args.data)
    echo_lock = threading.Lock()
    sensitivity_dir = args.output / "sensitivity"
    reuse = (args.reuse_sensitivity or args.only is not None) and (sensitivity_dir / "sensitivity.json").is_file()
    if not reuse:
        print(f"sensitivity analysis of {args.checkpoint} ...", flush=True)
        # The analysis is one process: give it every thread the runs will share later.
        sensitivity = ["sensitivity", str(args.checkpoint), *task, "--threads", str(args.threads * args.jobs),
                       "--densities", args.densities, "--pes", str(args.pes), "-o", str(sensitivity_dir),
                       *executor_options(args)]
        if run_logged("sensitivity", sparselstm_command(*sensitivity), args.output / "sensitivity.log", echo_lock):
            print(f"sensitivity analysis failed: see {args.output / 'sensitivity.log'}", file=sys.stderr)
            return 1
    sensitivity_seconds = round(time.time() - started, 1)

    variants = variant_commands(args, args.checkpoint, args.data, sensitivity_dir)

    def run(name: str) -> int:
        with echo_lock:
            print(f"[{name}] started", flush=True)
        code = run_logged(name, sparselstm_command(*variants[name], "-o", str(args.output / name)),
                          args.output / f"{name}.log", echo_lock)
        with echo_lock:
            print(f"[{name}] {'done' if code == 0 else 'FAILED (exit %d)' % code} after "
                  f"{(time.time() - started) / 60:.1f} min", flush=True)
        return code

    # --only "" runs nothing: targets.json from the reports already in OUTDIR.
    selected = list(variants) if args.only is None else [v.strip() for v in args.only.split(",") if v.strip()]
    unknown = [v for v in selected if v not in variants]
    if unknown:
        print(f"--only: unknown variant(s) {', '.join(unknown)} (have {', '.join(variants)})", file=sys.stderr)
        return 1
    missing = [v for v in variants if v not in selected and not (args.output / v / "report.json").is_file()]
    if missing:
        print(f"--only: no earlier report of {', '.join(missing)} in {args.output}; run them too", file=sys.stderr)
        return 1
    if args.executor == "ray":
        try:
            codes = run_variants_on_ray(args, selected, sensitivity_dir, started)
        except SparseLSTMError as error:
            print(f"variants on Ray: {error}", file=sys.stderr)
            return 1
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            codes = dict(zip(selected, pool.map(run, selected)))
    failed = [name for name, code in codes.items() if code]
    if failed:
        print(f"failed: {', '.join(failed)} (see {', '.join(str(args.output / f'{n}.log') for n in failed)})",
              file=sys.stderr)
        return 1

    reports = {name: json.loads((args.output / name / "report.json").read_text()) for name in variants}
    targets = evaluate_targets(reports, args.target_density)
    manifest = args.data / "manifest.json"
    if manifest.is_file():
        targets["split_utterances"] = json.loads(manifest.read_text()).get("counts", {}).get(targets["split"])
    targets.update(seconds=round(time.time() - started, 1), sensitivity_seconds=sensitivity_seconds,
                   command=" ".join([Path(sys.executable).name,
                                     *(sys.argv if argv is None else ["bench/compression_experiment.py", *argv])]),
                   checkpoint=str(args.checkpoint), data=str(args.data), quick=args.quick, only=args.only,
                   budget=dict(steps=args.steps, epochs=args.epochs, final_epochs=args.final_epochs, lr=args.lr,
                               distill=args.distill, val_limit=args.val_limit, train_limit=args.train_limit or None))
    (args.output / "targets.json").write_text(json.dumps(targets, indent=1) + "\n")
    print_targets(targets)
    print(f"wrote {args.output / 'targets.json'}, reports {args.output}/<variant>/report.md")
    return 0


def evaluate_targets(reports: dict, target_density: float) -> dict:
    """The issue's checks from the per-variant reports of `sparselstm compress` (each run is its "primary")."""
    report = reports["primary"]
    primary = report["runs"]["primary"]
    unbalanced, uniform, mask = (reports[n]["runs"]["primary"] if n in reports else None
                                 for n in ("unbalanced", "uniform", "mask"))
    dense = report["dense"]["float_score"]
    golden = primary["golden_score"]["w12"]
    out = {
        "task": report["task"], "split": report["split"], "n_pes": primary["n_pes"],
        "dense_float_accuracy": dense,
        "dense_golden_accuracy": report["dense"].get("golden_score", {}).get("w12"),
        "compressed_float_accuracy": primary["float_score"],
        "compressed_golden_accuracy": golden,
        "compressed_golden_accuracy_w8": primary["golden_score"].get("w8"),
        "overall_density": primary["overall_density"],
        "size_ratio": primary["size"]["w12"]["compression"],
        "load_imbalance": max(v["imbalance"] for v in primary["load_imbalance"].values()),
        "checks": {
            "density_at_most_target": primary["overall_density"] <= target_density + 1e-9,
            "golden_within_1_point_of_dense_float": dense - golden <= 0.01 + 1e-12,
        },
    }
    if unbalanced:
        out["unbalanced_golden_accuracy"] = unbalanced["golden_score"]["w12"]
        out["unbalanced_overall_density"] = unbalanced["overall_density"]
        out["unbalanced_load_imbalance"] = max(v["imbalance"] for v in unbalanced["load_imbalance"].values())
        out["checks"]["balanced_within_0.3_points_of_unbalanced"] = \
            unbalanced["golden_score"]["w12"] - golden <= 0.003 + 1e-12
    if uniform:
        out["uniform_golden_accuracy"] = uniform["golden_score"]["w12"]
        out["checks"]["sensitivity_at_least_uniform"] = golden >= uniform["golden_score"]["w12"] - 1e-12
    if mask:
        out["mask_variant_golden_accuracy"] = mask["golden_score"]["w12"]
        out["mask_variant_overall_density"] = mask["overall_density"]
    return out


def print_targets(t: dict) -> None:
    def pct(v):
        return "-" if v is None else f"{100 * v:.2f} %"

    print(f"\n{t['task']} ({t['split']} split), {t['n_pes']} PEs:")
    print(f"  dense float                       {pct(t['dense_float_accuracy'])}  "
          f"(golden 12-bit, unpruned: {pct(t['dense_golden_accuracy'])})")
    print(f"  compressed float                  {pct(t['compressed_float_accuracy'])}")
    print(f"  compressed golden, 12-bit weights {pct(t['compressed_golden_accuracy'])}  "
          f"(8-bit: {pct(t['compressed_golden_accuracy_w8'])})")
    if "unbalanced_golden_accuracy" in t:
        print(f"  unbalanced pruning, golden 12-bit {pct(t['unbalanced_golden_accuracy'])}  "
              f"(PE imbalance {t['unbalanced_load_imbalance']:.2f} vs {t['load_imbalance']:.2f} balanced)")
    if "uniform_golden_accuracy" in t:
        print(f"  uniform densities, golden 12-bit  {pct(t['uniform_golden_accuracy'])}")
    if "mask_variant_golden_accuracy" in t:
        print(f"  mask variant, golden 12-bit       {pct(t['mask_variant_golden_accuracy'])}")
    print(f"  overall density {t['overall_density']:.4f} ({1 / t['overall_density']:.1f}x fewer weights); "
          f"size dense float32 / compressed = {t['size_ratio']:.1f}x")
    for name, ok in t["checks"].items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")


if __name__ == "__main__":
    sys.exit(main())
