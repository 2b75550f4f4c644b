"""Cell order (docs/format.md, "Cell order"): permuting the hidden cells of a layer to balance the PEs.

An LSTM layer computes the same outputs whatever the order of its hidden cells, as long as everything
indexed by a cell follows: the rows of every gate block and the biases, the peepholes, the columns of the
projection and, without a projection, the layer's recurrent columns and the next layer's input columns
(its output m is then in the permuted order). The encoder deals cells to PEs round-robin, so a model pruned
for one PE count can load another PE count unevenly; `balanced_cell_orders` chooses, per layer, an order
whose round-robin dealing evens out the PEs' non-zeros, and `permute_cells` applies orders to a model (and
their inverses restore it: `decode`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...spec.encoded import GATES_PER_CELL
from ...spec.errors import ParameterError
from ..quantized import QuantizedModel
from .rows import cells_of_pe

__all__ = ["balanced_cell_orders", "permute_cells", "inverse_order", "can_reorder"]

_NEVER = np.iinfo(np.int64).max


def can_reorder(qmodel: QuantizedModel, layer: int) -> bool:
    """Whether `layer`'s cells may be reordered without changing the model's output: a layer with a
    projection (its output y does not depend on the cell order) or one with a layer above it (which takes
    the permuted output in its input columns); the last layer without a projection would emit m permuted."""
    return qmodel.layers[layer].has_projection or layer < len(qmodel.layers) - 1


def inverse_order(order: np.ndarray) -> np.ndarray:
    """The permutation that undoes `order`."""
    return np.argsort(np.asarray(order, dtype=np.int64), kind="stable")


def permute_cells(qmodel: QuantizedModel, orders) -> QuantizedModel:
    """The equivalent model whose layer k has its cells in `orders[k]` (stored position s holds the cell
    orders[k][s] of `qmodel`; None: in order). Same outputs for every input (integer sums are exact)."""
    if not isinstance(qmodel, QuantizedModel):
        raise TypeError(f"permute_cells: expected a QuantizedModel, got {type(qmodel).__name__}")
    orders = tuple(orders)
    if len(orders) != len(qmodel.layers):
        raise ParameterError(f"permute_cells: expected {len(qmodel.layers)} orders (one per layer), "
                             f"got {len(orders)}")
    layers, below = [], None   # below: the order of the layer below's output, when it is permuted
    for k, (q, order) in enumerate(zip(qmodel.layers, orders)):
        w_gates = q.w_gates
        if below is not None:
            w_gates = np.concatenate([w_gates[:, :q.input_size][:, below], w_gates[:, q.input_size:]], axis=1)
        if order is None:
            layers.append(replace(q, w_gates=w_gates))
            below = None
            continue
        order = np.asarray(order, dtype=np.int64)
        if order.shape != (q.cell_size,) or not np.array_equal(np.sort(order), np.arange(q.cell_size)):
            raise ParameterError(f"permute_cells: order of layer {k} is not a permutation of its "
                                 f"{q.cell_size} cells")
        if not can_reorder(qmodel, k):
            raise ParameterError(f"permute_cells: layer {k} is the last layer and has no projection: "
                                 f"reordering its cells would reorder the model's outputs")
        h = q.cell_size
        w_gates = w_gates.reshape(GATES_PER_CELL, h, -1)[:, order].reshape(GATES_PER_CELL * h, -1)
        if not q.has_projection:   # y = m: the recurrent columns follow the cells
            w_gates = np.concatenate([w_gates[:, :q.input_size], w_gates[:, q.input_size:][:, order]], axis=1)
        layers.append(replace(
            q, w_gates=w_gates, bias=q.bias.reshape(GATES_PER_CELL, h)[:, order].ravel(),
            peephole=None if q.peephole is None else q.peephole[:, order],
            w_proj=None if q.w_proj is None else q.w_proj[:, order]))
        below = None if q.has_projection else order
    return QuantizedModel(qmodel.numerics, tuple(layers))


class _Loads:
    """Per-PE loads of one layer under an assignment of cells to PEs: `first` (input-side non-zeros plus
    the PE's projection rows' non-zeros, broadcast together) and `second` (recurrent-side non-zeros)."""

    def __init__(self, first_per_cell, second_per_cell, first_fixed, pe_of):
        self.a, self.b = first_per_cell, second_per_cell
        self.pe_of = pe_of.copy()
        n_pes = first_fixed.size
        self.first = first_fixed + np.bincount(pe_of, weights=self.a, minlength=n_pes).astype(np.int64)
        self.second = np.bincount(pe_of, weights=self.b, minlength=n_pes).astype(np.int64)

    @property
    def cost(self) -> tuple[int, int]:
        """(busiest first + busiest second, sum of squares): lower is better, the second breaks ties."""
        return (int(self.first.max() + self.second.max()),
                int((self.first ** 2).sum() + (self.second ** 2).sum()))

    def improve(self, bound: int) -> None:
        """Swap pairs of cells between PEs while a swap lowers the cost, until its first part reaches
        `bound`; one cell of each swap is on a busiest PE (only such swaps can lower the maxima; the squares
        keep it moving on ties)."""
        while self.cost[0] > bound:
            busiest = (self.first == self.first.max()) | (self.second == self.second.max())
            movers = np.flatnonzero(busiest[self.pe_of])
            p, q = self.pe_of[movers][:, None], self.pe_of[None, :]
            d_first = self.a[None, :] - self.a[movers][:, None]     # what PE p gains, PE q loses
            d_second = self.b[None, :] - self.b[movers][:, None]
            new_max = (_max_after(self.first, p, q, d_first) + _max_after(self.second, p, q, d_second))
            squares = (2 * d_first * (self.first[p] - self.first[q]) + 2 * d_first ** 2
                       + 2 * d_second * (self.second[p] - self.second[q]) + 2 * d_second ** 2)
            cost = self.cost[0]
            better = (p != q) & ((new_max < cost) | ((new_max == cost) & (squares < 0)))
            if not better.any():
                return
            candidates = better & (new_max == new_max[better].min())
            i, j = np.unravel_index(np.argmin(np.where(candidates, squares, _NEVER)), candidates.shape)
            cell_i, cell_j = movers[i], j
            pe_i, pe_j = self.pe_of[cell_i], self.pe_of[cell_j]
            self.first[pe_i] += self.a[cell_j] - self.a[cell_i]
            self.first[pe_j] += self.a[cell_i] - self.a[cell_j]
            self.second[pe_i] += self.b[cell_j] - self.b[cell_i]
            self.second[pe_j] += self.b[cell_i] - self.b[cell_j]
            self.pe_of[cell_i], self.pe_of[cell_j] = pe_j, pe_i


def _max_after(loads: np.ndarray, p: np.ndarray, q: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The largest load once PE p gains `delta` and PE q loses it (broadcast over p, q, delta)."""
    top = np.argsort(loads)[::-1][:3]          # the three busiest PEs: one of them is neither p nor q
    others = np.full(np.broadcast_shapes(p.shape, q.shape), loads[top[2]] if top.size > 2 else -_NEVER)
    for rank in (1, 0):
        if rank < top.size:
            others = np.where((p != top[rank]) & (q != top[rank]), loads[top[rank]], others)
    return np.maximum(others, np.maximum(loads[p] + delta, loads[q] - delta))


def _greedy(first_per_cell, second_per_cell, first_fixed, capacity) -> np.ndarray:
    """Largest cells first, each to the PE with room whose busier side (relative to its mean) stays least."""
    n_pes = first_fixed.size
    first, second = first_fixed.astype(np.float64), np.zeros(n_pes)
    first_mean = max(1.0, (first_fixed.sum() + first_per_cell.sum()) / n_pes)
    second_mean = max(1.0, second_per_cell.sum() / n_pes)
    room = capacity.copy()
    pe_of = np.zeros(first_per_cell.size, dtype=np.int64)
    weight = first_per_cell / first_mean + second_per_cell / second_mean
    for cell in np.argsort(-weight, kind="stable"):
        score = np.maximum((first + first_per_cell[cell]) / first_mean, (second + second_per_cell[cell]) / second_mean)
        score[room == 0] = np.inf
        pe = int(np.argmin(score))
        pe_of[cell] = pe
        first[pe] += first_per_cell[cell]
        second[pe] += second_per_cell[cell]
        room[pe] -= 1
    return pe_of


def _order_from(pe_of: np.ndarray, n_pes: int) -> np.ndarray:
    """The cell order that deals the cells of PE p to PE p: stored position s goes to PE s mod N."""
    order = np.empty(pe_of.size, dtype=np.int64)
    for p in range(n_pes):
        order[p::n_pes] = np.flatnonzero(pe_of == p)
    return order


def _layer_order(q, n_pes: int) -> np.ndarray | None:
    h = q.cell_size
    nonzero = q.w_gates != 0
    first_per_cell = nonzero[:, :q.input_size].sum(axis=1).reshape(GATES_PER_CELL, h).sum(axis=0)
    second_per_cell = nonzero[:, q.input_size:].sum(axis=1).reshape(GATES_PER_CELL, h).sum(axis=0)
    first_fixed = np.zeros(n_pes, dtype=np.int64)
    if q.has_projection:   # projection row r is on PE r mod N whatever the cell order
        rows = np.count_nonzero(q.w_proj, axis=1)
        np.add.at(first_fixed, np.arange(rows.size) % n_pes, rows)
    in_order = _Loads(first_per_cell, second_per_cell, first_fixed, np.arange(h) % n_pes)
    bound = -(-int(in_order.first.sum()) // n_pes) - (-int(in_order.second.sum()) // n_pes)
    in_order_cost = in_order.cost[0]
    if in_order_cost <= bound:   # already as even as the counts allow (pruned for this PE count)
        return None
    capacity = np.array([cells_of_pe(h, n_pes, p) for p in range(n_pes)], dtype=np.int64)
    greedy = _Loads(first_per_cell, second_per_cell, first_fixed,
                    _greedy(first_per_cell, second_per_cell, first_fixed, capacity))
    best = None
    for start in (greedy, in_order):
        start.improve(bound)
        if best is None or start.cost < best.cost:
            best = start
        if best.cost[0] == bound:
            break
    return _order_from(best.pe_of, n_pes) if best.cost[0] < in_order_cost else None


def balanced_cell_orders(qmodel: QuantizedModel, n_pes: int) -> tuple:
    """Per layer, a cell order (for `permute_cells`) that lowers the busiest PE's count, or None where none
    does or the layer may not be reordered (`can_reorder`). The count of a PE is its input-side plus
    projection non-zeros (broadcast interleaved in the element-wise pass) plus, separately maximised, its
    recurrent-side non-zeros: the cost is max(input + proj) + max(recurrent) over the PEs."""
    if not isinstance(qmodel, QuantizedModel):
        raise TypeError(f"balanced_cell_orders: expected a QuantizedModel, got {type(qmodel).__name__}")
    return tuple(_layer_order(q, n_pes) if can_reorder(qmodel, k) else None for k, q in enumerate(qmodel.layers))
