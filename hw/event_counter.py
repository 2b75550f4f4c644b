"""An event counter split in two, so that the flag it counts meets one flip-flop and not a wide carry chain.

A PE's `mac_cycles` and `pad_cycles` count a flag of the PE's pipeline, but are read by logic far from it (a
status readout, bench/fmax.py's wrapper), so the placer pulls their flip-flops away from the PE; with one 32-bit
counter the flag drove the clock enable of all 32 bits across that distance (#10: the 32-PE run's latest paths).
Here the flag is registered first, so that the way from the PE to the counter is a wire between two flip-flops
(with the 32-PE design's counters drawn towards the readout, the flag through the low part's adder into its
flip-flops was the late path, 8.97 ns, 7.97 of it routing); that register drives a `low_bits`-bit counter, whose
wrap is registered, and the high part counts the wraps from that register alone. The low part is registered once
more before it leaves, so that the value read is exact: the count of the flag up to three cycles before (two
cycles later than a plain counter).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["EventCounter"]


class EventCounter(wiring.Component):
    """`value` = the number of cycles `event` was high, up to three cycles before this one (mod 2 ** width).

    Ports:
      event  In(1)
      value  Out(width), from flip-flops only
    """

    def __init__(self, width: int, low_bits: int = 4):
        for name, number in (("width", width), ("low_bits", low_bits)):
            if not isinstance(number, int) or isinstance(number, bool):
                raise TypeError(f"{name} must be an integer, got {type(number).__name__}")
        if not 1 <= low_bits < width:
            raise ValueError(f"low_bits must be in [1, width) = [1, {width}), got {low_bits}")
        self.width, self.low_bits = width, low_bits
        super().__init__({"event": In(1), "value": Out(width)})

    def elaborate(self, platform):
        m = Module()
        counted = Signal()                               # `event` a cycle late
        low = Signal(self.low_bits)
        low_out = Signal(self.low_bits)                  # `low` a cycle late, in step with `high`
        wrapped = Signal()                               # `low` went from all ones to zero
        high = Signal(self.width - self.low_bits)
        m.d.comb += self.value.eq(Cat(low_out, high))
        m.d.sync += [
            counted.eq(self.event),
            low.eq(low + counted),
            wrapped.eq(counted & low.all()),
            low_out.eq(low),
        ]
        with m.If(wrapped):
            m.d.sync += high.eq(high + 1)
        return m
