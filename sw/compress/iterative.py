"""Pruning with fine-tuning: the iterative schedule (US10762426B2) and the 'proper use of the mask' variant
(US10832123B2). Pruning itself is sw/pruning.py; scoring and retraining are the task's (task.py).

Iterative: the overall density goes from the model's (1 for a dense model) to the target in `steps` geometric
steps (each removes the same fraction of the remaining weights: o_k = start * (target/start)**(k/steps)). Each step
prunes the current model to the per-matrix densities of that overall density (`allocation`: uniform, or from sensitivity
curves), fine-tunes with the masks held, and scores the validation split. A step whose loss against the dense model
exceeds `max_loss` is undone (model and task state restored) and retried half-way (geometric midpoint) from the last
accepted density, at most `max_backoffs` times per planned step; then the run stops above the target (`reached_target`
False) unless `force_target` accepts the planned step anyway.

Mask variant: prune to the target with mask M; retrain dense (masks None: pruned weights may grow back);
prune again with the *same* mask M (not a new magnitude mask); retrain with M held.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ...spec.errors import ParameterError
from ..model import LSTMPModel
from ..pruning import check_pe_count, prune_model
from .density import check_target, overall_density
from .task import CompressionTask, TaskError

METHODS = ("iterative", "mask")


@dataclass(frozen=True, eq=False)
class CompressionResult:
    """The compressed float model, its masks (True = may be non-zero) and what happened on the way."""

    method: str
    model: LSTMPModel
    masks: dict
    densities: dict              # per matrix, as requested at the last accepted step
    baseline: float              # the dense model's validation score
    score: float                 # the final model's validation score
    target_density: float
    reached_target: bool
    history: list = field(default_factory=list)   # one dict per step (see the functions)
    n_pes: int = 1
    balanced: bool = True
    column_balanced: bool = False

    @property
    def overall_density(self) -> float:
        return overall_density(self.model)

    def summary(self) -> dict:
        return {"method": self.method, "baseline": self.baseline, "score": self.score,
                "target_density": self.target_density, "overall_density": self.overall_density,
                "reached_target": self.reached_target, "n_pes": self.n_pes, "balanced": self.balanced,
                "column_balanced": self.column_balanced,
                "densities": dict(self.densities), "history": list(self.history)}


def check_masks_held(model: LSTMPModel, masks: Mapping[str, np.ndarray], where: str) -> None:
    """Every weight outside its mask must be zero, or the task's finetune broke the contract."""
    for name, w in model.matrices().items():
        if name in masks and np.any(w[~np.asarray(masks[name], dtype=bool)] != 0):
            count = int(np.count_nonzero(w[~np.asarray(masks[name], dtype=bool)]))
            raise TaskError(f"{where}: {count} pruned weight(s) of {name} are non-zero after fine-tuning; "
                            f"the task's finetune must hold masked weights at zero")


def apply_masks(model: LSTMPModel, masks: Mapping[str, np.ndarray]) -> LSTMPModel:
    """`model` with every weight outside its mask set to zero (the same positions, whatever the magnitudes)."""
    matrices = model.matrices()
    return model.with_matrices({name: np.where(np.asarray(mask, dtype=bool), matrices[name], 0.0)
                                for name, mask in masks.items()})


def prune_at_most(model: LSTMPModel, densities, overall: float, n_pes: int, balanced: bool = True,
                  columns: bool = False):
    """prune_model(model, densities, ...), with the densities scaled down by the largest common factor that
    keeps the overall density at most `overall` when pruning's rounding (whole weights per PE, half up)
    would exceed it: a target density is a promise ("at most 0.10"), not an approximation. `columns`:
    column-balanced pruning (sw/pruning.py). Returns (pruned, masks, densities used)."""
    names = list(model.matrices())
    wanted = dict(densities) if isinstance(densities, Mapping) else {name: float(densities) for name in names}
    pruned, masks = prune_model(model, wanted, n_pes, balanced, columns)
    if overall_density(pruned) <= overall + 1e-12:
        return pruned, masks, wanted
    full = {name: wanted.get(name, wanted.get("default", 1.0)) for name in names}

    def scaled(factor: float) -> dict:
        return {name: min(1.0, d * factor) for name, d in full.items()}

    # The realized density is non-decreasing in the factor: bisect for the largest factor that fits.
    low, high = 0.0, 1.0
    best = prune_model(model, scaled(low), n_pes, balanced, columns)
    for _ in range(30):
        middle = 0.5 * (low + high)
        attempt = prune_model(model, scaled(middle), n_pes, balanced, columns)
        if overall_density(attempt[0]) <= overall + 1e-12:
            low, best = middle, attempt
        else:
            high = middle
    return best[0], best[1], scaled(low)


def _check_epochs(epochs, what: str) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ParameterError(f"{what} must be an integer >= 0, got {epochs!r}")
    return int(epochs)


def _uniform(overall: float) -> float:
    return overall


def final_finetune(task: CompressionTask, model: LSTMPModel, masks, epochs: int, split: str, baseline: float,
                   overall_target: float, history: list, log: Callable[[str], None]) -> tuple[LSTMPModel, float]:
    """`epochs` masked epochs at the end of a run: (the model, its score), recorded in `history` and logged."""
    started = time.time()
    model = task.finetune(model, masks, epochs)
    check_masks_held(model, masks, "final fine-tuning")
    score = float(task.score(model, split))
    history.append(dict(step=len(history), phase="final finetune", overall_target=overall_target,
                        overall_density=overall_density(model), score=score, loss=baseline - score,
                        accepted=True, epochs=epochs, seconds=round(time.time() - started, 1)))
    log(f"final fine-tuning ({epochs} epochs): overall density {overall_density(model):.4f}, "
        f"{task.metric} {score:.4f} (loss {baseline - score:+.4f})")
    return model, score


def iterative_compression(model: LSTMPModel, task: CompressionTask, target_density: float, n_pes: int,
                          allocation: Callable[[float], dict | float] = _uniform, balanced: bool = True,
                          steps: int = 4, epochs: int = 1, max_loss: float = 0.01, max_backoffs: int = 2,
                          final_epochs: int = 0, force_target: bool = False, split: str = "val",
                          progress: bool = True, log: Callable[[str], None] | None = None,
                          columns: bool = False) -> CompressionResult:
    """Prune towards `target_density` in `steps` steps with fine-tuning (see the module docstring).

    allocation: overall density -> per-matrix densities (a dict, or one number for all), e.g.
        `lambda o: allocate(curves, o).densities`; default uniform.
    max_loss: the largest accepted validation loss against the dense model (in the task's metric units,
        e.g. 0.01 = one accuracy point).
    columns: column-balanced pruning (sw/pruning.py; needs `balanced`).
    history entries: step, overall_target, overall_density, score, loss, accepted, epochs, seconds.
    """
    from tqdm import tqdm

    target = check_target(target_density)
    n_pes = check_pe_count(n_pes)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ParameterError(f"steps must be an integer >= 1, got {steps!r}")
    epochs, final_epochs = _check_epochs(epochs, "epochs"), _check_epochs(final_epochs, "final epochs")
    max_backoffs = _check_epochs(max_backoffs, "max back-offs")
    if (epochs or final_epochs) and not task.can_finetune:
        raise TaskError(f"task {task.name!r} cannot fine-tune; use epochs 0 (pruning without retraining)")
    log = log or (lambda message: None)

    started = time.time()
    baseline = float(task.score(model, split))
    start = overall_density(model)   # below 1 when continuing from an already pruned model
    if start <= target:
        raise ParameterError(f"the model's overall density {start:.4f} is already at or below the target {target}")
    history = [dict(step=0, phase="dense" if start == 1.0 else "start", overall_target=start,
                    overall_density=start, score=baseline, loss=0.0, accepted=True, epochs=0,
                    seconds=round(time.time() - started, 1))]
    planned = [start * (target / start) ** (k / steps) for k in range(1, steps + 1)]
    planned[-1] = target  # exactly, whatever the rounding of the power
    current_model, current_overall = model, start
    current_masks = {name: w != 0 for name, w in model.matrices().items()}
    current_densities: dict = {name: float(mask.mean()) for name, mask in current_masks.items()}
    current_score, reached = baseline, True
    index, backoffs, failed_at, forcing = 0, 0, None, False
    bar = tqdm(total=steps, desc="compress", unit="step", disable=not progress)
    while index < len(planned):
        goal = planned[index]
        attempt = goal if failed_at is None else math.sqrt(current_overall * failed_at)
        step_started = time.time()
        snapshot = task.snapshot()
        pruned, masks, wanted = prune_at_most(current_model, allocation(attempt), attempt, n_pes, balanced,
                                              columns)
        if epochs:
            tuned = task.finetune(pruned, masks, epochs)
            check_masks_held(tuned, masks, f"step {len(history)}")
        else:
            tuned = pruned
        score = float(task.score(tuned, split))
        loss = baseline - score
        within = loss <= max_loss + 1e-9   # 1e-9: 0.53 - 0.52 must count as 0.01
        # Out of back-offs with force_target: the planned step is taken whatever it costs ("forced").
        forcing = forcing or (force_target and attempt == goal and backoffs >= max_backoffs)
        accepted = within or forcing
        history.append(dict(step=len(history), phase="prune+finetune", overall_target=attempt,
                            overall_density=overall_density(tuned), score=score, loss=loss, accepted=accepted,
                            epochs=epochs, seconds=round(time.time() - step_started, 1),
                            **({"forced": True} if accepted and not within else {})))
        log(f"step {len(history) - 1}: overall density {overall_density(tuned):.4f}, {task.metric} {score:.4f} "
            f"(loss {loss:+.4f}) {'accepted' if accepted else 'rejected: backing off'}")
        bar.set_postfix(density=f"{overall_density(tuned):.3f}", score=f"{score:.4f}")
        if accepted:
            current_model, current_masks, current_overall, current_score = tuned, masks, attempt, score
            current_densities = wanted
            if attempt == goal:
                index, backoffs, failed_at, forcing = index + 1, 0, None, False
                bar.update()
            else:
                failed_at = None  # try the planned step again from the new, closer point
            continue
        task.restore(snapshot)
        backoffs += 1
        if backoffs > max_backoffs:
            if force_target:
                # Out of back-offs: take the planned step whatever it costs (marked "forced").
                forcing, failed_at = True, None
                continue
            reached = False
            log(f"stopped at overall density {overall_density(current_model):.4f}: {max_backoffs} back-off(s) "
                f"did not bring the loss under {max_loss}")
            break
        # Back off: retry from the accepted model, halfway (geometrically) towards the density that failed.
        failed_at = attempt
    bar.close()
    if final_epochs and reached:
        current_model, current_score = final_finetune(task, current_model, current_masks, final_epochs, split,
                                                      baseline, current_overall, history, log)
    return CompressionResult("iterative", current_model, current_masks, current_densities, baseline,
                             current_score, target, reached, history, n_pes, bool(balanced), bool(columns))


def mask_variant(model: LSTMPModel, task: CompressionTask, densities, n_pes: int, balanced: bool = True,
                 dense_epochs: int = 1, masked_epochs: int = 1, split: str = "val", progress: bool = True,
                 log: Callable[[str], None] | None = None, columns: bool = False) -> CompressionResult:
    """US10832123B2: prune (mask M) -> retrain dense -> prune again with the same M -> retrain with M.

    densities: one number or a mapping per matrix name (sw/pruning.py). history: one entry per stage
    (phase "prune", "dense retrain", "prune with the same mask", "masked retrain")."""
    from tqdm import tqdm

    n_pes = check_pe_count(n_pes)
    dense_epochs = _check_epochs(dense_epochs, "dense epochs")
    masked_epochs = _check_epochs(masked_epochs, "masked epochs")
    if (dense_epochs or masked_epochs) and not task.can_finetune:
        raise TaskError(f"task {task.name!r} cannot fine-tune, which the mask variant needs")
    log = log or (lambda message: None)
    history: list[dict] = []
    bar = tqdm(total=5, desc="mask variant", unit="stage", disable=not progress)

    def record(phase: str, current: LSTMPModel, epochs: int, started: float) -> float:
        score = float(task.score(current, split))
        history.append(dict(step=len(history), phase=phase, overall_density=overall_density(current),
                            score=score, loss=baseline - score if history else 0.0, epochs=epochs,
                            seconds=round(time.time() - started, 1)))
        log(f"{phase}: overall density {overall_density(current):.4f}, {task.metric} {score:.4f}")
        bar.set_postfix(stage=phase)
        bar.update()
        return score

    started = time.time()
    baseline = float("nan")
    baseline = record("dense", model, 0, started)
    started = time.time()
    names = list(model.matrices())
    requested = dict(densities) if isinstance(densities, Mapping) else {name: float(densities) for name in names}
    target = sum(requested.get(n, requested.get("default", 1.0)) * w.size for n, w in model.matrices().items()) / \
        sum(w.size for w in model.matrices().values())
    pruned, mask, requested = prune_at_most(model, requested, target, n_pes, balanced, columns)
    record("prune", pruned, 0, started)
    started = time.time()
    dense = task.finetune(pruned, None, dense_epochs) if dense_epochs else pruned
    record("dense retrain", dense, dense_epochs, started)
    started = time.time()
    again = apply_masks(dense, mask)
    record("prune with the same mask", again, 0, started)
    started = time.time()
    final = task.finetune(again, mask, masked_epochs) if masked_epochs else again
    check_masks_held(final, mask, "masked retrain")
    score = record("masked retrain", final, masked_epochs, started)
    bar.close()
    return CompressionResult("mask", final, mask, requested, baseline, score, target, True, history, n_pes,
                             bool(balanced), bool(columns))


def already_pruned(model: LSTMPModel, task: CompressionTask, target_density: float, n_pes: int,
                   balanced: bool = True, columns: bool = False, split: str = "val", final_epochs: int = 0,
                   log: Callable[[str], None] | None = None) -> CompressionResult:
    """A model already at or below the target density, taken as it is: its masks are its non-zeros (so that
    fine-tuning, e.g. with delta-mode thresholds, holds its zeros), no pruning step; `final_epochs` masked
    epochs of fine-tuning (e.g. to go on training an earlier run's result)."""
    target = check_target(target_density)
    if overall_density(model) > target + 1e-12:
        raise ParameterError(f"the model's overall density {overall_density(model):.4f} is above the target {target}")
    final_epochs = _check_epochs(final_epochs, "final epochs")
    if final_epochs and not task.can_finetune:
        raise TaskError(f"task {task.name!r} cannot fine-tune; use final epochs 0")
    started = time.time()
    baseline = score = float(task.score(model, split))
    masks = {name: w != 0 for name, w in model.matrices().items()}
    densities = {name: float(mask.mean()) for name, mask in masks.items()}
    history = [dict(step=0, phase="already pruned", overall_target=target, overall_density=overall_density(model),
                    score=score, loss=0.0, accepted=True, epochs=0, seconds=round(time.time() - started, 1))]
    if final_epochs:
        model, score = final_finetune(task, model, masks, final_epochs, split, baseline, target, history,
                                      log or (lambda message: None))
    return CompressionResult("none", model, masks, densities, baseline, score, target, True, history,
                             check_pe_count(n_pes), bool(balanced), bool(columns))
