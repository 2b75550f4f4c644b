"""Sensitivity analysis (US10762426B2, step 1): every matrix pruned alone, the rest dense, scored.

For every prunable matrix (names as LSTMPModel.matrices(): the eight gate blocks of the input and the
recurrent side of each layer, and the projection) and every density in a list, the matrix is pruned with
sw/pruning.py (load-balanced for the given PE count, or unbalanced), every other matrix is kept dense, and
the task scores the model. The curves (score against density, one per matrix) show which matrices tolerate
pruning; sw/compress/density.py turns them into one density per matrix.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...spec.errors import ParameterError
from ..model import LSTMPModel
from ..pruning import check_pe_count, prune_matrix
from .executor import Executor, SerialExecutor
from .task import CompressionTask

FORMAT = "sparselstm-sensitivity-1"
DEFAULT_DENSITIES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


def check_densities(densities) -> tuple[float, ...]:
    """A sorted tuple of distinct densities in (0, 1], or a ParameterError."""
    try:
        values = sorted({float(d) for d in densities})
    except (TypeError, ValueError):
        raise ParameterError(f"densities: expected numbers in (0, 1], got {densities!r}") from None
    if not values:
        raise ParameterError("densities: give at least one density")
    bad = [d for d in values if not 0.0 < d <= 1.0]  # NaN fails the comparison too
    if bad or any(math.isnan(d) for d in values):
        raise ParameterError(f"densities must lie in (0, 1], got {bad or values}")
    return tuple(values)


@dataclass(frozen=True, eq=False)
class SensitivityCurves:
    """scores[name][k] = the task's metric with matrix `name` alone pruned to densities[k]."""

    densities: tuple[float, ...]
    baseline: float                       # the dense model's score
    scores: dict[str, list[float]]
    sizes: dict[str, int]                 # weights per matrix (for overall-density accounting)
    n_pes: int
    balanced: bool
    split: str = "val"
    metric: str = "score"
    task: str = "task"
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def matrices(self) -> list[str]:
        return list(self.scores)

    def error_increase(self, name: str) -> np.ndarray:
        """baseline - score at each density: how much pruning this matrix alone costs (>= 0 is a loss)."""
        return self.baseline - np.asarray(self.scores[name], dtype=np.float64)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "task": self.task, "metric": self.metric, "split": self.split,
                "n_pes": self.n_pes, "balanced": self.balanced, "densities": list(self.densities),
                "baseline": self.baseline, "sizes": dict(self.sizes),
                "scores": {name: list(map(float, values)) for name, values in self.scores.items()},
                "seconds": self.seconds, **({"extra": self.extra} if self.extra else {})}

    @classmethod
    def from_dict(cls, data: dict, where: str = "sensitivity") -> "SensitivityCurves":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ParameterError(f"{where}: not a sensitivity file (expected format {FORMAT!r})")
        try:
            densities = check_densities(data["densities"])
            scores = {str(k): [float(v) for v in values] for k, values in data["scores"].items()}
            bad = [k for k, values in scores.items() if len(values) != len(densities)]
            if bad:
                raise ParameterError(f"{where}: curves {bad} do not have one score per density")
            return cls(densities, float(data["baseline"]), scores, {k: int(v) for k, v in data["sizes"].items()},
                       int(data["n_pes"]), bool(data["balanced"]), str(data.get("split", "val")),
                       str(data.get("metric", "score")), str(data.get("task", "task")),
                       float(data.get("seconds", 0.0)), dict(data.get("extra", {})))
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, ParameterError):
                raise
            raise ParameterError(f"{where}: malformed sensitivity file ({type(error).__name__}: {error})") from None

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "SensitivityCurves":
        path = Path(path)
        if path.is_dir():
            path = path / "sensitivity.json"
        if not path.is_file():
            raise ParameterError(f"{path}: sensitivity file not found (run `sparselstm sensitivity` first)")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ParameterError(f"{path}: not valid JSON ({error})") from None
        return cls.from_dict(data, str(path))

    def check_model(self, model: LSTMPModel) -> None:
        """The curves must describe this model's matrices (same names and sizes)."""
        sizes = {name: int(w.size) for name, w in model.matrices().items()}
        if sizes != self.sizes:
            raise ParameterError(f"the sensitivity curves were measured on another model (matrices "
                                 f"{sorted(self.sizes)} vs {sorted(sizes)}, or other sizes)")


def prune_one(model: LSTMPModel, name: str, density: float, n_pes: int, balanced: bool = True) -> LSTMPModel:
    """`model` with matrix `name` alone pruned to `density` (sw/pruning.py), every other matrix unchanged."""
    w = model.matrices()[name]
    return model.with_matrices({name: np.where(prune_matrix(w, density, n_pes, balanced), w, 0.0)})


def _score_point(shared, point) -> float:
    """One point of the analysis (an executor task): the score with matrix `name` alone pruned to
    `density`; point (None, None) is the dense baseline."""
    model, task, n_pes, balanced, split = shared
    name, density = point
    return float(task.score(model if name is None else prune_one(model, name, density, n_pes, balanced), split))


def sensitivity_analysis(model: LSTMPModel, task: CompressionTask, densities=DEFAULT_DENSITIES,
                         n_pes: int = 16, balanced: bool = True, split: str = "val",
                         matrices: list[str] | None = None, progress: bool = True,
                         executor: Executor | None = None) -> SensitivityCurves:
    """Score `model` with each matrix alone pruned to each density (len(matrices) x len(densities) scores),
    plus the dense baseline: one executor task per score (default: a SerialExecutor, here, showing its
    progress if `progress`)."""
    densities = check_densities(densities)
    n_pes = check_pe_count(n_pes)
    all_matrices = model.matrices()
    names = list(all_matrices) if matrices is None else list(matrices)
    unknown = sorted(set(names) - set(all_matrices))
    if unknown:
        raise ParameterError(f"unknown matrix name(s) {unknown}; the model's matrices are {list(all_matrices)}")
    executor = executor or SerialExecutor(progress)
    started = time.time()
    points = [(None, None)] + [(name, density) for name in names for density in densities]
    labels = ["the dense baseline"] + [f"{name} at density {density:g}" for name, density in points[1:]]
    results = executor.map(_score_point, points, shared=(model, task, n_pes, bool(balanced), split),
                           labels=labels, description="sensitivity")
    baseline, values = results[0], iter(results[1:])
    scores = {name: [next(values) for _ in densities] for name in names}
    return SensitivityCurves(densities, baseline, scores, {n: int(all_matrices[n].size) for n in names},
                             n_pes, bool(balanced), split, task.metric, task.name,
                             round(time.time() - started, 1))


# ----------------------------------------------------------------------------------------------------------
# Plot


def _layer_and_side(name: str) -> tuple[str, str]:
    layer, _, matrix = name.partition(".")
    side = matrix.partition(".")[0]
    return layer, {"input": "input side (W_x)", "recurrent": "recurrent side (W_r)",
                   "proj": "projection (W_p)"}[side]


def plot_sensitivity(curves: SensitivityCurves, path, chosen: dict[str, float] | None = None) -> Path:
    """One panel per layer and side (input gates, recurrent gates, projection), one curve per matrix:
    error increase against density. `chosen`: optional densities to mark on each curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = sorted({_layer_and_side(n)[0] for n in curves.matrices}, key=lambda s: int(s[1:]))
    sides = [s for s in ("input side (W_x)", "recurrent side (W_r)", "projection (W_p)")
             if any(_layer_and_side(n)[1] == s for n in curves.matrices)]
    fig, axes = plt.subplots(len(layers), len(sides), figsize=(4.2 * len(sides), 3.4 * len(layers)),
                             squeeze=False, sharey=True)
    gate_colours = {"i": "tab:blue", "f": "tab:orange", "g": "tab:green", "o": "tab:red", "proj": "tab:purple"}
    for row, layer in enumerate(layers):
        for col, side in enumerate(sides):
            ax = axes[row][col]
            for name in curves.matrices:
                if _layer_and_side(name) != (layer, side):
                    continue
                key = name.rpartition(".")[2]
                increase = 100 * curves.error_increase(name)
                ax.plot(curves.densities, increase, marker="o", markersize=3, color=gate_colours.get(key),
                        label=name.partition(".")[2])
                if chosen and name in chosen:
                    ax.axvline(chosen[name], color=gate_colours.get(key), linestyle=":", linewidth=1)
            ax.axhline(0, color="grey", linewidth=0.6)
            ax.set_xscale("log")
            ax.set_xticks(curves.densities, [f"{d:g}" for d in curves.densities], fontsize=7)
            ax.minorticks_off()
            ax.set_title(f"{layer}: {side}", fontsize=10)
            ax.set_xlabel("density of this matrix (others dense)")
            if col == 0:
                ax.set_ylabel(f"{curves.metric} loss (points)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    mode = "load-balanced" if curves.balanced else "unbalanced"
    fig.suptitle(f"Sensitivity of {curves.task} ({curves.split} split, dense {curves.metric} "
                 f"{curves.baseline:.4f}; {mode} pruning, {curves.n_pes} PEs)", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
