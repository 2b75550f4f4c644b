"""A register slice (skid buffer) for a stream: every output and the `ready` it returns come from flip-flops.

Placed on a stream between two parts of a design (or at a chip's ports), it cuts the combinational paths of
both directions: `o.valid` / `o.payload` are registered, and `i.ready` is registered too, so neither the
producer's `valid` nor the consumer's `ready` reaches the other side in the same cycle. A second register
(the skid) takes the word that arrives in the cycle the consumer stops, so a continuous stream still moves
one word per cycle; the cost is one cycle of latency.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """`i` -> `o`, words in order, one per cycle, one cycle later.

    Ports:
      i   In(stream of `payload_shape`); `i.ready` is registered (low only while the skid holds a word)
      o   Out(stream of `payload_shape`); `o.valid` and `o.payload` are registered
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

        out_valid = Signal()
        out_payload = Signal(self._payload_shape, reset_less=True)   # data: only the valid bits need a reset
        skid_valid = Signal()
        skid_payload = Signal(self._payload_shape, reset_less=True)
        m.d.comb += [
            self.o.valid.eq(out_valid),
            self.o.payload.eq(out_payload),
            self.i.ready.eq(~skid_valid),
        ]
        with m.If(~out_valid | self.o.ready):
            # the output register is free at the edge: refill it, from the skid first
            with m.If(skid_valid):
                m.d.sync += [out_valid.eq(1), out_payload.eq(skid_payload), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [out_valid.eq(self.i.valid), out_payload.eq(self.i.payload)]
        with m.Elif(self.i.valid & ~skid_valid):
            # the consumer stopped while a word arrived: keep it in the skid
            m.d.sync += [skid_valid.eq(1), skid_payload.eq(self.i.payload)]
        return m
