"""From sensitivity curves to one density per matrix that meets a target overall density.

**Overall density** = non-zeros of all prunable matrices / their total size (biases and peepholes are not
pruned and not counted), i.e. the weighted mean of the per-matrix densities, weighted by matrix size.

Each matrix's curve is first made monotone: `e(d)` = the score lost when that matrix alone is pruned to
density `d` (sensitivity.py), with `e(1) = 0` (dense) added, negative losses (noise) counted as 0, and
`E(d_k) = max(e(d_k), E(d_(k+1)))` from the densest point down, so that pruning further never looks
cheaper than pruning less (measurement noise would otherwise make the choice jump around). `E` is read
piecewise-linearly between the measured densities.

Two rules give each matrix its *shape* density:

- **threshold** (US10984308B2: "the ratio is chosen from the error increase against the unpruned model,
  under a threshold"): the smallest density whose loss `E(d) <= t`. A common threshold `t` is found by
  bisection: the smallest `t` whose densities reach the target (a sensitive matrix keeps more weights than a
  tolerant one, at the same loss each).
- **knee** (US10762426B2: "the density at the curve's inflection point"): the density where the curve
  bends, taken as the point of `E` farthest from the chord between its first and last point, on axes
  normalised to [0, 1] (the Kneedle construction). A flat curve (loss range below `flat_loss`) has its knee
  at the lowest measured density.

Then the shape densities are **fitted to the target** by one common factor `s` (bisection):
`d_m = clip(s * shape_m, min_density, max_density)`, which keeps their ratios where the bounds allow and
meets the target overall density to within 1e-9 (before pruning's own rounding to whole weights per PE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ...spec.errors import ParameterError
from ..model import LSTMPModel
from .sensitivity import SensitivityCurves

RULES = ("threshold", "knee")
_BISECTION_STEPS = 100


def overall_density(model: LSTMPModel) -> float:
    """Non-zeros of all prunable matrices / their total size."""
    matrices = model.matrices().values()
    return sum(int(np.count_nonzero(w)) for w in matrices) / sum(w.size for w in matrices)


def weighted_density(densities: Mapping[str, float], sizes: Mapping[str, int]) -> float:
    """The overall density the per-matrix `densities` give (weighted by matrix size)."""
    missing = sorted(set(sizes) - set(densities))
    if missing:
        raise ParameterError(f"no density for matrices {missing}")
    total = sum(sizes.values())
    return sum(float(densities[name]) * size for name, size in sizes.items()) / total


def check_target(target) -> float:
    if isinstance(target, bool) or not isinstance(target, (int, float, np.integer, np.floating)):
        raise ParameterError(f"target density: expected a number in (0, 1], got {target!r}")
    target = float(target)
    if not 0.0 < target <= 1.0:  # also rejects NaN
        raise ParameterError(f"target density must be in (0, 1], got {target}")
    return target


def monotone_loss(curves: SensitivityCurves, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(densities, E): the monotone loss curve of one matrix, ascending densities, ending at (1, 0)."""
    densities = np.asarray(curves.densities, dtype=np.float64)
    loss = np.maximum(curves.error_increase(name), 0.0)
    if densities[-1] < 1.0:
        densities, loss = np.append(densities, 1.0), np.append(loss, 0.0)
    else:
        loss[-1] = max(loss[-1], 0.0)
    envelope = np.maximum.accumulate(loss[::-1])[::-1]
    return densities, envelope


def density_at_loss(densities: np.ndarray, envelope: np.ndarray, threshold: float) -> float:
    """The smallest density whose (piecewise-linear, non-increasing) loss is <= threshold."""
    within = np.flatnonzero(envelope <= threshold)
    k = int(within[0])  # exists: the curve ends at loss 0 and threshold >= 0
    if k == 0:
        return float(densities[0])
    above, below = envelope[k - 1], envelope[k]   # above > threshold >= below
    fraction = (above - threshold) / (above - below)
    return float(densities[k - 1] + fraction * (densities[k] - densities[k - 1]))


def knee_density(densities: np.ndarray, envelope: np.ndarray, flat_loss: float = 1e-3) -> float:
    """The density farthest from the chord of the normalised monotone loss curve."""
    span = envelope.max() - envelope.min()
    if span <= flat_loss:
        return float(densities[0])
    x = (densities - densities[0]) / (densities[-1] - densities[0])
    y = (envelope - envelope.min()) / span
    # Chord from (0, y0) to (1, y_end); the knee of a falling L-shaped curve lies below it.
    chord = y[0] + (y[-1] - y[0]) * x
    return float(densities[int(np.argmax(chord - y))])


@dataclass(frozen=True)
class Allocation:
    """Per-matrix densities and how they were chosen."""

    densities: dict
    rule: str                  # "threshold", "knee" or "uniform"
    target: float
    overall: float             # weighted_density(densities) (before pruning's rounding)
    threshold: float | None = None   # the common loss threshold (threshold rule)
    scale: float = 1.0               # the common factor that fitted the shape to the target
    shape: dict | None = None        # the densities the rule gave before fitting

    def to_dict(self) -> dict:
        return {"rule": self.rule, "target": self.target, "overall": self.overall, "threshold": self.threshold,
                "scale": self.scale, "densities": dict(self.densities),
                **({"shape": dict(self.shape)} if self.shape is not None else {})}


def _bounds(names, min_density, max_density) -> tuple[dict, dict]:
    def per_matrix(value, what):
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ParameterError(f"{what}: unknown matrix name(s) {unknown}")
            return {n: float(value.get(n, 0.0 if what == "min_density" else 1.0)) for n in names}
        return {n: float(value) for n in names}

    low, high = per_matrix(min_density, "min_density"), per_matrix(max_density, "max_density")
    for n in names:
        if not 0.0 <= low[n] <= high[n] <= 1.0:
            raise ParameterError(f"{n}: density bounds must satisfy 0 <= min <= max <= 1, got [{low[n]}, {high[n]}]")
    return low, high


def fit_to_target(shape: Mapping[str, float], sizes: Mapping[str, int], target: float,
                  min_density=0.0, max_density=1.0) -> tuple[dict, float]:
    """(densities, s): densities clip(s * shape, min, max) whose overall density equals `target`."""
    target = check_target(target)
    names = list(sizes)
    low, high = _bounds(names, min_density, max_density)
    lowest = weighted_density(low, sizes)
    highest = weighted_density(high, sizes)
    if not lowest - 1e-12 <= target <= highest + 1e-12:
        raise ParameterError(f"target density {target} is outside what the per-matrix bounds allow "
                             f"[{lowest:.4f}, {highest:.4f}]")
    base = {n: max(float(shape[n]), 1e-12) for n in names}

    def at(scale: float) -> dict:
        return {n: float(np.clip(scale * base[n], low[n], high[n])) for n in names}

    lo_scale, hi_scale = 0.0, max(high[n] / base[n] for n in names)
    for _ in range(_BISECTION_STEPS):   # weighted_density(at(s)) is continuous and non-decreasing in s
        middle = 0.5 * (lo_scale + hi_scale)
        if weighted_density(at(middle), sizes) < target:
            lo_scale = middle
        else:
            hi_scale = middle
    return at(hi_scale), hi_scale


def uniform_allocation(sizes: Mapping[str, int], target: float) -> Allocation:
    """Every matrix at the target density (the baseline the sensitivity rules are compared with)."""
    target = check_target(target)
    densities = {name: target for name in sizes}
    return Allocation(densities, "uniform", target, weighted_density(densities, sizes))


def allocate(curves: SensitivityCurves, target: float, rule: str = "threshold", min_density=0.01,
             max_density=1.0) -> Allocation:
    """Per-matrix densities from the curves by `rule` ("threshold" or "knee"), fitted to `target`."""
    target = check_target(target)
    if rule not in RULES:
        raise ParameterError(f"density rule must be one of {', '.join(RULES)}, got {rule!r}")
    sizes = curves.sizes
    loss_curves = {name: monotone_loss(curves, name) for name in curves.matrices}
    threshold = None
    if rule == "knee":
        shape = {name: knee_density(*curve) for name, curve in loss_curves.items()}
    else:
        def shape_at(t: float) -> dict:
            return {name: density_at_loss(*curve, t) for name, curve in loss_curves.items()}

        # The smallest common loss whose densities reach the target; the fit below closes any gap.
        low, high = 0.0, max(float(curve[1].max()) for curve in loss_curves.values())
        if weighted_density(shape_at(low), sizes) <= target:
            high = low
        for _ in range(_BISECTION_STEPS):
            if high - low <= 1e-12:
                break
            middle = 0.5 * (low + high)
            if weighted_density(shape_at(middle), sizes) <= target:
                high = middle
            else:
                low = middle
        threshold = high
        shape = shape_at(threshold)
    densities, scale = fit_to_target(shape, sizes, target, min_density, max_density)
    return Allocation(densities, rule, target, weighted_density(densities, sizes), threshold, scale, shape)
