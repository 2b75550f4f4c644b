"""The encoder: a quantised model to the interleaved-CSC images of docs/format.md.

Encoding is vectorised: the non-zeros of a whole hardware matrix (all PEs) are sorted once by
(PE, column, local row); gaps, padding counts and entry addresses follow from differences and cumulative
sums, so there is no Python loop over non-zeros (only over PEs, layers and files).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...spec.encoded import (GATES_MATRIX, GATES_PER_CELL, MAX_ENTRY_BITS, PROJ_MATRIX, EncodedModel, LayerInfo,
                             PEImage, Segment)
from ...spec.errors import ParameterError
from ...spec.numerics import Numerics
from ..fixedpoint import activation_tables
from ..pruning import check_pe_count
from ..quantize import accumulator_bits
from ..quantized import QuantizedModel
from .cells import balanced_cell_orders, permute_cells
from .rows import cells_of_pe, gate_row_placement, pe_gate_rows, pe_proj_rows, pointer_bits, proj_row_placement

__all__ = ["encode"]


class _EncodedMatrix(NamedTuple):
    words: np.ndarray        # entries of all PEs, PE after PE
    pe_offsets: np.ndarray   # (N+1,) PE p's entries are words[pe_offsets[p]:pe_offsets[p+1]]
    pointers: np.ndarray     # (N, C+1) relative to the PE's first entry of this matrix
    nonzeros: np.ndarray     # (N,)
    padding: np.ndarray      # (N,)


def _encode_matrix(w: np.ndarray, row_pe: np.ndarray, row_local: np.ndarray, n_pes: int,
                   numerics: Numerics) -> _EncodedMatrix:
    """Interleaved CSC with relative indices of one hardware matrix for all PEs at once."""
    index_bits, weight_bits = numerics.index_bits, numerics.weight_bits
    columns = w.shape[1]
    rows_nz, cols_nz = np.nonzero(w)
    order = np.lexsort((row_local[rows_nz], cols_nz, row_pe[rows_nz]))  # by PE, then column, then local row
    rows_nz, cols_nz = rows_nz[order], cols_nz[order]
    pe, local, weight = row_pe[rows_nz], row_local[rows_nz], w[rows_nz, cols_nz]

    group = pe * columns + cols_nz
    previous = np.empty_like(local)
    previous[:1] = -1
    previous[1:] = local[:-1]
    starts_column = np.ones(group.size, dtype=bool)
    starts_column[1:] = group[1:] != group[:-1]
    previous[starts_column] = -1           # the cursor starts at -1 in every column
    gap = local - previous - 1             # zero rows skipped before this non-zero
    n_padding = gap >> index_bits          # each padding entry advances 2**index_bits rows
    index = gap & ((1 << index_bits) - 1)
    length = n_padding + 1

    ends = np.cumsum(length)
    words = np.full(int(ends[-1]) if ends.size else 0, (1 << index_bits) - 1, dtype=np.int64)  # padding word
    words[ends - 1] = ((weight & ((1 << weight_bits) - 1)) << index_bits) | index

    per_column = np.bincount(group, weights=length, minlength=n_pes * columns).astype(np.int64)
    per_column = per_column.reshape(n_pes, columns)
    pointers = np.zeros((n_pes, columns + 1), dtype=np.int64)
    np.cumsum(per_column, axis=1, out=pointers[:, 1:])
    pe_offsets = np.zeros(n_pes + 1, dtype=np.int64)
    np.cumsum(pointers[:, -1], out=pe_offsets[1:])
    nonzeros = np.bincount(pe, minlength=n_pes).astype(np.int64)
    padding = np.bincount(pe, weights=n_padding, minlength=n_pes).astype(np.int64)
    return _EncodedMatrix(words, pe_offsets, pointers, nonzeros, padding)


def _check_range(values: np.ndarray, bits: int, what: str) -> None:
    if values.size == 0:
        return
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    smallest, largest = int(values.min()), int(values.max())
    if smallest < low or largest > high:
        raise ParameterError(f"{what}: values span [{smallest}, {largest}], which does not fit a signed "
                             f"{bits}-bit word [{low}, {high}]")


def encode(qmodel: QuantizedModel, n_pes: int, balance_cells: bool = True) -> EncodedModel:
    """Encode a quantised model for `n_pes` PEs (docs/format.md). `balance_cells`: reorder the cells of each
    layer where that evens out the PEs' loads (docs/format.md, "Cell order"); the outputs are the same."""
    if not isinstance(qmodel, QuantizedModel):
        raise TypeError(f"encode: expected a QuantizedModel, got {type(qmodel).__name__}")
    if isinstance(n_pes, bool) or not isinstance(n_pes, (int, np.integer)):
        raise TypeError(f"encode: the number of PEs must be an integer, got {type(n_pes).__name__}")
    if not isinstance(balance_cells, (bool, np.bool_)):
        raise TypeError(f"encode: balance_cells must be True or False, got {type(balance_cells).__name__}")
    n_pes = check_pe_count(n_pes)
    orders = balanced_cell_orders(qmodel, n_pes) if balance_cells else (None,) * len(qmodel.layers)
    qmodel = permute_cells(qmodel, orders)    # from here on, the cells in the order the PEs hold them
    numerics = qmodel.numerics
    entry_bits = numerics.weight_bits + numerics.index_bits
    if entry_bits > MAX_ENTRY_BITS:
        raise ParameterError(f"weight_bits + index_bits = {entry_bits} exceeds the supported {MAX_ENTRY_BITS}")

    layers, matrices = [], []
    for k, q in enumerate(qmodel.layers):
        # The reader (and the golden model) hold the biases at act_frac + max(fw_x, fw_r) fractional bits.
        if q.facc != numerics.act_frac + max(q.fw_x, q.fw_r):
            raise ParameterError(f"layer {k}: facc = {q.facc}, but act_frac + max(fw_x, fw_r) = "
                                 f"{numerics.act_frac + max(q.fw_x, q.fw_r)} (docs/numerics.md)")
        _check_range(q.w_gates, numerics.weight_bits, f"layer {k} gate weights")
        gate_acc_bits, proj_acc_bits = accumulator_bits(q, numerics)
        layers.append(LayerInfo(
            input_size=q.input_size, cell_size=q.cell_size, proj_size=q.proj_size,
            recurrent_size=q.recurrent_size, peephole=q.has_peephole, fw_x=q.fw_x, fw_r=q.fw_r,
            fw_p=q.fw_p, facc=q.facc, fp=q.fp, gate_acc_bits=int(gate_acc_bits),
            proj_acc_bits=None if proj_acc_bits is None else int(proj_acc_bits),
            cell_order=None if orders[k] is None else tuple(orders[k])))
        placed = [(GATES_MATRIX, _encode_matrix(q.w_gates, *gate_row_placement(q.cell_size, n_pes), n_pes,
                                                numerics))]
        if q.has_projection:
            _check_range(q.w_proj, numerics.weight_bits, f"layer {k} projection weights")
            placed.append((PROJ_MATRIX, _encode_matrix(q.w_proj, *proj_row_placement(q.proj_size, n_pes),
                                                       n_pes, numerics)))
        matrices.append(placed)

    bias_bits = max(layer.gate_acc_bits for layer in layers)
    if bias_bits > MAX_ENTRY_BITS:
        raise ParameterError(f"the gate accumulators need {bias_bits} bits (biases or weights of extreme scale); "
                             f"the encoded format holds words of at most {MAX_ENTRY_BITS} bits")
    for k, q in enumerate(qmodel.layers):
        _check_range(q.bias, bias_bits, f"layer {k} bias")
        if q.has_peephole:
            _check_range(q.peephole, numerics.peephole_bits, f"layer {k} peepholes")

    images = []
    for p in range(n_pes):
        entries, pointers, segments, biases, peepholes = [], [], [], [], []
        entry_base = ptr_base = bias_base = peephole_base = 0
        bias_bases, peephole_bases = [], []
        for k, (q, placed) in enumerate(zip(qmodel.layers, matrices)):
            for matrix, enc in placed:
                words = enc.words[enc.pe_offsets[p]:enc.pe_offsets[p + 1]]
                rows = (GATES_PER_CELL * cells_of_pe(q.cell_size, n_pes, p) if matrix == GATES_MATRIX
                        else len(pe_proj_rows(q.proj_size, n_pes, p)))
                segments.append(Segment(layer=k, matrix=matrix, entry_base=entry_base, entry_count=words.size,
                                        nonzeros=int(enc.nonzeros[p]), padding=int(enc.padding[p]),
                                        ptr_base=ptr_base, columns=enc.pointers.shape[1] - 1, rows=rows))
                entries.append(words)
                pointers.append(enc.pointers[p] + entry_base)
                entry_base += words.size
                ptr_base += enc.pointers.shape[1]
            cells = np.arange(p, q.cell_size, n_pes)
            biases.append(q.bias[pe_gate_rows(q.cell_size, n_pes, p)])
            bias_bases.append(bias_base)
            bias_base += biases[-1].size
            peephole_bases.append(peephole_base)
            if q.has_peephole:
                peepholes.append(q.peephole[:, cells].T.ravel())   # index 3*q + k'
                peephole_base += peepholes[-1].size
        images.append(PEImage(
            pe=p,
            cells=tuple(cells_of_pe(q.cell_size, n_pes, p) for q in qmodel.layers),
            proj_rows=tuple(len(pe_proj_rows(q.proj_size, n_pes, p)) if q.has_projection else 0
                            for q in qmodel.layers),
            entries=np.concatenate(entries), pointers=np.concatenate(pointers),
            bias=np.concatenate(biases), peephole=np.concatenate(peepholes) if peepholes else np.zeros(0),
            segments=tuple(segments), bias_base=tuple(bias_bases), peephole_base=tuple(peephole_bases)))

    max_depth = max(int(image.entries.size) for image in images)
    memories = {"entry_bits": entry_bits, "pointer_bits": pointer_bits(max_depth),
                "bias_bits": bias_bits, "peephole_bits": numerics.peephole_bits}
    return EncodedModel(numerics=numerics, n_pes=n_pes, layers=tuple(layers), pes=tuple(images),
                        tables=activation_tables(numerics), memories=memories)
