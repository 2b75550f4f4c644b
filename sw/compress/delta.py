"""Delta mode in compression (issue #14; docs/compression.md, "Delta mode"): fine-tuning a pruned model with
the thresholds in the forward pass, and what the result scores and costs through the golden model.

For each threshold setting (the command's `--delta-threshold`, then every `--delta-sweep` point), from the
same pruned model: the golden score and work with the thresholds *without* fine-tuning, then fine-tuning
with the thresholds (straight-through, sw/torch_lstm.py; the weight masks held) and the golden score and
work of the fine-tuned model, encoded again. Work per frame, on the split scored:

- `macs_per_frame`: multiply-accumulates of the sent columns (their non-zero weights), against
  `sparse_macs_per_frame`, the weight-sparse model's (every non-zero, every frame);
- `lockstep_cycles_per_frame`: a PE array that steps through the sent columns together, each column taking
  its busiest PE's entries (padding included);
- `weight_sparse_cycles_per_frame`: without delta mode, the busiest PE's entries per matrix, added up
  (each PE walks its own entries); `cycles_ratio` is that over the lock-step cycles.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ...spec.encoded import DELTA_SIDES, GATES_MATRIX, PROJ_MATRIX
from ..delta import skipped_fraction, thresholds_from_real
from ..format import segment_entries
from ..pipeline import compress_and_encode
from .iterative import CompressionResult, check_masks_held
from .task import CompressionTask, TaskError


def add_delta_counts(total: dict, part: dict) -> dict:
    """Two per-layer counts (sw/delta.py: new_delta_counts) of disjoint batches added up."""
    out = {}
    for key, value in total.items():
        if isinstance(value, np.ndarray):
            out[key] = part[key] if value.size == 0 else (value if part[key].size == 0 else value + part[key])
        else:
            out[key] = value + part[key]
    return out


def column_entries(encoded, layer: int, padding: bool = True) -> dict[str, np.ndarray]:
    """Per side, (n_pes, columns) entries (with or without the padding entries) each PE holds of each column."""
    info = encoded.layers[layer]
    out = {}
    for matrix in (GATES_MATRIX, PROJ_MATRIX) if info.proj_size is not None else (GATES_MATRIX,):
        per_pe = []
        for image in encoded.pes:
            walked = segment_entries(encoded, image.pe, layer, matrix)
            columns = walked.column if padding else walked.column[~walked.padding]
            per_pe.append(np.bincount(columns, minlength=image.segment(layer, matrix).columns))
        entries = np.array(per_pe)
        if matrix == GATES_MATRIX:
            out["x"], out["y"] = entries[:, :info.input_size], entries[:, info.input_size:]
        else:
            out["m"] = entries
    return out


def lockstep_cycles(encoded, counts: list[dict] | None, stream_frames: int) -> float:
    """Cycles per frame when every sent column takes its busiest PE's entries (all PEs in step); without
    counts (delta mode off) every column is sent in every frame."""
    total = 0
    for k in range(len(encoded.layers)):
        for side, entries in column_entries(encoded, k).items():
            busiest = entries.max(axis=0)
            total += stream_frames * int(busiest.sum()) if counts is None else int(counts[k][f"{side}_sends"] @ busiest)
    return total / stream_frames


def weight_sparse_cycles(encoded) -> int:
    """Entries per frame of the busiest PE of each matrix, added up: the MAC cycles without delta mode."""
    total = 0
    for k in range(len(encoded.layers)):
        entries = column_entries(encoded, k)
        total += int((entries["x"].sum(axis=1) + entries["y"].sum(axis=1)).max())
        if "m" in entries:
            total += int(entries["m"].sum(axis=1).max())
    return total


def evaluate_delta(task: CompressionTask, encoded, thresholds, split: str) -> dict:
    """Golden score and work per frame of `encoded` in delta mode with real `thresholds` (one number, or one
    {"x", "y", "m"} per layer)."""
    words = thresholds_from_real(thresholds, encoded.numerics,
                                 (layer.proj_size is not None for layer in encoded.layers))
    counts: list = []
    score = task.score_golden(encoded, split, delta=words, delta_counts=counts)
    frames = int(np.prod(task.lstm_inputs(split).shape[:2]))
    macs = sum(layer[f"{side}_macs"] for layer in counts for side in DELTA_SIDES)
    sparse = sum(layer[f"{side}_dense_macs"] for layer in counts for side in DELTA_SIDES)
    lockstep = lockstep_cycles(encoded, counts, frames)
    weight_sparse = weight_sparse_cycles(encoded)
    sent = {side: sum(layer[f"{side}_sent"] for layer in counts) for side in DELTA_SIDES}
    columns = {side: sum(layer[f"{side}_columns"] for layer in counts) for side in DELTA_SIDES}
    return {"thresholds_words": [t.to_dict() for t in words], "golden_score": score,
            "skipped": {side: skipped_fraction({f"{side}_sent": sent[side], f"{side}_columns": columns[side]}, side)
                        for side in DELTA_SIDES},
            "macs_per_frame": macs / frames, "sparse_macs_per_frame": sparse / frames,
            "macs_fraction": macs / sparse if sparse else 0.0,
            "lockstep_cycles_per_frame": lockstep,
            "weight_sparse_cycles_per_frame": weight_sparse,
            "cycles_ratio": weight_sparse / lockstep if lockstep else float("inf")}


def threshold_label(thresholds) -> str:
    """'0.1' for one number; 'x 0.2, y 0.2, m 0.02' for one setting per layer (layers joined by '; ')."""
    if not isinstance(thresholds, (list, tuple)):
        return f"{thresholds:g}"
    return "; ".join(", ".join(f"{side} {layer.get(side, 0.0):g}" for side in DELTA_SIDES) for layer in thresholds)


def delta_compression(task: CompressionTask, result: CompressionResult, thresholds, epochs: int, numerics,
                      split: str = "test", sweep=(), log: Callable[[str], None] | None = None):
    """Delta mode for the pruned `result`: (report dict, the model fine-tuned with `thresholds`), the task
    left in the state of that fine-tuning, in delta mode with `thresholds`. Every setting of
    [thresholds, *sweep] starts from `result.model` and the task state as it is now."""
    if epochs and not task.can_finetune_delta:
        raise TaskError(f"task {task.name!r} cannot fine-tune with delta thresholds in its forward pass "
                        f"(only the built-in task can); use --delta-epochs 0 to score the thresholds alone")
    log = log or (lambda line: None)

    def encoded_of(model):
        return compress_and_encode(model, result.n_pes, 1.0, result.balanced, numerics,
                                   columns=result.column_balanced).encoded

    start = task.snapshot()
    sparse = encoded_of(result.model)
    task.set_delta(None)
    report = {"epochs": epochs, "split": split, "weight_bits": numerics.weight_bits,
              "weight_sparse": {"golden_score": float(task.score_golden(sparse, split)),
                                "sparse_macs_per_frame": float(sum(np.count_nonzero(w) for w in
                                                                   result.model.matrices().values())),
                                "lockstep_cycles_per_frame": lockstep_cycles(sparse, None, 1),
                                "weight_sparse_cycles_per_frame": weight_sparse_cycles(sparse)},
              "points": []}
    kept = None
    for setting in [thresholds, *sweep]:
        task.restore(start)
        task.set_delta(None)
        point = {"thresholds": setting, "label": threshold_label(setting),
                 "before": evaluate_delta(task, sparse, setting, split)}
        tuned, encoded = result.model, sparse
        if epochs:
            task.set_delta(setting)
            tuned = task.finetune(result.model, result.masks, epochs)
            check_masks_held(tuned, result.masks, f"delta fine-tuning ({point['label']})")
            point["float_score"] = float(task.score(tuned, split))
            encoded = encoded_of(tuned)
            point["after"] = evaluate_delta(task, encoded, setting, split)
        final = point.get("after", point["before"])
        log(f"delta thresholds {point['label']}: golden {task.metric} {point['before']['golden_score']:.4f} without "
            f"fine-tuning" + (f", {final['golden_score']:.4f} after {epochs} epoch(s)" if epochs else "") +
            f"; MACs {final['macs_fraction']:.1%} of weight-sparse, {final['cycles_ratio']:.2f}x fewer cycles")
        report["points"].append(point)
        if kept is None:
            kept = (tuned, task.snapshot())
    tuned, state = kept
    task.restore(state)
    task.set_delta(thresholds)
    return report, tuned


# ----------------------------------------------------------------------------------------------------------
# Report

def delta_markdown(delta: dict, metric: str) -> list[str]:
    """The report's "Delta mode" section: one row per threshold setting, without and with fine-tuning."""
    sparse = delta["weight_sparse"]
    lines = ["## Delta mode", "",
             f"Weight-sparse model (delta mode off): golden {metric} {100 * sparse['golden_score']:.2f} % "
             f"(w{delta['weight_bits']}), {sparse['sparse_macs_per_frame']:.0f} MACs per frame, "
             f"{sparse['weight_sparse_cycles_per_frame']} busiest-PE cycles per frame "
             f"({sparse['lockstep_cycles_per_frame']:.0f} in lock-step). Each setting below starts from it; "
             f"fine-tuning: {delta['epochs']} epoch(s) with the thresholds in the forward pass. Columns skipped "
             f"and work after fine-tuning (before it, without fine-tuning).", "",
             f"| thresholds | golden {metric} %, without fine-tuning | golden {metric} %, fine-tuned | float % | "
             "skipped x / y / m | MACs per frame (of weight-sparse) | lock-step cycles per frame | "
             "weight-sparse cycles / lock-step |",
             "|---|---|---|---|---|---|---|---|"]
    for point in delta["points"]:
        before, after = point["before"], point.get("after")
        final = after or before
        skipped = " / ".join(f"{100 * final['skipped'][side]:.1f} %" for side in DELTA_SIDES)
        tuned = "-" if after is None else f"{100 * after['golden_score']:.2f}"
        float_score = f"{100 * point['float_score']:.2f}" if "float_score" in point else "-"
        lines.append(
            f"| {point['label']} | {100 * before['golden_score']:.2f} | {tuned} | {float_score} | {skipped} | "
            f"{final['macs_per_frame']:.0f} ({final['macs_fraction']:.1%}; before {before['macs_fraction']:.1%}) | "
            f"{final['lockstep_cycles_per_frame']:.0f} | {final['cycles_ratio']:.2f}x |")
    return lines


def plot_delta(delta: dict, path, metric: str):
    """Golden score against MACs per frame: every setting without and with fine-tuning, and the weight-sparse
    model; written to `path` (PNG), which is returned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sparse = delta["weight_sparse"]
    ax.scatter([sparse["sparse_macs_per_frame"]], [100 * sparse["golden_score"]], marker="*", s=140, color="black",
               label="weight-sparse (delta off)", zorder=3)
    for key, style, name in (("before", dict(marker="o", facecolors="none", edgecolors="tab:blue"),
                              "thresholds, no fine-tuning"),
                             ("after", dict(marker="o", color="tab:orange"),
                              f"fine-tuned with the thresholds ({delta['epochs']} epochs)")):
        points = [p[key] for p in delta["points"] if key in p]
        if points:
            ax.scatter([p["macs_per_frame"] for p in points], [100 * p["golden_score"] for p in points], label=name,
                       zorder=3, **style)
    for point in delta["points"]:   # an arrow from each setting without fine-tuning to the same fine-tuned
        before, final = point["before"], point.get("after", point["before"])
        if final is not before:
            ax.annotate("", (final["macs_per_frame"], 100 * final["golden_score"]),
                        (before["macs_per_frame"], 100 * before["golden_score"]),
                        arrowprops=dict(arrowstyle="->", color="grey", linewidth=0.7))
        ax.annotate(point["label"], (final["macs_per_frame"], 100 * final["golden_score"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("MACs per frame (multiplies of the sent columns)")
    ax.set_ylabel(f"golden {metric} (%) on {delta['split']}")
    ax.set_title("Delta mode: accuracy against work")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
