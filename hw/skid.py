"""A register slice (skid buffer) for a stream: every output and the `ready` it returns come from flip-flops.

Placed on a stream between two parts of a design (or at a chip's ports), it cuts the combinational paths of
both directions: `o.valid` is registered and `o.payload` a two-way multiplexer of registers, and `i.ready` is
registered too, so neither the producer's `valid` nor the consumer's `ready` reaches the other side in the same
cycle. Two slots in a ring take the words, so the word that arrives in the cycle the consumer stops has a place
and a continuous stream still moves one word per cycle; the cost is one cycle of latency.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """`i` -> `o`, words in order, one per cycle, one cycle later.

    Ports:
      i   In(stream of `payload_shape`); `i.ready` is registered (low only while the skid holds a word)
      o   Out(stream of `payload_shape`); `o.valid` registered, `o.payload` one of two registers
    """

    def __init__(self, payload_shape):
        if not isinstance(payload_shape, (data.Layout, Shape, int)):
            raise TypeError(f"SkidBuffer needs a shape or a data layout, got {payload_shape!r}")
        self._payload_shape = payload_shape
        super().__init__({
            "i": In(stream.Signature(payload_shape)),
            "o": Out(stream.Signature(payload_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        # two slots in a ring; the free slot the next word goes to loads the input every cycle, word or not,
        # so its enable is a flip-flop (`load`), not the handshake's logic fanning out to every data bit
        # (#10: the cell slice's enables, 58 late endpoints); the handshake moves the pointers only
        slots = [Signal(self._payload_shape, name=f"slot{k}", reset_less=True) for k in range(2)]
        load = [Signal(name=f"load{k}", init=int(k == 0)) for k in range(2)]
        count = Signal(range(3))
        read_slot = Signal()
        write_slot = Signal()
        ready = Signal(init=1)
        has_word = Signal()
        pushed = self.i.valid & ready
        popped = has_word & self.o.ready
        # each next state is worked out from flip-flops and `i.valid` for both values of `popped`, and `o.ready`
        # picks one last, so a consumer's ready from across the chip passes a single LUT into the flip-flops
        # (#10: the broadcaster's `all_ready` through three LUTs into the input slice's `load0`, 8.53 ns at 32
        # PEs); `keep` holds synthesis to that split. With a pop the count was at least 1 and ends below 2.
        count_pushed = Signal(range(3), attrs={"keep": 1})
        write_next = Signal(attrs={"keep": 1})
        stays_ready = Signal(attrs={"keep": 1})     # count_pushed < 2: room for a word even without a pop
        full = Signal(attrs={"keep": 1})            # count_pushed == 2
        any_word = Signal(attrs={"keep": 1})        # count_pushed != 0
        m.d.comb += [
            self.i.ready.eq(ready),
            self.o.valid.eq(has_word),
            self.o.payload.eq(Mux(read_slot, slots[1], slots[0])),
            count_pushed.eq(count + pushed),
            write_next.eq(write_slot ^ pushed),
            stays_ready.eq(count_pushed < 2),
            full.eq(count_pushed == 2),
            any_word.eq(count_pushed != 0),
        ]
        for k in range(2):
            with m.If(load[k]):
                m.d.sync += slots[k].eq(self.i.payload)
        m.d.sync += [
            count.eq(count_pushed - popped),
            read_slot.eq(read_slot ^ popped),
            write_slot.eq(write_next),
            ready.eq(popped | stays_ready),
            has_word.eq(Mux(popped, full, any_word)),
            *[load[k].eq((write_next == k) & (popped | stays_ready)) for k in range(2)],
        ]
        return m
