"""Element-wise lanes: `lanes` cells per cycle through the element-wise pass, `lanes` m words per broadcast.

With one lane the element-wise pass takes a cycle per cell and the m words one broadcast word each, so a
frame lasts at least about one cycle per cell of every layer; with many PEs and little work per cell that
bounds the frame (docs/architecture.md, *Lanes*). Two components lift it:

- `LaneElementwise`: `lanes` ElementwiseUnits in lock step. Lane k takes cells k, k + lanes, ... of every
  layer (its own cell-state range); the CellReader reads the `lanes` cells of a group from `lanes`
  different PEs in one cycle (cells are interleaved over the PEs and `lanes` divides the PE count).
- `LaneUnpacker`, one in front of each PE: the broadcast words of a design with lanes > 1 carry up to
  `lanes` columns (the m words of a group; x and y words use one); the unpacker hands the PE one column per
  cycle and drops the columns in which the PE has no entry, so a group costs the PE only its entries, and
  an x or y word in whose column the PE has none costs it nothing (a PE pops a column per cycle: at 64 PEs,
  about 1.5 entries per recurrent column, the empty ones cost the walker a cycle each behind short columns).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import (PHASE_PROJ, PHASE_R, PHASE_X, ROOM_MARGIN, AcceleratorDesign, memory_depth, pe_fifo_words,
                     phase_index)
from .elementwise import ElementwiseLayer, ElementwiseUnit
from .interfaces import (design_broadcast_layout, design_lane_broadcast_layout, elementwise_group_in_layout,
                         elementwise_group_out_layout)
from .mask_address import mask_bases, unpacker_word_layout

__all__ = ["LaneElementwise", "LaneUnpacker"]


class LaneElementwise(wiring.Component):
    """`lanes` ElementwiseUnits in lock step: one group of `lanes` consecutive cells per cycle.

    Lane k computes cells `lanes * group + k`; its unit keeps their cell state at its local index `group`
    (a cell past the layer's last has a state slot of its own, so its don't-care input harms nothing).
    Every lane takes an item in the same cycle (all units are ready together: they see the same groups), so
    their outputs leave together. LATENCY = ElementwiseUnit.LATENCY, outputs in input order.

    Parameters
    ----------
    numerics, tables, acc_bits : as for ElementwiseUnit
    layers : sequence of ElementwiseLayer
        The layers as the model has them (cell_size = the layer's cells).
    lanes : int
        Number of lanes (>= 1).
    layer_bits, group_bits : int or None
        Widths of the `layer` and `group` fields (None: the narrowest that fits).
    streams : int
        Independent sequences, a cell state each (ElementwiseUnit).
    `LaneElementwise.from_design(design)` takes all of these from an AcceleratorDesign.

    Attributes
    ----------
    i : In(stream.Signature(elementwise_group_in_layout(acc_bits, peephole_bits, layer_bits, group_bits, lanes)))
    o : Out(stream.Signature(elementwise_group_out_layout(unit_bits, layer_bits, group_bits, lanes)))
        `layer` and `group` as given, `m[k]` of cell `lanes * group + k`.
    stream : In(range(streams))
        With more than one stream only: as ElementwiseUnit.stream, for every lane.
    """

    LATENCY = ElementwiseUnit.LATENCY

    def __init__(self, numerics, tables, layers, *, acc_bits: int, lanes: int, layer_bits: int | None = None,
                 group_bits: int | None = None, streams: int = 1):
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"lanes must be an integer, got {type(lanes).__name__}")
        if lanes < 1:
            raise ValueError(f"lanes must be an integer >= 1, got {lanes!r}")
        layers = tuple(layers)
        if not all(isinstance(layer, ElementwiseLayer) for layer in layers):
            raise TypeError("layers must be a sequence of ElementwiseLayer")
        self.lanes = lanes
        # every lane holds one slot per group of every layer
        lane_layers = tuple(ElementwiseLayer(-(-layer.cell_size // lanes), layer.facc, layer.fp) for layer in layers)
        self._units = [ElementwiseUnit(numerics, tables, lane_layers, acc_bits=acc_bits, layer_bits=layer_bits,
                                       cell_index_bits=group_bits, streams=streams) for _ in range(lanes)]
        unit = self._units[0]
        super().__init__({
            "i": In(stream.Signature(elementwise_group_in_layout(acc_bits, numerics.peephole_bits, unit.layer_bits,
                                                                 unit.cell_index_bits, lanes))),
            "o": Out(stream.Signature(elementwise_group_out_layout(numerics.unit_bits, unit.layer_bits,
                                                                   unit.cell_index_bits, lanes))),
            **({"stream": In(range(streams))} if streams > 1 else {}),
        })

    @classmethod
    def from_design(cls, design: AcceleratorDesign) -> "LaneElementwise":
        layers = tuple(ElementwiseLayer(cell_size=int(info.cell_size), facc=int(info.facc),
                                        fp=int(info.fp) if info.peephole else None) for info in design.layers)
        return cls(design.numerics, design.tables, layers, acc_bits=design.acc_bits, lanes=design.lanes,
                   layer_bits=design.layer_bits, group_bits=design.group_bits, streams=design.streams)

    def elaborate(self, platform):
        m = Module()
        first = self._units[0]
        for k, unit in enumerate(self._units):
            m.submodules[f"lane{k}"] = unit
            cell = self.i.payload.cells[k]
            m.d.comb += [
                # the lanes see the same (layer, group) items, so their interlocks and credits agree: lane 0
                # speaks for all (an AND over every lane's interlock would lengthen the path)
                unit.i.valid.eq(self.i.valid & first.i.ready),
                unit.i.payload.layer.eq(self.i.payload.layer),
                unit.i.payload.cell.eq(self.i.payload.group),
                unit.i.payload.first_frame.eq(self.i.payload.first_frame),
                *[getattr(unit.i.payload, name).eq(getattr(cell, name))
                  for name in ("acc_i", "acc_f", "acc_g", "acc_o", "peep_i", "peep_f", "peep_o")],
                unit.o.ready.eq(self.o.ready),
                self.o.payload.m[k].eq(unit.o.payload.m),
            ]
            if unit.streams > 1:
                m.d.comb += unit.stream.eq(self.stream)
        m.d.comb += [
            self.i.ready.eq(first.i.ready),
            # the lanes hold the same groups at the same stages: lane 0 speaks for all
            self.o.valid.eq(first.o.valid),
            self.o.payload.layer.eq(first.o.payload.layer),
            self.o.payload.group.eq(first.o.payload.cell),
        ]
        return m


class LaneUnpacker(wiring.Component):
    """In front of PE `pe_index`: lane broadcast words in, one column per cycle out, columns in which the
    PE has no entry dropped (a mask word per `lanes` consecutive columns of each phase the PE uses, read
    from its pointers: a proj word's lanes are its group's columns, an x or y word carries one column in
    lane 0, checked against the bit of its column).

    Backpressure towards the broadcaster is registered as the PE's own (hw/broadcast.py): `room` while the
    words held number fewer than `fifo_depth`; ROOM_MARGIN more fit. Towards the PE, credits: one per word of
    its FIFO (`pe_fifo_words`), spent per column sent and returned by the PE's `released`, so the decision to
    send is made from this unpacker's own registers.

    Parameters
    ----------
    design : AcceleratorDesign
        With design.lanes > 1.
    pe_index : int

    Attributes
    ----------
    i : In(stream.Signature(mask_address.unpacker_word_layout(design)))
        `i.ready` is not driven: the broadcaster trusts `room`.
    room : Out(1)
    o : Out(stream.Signature(design_broadcast_layout(design), always_ready=True))
        To the PE's `i`, in order: columns `column + k` for every bit k sent, ascending; only with a credit.
    credit : In(1)
        The PE's `released`: a word left its FIFO (one credit back).
    busy, proj_busy : Out(1)
        Registered: a word (a proj-phase word) was held or arriving in the previous cycle.
    """

    def __init__(self, design: AcceleratorDesign, pe_index: int):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"LaneUnpacker needs an AcceleratorDesign, got {type(design).__name__}")
        if design.lanes < 2:
            raise ValueError("LaneUnpacker: the design has one lane (its PEs take broadcast words directly)")
        if not isinstance(pe_index, int) or isinstance(pe_index, bool):
            raise TypeError(f"pe_index must be an integer, got {type(pe_index).__name__}")
        if not 0 <= pe_index < design.n_pes:
            raise ValueError(f"pe_index must be in [0, {design.n_pes}), got {pe_index!r}")
        self._design = design
        self._pe = design.pes[pe_index]
        super().__init__({
            "i": In(stream.Signature(unpacker_word_layout(design))),
            "room": Out(1),
            "o": Out(stream.Signature(design_broadcast_layout(design), always_ready=True)),
            "credit": In(1),
            "busy": Out(1),
            "proj_busy": Out(1),
        })

    def group_masks(self) -> tuple[dict[int, int], list[int]]:
        """(phase -> mask ROM address of its column 0 / group 0, the ROM words), laid out as
        mask_address.mask_bases (the same in every PE): the word of a proj phase's group has bit k set where
        the PE has an entry in column `lanes * group + k`; an x or recurrent phase has a word per column, bit 0
        set where the PE has an entry in it (x and y words use lane 0). Word 0 is all ones: what a phase
        without a mask reads (the word passes whole)."""
        design, pe, lanes = self._design, self._pe, self._design.lanes
        bases, size = mask_bases(design)
        words = [(1 << lanes) - 1]
        for l, info in enumerate(design.layers):
            for kind, columns in ((PHASE_X, info.input_size), (PHASE_R, info.recurrent_size),
                                  (PHASE_PROJ, info.cell_size)):
                phase = pe.phases[phase_index(l, kind)]
                if phase_index(l, kind) not in bases:
                    continue
                assert len(words) == bases[phase_index(l, kind)]
                if not phase.used:      # another PE's phase: this PE's words pass whole, as word 0
                    words += [(1 << lanes) - 1] * (columns if kind != PHASE_PROJ else design.lane_groups(l))
                    continue
                pointers = pe.pointers[phase.ptr_offset:phase.ptr_offset + columns + 1]
                has_entries = [int(pointers[c + 1] > pointers[c]) for c in range(columns)]
                if kind != PHASE_PROJ:
                    words += has_entries
                    continue
                for group in range(design.lane_groups(l)):
                    words.append(sum(has_entries[c] << (c - lanes * group)
                                     for c in range(lanes * group, min(lanes * (group + 1), columns))))
        assert len(words) == size
        return bases, words

    def elaborate(self, platform):
        design, lanes = self._design, self._design.lanes
        fifo_depth = design.params.fifo_depth
        layout = design_lane_broadcast_layout(design)
        m = Module()

        bases, words = self.group_masks()
        m.submodules.masks = masks = Memory(shape=lanes, depth=memory_depth(len(words)), init=words)
        mask_read = masks.read_port()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=layout.size, depth=fifo_depth + ROOM_MARGIN)

        # ---- stage 1: the word registered beside its group mask ---------------------------------------------
        # a word's mask (the ROM's word 0, all ones, for a phase without one) is ready with the registered word:
        # nothing but an AND between the ROM's output register and the FIFO's write enable. The address comes
        # with the word (hw/mask_address.py), so the broadcast register drives the ROM directly.
        m.d.comb += mask_read.addr.eq(self.i.payload.mask_address)
        # `keep`: the registers of every PE's unpacker load the same broadcast word, so synthesis would merge
        # them into one copy fanning out to all PEs across the chip (the 16-PE design's critical path); kept,
        # each PE has its own copy placed near it (hw/memory_images.py puts `keep` on the flip-flop cells)
        valid_1 = Signal(attrs={"keep": 1})
        proj_1 = Signal(attrs={"keep": 1})
        word_1 = Signal(layout, attrs={"keep": 1})
        m.d.sync += [valid_1.eq(self.i.valid), proj_1.eq(self.i.payload.proj),
                     *[word_1[name].eq(self.i.payload[name]) for name in layout.members]]
        sent_1 = Signal(lanes)
        m.d.comb += sent_1.eq(word_1.value & mask_read.data)
        pushed = valid_1 & sent_1.any()
        stored = Signal(layout)               # the word as queued: `value` = the lanes still to send
        m.d.comb += [stored.eq(word_1), stored.value.eq(sent_1), fifo.w_en.eq(pushed), fifo.w_data.eq(stored)]
        m.d.sync += self.room.eq(fifo.level + valid_1 < fifo_depth)

        # ---- credits: the PE's FIFO words not known to be taken; `has_credit` a flip-flop ----------------------
        credits = Signal(range(pe_fifo_words(fifo_depth) + 1), init=pe_fifo_words(fifo_depth))
        has_credit = Signal(init=1)
        credits_next = Signal.like(credits)
        m.d.comb += credits_next.eq(credits - self.o.valid + self.credit)
        m.d.sync += [credits.eq(credits_next), has_credit.eq(credits_next != 0)]

        # ---- out: the head word's columns, lowest lane first ------------------------------------------------
        head = data.View(layout, fifo.r_data)
        emitted = Signal(lanes)              # lanes of the head word already handed to the PE
        remaining = head.value & ~emitted
        lane = Signal(range(lanes))
        for k in reversed(range(lanes)):
            with m.If(remaining[k]):
                m.d.comb += lane.eq(k)
        last = (remaining & (remaining - 1))[:lanes] == 0      # one lane left
        m.d.comb += [
            self.o.valid.eq(fifo.r_rdy & has_credit),
            self.o.payload.phase.eq(head.phase),
            self.o.payload.buffer.eq(head.buffer),
            self.o.payload.column.eq(head.column + lane),
            self.o.payload.value.eq(head.values[lane]),
            fifo.r_en.eq(has_credit & last),
        ]
        with m.If(self.o.valid):
            m.d.sync += emitted.eq(Mux(last, 0, emitted | (1 << lane)))

        # ---- status: every word, and proj words, from arrival until the last column left -------------------------
        head_proj = Signal()
        proj_phases = {phase_index(l, PHASE_PROJ) for l in range(design.n_layers)}
        with m.Switch(head.phase):
            for phase in proj_phases & bases.keys():
                with m.Case(phase):
                    m.d.comb += head_proj.eq(1)
        proj_words = Signal(range(fifo_depth + ROOM_MARGIN + 1))
        pushed_proj = pushed & proj_1
        popped_proj = fifo.r_en & fifo.r_rdy & head_proj
        with m.If(pushed_proj & ~popped_proj):
            m.d.sync += proj_words.eq(proj_words + 1)
        with m.Elif(popped_proj & ~pushed_proj):
            m.d.sync += proj_words.eq(proj_words - 1)
        m.d.sync += [
            self.busy.eq(self.i.valid | valid_1 | fifo.level.any()),
            self.proj_busy.eq((self.i.valid & self.i.payload.proj) | (valid_1 & proj_1) | proj_words.any()),
        ]
        return m
