"""The lane unpackers' mask ROM address, computed once in front of the broadcaster.

Every LaneUnpacker (hw/lanes.py) keeps a mask word per column of the x and recurrent phases and per group of
`lanes` columns of the proj phases, in the same layout in every PE (`mask_bases`), so the ROM address of a
broadcast word does not depend on the PE. Computed in each unpacker from the broadcast register, the 16
copies of `base(phase) + column (>> log2 lanes)` were merged by synthesis into one adder driving every PE's
ROM across the chip (#10). Here its two parts are chosen once, before the broadcaster's output register, and
travel with the word; each unpacker combines them from its own registers of them, in front of its ROM. (The
sum computed here, in front of the broadcaster's register, sat behind the scheduler's source multiplexer: the
16-PE board top's worst path with seed 1, 7.84 ns, and a late path with seed 3, 8.13 ns.) Each phase's words
start at an address aligned to their count, so the parts are combined by an OR, not an adder.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .design import PHASE_PROJ, PHASE_R, PHASE_X, AcceleratorDesign, bits_for, memory_depth, phase_index
from .interfaces import design_lane_broadcast_layout

__all__ = ["MaskAddresser", "mask_bases", "mask_address", "mask_address_parts", "unpacker_word_layout"]


def mask_bases(design: AcceleratorDesign) -> tuple[dict[int, int], int]:
    """(phase -> mask ROM address of its column 0 / group 0, words in the ROM), the same in every PE. Each
    phase the design broadcasts has a word per column (x, recurrent) or per group of `lanes` columns (proj), from
    an address that is a multiple of that count rounded up to a power of two (the largest first), so that a
    word's address is its base OR its offset: no adder in front of the ROM (#10: the sum's carry chain into the
    ROM's LUTs was a routed late path at 32 PEs, 8.55 ns). The last word is all ones: what a phase without
    masks reads (the word passes whole)."""
    if not isinstance(design, AcceleratorDesign):
        raise TypeError(f"expected an AcceleratorDesign, got {type(design).__name__}")
    counts = {}
    for l, info in enumerate(design.layers):
        for kind, words in ((PHASE_X, info.input_size), (PHASE_R, info.recurrent_size),
                            (PHASE_PROJ, design.lane_groups(l))):
            phase = phase_index(l, kind)
            if any(pe.phases[phase].used for pe in design.pes):
                counts[phase] = words
    bases, next_base, end = {}, 0, 0
    for phase in sorted(counts, key=lambda phase: (-_aligned(counts[phase]), phase)):
        bases[phase], next_base = next_base, next_base + _aligned(counts[phase])
        end = bases[phase] + counts[phase]      # the all-ones word after the last phase's words, not its padding
    return bases, end + 1


def _aligned(words: int) -> int:
    return 1 << max(words - 1, 0).bit_length()


def _proj_phases(design: AcceleratorDesign) -> set[int]:
    return {phase_index(l, PHASE_PROJ) for l in range(design.n_layers)}


def mask_address_parts(design: AcceleratorDesign, phase: int, column: int) -> dict[str, int]:
    """The fields `mask_base` and `mask_offset` of a broadcast word of `phase` starting at `column` (the
    reference for MaskAddresser): the phase's first ROM word and the word's place in the phase (its column, or
    its group for a proj phase), no bit set in both; the all-ones word and 0 for a phase the design does not
    broadcast."""
    bases, size = mask_bases(design)
    if phase not in bases:
        return {"mask_base": size - 1, "mask_offset": 0}
    shift = design.lanes.bit_length() - 1
    return {"mask_base": bases[phase],
            "mask_offset": column >> shift if phase in _proj_phases(design) else column}


def mask_address(design: AcceleratorDesign, phase: int, column: int) -> int:
    """The ROM address of a broadcast word of `phase` starting at `column`: its base OR its offset."""
    parts = mask_address_parts(design, phase, column)
    return parts["mask_base"] | parts["mask_offset"]


def unpacker_word_layout(design: AcceleratorDesign) -> data.StructLayout:
    """A lane broadcast word (interfaces.design_lane_broadcast_layout) with what every unpacker derives from it
    alike: `mask_base` and `mask_offset` (their OR: its ROM word) and `proj` (a word of a proj phase that the
    design broadcasts)."""
    _, size = mask_bases(design)
    address = unsigned(bits_for(memory_depth(size) - 1))
    return data.StructLayout({**design_lane_broadcast_layout(design).members,
                              "mask_base": address, "mask_offset": address, "proj": unsigned(1)})


class MaskAddresser(wiring.Component):
    """Lane broadcast words in, the same words with `mask_base`, `mask_offset` and `proj` out (combinational:
    the broadcaster that follows registers them).

    Parameters
    ----------
    design : AcceleratorDesign
        With design.lanes > 1.

    Attributes
    ----------
    i : In(stream.Signature(design_lane_broadcast_layout(design)))
    o : Out(stream.Signature(unpacker_word_layout(design)))
        `mask_base`, `mask_offset` as mask_address_parts(design, phase, column).
    """

    def __init__(self, design: AcceleratorDesign):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"MaskAddresser needs an AcceleratorDesign, got {type(design).__name__}")
        if design.lanes < 2:
            raise ValueError("MaskAddresser: the design has one lane (no lane unpackers, no masks)")
        self._design = design
        super().__init__({
            "i": In(stream.Signature(design_lane_broadcast_layout(design))),
            "o": Out(stream.Signature(unpacker_word_layout(design))),
        })

    def elaborate(self, platform):
        design = self._design
        shift = design.lanes.bit_length() - 1
        bases, size = mask_bases(design)
        proj_phases = _proj_phases(design)
        m = Module()
        m.d.comb += [
            self.o.valid.eq(self.i.valid),
            self.i.ready.eq(self.o.ready),
            *[getattr(self.o.payload, name).eq(getattr(self.i.payload, name))
              for name in design_lane_broadcast_layout(design).members],
        ]
        # the phase's base and the operand (column, or group for a proj phase) are chosen apart, and ORed in
        # the unpackers: no adder in front of the broadcaster's register
        column = self.i.payload.column
        known = Signal()      # a phase the design broadcasts (another reads the all-ones word)
        m.d.comb += self.o.payload.mask_base.eq(size - 1)     # the all-ones word
        with m.Switch(self.i.payload.phase):
            for phase, phase_base in bases.items():
                with m.Case(phase):
                    m.d.comb += [self.o.payload.mask_base.eq(phase_base), known.eq(1)]
                    if phase in proj_phases:
                        m.d.comb += self.o.payload.proj.eq(1)
        m.d.comb += self.o.payload.mask_offset.eq(Mux(known, Mux(self.o.payload.proj, column >> shift, column), 0))
        return m
