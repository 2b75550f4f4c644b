"""What every PE of a design is sized by, and the per-PE tables that replace its constants.

All PEs of a design elaborate to the same hardware (hw/pe.py): each memory is as deep as the deepest
one of its kind over the PEs, and what differs between PEs (where a phase's pointers start, where a
layer's accumulators start) is read from small ROMs. The PEs then differ only in memory contents, and the
Verilog holds the PE module once (hw/memory_images.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from .design import ENTRY_BANK_WORDS, AcceleratorDesign, PEDesign, bits_for, entry_banks, memory_depth

__all__ = ["PEShape", "MemoryContents", "phase_rom", "layer_rom", "column_pointers", "entry_memory_names",
           "pe_memory_contents", "cell_constants", "cell_constants_bases", "cell_constants_layout"]


@dataclass(frozen=True)
class MemoryContents:
    """The initial contents of one memory of a PE.

    Attributes
    ----------
    shape : shape-castable
        Shape of a word, as `Memory` takes it (a plain shape or a `data.Layout`).
    depth : int
    init : tuple
        Up to `depth` words as `Memory`'s `init` takes them (ints, or mappings / sequences of a layout's
        fields); the rest of the memory holds 0.
    """

    shape: object
    depth: int
    init: tuple

    def __post_init__(self):
        Shape.cast(self.shape)          # TypeError for what is not a shape
        if not isinstance(self.depth, int) or isinstance(self.depth, bool):
            raise TypeError(f"MemoryContents depth must be an integer, got {self.depth!r}")
        if not isinstance(self.init, tuple):
            raise TypeError(f"MemoryContents init must be a tuple, got {type(self.init).__name__}")
        if not 0 <= len(self.init) <= self.depth:
            raise ValueError(f"MemoryContents: {len(self.init)} words do not fit a memory of depth {self.depth}")

    def memory(self) -> Memory:
        """A Memory (no ports yet) holding these contents."""
        return Memory(shape=self.shape, depth=self.depth, init=self.init)

    @property
    def width(self) -> int:
        return Shape.cast(self.shape).width

    def words(self) -> list[int]:
        """Every word as the memory holds it (unsigned, `width` bits), `depth` of them."""
        if isinstance(self.shape, data.Layout):
            pack = _packer(self.shape)
            words = [pack(word) for word in self.init]
        else:
            mask = (1 << self.width) - 1
            words = [word & mask for word in self.init]
        return words + [0] * (self.depth - len(self.init))


def _packer(shape):
    """word -> the unsigned int a memory of `shape` holds for it, as Amaranth packs a layout's fields."""
    if isinstance(shape, data.Layout):
        fields = [(key, field.offset, _packer(field.shape)) for key, field in shape]
        return lambda word: sum(pack(word[key]) << offset for key, offset, pack in fields)
    mask = (1 << Shape.cast(shape).width) - 1
    return lambda word: word & mask


@dataclass(frozen=True)
class PEShape:
    """The sizes every PE of a design shares: maxima over its PEs (build it with `of`).

    Attributes
    ----------
    entry_bank_depths : tuple of int
        Depth of each entry memory bank (hw/design.py `entry_banks`).
    pointer_depth, cell_depth, gate_depth, proj_depth : int
        Depths of the pointer memory, the sum banks of split sums (one word per cell), the gate banks
        and the proj bank.
    row_bits : int
        Width of a local row of the widest matrix.
    max_shift, max_ptr_offset, max_base : int
        Largest product shift, pointer offset and accumulator base of a phase.
    phase_targets, phase_shifts, phase_used : tuple
        Per phase: target memory, product shift and whether it is broadcast (the same in every PE).
    """

    entry_bank_depths: tuple[int, ...]
    pointer_depth: int
    cell_depth: int
    gate_depth: int
    proj_depth: int
    row_bits: int
    max_shift: int
    max_ptr_offset: int
    max_base: int
    phase_targets: tuple[int, ...]
    phase_shifts: tuple[int, ...]
    phase_used: tuple[bool, ...]

    @classmethod
    def of(cls, pes) -> "PEShape":
        """The shape of the PEs `pes` (PEDesign objects, at least one)."""
        pes = tuple(pes)
        if not pes or not all(isinstance(pe, PEDesign) for pe in pes):
            raise TypeError("PEShape.of needs a non-empty sequence of PEDesign")
        kinds = {tuple((phase.target, phase.shift, phase.used) for phase in pe.phases) for pe in pes}
        if len(kinds) != 1:
            raise ValueError("the PEs of a design must agree on every phase's target, shift and use")
        targets, shifts, used = zip(*kinds.pop())
        banks = [entry_banks(pe.entries) for pe in pes]
        return cls(
            entry_bank_depths=tuple(memory_depth(max(len(pe_banks[b]) for pe_banks in banks if b < len(pe_banks)))
                                    for b in range(max(map(len, banks)))),
            pointer_depth=memory_depth(max(len(pe.pointers) for pe in pes)),
            cell_depth=memory_depth(max(pe.cell_depth for pe in pes)),
            gate_depth=memory_depth(max(pe.gate_depth for pe in pes)),
            proj_depth=memory_depth(max(pe.proj_depth for pe in pes)),
            row_bits=bits_for(max(max([4 * c for c in pe.cells] + list(pe.proj_rows) + [1]) for pe in pes) - 1),
            max_shift=max(shifts),
            max_ptr_offset=max(phase.ptr_offset for pe in pes for phase in pe.phases),
            max_base=max(max(phase.base_for(0), phase.base_for(1)) for pe in pes for phase in pe.phases),
            phase_targets=targets, phase_shifts=shifts, phase_used=used)


def phase_rom(pe: PEDesign, shape: PEShape, address_bits: int) -> MemoryContents:
    """The PE's phase ROM, addressed by the `address_bits`-bit phase: per phase the pointer offset of its
    column 0, the same plus one (column c's end pointer is at `end_ptr_offset + c`: one adder in front of the
    pointer address register, not two; #10) and the accumulator bases of copy 0 and copy 1 (unused phases and
    addresses past the last phase read 0)."""
    base = range(max(shape.max_base, 1) + 1)      # >= 1 bit: no zero-width wires in the Verilog
    layout = data.StructLayout({"ptr_offset": range(max(shape.max_ptr_offset, 1) + 1),
                                "end_ptr_offset": range(max(shape.max_ptr_offset, 1) + 2),
                                "base0": base, "base1": base})
    words = [{"ptr_offset": phase.ptr_offset, "end_ptr_offset": phase.ptr_offset + 1, "base0": phase.base_for(0),
              "base1": phase.base_for(1)}
             if phase.used else {"ptr_offset": 0, "end_ptr_offset": 0, "base0": 0, "base1": 0} for phase in pe.phases]
    return MemoryContents(layout, 1 << address_bits, tuple(words))


def layer_rom(pe: PEDesign, shape: PEShape, address_bits: int) -> MemoryContents:
    """The PE's layer ROM, addressed by the `address_bits`-bit layer: per layer the address of local cell 0 in
    the sum banks and in the gate banks' copy 0 (`cell_base`), the gate banks' address of it in accumulator copy 1
    (`alt_base`: `cell_base` plus layer 0's second copy's offset, else `cell_base`: the PE then adds the index to
    one of the two, not two adders in a row; #10) and the proj bank address of local row 0 (`proj_base`)."""
    layout = data.StructLayout({"cell_base": range(shape.cell_depth + 1), "alt_base": range(shape.gate_depth + 1),
                                "proj_base": range(shape.proj_depth + 1)})
    words = [{"cell_base": pe.cell_base[l], "alt_base": pe.cell_base[l] + (pe.alt_base if l == 0 else 0),
              "proj_base": pe.proj_base[l]} for l in range(len(pe.cells))]
    return MemoryContents(layout, 1 << address_bits, tuple(words))


def column_pointers(pe: PEDesign, shape: PEShape, pointer_bits: int) -> MemoryContents:
    """The PE's pointer memory: word i holds pointer i (`start`) and, of the column that starts there (its
    end is pointer i + 1), whether it has entries (`occupied`) and exactly one (`single`). The PE reads the
    flags with the start instead of comparing the two pointers behind the block RAM (#10: routed late paths).
    The last pointer and the words past it read as an empty column."""
    layout = data.StructLayout({"start": unsigned(pointer_bits), "occupied": 1, "single": 1})
    pointers = pe.pointers
    words = [{"start": start, "occupied": int(end > start), "single": int(end == start + 1)}
             for start, end in zip(pointers, pointers[1:])]
    if pointers:
        words.append({"start": pointers[-1], "occupied": 0, "single": 0})
    return MemoryContents(layout, shape.pointer_depth, tuple(words))


def entry_memory_names(shape: PEShape) -> list[str]:
    """The names of a PE's entry memory banks: `entries`, or `entries0`, `entries1`, ... for several."""
    banks = len(shape.entry_bank_depths)
    return ["entries"] if banks == 1 else [f"entries{b}" for b in range(banks)]


def pe_memory_contents(design: AcceleratorDesign, pe_index: int) -> dict[str, MemoryContents]:
    """Every memory of PE `pe_index` whose contents come from the model, by its name in SparsePE: entry
    banks, pointers (with their columns' flags), gate banks (empty), with split sums the sum banks (starting at
    the biases), phase and layer ROMs. The Verilog's PE module reads these from one image file per PE
    (hw/shared_pe.py). The biases and peepholes are the CellReader's (`cell_constants`)."""
    pe, shape = design.pes[pe_index], design.pe_shape
    acc_bits = design.acc_bits
    contents = {}
    entry_words = pe.entries or (0,)
    for b, (name, depth) in enumerate(zip(entry_memory_names(shape), shape.entry_bank_depths)):
        contents[name] = MemoryContents(unsigned(design.entry_bits), depth,
                                        tuple(entry_words[b * ENTRY_BANK_WORDS:(b + 1) * ENTRY_BANK_WORDS]))
    contents["column_pointers"] = column_pointers(pe, shape, design.pointer_bits)
    # the value and the "written" tag of a gate word (hw/pe.py); a word holds its sum without the bias (the
    # cell read adds it) and starts as 0 with tag 0
    gate_word = data.StructLayout({"value": signed(acc_bits), "tag": 1})
    for k in range(4):
        contents[f"gate_bank{k}"] = MemoryContents(gate_word, shape.gate_depth, ())
    if pe.split_sums:
        # delta mode, one layer (hw/design.py): a cleared word reads as 0; the sums start at the bias
        for k in range(4):
            contents[f"sum_bank{k}"] = MemoryContents(signed(acc_bits), shape.cell_depth, tuple(pe.sum_bank_init(k)))
    contents["phase_rom"] = phase_rom(pe, shape, design.phase_bits)
    contents["layer_rom"] = layer_rom(pe, shape, design.layer_bits)
    return contents


def cell_constants_layout(design: AcceleratorDesign) -> data.ArrayLayout:
    """A word of `cell_constants`: per lane the cell's four biases (not with split sums: the PEs' sum banks
    start at them) and three peephole weights."""
    fields = {"peep": data.ArrayLayout(signed(design.numerics.peephole_bits), 3)}
    if not design.split_sums:
        fields["bias"] = data.ArrayLayout(signed(design.acc_bits), 4)
    return data.ArrayLayout(data.StructLayout(fields), design.lanes)


def cell_constants_bases(design: AcceleratorDesign) -> tuple[int, ...]:
    """The `cell_constants` word of each layer's group 0 (the layers' groups one after another)."""
    bases, total = [], 0
    for l in range(design.n_layers):
        bases.append(total)
        total += design.lane_groups(l)
    return tuple(bases)


def cell_constants(design: AcceleratorDesign) -> MemoryContents:
    """The CellReader's ROM: word `cell_constants_bases(design)[l] + group` holds the biases and peepholes of
    the cells `lanes * group + k` of layer l (lane k), each taken from its PE (cell j: PE j mod N, local cell
    j div N); zeros past the layer's last cell. One ROM read per group instead of one per PE (#10)."""
    n_pes, lanes = design.n_pes, design.lanes
    words = []
    for l, layer in enumerate(design.layers):
        for group in range(design.lane_groups(l)):
            word = []
            for k in range(lanes):
                j = group * lanes + k
                cell = {"peep": (0, 0, 0), "bias": (0, 0, 0, 0)}
                if j < layer.cell_size:
                    pe = design.pes[j % n_pes]
                    local = pe.cell_base[l] + j // n_pes
                    cell = {"peep": pe.peephole[local], "bias": pe.bias[local]}
                if design.split_sums:
                    del cell["bias"]
                word.append(cell)
            words.append(word)
    return MemoryContents(cell_constants_layout(design), memory_depth(len(words)), tuple(words))
