"""An ECP5 global network (DCCA) for a signal that is not a clock: the accelerator's reset."""

from __future__ import annotations

from amaranth.hdl import Instance, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ECP5GlobalBuffer"]


class ECP5GlobalBuffer(wiring.Component):
    """One DCCA: `o` follows `i` over one of the eight primary clock networks that reach the fabric.

    nextpnr promotes only clocks to global networks by itself; the accelerator's reset, one flip-flop into the
    reset (LSR) of some 3 000 registers, otherwise goes over general routing, and at 32 PEs that was a routed
    late path across the chip (#10: 11.02 ns with seed 2). On a global network every register hears it at the
    same time, wherever it is placed (3.90 ns after the buffer in the 16-PE board top, docs/boards.md).

    Ports:
      i  In(1): the signal (a flip-flop's output, so the path into the buffer is short)
      o  Out(1): the same signal on a global network
    """

    def __init__(self):
        super().__init__({"i": In(1), "o": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dcca = Instance("DCCA", i_CLKI=self.i, i_CE=1, o_CLKO=self.o)
        return m
