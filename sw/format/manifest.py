"""Parsing manifest.json (docs/format.md, "manifest.json"): typed keys, and every value that follows from others.

Each check names manifest.json and the key path. A manifest that passes describes memories whose depths,
widths and layout are consistent with its numerics and layer sizes; the memory files themselves are read and
checked by read.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...spec.encoded import (DELTA_SIDES, GATES_MATRIX, GATES_PER_CELL, MANIFEST, MAX_ENTRY_BITS,
                             PEEPHOLES_PER_CELL, PROJ_MATRIX, DeltaThresholds, LayerInfo, Segment)
from ...spec.errors import EncodedModelError
from ...spec.numerics import FRAC_MAX, FRAC_MIN, Numerics
from .rows import cells_of_pe, pe_proj_rows

TOP_KEYS = ("format_version", "producer", "n_pes", "numerics", "layers", "memories", "pes", "files",
            "delta_thresholds")
LAYER_KEYS = ("input_size", "cell_size", "proj_size", "recurrent_size", "peephole", "fw_x", "fw_r", "fw_p", "facc",
              "fp", "gate_acc_bits", "proj_acc_bits", "cell_order")
MEMORY_KEYS = ("entry_bits", "pointer_bits", "bias_bits", "peephole_bits")
PE_KEYS = ("pe", "cells", "proj_rows", "entry_depth", "pointer_depth", "bias_depth", "peephole_depth", "segments",
           "bias_base", "peephole_base")
SEGMENT_KEYS = ("layer", "matrix", "entry_base", "entry_count", "nonzeros", "padding", "ptr_base", "columns", "rows")
FILE_KEYS = ("sha256", "words", "bits")


class Keys:
    """Typed access to one JSON object of the manifest, with errors naming the key path.

    `known`: the keys the object may hold; any other key is an error (a misspelt key must not be ignored).
    None defers that check to `only`, for the top level, whose format version must be checked first.
    """

    def __init__(self, value, path: str, known: tuple[str, ...] | None):
        if not isinstance(value, dict):
            raise EncodedModelError(f"{MANIFEST}: {path or 'top level'}: expected a JSON object, "
                                    f"got {type(value).__name__}")
        self.value, self.path = value, path
        if known is not None:
            self.only(known)

    def only(self, known: tuple[str, ...]) -> None:
        unknown = sorted(set(self.value) - set(known))
        if unknown:
            raise EncodedModelError(f"{MANIFEST}: {self.path or 'top level'}: unknown key(s) "
                                    f"{[self.name(key) for key in unknown]}; expected only {list(known)}")

    def name(self, key) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def get(self, key, kind, nullable=False):
        if key not in self.value:
            raise EncodedModelError(f"{MANIFEST}: missing key {self.name(key)!r}")
        value = self.value[key]
        if value is None and nullable:
            return None
        ok = (isinstance(value, int) and not isinstance(value, bool)) if kind is int else isinstance(value, kind)
        if not ok:
            expected = {int: "an integer", bool: "true or false", str: "a string", list: "a list",
                        dict: "an object"}[kind] + (" or null" if nullable else "")
            raise EncodedModelError(f"{MANIFEST}: key {self.name(key)!r}: expected {expected}, got {value!r}")
        return value

    def int_in(self, key, low: int, high: int | None = None, nullable=False):
        value = self.get(key, int, nullable)
        if value is not None and (value < low or (high is not None and value > high)):
            expected = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise EncodedModelError(f"{MANIFEST}: key {self.name(key)!r}: expected an integer {expected}, "
                                    f"got {value}")
        return value

    def int_list(self, key, length: int) -> list:
        values = self.get(key, list)
        if len(values) != length or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise EncodedModelError(f"{MANIFEST}: key {self.name(key)!r}: expected a list of {length} "
                                    f"integers, got {values!r}")
        return values


def expect(actual, expected, key: str, why: str = "") -> None:
    if actual != expected:
        raise EncodedModelError(f"{MANIFEST}: key {key!r}: expected {expected!r}{why}, got {actual!r}")


def read_manifest(directory: Path) -> dict:
    if not directory.exists():
        raise EncodedModelError(f"{directory}: not found (expected an encoded model directory written by "
                                f"`sparselstm encode`)")
    if not directory.is_dir():
        raise EncodedModelError(f"{directory}: not a directory (expected an encoded model written by "
                                f"`sparselstm encode`)")
    path = directory / MANIFEST
    if not path.is_file():
        raise EncodedModelError(f"{path}: missing (is {directory} an encoded model directory?)")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EncodedModelError(f"{path}: not valid JSON: {error}") from None
    except RecursionError:
        raise EncodedModelError(f"{path}: not valid JSON: nested too deeply") from None


def parse_numerics(top: Keys) -> Numerics:
    try:
        return Numerics.from_dict(top.get("numerics", dict))
    except (ValueError, TypeError) as error:
        raise EncodedModelError(f"{MANIFEST}: key 'numerics': {error}") from None


def parse_layer(value, k: int, numerics: Numerics) -> LayerInfo:
    """One entry of "layers"; its fractional-bit counts must be what the quantiser can produce."""
    keys = Keys(value, f"layers[{k}]", LAYER_KEYS)
    peephole = keys.get("peephole", bool)
    proj_size = keys.int_in("proj_size", 1, nullable=True)
    info = LayerInfo(
        input_size=keys.int_in("input_size", 1), cell_size=keys.int_in("cell_size", 1),
        proj_size=proj_size, recurrent_size=keys.int_in("recurrent_size", 1), peephole=peephole,
        fw_x=keys.int_in("fw_x", FRAC_MIN, FRAC_MAX), fw_r=keys.int_in("fw_r", FRAC_MIN, FRAC_MAX),
        fw_p=keys.int_in("fw_p", FRAC_MIN, FRAC_MAX, nullable=True), facc=keys.get("facc", int),
        fp=keys.int_in("fp", FRAC_MIN, FRAC_MAX, nullable=True),
        gate_acc_bits=keys.int_in("gate_acc_bits", 2, MAX_ENTRY_BITS),
        proj_acc_bits=keys.int_in("proj_acc_bits", 2, nullable=True), cell_order=parse_cell_order(keys))
    path = keys.path
    expect(info.recurrent_size, proj_size if proj_size is not None else info.cell_size, f"{path}.recurrent_size",
           " (proj_size, or cell_size)")
    if proj_size is not None and proj_size >= info.cell_size:
        raise EncodedModelError(f"{MANIFEST}: key '{path}.proj_size': expected less than cell_size "
                                f"{info.cell_size}, got {proj_size}")
    expect(info.fw_p is None, proj_size is None, f"{path}.fw_p is null", " (null exactly without projection)")
    expect(info.proj_acc_bits is None, proj_size is None, f"{path}.proj_acc_bits is null",
           " (null exactly without projection)")
    expect(info.fp is None, not peephole, f"{path}.fp is null", " (null exactly without peepholes)")
    # The products W * x * 2**(FW - fw) land at act_frac + FW fractional bits; the bias is held there too.
    expect(info.facc, numerics.act_frac + info.fw, f"{path}.facc", " (numerics.act_frac + max(fw_x, fw_r))")
    return info


def parse_cell_order(keys: Keys) -> tuple | None:
    """A layer's optional "cell_order" (docs/format.md, "Cell order"): absent or null (manifests from before
    it, or cells in model order) is None; else a permutation of the layer's cells."""
    if keys.value.get("cell_order") is None:
        return None
    cell_size = keys.int_in("cell_size", 1)
    order = keys.int_list("cell_order", cell_size)
    seen = set()
    for position, cell in enumerate(order):
        if not 0 <= cell < cell_size or cell in seen:
            why = "repeats an earlier position's cell" if cell in seen else f"is not a cell 0 .. {cell_size - 1}"
            raise EncodedModelError(f"{MANIFEST}: key {keys.name('cell_order')!r}: expected a permutation of the "
                                    f"{cell_size} cells, but position {position} holds {cell}, which {why}")
        seen.add(cell)
    return tuple(order)


def parse_memories(top: Keys, numerics: Numerics, layers: tuple) -> dict:
    """The "memories" widths; all but pointer_bits follow from the numerics and layers alone."""
    keys = Keys(top.get("memories", dict), "memories", MEMORY_KEYS)
    memories = {key: keys.int_in(key, 1, MAX_ENTRY_BITS) for key in MEMORY_KEYS}
    expect(memories["entry_bits"], numerics.weight_bits + numerics.index_bits, "memories.entry_bits",
           " (weight_bits + index_bits)")
    expect(memories["bias_bits"], max(layer.gate_acc_bits for layer in layers), "memories.bias_bits",
           " (the largest gate_acc_bits)")
    expect(memories["peephole_bits"], numerics.peephole_bits, "memories.peephole_bits", " (numerics.peephole_bits)")
    return memories


def parse_pe(value, p: int, n_pes: int, layers: tuple) -> tuple[Keys, dict, dict]:
    """One entry of "pes": (its keys, the PEImage fields but the memories, the depth of each memory)."""
    keys = Keys(value, f"pes[{p}]", PE_KEYS)
    expect(keys.get("pe", int), p, f"pes[{p}].pe")
    cells = keys.int_list("cells", len(layers))
    proj_rows = keys.int_list("proj_rows", len(layers))
    for k, layer in enumerate(layers):
        expect(cells[k], cells_of_pe(layer.cell_size, n_pes, p), f"pes[{p}].cells[{k}]",
               " (ceil((cell_size - pe) / n_pes))")
        expected_rows = pe_proj_rows(layer.proj_size, n_pes, p).size if layer.proj_size else 0
        expect(proj_rows[k], expected_rows, f"pes[{p}].proj_rows[{k}]")
    segment_list = keys.get("segments", list)
    expected_order = [(k, matrix) for k, layer in enumerate(layers)
                      for matrix in ((GATES_MATRIX, PROJ_MATRIX) if layer.proj_size else (GATES_MATRIX,))]
    expect(len(segment_list), len(expected_order), f"pes[{p}].segments (length)",
           " (one per layer and hardware matrix)")
    segments, entry_base, ptr_base = [], 0, 0
    for s, (segment_value, (k, matrix)) in enumerate(zip(segment_list, expected_order)):
        path = f"pes[{p}].segments[{s}]"
        seg = Keys(segment_value, path, SEGMENT_KEYS)
        segment = Segment(layer=seg.get("layer", int), matrix=seg.get("matrix", str),
                          entry_base=seg.int_in("entry_base", 0), entry_count=seg.int_in("entry_count", 0),
                          nonzeros=seg.int_in("nonzeros", 0), padding=seg.int_in("padding", 0),
                          ptr_base=seg.int_in("ptr_base", 0), columns=seg.int_in("columns", 0),
                          rows=seg.int_in("rows", 0))
        layer = layers[k]
        expect((segment.layer, segment.matrix), (k, matrix), f"{path}.(layer, matrix)",
               " (layer 0 gates, layer 0 proj, layer 1 gates, ...)")
        columns = layer.columns if matrix == GATES_MATRIX else layer.cell_size
        rows = GATES_PER_CELL * cells[k] if matrix == GATES_MATRIX else proj_rows[k]
        expect(segment.columns, columns, f"{path}.columns")
        expect(segment.rows, rows, f"{path}.rows")
        expect(segment.entry_base, entry_base, f"{path}.entry_base", " (the end of the previous segment)")
        expect(segment.ptr_base, ptr_base, f"{path}.ptr_base", " (the end of the previous segment)")
        expect(segment.entry_count, segment.nonzeros + segment.padding, f"{path}.entry_count",
               " (nonzeros + padding)")
        entry_base += segment.entry_count
        ptr_base += segment.columns + 1
        segments.append(segment)
    bias_base = [sum(GATES_PER_CELL * cells[j] for j in range(k)) for k in range(len(layers))]
    peephole_base = [sum(PEEPHOLES_PER_CELL * cells[j] for j in range(k) if layers[j].peephole)
                     for k in range(len(layers))]
    expect(keys.int_list("bias_base", len(layers)), bias_base, f"pes[{p}].bias_base")
    expect(keys.int_list("peephole_base", len(layers)), peephole_base, f"pes[{p}].peephole_base")
    depths = {"entries": entry_base, "pointers": ptr_base, "bias": GATES_PER_CELL * sum(cells),
              "peephole": PEEPHOLES_PER_CELL * sum(c for c, layer in zip(cells, layers) if layer.peephole)}
    for memory, key in (("entries", "entry_depth"), ("pointers", "pointer_depth"), ("bias", "bias_depth"),
                        ("peephole", "peephole_depth")):
        expect(keys.int_in(key, 0), depths[memory], f"pes[{p}].{key}")
    fields = dict(pe=p, cells=tuple(cells), proj_rows=tuple(proj_rows), segments=tuple(segments),
                  bias_base=tuple(bias_base), peephole_base=tuple(peephole_base))
    return keys, fields, depths


def parse_delta_thresholds(top: Keys, numerics: Numerics, layers: tuple) -> tuple | None:
    """The optional "delta_thresholds" (docs/numerics.md, "Delta mode"): one {"x", "y", "m"} object of
    words per layer; absent (a manifest from before delta mode) is None, delta mode off."""
    if "delta_thresholds" not in top.value:
        return None
    values = top.get("delta_thresholds", list)
    expect(len(values), len(layers), "delta_thresholds (length)", " (one per layer)")
    thresholds = []
    for k, (value, layer) in enumerate(zip(values, layers)):
        keys = Keys(value, f"delta_thresholds[{k}]", DELTA_SIDES)
        act_limit = (1 << numerics.act_bits) - 1
        m_limit = (1 << numerics.unit_bits) - 1 if layer.proj_size is not None else 0
        thresholds.append(DeltaThresholds(x=keys.int_in("x", 0, act_limit), y=keys.int_in("y", 0, act_limit),
                                          m=keys.int_in("m", 0, m_limit)))
    return tuple(thresholds)
