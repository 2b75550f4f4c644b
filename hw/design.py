"""The frozen description the accelerator is elaborated from.

`AcceleratorDesign.from_encoded(encoded, params)` is the only place where hardware meets the software side:
it reads an `EncodedModel`'s memory images and metadata (docs/format.md), checks that they fit the hardware
parameters, and lays out every per-PE memory and constant table. Components in hw/ read nothing else.

Phases. A broadcast word names the *phase* its column belongs to, one of three per layer `l`:

    phase 3*l + 0   gates matrix, input columns     (column c = x index,       product shift = shift_x)
    phase 3*l + 1   gates matrix, recurrent columns (column c = yprev index,   product shift = shift_r)
    phase 3*l + 2   proj matrix                     (column c = cell index j,  product shift = 0)

Each PE has its own table mapping a phase to (pointer offset, target accumulator memory, accumulator base,
shift); see `PhaseEntry`.

Accumulator memories of a PE: four *gate banks* (bank k holds gate k of every local cell, address
`cell_base[l] + q`) and one *proj bank* (address `proj_base[l] + local proj row`). Local row `4*q + k` of
docs/format.md goes to bank `k` at `cell_base[l] + q`, so the element-wise readout gets the four gates of a
cell in one cycle.

Layer 0's gate accumulators are double-buffered (frame parity): the next frame's input columns accumulate
into one copy while the element-wise pass of the last layer still reads and resets the other. Copy 1 of
layer 0 lives after every layer's copy 0, at `alt_base + q` (`alt_base` = the PE's total cell count).

Delta mode (`delta_thresholds`, from the encoded model's manifest; docs/architecture.md, "Delta mode"):
the gate sums persist from frame to frame, and a broadcast word carries a delta, one bit wider than a word
(with lanes, the deltas of the group's columns sent, hw/delta_filter.py). With more than one layer the
accumulators keep the sums in place (one copy of layer 0: the next frame's input arrives while the last
layer's element-wise pass reads another layer). With one layer the sums are split (`split_sums`), so that
the next frame's input can flow during the pass as without delta mode: the two copies of layer 0 collect
one frame's deltas each (read-and-reset, cleared words read as 0), and four *sum banks* (one word per
cell, starting at the bias) hold the sums of the frames before; the element-wise read of a cell gives
sum bank + copy and writes that back into the sum bank.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from ..spec.encoded import EncodedModel
from ..spec.errors import ParameterError
from .params import HardwareParams

__all__ = ["AcceleratorDesign", "PEDesign", "PhaseEntry", "GATE_TARGET", "PROJ_TARGET", "PHASES_PER_LAYER",
           "phase_index", "bits_for", "memory_depth", "pe_fifo_words"]

PHASES_PER_LAYER = 3
PHASE_X, PHASE_R, PHASE_PROJ = 0, 1, 2
GATE_TARGET, PROJ_TARGET = 0, 1


def phase_index(layer: int, kind: int) -> int:
    """The phase number of a layer's x (0), recurrent (1) or proj (2) columns."""
    return PHASES_PER_LAYER * layer + kind


def bits_for(max_value: int) -> int:
    """Unsigned width that holds 0 .. max_value (at least 1)."""
    return max(1, int(max_value).bit_length())


ROOM_REGION = 4   # room flags ANDed per region of this many PEs into a register, then across regions (hw/broadcast.py)
RELAY_STAGES = 1  # the broadcaster's relay registers: a word reaches the PEs this many cycles after it was sent
ROOM_MARGIN = 3 + RELAY_STAGES   # words a PE may receive after its room flag fell (flag, region AND, AND, relays)
# A PE's and a lane unpacker's `busy` (`proj_busy`) is high from the BUSY_LAG-th cycle after a broadcast word reached
# it until its work is done, from the block's own flip-flops: the broadcast valid across the chip into them was late
# (#10). The scheduler's drains wait that long after the broadcaster's last word (hw/scheduler.py); they end when
# the flags fall, after the MAC drain, so no frame takes longer for it (not a term of hw/cycle_model.py).
BUSY_LAG = 2
# The PEs' flags reach the scheduler ORed per region of ROOM_REGION PEs into registers and those into one
# (hw/accelerator.py; #10: one OR over 32 PEs' flags was the 32-PE design's worst path): this many cycles old.
STATUS_STAGES = 2


def pe_fifo_words(fifo_depth: int) -> int:
    """Words a PE's input FIFO holds: `fifo_depth` and the broadcaster's margin, and one more for a lane
    unpacker, whose credits (one per word) come back a cycle later than a room flag would (hw/lanes.py)."""
    return fifo_depth + ROOM_MARGIN + 1


ENTRY_BANK_WORDS = 1024   # one ECP5 DP16KD at 18 bits: a bank multiplexer only after registered outputs


def entry_banks(words) -> list[list[int]]:
    """A PE's entry words as its entry memory holds them: banks of ENTRY_BANK_WORDS (at least one word)."""
    words = list(words) or [0]
    return [words[start:start + ENTRY_BANK_WORDS] for start in range(0, len(words), ENTRY_BANK_WORDS)]


def memory_depth(words: int) -> int:
    """Depth of a memory that must hold `words` words. A PE may hold no cells / rows / entries (more PEs
    than rows): a dummy word is kept. At least two words, so that no address is a zero-width wire in the
    generated Verilog."""
    return max(2, words)


# Attributes of a memory no read of which meets a write of the same word in the same cycle (each user says why):
# Yosys then maps its read and write ports onto a block RAM's two sides as they are. Without it Yosys keeps the
# read's old-data behaviour on such a collision with bypass logic after the block (two flip-flops and a
# multiplexer per data bit), which sat on routed late paths (#10) and kept the block's output register unused.
NO_COLLISIONS = {"no_rw_check": 1}

# The widest port of an ECP5 block RAM (DP16KD) that keeps its read data on its own side's pins: a memory read by
# the fabric through flip-flops is cut into slices this wide, so that each block's output register can take them
# (hw/boards/bram_registers.py; a 36-bit-wide DP16KD reads through both sides' pins and keeps no register there).
BRAM_SLICE_BITS = 18


def bram_slices(width: int, slice_bits: int = BRAM_SLICE_BITS) -> list[tuple[int, int]]:
    """(low bit, width) of each slice of a `width`-bit word, `slice_bits` (a block RAM's width) at most each."""
    return [(low, min(slice_bits, width - low)) for low in range(0, width, slice_bits)]


def equal_bram_slices(width: int, slice_bits: int = BRAM_SLICE_BITS) -> list[tuple[int, int]]:
    """As many slices as `bram_slices(width, slice_bits)`, of equal widths: no narrow remainder, which synthesis
    may map to distributed RAM with the address logic in front of its read."""
    count = -(-width // slice_bits)
    return bram_slices(width, -(-width // count))


@dataclass(frozen=True)
class PhaseEntry:
    """How one PE handles columns of one phase.

    ptr_offset: pointer memory address of column 0 of the phase (column c reads ptr[ptr_offset + c] and
                ptr[ptr_offset + c + 1]).
    target:     GATE_TARGET (the four gate banks, bank = row % 4, address = acc_base + row // 4) or
                PROJ_TARGET (the proj bank, address = acc_base + row).
    acc_base:   first accumulator address of the layer in the target memory.
    shift:      left shift of every product w * value of the phase.
    used:       False for the proj phase of a layer without a projection (never broadcast).
    acc_base_alt: the base for words of accumulator copy 1 (layer 0's gate phases; = acc_base elsewhere).
    """

    ptr_offset: int
    target: int
    acc_base: int
    shift: int
    used: bool = True
    acc_base_alt: int | None = None

    def base_for(self, buffer: int) -> int:
        return self.acc_base if buffer == 0 or self.acc_base_alt is None else self.acc_base_alt


@dataclass(frozen=True)
class PEDesign:
    """Everything one PE is elaborated from (plain Python ints, read-only)."""

    pe: int
    entries: tuple[int, ...]          # packed words (w mod 2**weight_bits) << index_bits | z
    pointers: tuple[int, ...]         # absolute entry addresses
    cells: tuple[int, ...]            # local cells per layer
    cell_base: tuple[int, ...]        # gate bank address of local cell 0, per layer
    proj_rows: tuple[int, ...]        # local proj rows per layer (0 without projection)
    proj_base: tuple[int, ...]        # proj bank address of local row 0, per layer
    bias: tuple[tuple[int, int, int, int], ...]   # per gate-bank address: (b_i, b_f, b_g, b_o)
    peephole: tuple[tuple[int, int, int], ...]    # per gate-bank address: (p_i, p_f, p_o), 0 without
    phases: tuple[PhaseEntry, ...]
    double_buffered: bool = True      # layer 0's second accumulator copy (not in delta mode with layers > 1)
    split_sums: bool = False          # delta mode, one layer: sum banks + per-frame copies (module docstring)

    @property
    def cell_depth(self) -> int:
        """Cells of every layer (one copy): the depth of the bias and peephole memories."""
        return sum(self.cells)

    @property
    def alt_base(self) -> int:
        """Gate bank address of copy 1 of layer 0's local cell 0 (copy 0's without a second copy)."""
        return self.cell_depth if self.double_buffered else 0

    @property
    def gate_depth(self) -> int:
        """Gate bank words: every layer's cells, plus the second copy of layer 0."""
        return self.cell_depth + (self.cells[0] if self.double_buffered else 0)

    def sum_bank_init(self, gate: int) -> list[int]:
        """Split sums only: initial contents of sum bank `gate`, the biases of layer 0's cells."""
        return [bias[gate] for bias in self.bias[:self.cells[0]]]

    @property
    def proj_depth(self) -> int:
        return sum(self.proj_rows)


@dataclass(frozen=True, eq=False)
class AcceleratorDesign:
    """The validated, frozen description of one accelerator instance; build it with `from_encoded`.

    Attributes
    ----------
    numerics : spec.numerics.Numerics
        Number formats of the encoded model.
    layers : tuple of spec.encoded.LayerInfo
        input_size, cell_size, proj_size, recurrent_size, peephole, fw_x, fw_r, fw_p, facc, fp,
        gate_acc_bits, proj_acc_bits, shift_x, shift_r.
    tables : dict
        Read-only int64 arrays sigmoid_T, sigmoid_D, tanh_T, tanh_D.
    acc_bits : int
        Accumulator width of every PE and of the element-wise input.
    n_pes : int
        Number of PEs.
    pes : tuple of PEDesign
        What each PE is elaborated from.
    params : HardwareParams
        The hardware choices.
    entry_bits, pointer_bits : int
        Widths of the entry and pointer memory words.
    lanes : int
        Element-wise lanes (`params.lanes`, or the count `cycle_model.default_lanes` picks when that is
        None): cell j of a layer goes through lane j mod lanes.
    delta_thresholds : tuple of spec.encoded.DeltaThresholds, or None
        Delta mode (one per layer, from the encoded model), or None: delta mode off.
    """

    numerics: object
    layers: tuple
    tables: dict
    acc_bits: int
    n_pes: int
    pes: tuple[PEDesign, ...]
    params: HardwareParams
    entry_bits: int
    pointer_bits: int
    lanes: int = 1
    delta_thresholds: tuple | None = None

    # ---- derived sizes -------------------------------------------------------------------------------
    @property
    def streams(self) -> int:
        return self.params.streams

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def delta_mode(self) -> bool:
        return self.delta_thresholds is not None

    @property
    def split_sums(self) -> bool:
        """Delta mode with one layer: sum banks plus per-frame copies (module docstring)."""
        return self.pes[0].split_sums

    @property
    def value_bits(self) -> int:
        """Width of a broadcast word's value: an x, y or m word, or in delta mode a delta (one bit wider)."""
        return max(self.numerics.act_bits, self.numerics.unit_bits) + int(self.delta_mode)

    @property
    def delta_depth(self) -> int:
        """Last-sent rows of delta mode (`lanes` values each, hw/delta_filter.py): one per column of every
        layer's gates matrix (lane 0 used) and one per group of `lanes` columns of its proj matrix."""
        return sum(layer.input_size + layer.recurrent_size + (self.lane_groups(l) if layer.proj_size is not None
                                                              else 0) for l, layer in enumerate(self.layers))

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def output_size(self) -> int:
        return self.layers[-1].recurrent_size

    @property
    def act_bits(self) -> int:
        return self.numerics.act_bits

    @property
    def act_frac(self) -> int:
        return self.numerics.act_frac

    @property
    def layer_bits(self) -> int:
        return bits_for(self.n_layers - 1)

    @property
    def cell_index_bits(self) -> int:
        return bits_for(max(layer.cell_size for layer in self.layers) - 1)

    def lane_groups(self, layer: int) -> int:
        """Groups of `lanes` consecutive cells of a layer (the last one may be partial)."""
        return -(-self.layers[layer].cell_size // self.lanes)

    @property
    def group_bits(self) -> int:
        """Width of a group index (= cell_index_bits with one lane)."""
        return bits_for(max(self.lane_groups(l) for l in range(self.n_layers)) - 1)

    @property
    def column_bits(self) -> int:
        widest = max(max(layer.input_size, layer.recurrent_size, layer.cell_size) for layer in self.layers)
        return bits_for(widest - 1)

    @property
    def phase_bits(self) -> int:
        return bits_for(PHASES_PER_LAYER * self.n_layers - 1)

    @property
    def y_bases(self) -> tuple[int, ...]:
        """Address of y_l[0] in the accelerator's y memory (all layers' outputs one after another)."""
        bases, total = [], 0
        for layer in self.layers:
            bases.append(total)
            total += layer.recurrent_size
        return tuple(bases)

    @property
    def y_depth(self) -> int:
        return sum(layer.recurrent_size for layer in self.layers)

    def y_shift(self, layer: int) -> int:
        """round_shift amount that turns the layer's y source into act_frac: the proj accumulator
        (fw_p + unit_frac fractional bits) or, without a projection, m (unit_frac)."""
        info = self.layers[layer]
        source_frac = self.numerics.unit_frac + (info.fw_p if info.proj_size is not None else 0)
        return source_frac - self.numerics.act_frac

    @functools.cached_property
    def pe_shape(self):
        """The sizes every PE shares, maxima over the PEs (hw/pe_shape.py `PEShape`)."""
        from .pe_shape import PEShape     # pe_shape reads this module's PEDesign: imported here
        return PEShape.of(self.pes)

    @property
    def total_entries(self) -> int:
        return sum(len(pe.entries) for pe in self.pes)

    def memory_bits(self) -> dict[str, int]:
        """Storage of the generated accelerator in bits, by kind (as elaborated: dummy words of empty
        memories included; the ElementwiseUnit's cell state and tables are not counted here)."""
        numerics, params = self.numerics, self.params
        word_bits = self.value_bits + self.column_bits + self.phase_bits + 1      # broadcast word
        depth, shape, n_pes = memory_depth, self.pe_shape, self.n_pes
        groups = sum(self.lane_groups(l) for l in range(self.n_layers))
        # every PE is sized like the largest (hw/pe_shape.py)
        totals = {"entries": n_pes * sum(shape.entry_bank_depths) * self.entry_bits,
                  # each pointer with its column's two flags (pe_shape.column_pointers)
                  "pointers": n_pes * shape.pointer_depth * (self.pointer_bits + 2),
                  "gate_accumulators": n_pes * 4 * shape.gate_depth * self.acc_bits,
                  # the MAC reads its gate words from a copy in one memory (hw/pe.py)
                  "gate_accumulator_copy": n_pes * 4 * shape.gate_depth * self.acc_bits,
                  "proj_accumulators": n_pes * shape.proj_depth * self.acc_bits,
                  # one word per cell and gate in the CellReader's ROM (hw/pe_shape.py `cell_constants`, one
                  # word per group of lanes); with split sums the PEs' sum banks, which start at it
                  "bias": (n_pes * shape.cell_depth if self.split_sums else depth(groups) * self.lanes)
                          * 4 * self.acc_bits,
                  "peephole": depth(groups) * self.lanes * 3 * numerics.peephole_bits,
                  "activation_fifos": n_pes * pe_fifo_words(params.fifo_depth) * word_bits}
        totals["y_memory"] = depth(self.y_depth) * numerics.act_bits
        totals["output_buffer"] = depth(self.output_size) * numerics.act_bits
        if self.delta_mode:
            totals["delta_last_sent"] = (depth(self.delta_depth) * self.lanes
                                         * max(numerics.act_bits, numerics.unit_bits))
        totals["total"] = sum(totals.values())
        return totals

    # ---- construction --------------------------------------------------------------------------------
    @classmethod
    def from_encoded(cls, encoded, params: HardwareParams | None = None) -> "AcceleratorDesign":
        """Check an EncodedModel against the hardware parameters and lay out every memory.

        Raises TypeError for arguments of the wrong type and ParameterError (a ValueError) when the model
        does not fit the parameters."""
        if not isinstance(encoded, EncodedModel):
            raise TypeError(f"expected a sparselstm.spec.encoded.EncodedModel, got {type(encoded).__name__}")
        params = HardwareParams() if params is None else params
        if not isinstance(params, HardwareParams):
            raise TypeError(f"params must be a HardwareParams, got {type(params).__name__}")
        numerics = encoded.numerics
        layers = tuple(encoded.layers)
        n_pes = int(encoded.n_pes)
        if n_pes < 1 or len(encoded.pes) != n_pes:
            raise ParameterError(f"encoded model: n_pes = {n_pes} but {len(encoded.pes)} PE images")
        if not layers:
            raise ParameterError("encoded model has no layers")
        for l in range(1, len(layers)):
            # the YReader sends layer l-1's y as layer l's input columns
            if layers[l].input_size != layers[l - 1].recurrent_size:
                raise ParameterError(f"encoded model: layer {l} has {layers[l].input_size} inputs but layer "
                                     f"{l - 1} gives {layers[l - 1].recurrent_size} outputs")

        needed_acc_bits = max(max(layer.gate_acc_bits, layer.proj_acc_bits or 0) for layer in layers)
        needed_acc_bits = max(needed_acc_bits, int(encoded.memories["bias_bits"]))
        if params.acc_bits is None:
            acc_bits = needed_acc_bits
        elif params.acc_bits < needed_acc_bits:
            raise ParameterError(f"the model needs {needed_acc_bits}-bit accumulators (numerics.md, "
                                 f"Accumulators) but acc_bits = {params.acc_bits}")
        else:
            acc_bits = params.acc_bits

        entry_bits = int(encoded.memories["entry_bits"])
        if entry_bits != numerics.weight_bits + numerics.index_bits:
            raise ParameterError(f"encoded model: entry_bits {entry_bits} != weight_bits + index_bits "
                                 f"({numerics.weight_bits} + {numerics.index_bits})")
        pointer_bits = int(encoded.memories["pointer_bits"])

        tables = {}
        for name in ("sigmoid_T", "sigmoid_D", "tanh_T", "tanh_D"):
            table = np.array(encoded.tables[name], dtype=np.int64)
            if table.shape != ((1 << numerics.table_log2) + 1,):
                raise ParameterError(f"encoded model: table {name} has shape {table.shape}, expected "
                                     f"({(1 << numerics.table_log2) + 1},)")
            table.flags.writeable = False
            tables[name] = table

        delta = encoded.delta_thresholds
        if params.lanes is not None and (params.lanes > n_pes or n_pes % params.lanes):
            # L consecutive cells must live in L different PEs, and lane k always reads PEs k, k + L, ...
            raise ParameterError(f"lanes = {params.lanes} must divide the number of PEs ({n_pes})")
        if delta is not None and params.streams != 1:
            # the delta filter's last-sent values would be per stream: one copy of them exists
            raise ParameterError(f"delta mode runs with one stream, not streams = {params.streams}")

        split_sums = delta is not None and len(layers) == 1   # see the module docstring
        pes = tuple(cls._pe_design(encoded, image, layers, params, double_buffered=delta is None or split_sums,
                                   split_sums=split_sums)
                    for image in encoded.pes)
        design = cls(numerics=numerics, layers=layers, tables=tables, acc_bits=acc_bits, n_pes=n_pes, pes=pes,
                     params=params, entry_bits=entry_bits, pointer_bits=pointer_bits, lanes=params.lanes or 1,
                     delta_thresholds=None if delta is None else tuple(delta))
        if params.lanes is None:
            from .cycle_model import default_lanes     # the cycle model reads designs: imported here
            design = dataclasses.replace(design, lanes=default_lanes(design))
        return design

    @staticmethod
    def _pe_design(encoded, image, layers, params: HardwareParams, double_buffered: bool,
                   split_sums: bool) -> PEDesign:
        p = int(image.pe)
        entries = tuple(int(word) for word in np.asarray(image.entries, dtype=np.int64))
        if len(entries) > params.max_entry_depth:
            raise ParameterError(f"PE {p} needs {len(entries)} entry words, more than max_entry_depth = "
                                 f"{params.max_entry_depth}")
        if any(word < 0 or word >> int(encoded.memories["entry_bits"]) for word in entries):
            raise ParameterError(f"PE {p}: entry words must be unsigned {encoded.memories['entry_bits']}-bit")
        pointers = tuple(int(v) for v in np.asarray(image.pointers, dtype=np.int64))
        bias_words = np.asarray(image.bias, dtype=np.int64)
        peephole_words = np.asarray(image.peephole, dtype=np.int64)

        cells = tuple(int(c) for c in image.cells)
        proj_rows = tuple(int(r) for r in image.proj_rows)
        cell_base, proj_base, total_cells, total_proj = [], [], 0, 0
        for l in range(len(layers)):
            cell_base.append(total_cells)
            proj_base.append(total_proj)
            total_cells += cells[l]
            total_proj += proj_rows[l]

        bias, peephole, phases = [], [], []
        for l, layer in enumerate(layers):
            for q in range(cells[l]):
                base = int(image.bias_base[l]) + 4 * q
                bias.append(tuple(int(v) for v in bias_words[base:base + 4]))
                if layer.peephole:
                    base = int(image.peephole_base[l]) + 3 * q
                    peephole.append(tuple(int(v) for v in peephole_words[base:base + 3]))
                else:
                    peephole.append((0, 0, 0))
            gates = encoded.segment(p, l, "gates")
            alt = total_cells if l == 0 and double_buffered else None   # see the module docstring
            phases.append(PhaseEntry(gates.ptr_base, GATE_TARGET, cell_base[l], layer.shift_x,
                                     acc_base_alt=alt))
            phases.append(PhaseEntry(gates.ptr_base + layer.input_size, GATE_TARGET, cell_base[l],
                                     layer.shift_r, acc_base_alt=alt))
            if layer.proj_size is not None:
                proj = encoded.segment(p, l, "proj")
                phases.append(PhaseEntry(proj.ptr_base, PROJ_TARGET, proj_base[l], 0))
            else:
                phases.append(PhaseEntry(0, PROJ_TARGET, 0, 0, used=False))
            if min(layer.shift_x, layer.shift_r) < 0:
                raise ParameterError(f"layer {l}: negative product shift ({layer.shift_x}, {layer.shift_r})")
        return PEDesign(pe=p, entries=entries, pointers=pointers, cells=cells, cell_base=tuple(cell_base),
                        proj_rows=proj_rows, proj_base=tuple(proj_base), bias=tuple(bias),
                        peephole=tuple(peephole), phases=tuple(phases), double_buffered=double_buffered,
                        split_sums=split_sums)
