"""A blinking LED that shows the clock runs and reset is released."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from .parameters import check_int

__all__ = ["Heartbeat"]


class Heartbeat(wiring.Component):
    """`o` toggles every `half_period` cycles, from a register.

    The count runs down from `half_period - 2` to -1 and reloads there: its sign bit alone decides, so no
    wide comparison sits between the counter's flip-flops (half a second at 125 MHz is 26 bits).

    Ports:
      o  Out(1)
    """

    def __init__(self, half_period: int):
        check_int("half_period", half_period, 2)
        self.half_period = half_period
        super().__init__({"o": Out(1)})

    def elaborate(self, platform):
        m = Module()
        remaining = Signal(range(-1, self.half_period - 1), init=self.half_period - 2)
        with m.If(remaining[-1]):
            m.d.sync += [remaining.eq(self.half_period - 2), self.o.eq(~self.o)]
        with m.Else():
            m.d.sync += remaining.eq(remaining - 1)
        return m
