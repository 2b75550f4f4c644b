"""The decoder: walks each segment as the hardware does (a cursor per column) and checks it on the way.

`decode` is the inverse of `encode`; `segment_entries` gives one segment's entries for the hardware tests.
"""

from __future__ import annotations

import numpy as np

from ...spec.encoded import (GATES_MATRIX, GATES_PER_CELL, PEEPHOLES_PER_CELL, PROJ_MATRIX, EncodedModel, PEImage,
                             Segment, SegmentEntries)
from ...spec.errors import EncodedModelError
from ..quantized import QuantizedLayer, QuantizedModel
from .cells import inverse_order, permute_cells
from .rows import memory_file, pe_gate_rows, pe_proj_rows

__all__ = ["decode", "segment_entries"]


def _signed(values: np.ndarray, bits: int) -> np.ndarray:
    sign = np.int64(1) << (bits - 1)
    return ((values & ((np.int64(1) << bits) - 1)) ^ sign) - sign


def _walk_segment(encoded: EncodedModel, image: PEImage, segment: Segment) -> SegmentEntries:
    numerics = encoded.numerics
    index_bits = numerics.index_bits
    entries_file = memory_file(image.pe, "entries", encoded.n_pes)
    pointers_file = memory_file(image.pe, "pointers", encoded.n_pes)
    where = f"PE {image.pe} layer {segment.layer} {segment.matrix}"
    ptr = image.pointers[segment.ptr_base:segment.ptr_base + segment.columns + 1]
    first, last = segment.entry_base, segment.entry_base + segment.entry_count
    if ptr.size != segment.columns + 1:
        raise EncodedModelError(f"{pointers_file}: {where}: expected {segment.columns + 1} pointers from "
                                f"address {segment.ptr_base}, the memory has {image.pointers.size} words")
    if last > image.entries.size:
        raise EncodedModelError(f"{entries_file}: {where}: segment ends at {last}, the memory has "
                                f"{image.entries.size} words")
    if ptr[0] != first or ptr[-1] != last:
        raise EncodedModelError(f"{pointers_file}: {where}: pointers must run from entry_base {first} to "
                                f"entry_base + entry_count = {last}, got {int(ptr[0])} .. {int(ptr[-1])}")
    steps = np.diff(ptr)
    if np.any(steps < 0):
        column = int(np.flatnonzero(steps < 0)[0])
        raise EncodedModelError(f"{pointers_file}: {where}: pointers must be non-decreasing, but column "
                                f"{column} starts at {int(ptr[column])} and ends at {int(ptr[column + 1])}")
    words = image.entries[first:last]
    column = np.repeat(np.arange(segment.columns, dtype=np.int64), steps)
    index = words & ((1 << index_bits) - 1)
    weight = _signed(words >> index_bits, numerics.weight_bits)
    advance = np.cumsum(index + 1)
    column_start = np.concatenate(([0], advance))[ptr[:-1] - first]   # cursor advance before each column
    local_row = advance - column_start[column] - 1
    if local_row.size and int(local_row.max()) >= segment.rows:
        bad = int(np.argmax(local_row >= segment.rows))
        raise EncodedModelError(f"{entries_file}: {where}: entry at address {first + bad} (column "
                                f"{int(column[bad])}) lands on local row {int(local_row[bad])}, but the PE has "
                                f"only {segment.rows} rows in this segment")
    padding = weight == 0
    column_end = np.zeros(words.size, dtype=bool)
    column_end[ptr[1:][steps > 0] - first - 1] = True
    stray = padding & ((index != (1 << index_bits) - 1) | column_end)
    if np.any(stray):
        bad = int(np.argmax(stray))
        raise EncodedModelError(f"{entries_file}: {where}: entry at address {first + bad} has weight 0 but is "
                                f"not a padding entry (padding is (0, {(1 << index_bits) - 1}) followed by a "
                                f"non-zero in the same column)")
    n_padding = int(np.count_nonzero(padding))
    if words.size - n_padding != segment.nonzeros or n_padding != segment.padding:
        raise EncodedModelError(f"{entries_file}: {where}: manifest.json says {segment.nonzeros} non-zeros and "
                                f"{segment.padding} padding entries, the memory holds {words.size - n_padding} "
                                f"and {n_padding}")
    real = np.flatnonzero(~padding)
    target_row = local_row[real[np.searchsorted(real, np.arange(words.size))]] if real.size else local_row
    return SegmentEntries(column, local_row, weight, index, padding, target_row)


def segment_entries(encoded: EncodedModel, pe: int, layer: int, matrix: str) -> SegmentEntries:
    """Walk one segment as the hardware does (cursor per column); raises EncodedModelError if the segment is
    inconsistent (pointers, rows out of range, counts, stray zero entries)."""
    return _walk_segment(encoded, encoded.pes[pe], encoded.pes[pe].segment(layer, matrix))


def decode(encoded: EncodedModel, hardware_order: bool = False) -> QuantizedModel:
    """The quantised model an encoded model holds (the inverse of `encode`); walks and checks every segment.

    Its cells are in the model's order (each layer's `cell_order` undone); `hardware_order=True` keeps them
    in the order the PEs hold them: the model the hardware computes, with the same outputs, whose columns
    are the hardware's (what per-column counts of the golden model must follow)."""
    if not isinstance(hardware_order, (bool, np.bool_)):
        raise TypeError(f"decode: hardware_order must be True or False, got {type(hardware_order).__name__}")
    n_pes = encoded.n_pes
    layers = []
    for k, info in enumerate(encoded.layers):
        h, columns = info.cell_size, info.columns
        w_gates = np.zeros((GATES_PER_CELL * h, columns), dtype=np.int64)
        bias = np.zeros(GATES_PER_CELL * h, dtype=np.int64)
        peephole = np.zeros((PEEPHOLES_PER_CELL, h), dtype=np.int64) if info.peephole else None
        w_proj = np.zeros((info.proj_size, h), dtype=np.int64) if info.proj_size is not None else None
        for image in encoded.pes:
            rows = pe_gate_rows(h, n_pes, image.pe)
            walked = _walk_segment(encoded, image, image.segment(k, GATES_MATRIX))
            real = ~walked.padding
            w_gates[rows[walked.local_row[real]], walked.column[real]] = walked.weight[real]
            bias[rows] = image.bias[image.bias_base[k]:image.bias_base[k] + rows.size]
            if peephole is not None:
                cells = np.arange(image.pe, h, n_pes)
                base = image.peephole_base[k]
                words = image.peephole[base:base + PEEPHOLES_PER_CELL * cells.size]
                peephole[:, cells] = words.reshape(cells.size, PEEPHOLES_PER_CELL).T
            if w_proj is not None:
                rows = pe_proj_rows(info.proj_size, n_pes, image.pe)
                walked = _walk_segment(encoded, image, image.segment(k, PROJ_MATRIX))
                real = ~walked.padding
                w_proj[rows[walked.local_row[real]], walked.column[real]] = walked.weight[real]
        layers.append(QuantizedLayer(
            input_size=info.input_size, cell_size=h, recurrent_size=info.recurrent_size, w_gates=w_gates,
            fw_x=info.fw_x, fw_r=info.fw_r, facc=info.facc, bias=bias, peephole=peephole, fp=info.fp,
            w_proj=w_proj, fw_p=info.fw_p))
    stored = QuantizedModel(encoded.numerics, tuple(layers))
    if hardware_order or all(info.cell_order is None for info in encoded.layers):
        return stored
    return permute_cells(stored, [None if info.cell_order is None else inverse_order(info.cell_order)
                                  for info in encoded.layers])
