"""Status LEDs: events of a few cycles made long enough to see."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PulseStretcher"]


class PulseStretcher(wiring.Component):
    """`o` is high from the cycle after `i` is high and for `cycles` cycles after that. `i` is registered
    first: the LED pins are far from the logic that signals, and a cycle is nothing to an eye.

    Ports:
      i  In(1)
      o  Out(1)
    """

    def __init__(self, cycles: int):
        if not isinstance(cycles, int) or isinstance(cycles, bool):
            raise TypeError(f"cycles must be an int, got {type(cycles).__name__}")
        if cycles < 1:
            raise ValueError(f"cycles must be at least 1, got {cycles}")
        self.cycles = cycles
        super().__init__({"i": In(1), "o": Out(1)})

    def elaborate(self, platform):
        m = Module()
        event = Signal()
        remaining = Signal(range(self.cycles + 1))
        m.d.sync += event.eq(self.i)
        with m.If(event):
            m.d.sync += remaining.eq(self.cycles)
        with m.Elif(remaining != 0):
            m.d.sync += remaining.eq(remaining - 1)
        m.d.comb += self.o.eq(event | (remaining != 0))
        return m
