"""Magnitude pruning, load-balance-aware (ESE, FPGA 2017; US10984308B2) or global, and PE load statistics.

Rows of every matrix are dealt to the PEs round-robin, **row r -> PE r mod N**, exactly as the encoder deals
them (docs/format.md: cell j -> PE j mod N for the gate blocks, row r -> PE r mod N for the projection).

Balanced pruning (the default) keeps, in every PE's sub-matrix of a matrix, the same number of weights

    keep = round(density * rows * cols / min(N, rows))

namely the `keep` largest magnitudes of that sub-matrix. `min(N, rows)` is the number of PEs that hold any
row at all: with more PEs than rows the spare PEs hold nothing and the others share the whole budget. When
N does not divide `rows`, PEs hold `ceil(rows/N)` or `floor(rows/N)` rows; each keeps `min(keep, its size)`,
so at a high density the smaller sub-matrices are kept whole and the matrix ends up slightly below the
requested density, while the busiest PE (which sets the time of the product) never holds more than `keep`.
Density 1.0 keeps every weight (no pruning); density 0.0 keeps none.

Column-balanced pruning (`columns=True`, for delta mode, docs/numerics.md; Spartus's column-balanced
targeted dropout) keeps the same budget `keep` per PE, and moreover the same number of weights of every
*column* in every PE: in delta mode a frame's work is the sum over the columns sent, so each column's
product must take equally long in every PE. Every column gets `keep div cols` weights per PE, and the
`keep mod cols` columns of largest L1 norm (over the whole matrix; ties to the lower column) one more; in
each PE and column the largest magnitudes are kept (ties to the lower row), at most the PE's rows.

Unbalanced pruning keeps the `round(density * rows * cols)` largest magnitudes of the whole matrix.
Both round half up (`floor(x + 0.5)`), like every rounding in docs/numerics.md.

Ties are broken deterministically: among equal magnitudes at the threshold, the weights that come first in
row-major order of the (sub-)matrix are kept. Weights that are already zero may be "kept" (the mask marks the
positions allowed to be non-zero, as a retraining mask should); they stay zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..spec.errors import ParameterError
from .model import GATES, LSTMPModel
from .quantized import QuantizedModel

DEFAULT_KEY = "default"


# Every PE has its own multiplier, entry and pointer memories and accumulators: 4096 PEs need 4096
# multipliers and three memories each, more than FPGAs of ESE's class hold (ESE: 32 PEs on a KU060 with
# 2760 DSP slices). A bound also keeps a mistyped count from writing hundreds of thousands of files.
MAX_PES = 4096


def check_pe_count(n_pes) -> int:
    """`n_pes` as an int, or a ParameterError if it is not an integer in 1..MAX_PES (shared by pruning and
    the encoder, whose callers expect a ParameterError for any bad count)."""
    if isinstance(n_pes, bool) or not isinstance(n_pes, (int, np.integer)) or n_pes < 1:
        raise ParameterError(f"the number of PEs must be an integer >= 1, got {n_pes!r}")
    if n_pes > MAX_PES:
        raise ParameterError(f"the number of PEs must be at most {MAX_PES}, got {n_pes} (each PE has its own "
                             f"multiplier and memories; ESE used 32)")
    return int(n_pes)


def check_pe_count_for_model(n_pes, model) -> int:
    """check_pe_count, and no more PEs than the largest weight matrix of `model` (an LSTMPModel) has rows:
    rows go to PEs round-robin, so a PE beyond that count would hold no rows of any matrix."""
    n_pes = check_pe_count(n_pes)
    rows = max(w.shape[0] for w in model.matrices().values())
    if n_pes > rows:
        raise ParameterError(f"{n_pes} PEs for a model whose largest matrix has at most {rows} rows (cells or "
                             f"projection outputs): PE {rows} would hold no rows; use at most {rows} PEs")
    return n_pes


def _check_density(density, where: str = "density") -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: expected a number in [0, 1], got {density!r}")
    density = float(density)
    if not 0.0 <= density <= 1.0:  # also rejects NaN
        raise ParameterError(f"{where}: density must be in [0, 1], got {density}")
    return density


def _keep_largest(magnitude: np.ndarray, keep: int) -> np.ndarray:
    """Boolean mask of the `keep` largest entries of a 1-D array; ties go to the lowest index. O(n)."""
    size = magnitude.size
    if keep <= 0:
        return np.zeros(size, dtype=bool)
    if keep >= size:
        return np.ones(size, dtype=bool)
    threshold = np.partition(magnitude, size - keep)[size - keep]
    mask = magnitude > threshold
    at_threshold = magnitude == threshold
    still_needed = keep - int(np.count_nonzero(mask))
    mask |= at_threshold & (np.cumsum(at_threshold) <= still_needed)
    return mask


def balanced_keep_count(rows: int, cols: int, density: float, n_pes: int) -> int:
    """Weights every PE keeps of a (rows, cols) matrix under balanced pruning (before the per-PE cap)."""
    return _round_half_up(density * rows * cols / min(n_pes, rows))


def _round_half_up(value: float) -> int:
    return int(np.floor(value + 0.5))


def _column_keep_counts(magnitude: np.ndarray, keep: int) -> np.ndarray:
    """Weights every PE keeps of each column: keep div cols, one more for the keep mod cols largest columns."""
    cols = magnitude.shape[1]
    counts = np.full(cols, keep // cols, dtype=np.int64)
    by_norm = np.argsort(-magnitude.sum(axis=0), kind="stable")
    counts[by_norm[:keep % cols]] += 1
    return counts


def _keep_largest_per_column(magnitude: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Boolean mask keeping, in each column c, the counts[c] largest entries; ties go to the lower row."""
    order = np.argsort(-magnitude, axis=0, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(magnitude.shape[0])[:, np.newaxis], axis=0)
    return rank < counts[np.newaxis, :]


def prune_matrix(w, density: float, n_pes: int, balanced: bool = True, columns: bool = False) -> np.ndarray:
    """The boolean mask of the weights of `w` that magnitude pruning keeps (see the module docstring);
    `columns`: column-balanced (only with `balanced`)."""
    if columns and not balanced:
        raise ParameterError("prune_matrix: column-balanced pruning is a kind of balanced pruning; "
                             "columns=True needs balanced=True")
    w = np.asarray(w)
    if w.ndim != 2:
        raise ParameterError(f"prune_matrix: expected a 2-D matrix, got shape {w.shape}")
    density = _check_density(density)
    n_pes = check_pe_count(n_pes)
    rows, cols = w.shape
    if density == 1.0 or w.size == 0:
        return np.ones(w.shape, dtype=bool) if density == 1.0 else np.zeros(w.shape, dtype=bool)
    magnitude = np.abs(w.astype(np.float64, copy=False))
    if not np.all(np.isfinite(magnitude)):
        raise ParameterError(f"prune_matrix: {np.count_nonzero(~np.isfinite(magnitude))} non-finite weight(s)")
    if not balanced:
        return _keep_largest(magnitude.ravel(), _round_half_up(density * w.size)).reshape(w.shape)
    keep = balanced_keep_count(rows, cols, density, n_pes)
    mask = np.zeros(w.shape, dtype=bool)
    column_counts = _column_keep_counts(magnitude, keep) if columns else None
    for pe in range(min(n_pes, rows)):  # a loop over PEs, not over weights
        sub = magnitude[pe::n_pes]
        if columns:
            mask[pe::n_pes] = _keep_largest_per_column(sub, column_counts)
        else:
            mask[pe::n_pes] = _keep_largest(sub.ravel(), keep).reshape(sub.shape)
    return mask


def resolve_densities(density, names) -> dict[str, float]:
    """Density per matrix name from one number or a mapping (names, optionally a "default" key)."""
    names = list(names)
    if not isinstance(density, Mapping):
        value = _check_density(density)
        return {name: value for name in names}
    unknown = sorted(set(density) - set(names) - {DEFAULT_KEY})
    if unknown:
        raise ParameterError(f"densities: unknown matrix name(s) {unknown}; the model's matrices are {names}")
    missing = [name for name in names if name not in density]
    if missing and DEFAULT_KEY not in density:
        raise ParameterError(f"densities: no density for {missing} (give them, or a {DEFAULT_KEY!r} key)")
    return {name: _check_density(density.get(name, density.get(DEFAULT_KEY)), f"densities[{name!r}]")
            for name in names}


def prune_model(model: LSTMPModel, density, n_pes: int, balanced: bool = True, columns: bool = False):
    """Prune every matrix of `model` (names as `LSTMPModel.matrices()`); `columns`: column-balanced.

    `density`: one number for all matrices, or a mapping from matrix name to density (with an optional
    "default" key for the names it does not list). Returns `(pruned_model, masks)`, masks by matrix name.
    """
    n_pes = check_pe_count(n_pes)
    matrices = model.matrices()
    densities = resolve_densities(density, matrices)
    masks = {name: prune_matrix(w, densities[name], n_pes, balanced, columns) for name, w in matrices.items()}
    pruned = model.with_matrices({name: np.where(masks[name], w, 0.0) for name, w in matrices.items()})
    return pruned, masks


# ----------------------------------------------------------------------------------------------------------
# Load statistics


@dataclass(frozen=True, eq=False)
class PELoad:
    """Non-zeros per PE of one matrix: `nonzeros[p]` for PE p (PEs without rows count 0)."""

    nonzeros: np.ndarray

    @property
    def total(self) -> int:
        return int(self.nonzeros.sum())

    @property
    def max(self) -> int:
        return int(self.nonzeros.max())

    @property
    def mean(self) -> float:
        return float(self.nonzeros.mean())

    @property
    def imbalance(self) -> float:
        """max / mean: 1.0 is perfect balance; the product takes this much longer than an ideal split.
        1.0 for an all-zero matrix (nothing to balance)."""
        return self.max / self.mean if self.total else 1.0

    def to_dict(self) -> dict:
        return {"nonzeros_per_pe": [int(v) for v in self.nonzeros], "max": self.max, "mean": self.mean,
                "imbalance": self.imbalance}


@dataclass(frozen=True, eq=False)
class LoadImbalance:
    """`matrices`: per prunable matrix ("L0.input.i" ... "L0.proj");
    `hardware`: per hardware matrix as the PEs see it ("L0.gates": the 8 gate blocks together, "L0.proj")."""

    n_pes: int
    matrices: dict
    hardware: dict

    def to_dict(self) -> dict:
        return {"n_pes": self.n_pes,
                "matrices": {name: load.to_dict() for name, load in self.matrices.items()},
                "hardware": {name: load.to_dict() for name, load in self.hardware.items()}}


def nonzeros_per_pe_and_column(w: np.ndarray, n_pes: int) -> np.ndarray:
    """(n_pes, cols) non-zeros of each column in each PE (rows dealt r mod N): under column-balanced
    pruning every column's count is the same in every PE that has room for it."""
    w = np.asarray(w)
    counts = np.zeros((n_pes, w.shape[1]), dtype=np.int64)
    np.add.at(counts, np.arange(w.shape[0]) % n_pes, (w != 0).astype(np.int64))
    return counts


def _nonzeros_per_pe(w: np.ndarray, n_pes: int) -> np.ndarray:
    per_row = np.count_nonzero(w, axis=1)
    return np.bincount(np.arange(w.shape[0]) % n_pes, weights=per_row, minlength=n_pes).astype(np.int64)


def _named_matrices(model) -> dict[str, np.ndarray]:
    if isinstance(model, LSTMPModel):
        return model.matrices()
    if isinstance(model, QuantizedModel):
        out = {}
        for k, layer in enumerate(model.layers):
            h = layer.cell_size
            for side, block in (("input", layer.w_input), ("recurrent", layer.w_recurrent)):
                for g, gate in enumerate(GATES):
                    out[f"L{k}.{side}.{gate}"] = block[g * h:(g + 1) * h]
            if layer.w_proj is not None:
                out[f"L{k}.proj"] = layer.w_proj
        return out
    raise TypeError(f"load_imbalance: expected an LSTMPModel or a QuantizedModel, got {type(model).__name__}")


def load_imbalance(model, n_pes: int) -> LoadImbalance:
    """Non-zeros per PE (rows dealt r mod N) of every matrix and every hardware matrix of a float or
    quantised model."""
    n_pes = check_pe_count(n_pes)
    matrices = {name: PELoad(_nonzeros_per_pe(w, n_pes)) for name, w in _named_matrices(model).items()}
    hardware = {}
    for k in range(len(model.layers)):
        # Cell j of every gate block goes to PE j mod N, so a PE's gate load is the sum over the 8 blocks.
        blocks = [matrices[f"L{k}.{side}.{gate}"].nonzeros for side in ("input", "recurrent") for gate in GATES]
        hardware[f"L{k}.gates"] = PELoad(np.sum(blocks, axis=0))
        if f"L{k}.proj" in matrices:
            hardware[f"L{k}.proj"] = matrices[f"L{k}.proj"]
    return LoadImbalance(n_pes, matrices, hardware)
