"""The KCU105 top (Vivado build plan only): the board's 125 MHz clock, CPU_RESET, the CP2105 USB-UART, LEDs.

amaranth-boards' KCU105 platform has the clock (CLK_125MHZ on G10/F10) and the LEDs; the UART and the reset
button are added here: the CP2105's UART 0 on G25 (to the FPGA) and K26 (from it), CPU_RESET on AN8, all
LVCMOS18. Checked against Xilinx's KCU105 master constraints ("KCU105 RevD XDC"), which names the UART pins
from the CP2105's side (USB_UART_TX = G25, USB_UART_RX = K26); the user guide UG917 (v1.10) was not readable
where this was checked (docs/boards.md).
"""

from __future__ import annotations

from amaranth.build import Attrs, Pins, Resource, Subsignal
from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import AsyncFFSynchronizer

from ..design import AcceleratorDesign
from .serial_board import SerialBoard, connect_to_pins

__all__ = ["KCU105Top", "KCU105_CLOCK_HZ", "kcu105_resources"]

KCU105_CLOCK_HZ = 125_000_000


def kcu105_resources() -> list:
    """The resources the top uses that amaranth-boards' KCU105Platform does not define."""
    return [
        Resource("uart", 0, Subsignal("rx", Pins("G25", dir="i")), Subsignal("tx", Pins("K26", dir="o")),
                 Attrs(IOSTANDARD="LVCMOS18")),
        Resource("cpu_reset", 0, Pins("AN8", dir="i"), Attrs(IOSTANDARD="LVCMOS18")),
    ]


class KCU105Top(Elaboratable):
    """The KCU105 board top, clocked by the board's 125 MHz oscillator (no clock synthesis).

    Needs a KCU105Platform with kcu105_resources() added. Parameters: the AcceleratorDesign, the model id
    and the UART baud rate.
    """

    def __init__(self, design: AcceleratorDesign, model_id: bytes, baud: int):
        self.board = SerialBoard(design, model_id, KCU105_CLOCK_HZ, baud)

    def elaborate(self, platform):
        m = Module()
        # no domain reset: the board's reset reaches the board through its port, and the accelerator's
        # registers only through BoardCore's one flip-flop (docs/boards.md)
        m.domains.sync = ClockDomain("sync", reset_less=True)
        m.submodules.clk125 = clk125 = io.Buffer("i", platform.request("clk125", 0, dir="-"))
        m.d.comb += ClockSignal("sync").eq(clk125.i)
        m.submodules.cpu_reset = cpu_reset = io.Buffer("i", platform.request("cpu_reset", 0, dir="-"))
        board_reset = Signal(init=1)
        m.submodules.reset = AsyncFFSynchronizer(cpu_reset.i, board_reset, o_domain="sync")
        m.d.comb += self.board.reset.eq(board_reset)

        m.submodules.board = self.board
        connect_to_pins(m, platform, self.board)
        return m
