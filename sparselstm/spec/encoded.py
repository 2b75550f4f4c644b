"""The frozen description of an encoded model (docs/format.md), as the software side writes it and the
hardware side reads it.

Data only: `sparselstm.sw.format` encodes, decodes, writes and reads these; `sparselstm.hw` elaborates from
them. Nothing here computes on weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from .errors import ParameterError
from .numerics import TABLE_NAMES, GateAlignment, Numerics

__all__ = ["EncodedModel", "LayerInfo", "DeltaThresholds", "DELTA_SIDES", "check_delta_thresholds", "PEImage",
           "Segment", "SegmentEntries", "FORMAT_VERSION", "MANIFEST",
           "PE_MEMORIES", "GATES_MATRIX", "PROJ_MATRIX", "GATES_PER_CELL", "PEEPHOLES_PER_CELL",
           "MAX_ENTRY_BITS"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PE_MEMORIES = ("entries", "pointers", "bias", "peephole")
GATES_MATRIX, PROJ_MATRIX = "gates", "proj"
GATES_PER_CELL = 4      # local_row = 4*q + k (gates i, f, g, o)
PEEPHOLES_PER_CELL = 3  # index 3*q + k' (peepholes i, f, o)
MAX_ENTRY_BITS = 62     # packed words and biases are held in int64


def _producer() -> str:
    from .. import __version__
    return f"sparselstm {__version__}"


@dataclass(frozen=True)
class Segment:
    """One hardware matrix of one layer in one PE's memories.

    Entries at `entry_base .. entry_base + entry_count - 1` (of which `nonzeros` real and `padding` padding
    entries); its `columns + 1` pointers at `ptr_base ..` in the pointer memory; `rows` local rows.
    """

    layer: int
    matrix: str
    entry_base: int
    entry_count: int
    nonzeros: int
    padding: int
    ptr_base: int
    columns: int
    rows: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LayerInfo(GateAlignment):
    """Sizes and fixed-point parameters of one layer (docs/numerics.md), and its cell order
    (docs/format.md, "Cell order"): `cell_order[s]` is the model cell held at stored position s, None when
    the cells are in model order."""

    input_size: int
    cell_size: int
    proj_size: int | None
    recurrent_size: int
    peephole: bool
    fw_x: int
    fw_r: int
    fw_p: int | None
    facc: int
    fp: int | None
    gate_acc_bits: int
    proj_acc_bits: int | None
    cell_order: tuple | None = None

    def __post_init__(self):
        if self.cell_order is not None:
            order = np.asarray(self.cell_order)
            if order.dtype.kind not in "iu" or not np.array_equal(np.sort(order), np.arange(self.cell_size)):
                raise ParameterError(f"LayerInfo.cell_order: expected a permutation of 0 .. {self.cell_size - 1} "
                                     f"(the layer's cells), got {order.size} values")
            object.__setattr__(self, "cell_order", tuple(int(cell) for cell in order))

    @property
    def columns(self) -> int:
        """Columns of the gate matrix: I + R."""
        return self.input_size + self.recurrent_size

    def to_dict(self) -> dict:
        """The manifest's layer entry; "cell_order" only when the cells are reordered (older manifests)."""
        values = asdict(self)
        if self.cell_order is None:
            del values["cell_order"]
        else:
            values["cell_order"] = list(self.cell_order)
        return values


DELTA_SIDES = ("x", "y", "m")


@dataclass(frozen=True)
class DeltaThresholds:
    """One layer's delta-mode thresholds (docs/numerics.md, "Delta mode"), each in the words of its vector:
    `x` and `y` in act words (the layer input, the recurrent input), `m` in unit words (the projection's
    input; 0 without a projection). A column is sent iff |new - last sent| > threshold; all 0 is today's
    forward pass."""

    x: int = 0
    y: int = 0
    m: int = 0

    def __post_init__(self):
        for side in DELTA_SIDES:
            value = getattr(self, side)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"DeltaThresholds.{side}: expected an integer number of words, got {value!r}")
            if value < 0:
                raise ParameterError(f"DeltaThresholds.{side}: expected a threshold >= 0, got {value}")
            object.__setattr__(self, side, int(value))

    @property
    def off(self) -> bool:
        return self.x == self.y == self.m == 0

    def to_dict(self) -> dict:
        return asdict(self)


def check_delta_thresholds(thresholds, numerics: Numerics, has_projection) -> tuple:
    """`thresholds` (one DeltaThresholds per layer) as a tuple, checked against the word widths: x and y at
    most 2**act_bits - 1, m at most 2**unit_bits - 1 and 0 for a layer without projection (no m side)."""
    has_projection = list(has_projection)
    if isinstance(thresholds, DeltaThresholds) or not isinstance(thresholds, (list, tuple)):
        raise TypeError(f"delta thresholds: expected a list of DeltaThresholds (one per layer), "
                        f"got {type(thresholds).__name__}")
    if len(thresholds) != len(has_projection):
        raise ParameterError(f"delta thresholds: expected {len(has_projection)} (one per layer), "
                             f"got {len(thresholds)}")
    for k, (layer, projection) in enumerate(zip(thresholds, has_projection)):
        if not isinstance(layer, DeltaThresholds):
            raise TypeError(f"delta thresholds[{k}]: expected a DeltaThresholds, got {type(layer).__name__}")
        limits = {"x": (1 << numerics.act_bits) - 1, "y": (1 << numerics.act_bits) - 1,
                  "m": (1 << numerics.unit_bits) - 1 if projection else 0}
        for side, limit in limits.items():
            if getattr(layer, side) > limit:
                why = "the layer has no projection" if limit == 0 else "the largest delta of its word"
                raise ParameterError(f"delta thresholds[{k}].{side}: expected at most {limit} ({why}), "
                                     f"got {getattr(layer, side)}")
    return tuple(thresholds)


def _frozen(array) -> np.ndarray:
    array = np.array(array, dtype=np.int64)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class PEImage:
    """Everything one PE holds. `entries`: packed unsigned words `(w mod 2**weight_bits) << index_bits | z`;
    `pointers`: absolute entry addresses; `bias`, `peephole`: signed values, layers one after another."""

    pe: int
    cells: tuple
    proj_rows: tuple
    entries: np.ndarray
    pointers: np.ndarray
    bias: np.ndarray
    peephole: np.ndarray
    segments: tuple
    bias_base: tuple
    peephole_base: tuple

    def __post_init__(self):
        for name in PE_MEMORIES:
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in ("cells", "proj_rows", "segments", "bias_base", "peephole_base"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def segment(self, layer: int, matrix: str) -> Segment:
        for segment in self.segments:
            if segment.layer == layer and segment.matrix == matrix:
                return segment
        raise KeyError(f"PE {self.pe} has no segment ({layer}, {matrix!r})")


class SegmentEntries(NamedTuple):
    """One segment's entries decoded, in memory order (all arrays of length entry_count)."""

    column: np.ndarray      # column of the entry
    local_row: np.ndarray   # the row the cursor lands on
    weight: np.ndarray      # signed weight (0 for padding)
    index: np.ndarray       # relative index z
    padding: np.ndarray     # bool: a padding entry
    target_row: np.ndarray  # local row of the real entry this entry leads to (itself if real)


@dataclass(frozen=True, eq=False)
class EncodedModel:
    """An encoded model (docs/format.md): numerics, per-layer sizes and formats, one `PEImage` per PE, the
    activation tables and the memory widths. `manifest()` is the JSON description written beside the images.
    `delta_thresholds`: one DeltaThresholds per layer (docs/numerics.md, "Delta mode"), or None: delta mode
    off, and the manifest has no such key (as before delta mode existed)."""

    numerics: Numerics
    n_pes: int
    layers: tuple
    pes: tuple
    tables: dict
    memories: dict
    delta_thresholds: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "pes", tuple(self.pes))
        if len(self.pes) != self.n_pes or any(image.pe != p for p, image in enumerate(self.pes)):
            raise ParameterError(f"EncodedModel: expected the images of PEs 0 .. {self.n_pes - 1} in order, got "
                                 f"{[image.pe for image in self.pes]}")
        missing = [name for name in TABLE_NAMES if name not in self.tables]
        if missing:
            raise ParameterError(f"EncodedModel: missing activation table(s) {missing}")
        object.__setattr__(self, "tables", {name: _frozen(self.tables[name]) for name in TABLE_NAMES})
        object.__setattr__(self, "memories", dict(self.memories))
        last = self.layers[-1] if self.layers else None
        if last is not None and last.cell_order is not None and last.proj_size is None:
            raise ParameterError("EncodedModel: the last layer has no projection, so its cell order is the order "
                                 "of the model's outputs: it must be null")
        if self.delta_thresholds is not None:
            object.__setattr__(self, "delta_thresholds", check_delta_thresholds(
                self.delta_thresholds, self.numerics, (layer.proj_size is not None for layer in self.layers)))

    def segment(self, pe: int, layer: int, matrix: str) -> Segment:
        return self.pes[pe].segment(layer, matrix)

    @property
    def total_entries(self) -> int:
        return sum(int(image.entries.size) for image in self.pes)

    def manifest(self) -> dict:
        """manifest.json without its "files" section (write_encoded adds it)."""
        delta = {} if self.delta_thresholds is None else \
            {"delta_thresholds": [layer.to_dict() for layer in self.delta_thresholds]}
        return {
            "format_version": FORMAT_VERSION,
            "producer": _producer(),
            "n_pes": self.n_pes,
            "numerics": self.numerics.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
            "memories": dict(self.memories),
            "pes": [{
                "pe": image.pe,
                "cells": list(image.cells),
                "proj_rows": list(image.proj_rows),
                "entry_depth": int(image.entries.size),
                "pointer_depth": int(image.pointers.size),
                "bias_depth": int(image.bias.size),
                "peephole_depth": int(image.peephole.size),
                "segments": [segment.to_dict() for segment in image.segments],
                "bias_base": list(image.bias_base),
                "peephole_base": list(image.peephole_base),
            } for image in self.pes],
        } | delta


# ----------------------------------------------------------------------------------------------------------
# Encoder
