"""The broadcaster: one activation word to every PE's FIFO at once, zero activations skipped.

A zero value adds nothing to any accumulator, so it is consumed and dropped here (activation zero-skipping,
as in EIE/ESE): fewer cycles, the same sums. Words that are sent go to all PEs in the same cycle, and only
when every PE can take one (a PE whose FIFO is full stalls all of them). A word leaves the word register, sent
or dropped, when every PE had room: a zero word waits like the others (its test starts from the register).

Backpressure is registered on both sides, so no combinational path crosses the chip from the PEs' FIFOs to
the scheduler: each PE raises a registered `room` flag while its FIFO holds fewer than `fifo_depth` words, and
the broadcaster sends only when every flag was up two cycles before: the flags are ANDed in regions of
`ROOM_REGION` neighbouring PEs into registers, and those into `all_ready`, a register too (#10: one AND over
32 flags from all over the chip was the 32-PE design's worst path).

The fan-out is registered again: the word register feeds a relay register per region (`RELAY_STAGES` of them in
a row), and the last relay the `ROOM_REGION` outputs of its region (#10: the word register into 32 PEs' input
registers was most of the 32-PE design's late paths). A word thus reaches the PEs `RELAY_STAGES` cycles after
it was sent, and a room flag is 3 + RELAY_STAGES cycles old when its word arrives, so a PE may receive
`ROOM_MARGIN` words after its FIFO reached `fifo_depth`: its FIFO has that many words more.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .design import RELAY_STAGES, ROOM_REGION

__all__ = ["Broadcaster"]


class Broadcaster(wiring.Component):
    """One stream to `n_outputs` streams at once, zero values dropped, with registered backpressure.

    Parameters
    ----------
    layout : data.StructLayout
        The payload; it needs a `value` field (a word whose value is 0 is dropped).
    n_outputs : int
        Number of output streams (one per PE).

    Attributes
    ----------
    i : In(stream.Signature(layout))
    o : Out(stream.Signature(layout)).array(n_outputs)
        Each word goes out on every output in the same cycle, from its region's last relay register,
        RELAY_STAGES cycles after it was sent (`valid`: the region's offer flag and its own zero test of the
        word); `payload` changes while `valid` is low; `o[p].ready` is not looked at: the room flags guarantee it.
    room : In(n_outputs)
        Bit p: output p's registered room flag (module docstring).
    busy : Out(1)
        A word is held for the outputs or is in the relay registers.
    """

    def __init__(self, layout: data.StructLayout, n_outputs: int):
        if not isinstance(layout, data.StructLayout) or "value" not in layout.members:
            raise TypeError(f"Broadcaster needs a StructLayout with a 'value' field, got {layout!r}")
        if not isinstance(n_outputs, int) or isinstance(n_outputs, bool):
            raise TypeError(f"n_outputs must be an integer, got {type(n_outputs).__name__}")
        if n_outputs < 1:
            raise ValueError(f"n_outputs must be an integer >= 1, got {n_outputs!r}")
        self._layout = layout
        self._n_outputs = n_outputs
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)).array(n_outputs),
            "room": In(n_outputs),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()

        held_valid = Signal()
        held = Signal(self._layout)
        regions = range(0, self._n_outputs, ROOM_REGION)
        region_ready = Signal(len(regions))   # every output of the region had room in the previous cycle
        region_ready_1 = Signal(len(regions))  # region_ready a cycle later: high whenever all_ready is
        all_ready = Signal(attrs={"keep": 1})  # every region was ready in the previous cycle
        # the same flag again for `i.ready` alone, which reaches back into the scheduler: a flip-flop of its own
        # can sit near it while `all_ready` stays with the word register and the relays (#10: `all_ready`'s
        # fan-out into the scheduler's m_passed and the m slice, all 24 late register inputs of a 32-PE build at
        # 8.76 ns); `keep` on both, or synthesis would merge them
        upstream_ready = Signal(attrs={"keep": 1})
        may_load = Signal()                   # the word register may take a word: ~held_valid | all_ready
        # a word leaves the register when every region was ready; one whose value is 0 goes nowhere (it is dropped
        # there): the zero test starts from the register, not from the sources' multiplexer (#10: the sources'
        # words through it into `held_valid` were the worst path at 16 and at 32 PEs)
        offered = held_valid & all_ready
        sent = offered & (held.value != 0)
        # per region, through RELAY_STAGES relay registers: the word, loaded every cycle, and whether it was offered;
        # each region tests its own copy for zero, so neither the zero test nor any enable crosses the chip (#10:
        # the zero test as the relay words' enable, fanning out to every region, was the 32-PE design's worst
        # path, 11.13 ns, 10.14 of it routing). `keep`: the words have the same inputs in every region, and
        # synthesis would merge them into one register again
        offers, words = [offered] * len(regions), [held] * len(regions)
        in_relay = []                         # a sent word in each relay stage: `busy`, from flip-flops here
        for stage in range(RELAY_STAGES):
            stage_offers = Signal(len(regions), name=f"relay{stage}_offered")
            stage_words = [Signal(self._layout, name=f"relay{stage}_{r}", attrs={"keep": 1}, reset_less=True)
                           for r in range(len(regions))]
            stage_sent = Signal(name=f"relay{stage}_sent")
            m.d.sync += stage_sent.eq(sent if stage == 0 else in_relay[-1])
            for r, (offer, word) in enumerate(zip(offers, words)):
                # region_ready_1 changes nothing in the first stage's offer but gives each region's flag inputs
                # of its own (synthesis merges flip-flops with the same inputs)
                m.d.sync += [stage_offers[r].eq(offer & region_ready_1[r] if stage == 0 else offer),
                             stage_words[r].eq(word)]
            offers, words = list(stage_offers), stage_words
            in_relay.append(stage_sent)
        for r, start in enumerate(regions):
            region_valid = offers[r] & (words[r].value != 0)
            for port in self.o[start:start + ROOM_REGION]:
                # valid only when every PE takes it, so the word enters all FIFOs in the same cycle
                m.d.comb += [port.valid.eq(region_valid), port.payload.eq(words[r])]
        m.d.comb += [
            may_load.eq(~held_valid | all_ready),
            self.i.ready.eq(~held_valid | upstream_ready),
            self.busy.eq(held_valid | Cat(in_relay).any()),
        ]
        m.d.sync += [
            *[region_ready[r].eq(self.room[start:start + ROOM_REGION].all()) for r, start in enumerate(regions)],
            region_ready_1.eq(region_ready),
            all_ready.eq(region_ready.all()),
            upstream_ready.eq(region_ready.all()),
        ]
        # the word register loads whenever it may take a word, valid or not (its contents count only with
        # `held_valid`): its enable is `ready`, from flip-flops, not the upstream valid (#10: the scheduler's
        # valid logic fanned out to every payload bit)
        with m.If(may_load):
            m.d.sync += [held_valid.eq(self.i.valid), held.eq(self.i.payload)]
        return m

