"""Status LEDs: short events stretched long enough to see."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .parameters import check_int

__all__ = ["PulseStretcher"]


class PulseStretcher(wiring.Component):
    """`o` is high for `cycles` cycles from two cycles after `i` is high (longer if `i` is high again
    meanwhile). Input and output are registered: the LED pins are far from the logic that signals, and two
    cycles are nothing to an eye.

    The count runs down from `cycles - 3` to -1 and stops there: its sign bit alone enables the count and
    lights the LED, so no wide comparison sits between the counter's flip-flops (a second at 125 MHz is 27
    bits). Its load comes from a flip-flop of its own (`load`, the input delayed once more), which Yosys makes
    the counter's set/reset: placed beside the counter, not beside the logic that signals (#10: the input
    register driving those set/resets across the chip was session 21's worst path, 9.4 ns). The count has no
    reset: it starts at -1 from the bitstream, and a count running when the board is reset runs out as usual
    (under the reset, Yosys 0.70's synth_ecp5 failed an internal assertion in ABC's reintegration on this
    circuit).

    Ports:
      i  In(1)
      o  Out(1)
    """

    def __init__(self, cycles: int):
        check_int("cycles", cycles, 2)
        self.cycles = cycles
        super().__init__({"i": In(1), "o": Out(1)})

    def elaborate(self, platform):
        m = Module()
        event = Signal()
        load = Signal()
        remaining = Signal(range(-1, max(self.cycles - 2, 1)), init=-1, reset_less=True)
        counting = ~remaining[-1]
        m.d.sync += [event.eq(self.i), load.eq(event), self.o.eq(event | load | counting)]
        with m.If(load):
            m.d.sync += remaining.eq(self.cycles - 3)
        with m.Elif(counting):
            m.d.sync += remaining.eq(remaining - 1)
        return m
