"""The report of a compression run: markdown + JSON + plots.

Every compressed model is scored on the held-out split three ways: in float (the pruned model), and through
the bit-exact golden model of its *encoded* form (sw/pipeline.py: quantise + encode, then
sw/golden.py with the encoded tables: what the accelerator computes) at the default widths and at narrower
weights. Each run also gets the PE load (sw/pruning.py: load_imbalance) and the ESE-style size ratio
(sw/pipeline.py: compression_report: dense float32 weights vs entries (weight + index) + pointers).
Several runs of the same dense model (balanced vs unbalanced, sensitivity vs uniform densities, iterative
vs mask variant) are put side by side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from ..fixedpoint import Numerics
from ..model import LSTMPModel
from ..pipeline import compress_and_encode, compression_report
from ..pruning import load_imbalance
from ..quantize import quantize_model
from .delta import delta_markdown, plot_delta
from .density import overall_density
from .iterative import CompressionResult
from .task import CompressionTask



def numerics_settings(narrow_weight_bits: int | None = 8) -> dict[str, Numerics]:
    """{"w12": defaults, "w<B>": defaults with B-bit weights}: the fixed-point settings a run is scored at."""
    settings = {f"w{Numerics().weight_bits}": Numerics()}
    if narrow_weight_bits is not None and narrow_weight_bits != Numerics().weight_bits:
        settings[f"w{narrow_weight_bits}"] = Numerics(weight_bits=narrow_weight_bits)
    return settings


def evaluate_run(task: CompressionTask, result: CompressionResult, split: str = "test",
                 settings: Mapping[str, Numerics] | None = None, allocation: dict | None = None) -> dict:
    """The numbers of one compressed model (plain JSON types); `encoded` (not JSON) holds the encoded
    model at each setting, for writing."""
    settings = numerics_settings() if settings is None else settings
    golden, sizes, encoded = {}, {}, {}
    for name, numerics in settings.items():
        # Density 1.0: keep exactly the model's own zeros (it is pruned and fine-tuned already).
        compressed = compress_and_encode(result.model, result.n_pes, 1.0, result.balanced, numerics,
                                         columns=result.column_balanced)
        golden[name] = float(task.score_golden(compressed.encoded, split))
        report = compression_report(compressed)
        sizes[name] = report["totals"]
        encoded[name] = (compressed.encoded, report)
    loads = load_imbalance(result.model, result.n_pes)
    return {
        "method": result.method, "balanced": result.balanced, "column_balanced": result.column_balanced,
        "n_pes": result.n_pes,
        "target_density": result.target_density, "reached_target": result.reached_target,
        "overall_density": overall_density(result.model),
        "val_score": result.score, "val_baseline": result.baseline,
        "float_score": float(task.score(result.model, split)), "golden_score": golden,
        "size": sizes,
        "load_imbalance": {name: {"max": load.max, "mean": load.mean, "imbalance": load.imbalance}
                           for name, load in loads.hardware.items()},
        "densities": dict(result.densities),
        "matrix_density": {name: float((w != 0).mean()) for name, w in result.model.matrices().items()},
        "allocation": allocation, "history": list(result.history),
        "encoded": encoded,
    }


def evaluate_dense(task: CompressionTask, dense_model: LSTMPModel, split: str = "test",
                   settings: Mapping[str, Numerics] | None = None) -> dict:
    """The dense model's scores: float, and golden at each setting (quantisation alone, no pruning).
    Call it while the task holds the dense model's state (before any fine-tuning)."""
    settings = numerics_settings() if settings is None else settings
    return {"float_score": float(task.score(dense_model, split)),
            "golden_score": {name: float(task.score_golden(quantize_model(dense_model, numerics), split))
                             for name, numerics in settings.items()},
            "overall_density": overall_density(dense_model), "architecture": dense_model.describe()}


def build_report(task: CompressionTask, dense: dict, runs: Mapping[str, dict], primary: str,
                 split: str = "test", extra: dict | None = None) -> dict:
    """The JSON report of several runs (evaluate_run results) of one dense model (evaluate_dense);
    `primary` is the run the command writes out."""
    dense_score = dense["float_score"]
    widths = list(next(iter(runs.values()))["golden_score"]) if runs else []
    report = {
        "task": task.name, "metric": task.metric, "split": split, "primary": primary,
        "dense": dict(dense),
        "widths": widths,
        "runs": {name: {k: v for k, v in run.items() if k != "encoded"} for name, run in runs.items()},
    }
    comparisons = {}
    for name, run in runs.items():
        run_report = report["runs"][name]
        run_report["loss_vs_dense_float"] = {width: dense_score - s for width, s in run["golden_score"].items()}
    for other, key in (("unbalanced", "balanced_minus_unbalanced"), ("row-balanced", "column_minus_row_balanced"),
                       ("uniform", "sensitivity_minus_uniform")):
        if other in runs and primary in runs:
            comparisons[key] = {
                "float": runs[primary]["float_score"] - runs[other]["float_score"],
                **{w: runs[primary]["golden_score"][w] - runs[other]["golden_score"][w] for w in widths}}
    report["comparisons"] = comparisons
    if extra:
        report.update(extra)
    return report


# ----------------------------------------------------------------------------------------------------------
# Writing


def balance_name(run: dict) -> str:
    if run.get("column_balanced"):
        return "column-balanced"
    return "row-balanced" if run["balanced"] else "unbalanced"


def _points(value: float) -> str:
    return f"{100 * value:.2f}"


def format_markdown(report: dict) -> str:
    metric, widths = report["metric"], report["widths"]
    dense = report["dense"]
    lines = [f"# Compression report: {report['task']}", "",
             f"Dense model: {dense['architecture']}; {metric} on the {report['split']} split: "
             f"**{_points(dense['float_score'])} %** (float)" +
             "".join(f", {_points(v)} % (golden {w}, unpruned)" for w, v in dense.get("golden_score", {}).items())
             + ".", ""]
    header = ["run", "method", "PEs", "pruning", "overall density", f"float {metric} %"] + \
             [f"golden {w} %" for w in widths] + ["size ratio (w12)", "PE imbalance (max/mean)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, run in report["runs"].items():
        first = widths[0] if widths else None
        ratio = f"{run['size'][first]['compression']:.1f}x" if first else "-"
        imbalance = max((v["imbalance"] for v in run["load_imbalance"].values()), default=1.0)
        allocation = (run.get("allocation") or {}).get("rule", "uniform")
        lines.append("| " + " | ".join([
            f"**{name}**" if name == report["primary"] else name, f"{run['method']} ({allocation})",
            str(run["n_pes"]), balance_name(run), f"{run['overall_density']:.4f}",
            _points(run["float_score"])] + [_points(run["golden_score"][w]) for w in widths] +
            [ratio, f"{imbalance:.3f}"]) + " |")
    lines.append("")
    for key, text in (("balanced_minus_unbalanced", "Load-balanced minus unbalanced pruning"),
                      ("column_minus_row_balanced", "Column-balanced minus row-balanced pruning"),
                      ("sensitivity_minus_uniform", "Sensitivity-derived minus uniform densities")):
        if key in report["comparisons"]:
            values = ", ".join(f"{k} {100 * v:+.2f}" for k, v in report["comparisons"][key].items())
            lines.append(f"- {text} (points of {metric}): {values}")
    primary = report["runs"].get(report["primary"])
    if primary:
        size = primary["size"][widths[0]]
        lines += [
            f"- Size ({report['primary']}, {widths[0]}): dense float32 {size['dense_float32_bits'] / 8 / 1024:.1f} KiB "
            f"vs compressed {size['compressed_bits'] / 8 / 1024:.1f} KiB "
            f"(entries {size['entry_memory_bits'] / 8 / 1024:.1f} KiB incl. {size['padding']} padding entries "
            f"+ pointers {size['pointer_memory_bits'] / 8 / 1024:.1f} KiB): "
            f"**{size['compression']:.1f}x** (biases and peepholes excluded on both sides)",
            f"- Target density {primary['target_density']:.4f}: "
            f"{'reached' if primary['reached_target'] else 'NOT reached (a step cost more than the allowed loss)'}",
            "", "## Per-matrix densities", "",
            "| matrix | requested | actual |", "|---|---|---|"]
        for name, actual in primary["matrix_density"].items():
            lines.append(f"| {name} | {primary['densities'].get(name, float('nan')):.4f} | {actual:.4f} |")
        lines += ["", "## Steps (validation split)", "",
                  "| step | phase | overall density | score | loss vs dense | accepted | epochs | seconds |",
                  "|---|---|---|---|---|---|---|---|"]
        for h in primary["history"]:
            lines.append(f"| {h['step']} | {h['phase']} | {h['overall_density']:.4f} | {h['score']:.4f} | "
                         f"{h['loss']:+.4f} | {h.get('accepted', True)} | {h['epochs']} | {h['seconds']} |")
    if report.get("delta"):
        lines += [""] + delta_markdown(report["delta"], metric)
    if report.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]]
    return "\n".join(lines) + "\n"


def plot_report(report: dict, outdir) -> list[Path]:
    """accuracy.png (every run: float and golden scores) and steps.png (validation score per step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    outdir = Path(outdir)
    paths = []
    runs, widths = report["runs"], report["widths"]
    kinds = ["float"] + widths
    fig, ax = plt.subplots(figsize=(3.4 + 1.7 * len(runs), 3.8))
    x = np.arange(len(runs))
    width = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        values = [100 * (run["float_score"] if kind == "float" else run["golden_score"][kind]) for run in runs.values()]
        bars = ax.bar(x + (k - (len(kinds) - 1) / 2) * width, values, width,
                      label="float" if kind == "float" else f"golden, {kind[1:]}-bit weights")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.axhline(100 * report["dense"]["float_score"], color="black", linestyle="--", linewidth=1,
               label="dense float")
    ax.set_xticks(x, [f"{name}\n(density {run['overall_density']:.3f})" for name, run in runs.items()], fontsize=8)
    low = min(100 * min([run["float_score"]] + list(run["golden_score"].values())) for run in runs.values())
    ax.set_ylim(max(0.0, low - 5), 100.5)
    ax.set_ylabel(f"{report['metric']} (%) on {report['split']}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))   # outside: never over a bar
    ax.set_title(f"{report['task']}: dense vs compressed")
    fig.tight_layout()
    paths.append(outdir / "accuracy.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, run in runs.items():
        steps = [h for h in run["history"] if h.get("accepted", True)]
        ax.plot([h["overall_density"] for h in steps], [100 * h["score"] for h in steps], marker="o", label=name)
        rejected = [h for h in run["history"] if not h.get("accepted", True)]
        if rejected:
            ax.scatter([h["overall_density"] for h in rejected], [100 * h["score"] for h in rejected], marker="x",
                       color="red", zorder=3)
    ax.set_xscale("log")
    shown = [h["overall_density"] for run in runs.values() for h in run["history"]]
    ticks = [t for t in (1.0, 0.7, 0.5, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01)
             if min(shown) * 0.9 <= t <= max(shown) * 1.1]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("overall density (log; pruning goes right)")
    ax.set_ylabel(f"validation {report['metric']} (%)")
    ax.set_title("Compression steps (x: rejected, backed off)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(outdir / "steps.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    if report.get("delta"):
        paths.append(plot_delta(report["delta"], outdir / "delta.png", report["metric"]))
    return paths


def write_report(report: dict, outdir, plots: bool = True) -> list[Path]:
    """OUTDIR/report.json, report.md and (with matplotlib) accuracy.png, steps.png."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    if plots:
        try:
            written += plot_report(report, outdir)
        except ImportError:
            pass  # matplotlib is optional (the "plots" extra); the numbers are all in the JSON
    report = dict(report, plots=[str(p.name) for p in written])
    (outdir / "report.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (outdir / "report.md").write_text(format_markdown(report))
    return [outdir / "report.json", outdir / "report.md"] + written
