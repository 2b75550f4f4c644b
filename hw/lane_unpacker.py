"""The lane unpacker in front of each PE of a design with lanes > 1 (hw/lanes.py says why lanes exist): lane
broadcast words in, one column per cycle out to the PE, the columns in which the PE has no entry dropped.

Its output side is registered throughout: the column handed to the PE (its index and value), whether it
is the word's last and which lane follows are computed a cycle ahead into flip-flops, so the decision to
send and to take the next queued word is one gate of flip-flops (head valid, last, a credit, a word
queued). Session 14's routed design had its worst paths in the previous form (a SyncFIFOBuffered read
enable behind the `emitted` lanes, their subtraction and the credit check).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import (PHASE_PROJ, PHASE_R, PHASE_X, ROOM_MARGIN, AcceleratorDesign, memory_depth, pe_fifo_words,
                     phase_index)
from .interfaces import design_broadcast_layout, design_lane_broadcast_layout
from .mask_address import mask_bases, unpacker_word_layout

__all__ = ["LaneUnpacker"]


def _lowest_lane(m: Module, lanes_left, lanes: int):
    """(index of the lowest set bit of `lanes_left`, whether it is the only one): combinational."""
    lane = Signal(range(lanes))
    for k in reversed(range(lanes)):
        with m.If(lanes_left[k]):
            m.d.comb += lane.eq(k)
    only = (lanes_left & (lanes_left - 1))[:lanes] == 0
    return lane, only


class LaneUnpacker(wiring.Component):
    """In front of PE `pe_index`: lane broadcast words in, one column per cycle out, columns in which the
    PE has no entry dropped (a mask word per `lanes` consecutive columns of each phase the PE uses, read
    from its pointers: a proj word's lanes are its group's columns, an x or y word carries one column in
    lane 0, checked against the bit of its column).

    Backpressure towards the broadcaster is registered as the PE's own (hw/broadcast.py): `room` while the
    words held number fewer than `fifo_depth`; ROOM_MARGIN more fit. Towards the PE, credits: one per word of
    its FIFO (`pe_fifo_words`), spent per column sent and returned by the PE's `released`, so the decision to
    send is made from this unpacker's own registers.

    Inside: the mask stages (the word registered, then beside its ROM mask word, then with the lanes it keeps), a
    queue (LUT-RAM, a power of two deep) of the words with a column left, each with the column it offers first
    (lane, value and last registered at stage 4, so the queue is written from flip-flops), and the head: the
    word being handed over, with the column it offers in registers, and the column sent registered once more
    (`o`).

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
        To the PE's `i`, in order: columns `column + k` for every bit k sent, ascending; only with a credit,
        from registers (a column leaves a cycle after the credit test sent it).
    credit : In(1)
        The PE's `released`: a word left its FIFO (one credit back).
    busy, proj_busy : Out(1)
        Registered: a word (a proj-phase word) was held in the previous cycle; a word on `i` counts from the
        cycle after it arrived (the scheduler's drains allow for it, hw/scheduler.py).
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
        set where the PE has an entry in it (x and y words use lane 0). The last word is all ones: what a phase
        without a mask reads (the word passes whole); the words between phases are never read (0)."""
        design, pe, lanes = self._design, self._pe, self._design.lanes
        bases, size = mask_bases(design)
        all_ones = (1 << lanes) - 1
        words = [0] * (size - 1) + [all_ones]
        for l, info in enumerate(design.layers):
            for kind, columns in ((PHASE_X, info.input_size), (PHASE_R, info.recurrent_size),
                                  (PHASE_PROJ, info.cell_size)):
                phase = pe.phases[phase_index(l, kind)]
                if phase_index(l, kind) not in bases:
                    continue
                if not phase.used:      # another PE's phase: this PE's words pass whole
                    phase_words = [all_ones] * (columns if kind != PHASE_PROJ else design.lane_groups(l))
                else:
                    pointers = pe.pointers[phase.ptr_offset:phase.ptr_offset + columns + 1]
                    has_entries = [int(pointers[c + 1] > pointers[c]) for c in range(columns)]
                    phase_words = has_entries if kind != PHASE_PROJ else [
                        sum(has_entries[c] << (c - lanes * group)
                            for c in range(lanes * group, min(lanes * (group + 1), columns)))
                        for group in range(design.lane_groups(l))]
                base = bases[phase_index(l, kind)]
                words[base:base + len(phase_words)] = phase_words
        assert len(words) == size
        return bases, words

    def elaborate(self, platform):
        design, lanes = self._design, self._design.lanes
        fifo_depth = design.params.fifo_depth
        capacity = fifo_depth + ROOM_MARGIN               # words the broadcaster may send (hw/broadcast.py)
        queue_depth = 1 << (capacity - 1).bit_length()    # a power of two: the pointers wrap by themselves
        # `value`: the lanes still to send; `proj`: a word of a proj phase (for proj_busy)
        queued_layout = data.StructLayout({**design_lane_broadcast_layout(design).members, "proj": unsigned(1)})
        # a queue entry also carries the column it offers first (its lowest lane's), so that a word taken from
        # the queue goes into the output registers without a lane search, multiplexer or adder behind the
        # LUT-RAM read (#10: that chain was a routed late path, 9.56 ns)
        offer_layout = data.StructLayout({"offer_column": self.o.payload.column.shape(),
                                          "offer_value": self.o.payload.value.shape(), "offer_last": unsigned(1)})
        entry_layout = data.StructLayout({**queued_layout.members, **offer_layout.members})
        m = Module()

        bases, words = self.group_masks()
        m.submodules.masks = masks = Memory(shape=lanes, depth=memory_depth(len(words)), init=words)
        mask_read = masks.read_port()
        m.submodules.queue = queue = Memory(shape=entry_layout, depth=queue_depth, init=[])
        queue_write = queue.write_port()
        queue_read = queue.read_port(domain="comb")

        # ---- mask stages: the word registered, beside its group mask, then with the lanes it keeps ------------
        # a word's mask (the ROM's all-ones word for a phase without one) is read at the OR of the address
        # parts that came with the word (hw/mask_address.py), from this unpacker's own registers of them: the
        # ROM's LUTs read from the broadcast register itself sat behind the route across the chip (#10: routed
        # late paths, 9.2 ns).
        # The ROM's read data are registered (stage 2), the AND with the word's lanes goes into flip-flops
        # (`kept_3`), and the lane search over those into flip-flops again (`sent_4`, `offer_4`, `pushed`, stage
        # 4): the queue's write enable and the counters start from them (#10: the ROM's LUTs and the AND in one
        # cycle, the AND in front of the counters, or the ROM's register through the AND and the lane search
        # into the offer registers, 9.2 ns at 32 PEs, were routed late paths).
        # `keep`: the registers of every PE's unpacker load the same broadcast word, so synthesis would merge
        # them into one copy fanning out to all PEs across the chip (the 16-PE design's critical path); kept,
        # each PE has its own copy placed near it (hw/memory_images.py puts `keep` on the flip-flop cells)
        # the words' fields have no reset, only their valid flags: every field is read only under its flag,
        # and the reset net then reaches a few flip-flops per unpacker instead of hundreds (#10: the reset
        # register's fan-out over the whole chip was on a routed late path)
        valid_1 = Signal(attrs={"keep": 1})
        word_1 = Signal(queued_layout, attrs={"keep": 1}, reset_less=True)
        mask_base_1 = Signal.like(self.i.payload.mask_base, attrs={"keep": 1}, reset_less=True)
        mask_offset_1 = Signal.like(self.i.payload.mask_offset, attrs={"keep": 1}, reset_less=True)
        valid_2 = Signal()
        word_2 = Signal(queued_layout, reset_less=True)
        valid_3 = Signal()
        word_3 = Signal(queued_layout, reset_less=True)
        kept_3 = Signal(lanes, reset_less=True)   # the word's lanes in which this PE has entries
        valid_4 = Signal()
        word_4 = Signal(queued_layout, reset_less=True)
        sent_4 = Signal(lanes, reset_less=True)
        offer_4 = Signal(offer_layout, reset_less=True)   # the word's first column: the queue written from flip-flops
        pushed = Signal()           # valid_4 with a lane left; a flip-flop: the counters below start from it
        stored = Signal(entry_layout)

        # ---- the queue and the head --------------------------------------------------------------------------
        write_at = Signal(range(queue_depth))
        read_at = Signal(range(queue_depth))
        queued = Signal(range(queue_depth + 1))
        has_queued = Signal()                 # queued != 0, as a flip-flop
        held = Signal(range(capacity + 1))   # queued words and the head: what `room` counts
        head = Signal(queued_layout, reset_less=True)   # head.value: the lanes not yet sent, the offered one included
        head_valid = Signal()
        head_last = Signal(reset_less=True)  # the offered column is the word's last
        out_column = Signal.like(self.o.payload.column, reset_less=True)
        out_value = Signal.like(self.o.payload.value, reset_less=True)
        # the column sent, registered on its way to the PE: the PE's FIFO level sees a flip-flop, not the credit
        # test (#10: `has_credit` through `send` into a PE's FIFO level was the 32-PE design's worst path, 8.53 ns)
        sent_valid = Signal()
        sent = Signal.like(self.o.payload, reset_less=True)
        sent_proj = Signal(reset_less=True)

        # `room`: the words held and the four in flight fewer than `fifo_depth`, as one comparison of `held` with a
        # limit looked up from the four flags (#10: `held` plus the flags, adders in series into `room`, was a routed
        # late path at 32 PEs, 9.18 ns)
        room_limits = Array(Const(max(0, fifo_depth - bin(flags).count("1")), range(fifo_depth + 1))
                            for flags in range(16))

        # ---- credits: the PE's FIFO words not known to be taken ----------------------------------------------
        # a thermometer code (bit j: more than j credits) moving one place per word sent or credit returned, so
        # `has_credit` is its bit 0, a flip-flop, and the PE's `credit` meets no adder (#10: the credit count's
        # adder and zero test into `has_credit` was a routed late path at 32 PEs, 8.28 ns)
        credit_words = pe_fifo_words(fifo_depth)
        credits_above = Signal(credit_words, init=(1 << credit_words) - 1)
        has_credit = credits_above[0]

        send = head_valid & has_credit
        finished = send & head_last                          # the head word's last column leaves
        # `take` and the head's load enable (`take`, or the head's next lane offered: send & ~head_last) each one
        # LUT of four flip-flops, kept as wires so that synthesis does not build the enable of the head's and the
        # offer's registers from the two in LUTs in series (#10: `head_last` through three LUTs into `out_value`'s
        # enable, 8.05 ns, missed the 16-PE board top's clock by 46 ps)
        take = Signal(attrs={"keep": 1})
        load_head = Signal(attrs={"keep": 1})
        # the head's next state, from a queued word or from the head itself (its lowest lane cleared), both
        # computed apart from `take` so that only the final choice waits for it
        new_word = data.View(entry_layout, queue_read.data)
        kept_lane, kept_last = _lowest_lane(m, kept_3, lanes)
        rest = Signal(lanes)
        rest_lane, rest_last = _lowest_lane(m, rest, lanes)

        m.d.comb += [
            take.eq((~head_valid | (has_credit & head_last)) & has_queued),
            load_head.eq(Mux(head_valid, has_credit & (has_queued | ~head_last), has_queued)),
            mask_read.addr.eq(mask_base_1 | mask_offset_1),    # aligned: no bit in both (mask_address.py)
            *[stored[name].eq(word_4[name]) for name in queued_layout.members],
            stored.value.eq(sent_4),
            *[stored[name].eq(offer_4[name]) for name in offer_layout.members],
            queue_write.addr.eq(write_at),
            queue_write.data.eq(stored),
            queue_write.en.eq(pushed),
            queue_read.addr.eq(read_at),
            rest.eq(head.value & (head.value - 1)),
            self.o.valid.eq(sent_valid),
            self.o.payload.eq(sent),
        ]

        m.d.sync += [
            valid_1.eq(self.i.valid),
            *[word_1[name].eq(self.i.payload[name]) for name in queued_layout.members],
            mask_base_1.eq(self.i.payload.mask_base),
            mask_offset_1.eq(self.i.payload.mask_offset),
            valid_2.eq(valid_1),
            word_2.eq(word_1),
            valid_3.eq(valid_2),
            word_3.eq(word_2),
            kept_3.eq(word_2.value & mask_read.data),
            valid_4.eq(valid_3),
            word_4.eq(word_3),
            sent_4.eq(kept_3),
            # an OR, not an adder: a word with lanes past 0 is a proj group's, whose column is a multiple of
            # `lanes` (x and y words use lane 0; hw/interfaces.py) (#10: the carry chain here was late)
            offer_4.offer_column.eq(word_3.column | kept_lane),
            offer_4.offer_value.eq(word_3.values[kept_lane]),
            offer_4.offer_last.eq(kept_last),
            pushed.eq(valid_3 & kept_3.any()),
            held.eq(held + pushed - finished),
            self.room.eq(held < room_limits[Cat(valid_1, valid_2, valid_3, valid_4)]),
            sent_valid.eq(send),
            sent.phase.eq(head.phase),
            sent.buffer.eq(head.buffer),
            sent.column.eq(out_column),
            sent.value.eq(out_value),
            sent_proj.eq(head.proj),
            queued.eq(queued + pushed - take),
            has_queued.eq(pushed | (has_queued & ~(take & (queued == 1)))),
        ]
        with m.If(self.credit & ~send):
            m.d.sync += credits_above.eq(Cat(1, credits_above[:-1]))
        with m.Elif(send & ~self.credit):
            m.d.sync += credits_above.eq(credits_above[1:])
        with m.If(pushed):
            m.d.sync += write_at.eq(write_at + 1)
        with m.If(take):
            m.d.sync += [
                read_at.eq(read_at + 1),
                *[head[name].eq(new_word[name]) for name in queued_layout.members if name != "value"],
            ]
        with m.If(load_head):
            m.d.sync += [
                head.value.eq(Mux(take, new_word.value, rest)),
                head_last.eq(Mux(take, new_word.offer_last, rest_last)),
                out_column.eq(Mux(take, new_word.offer_column, head.column | rest_lane)),
                out_value.eq(Mux(take, new_word.offer_value, head.values[rest_lane])),
            ]
        with m.If(take):
            m.d.sync += head_valid.eq(1)
        with m.Elif(finished):
            m.d.sync += head_valid.eq(0)

        # ---- status: every word, and proj words, from arrival until the last column left -------------------------
        proj_words = Signal(range(capacity + 1))
        pushed_proj = pushed & word_4.proj
        finished_proj = finished & head.proj
        with m.If(pushed_proj & ~finished_proj):
            m.d.sync += proj_words.eq(proj_words + 1)
        with m.Elif(finished_proj & ~pushed_proj):
            m.d.sync += proj_words.eq(proj_words - 1)
        # from this unpacker's own flip-flops only: a word on `i` counts from the next cycle, on `valid_1` (the
        # broadcaster's own `busy` covers it until then, and the scheduler allows for the cycle). The broadcast
        # valid and `proj` bit across the chip into these registers were 96 of the 180 late inputs at 32 PEs (#10)
        m.d.sync += [
            self.busy.eq(valid_1 | valid_2 | valid_3 | valid_4 | held.any() | sent_valid),
            self.proj_busy.eq((valid_1 & word_1.proj) | (valid_2 & word_2.proj) | (valid_3 & word_3.proj)
                              | (valid_4 & word_4.proj) | proj_words.any() | (sent_valid & sent_proj)),
        ]
        return m
