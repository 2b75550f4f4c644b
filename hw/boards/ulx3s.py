"""The ULX3S top: 25 MHz oscillator -> ECP5 PLL -> the accelerator's clock; the FT231X USB-UART; LEDs.

    clk25 --> ECP5PLL --clk_out--> domain sync (every register of the design)
                 | locked
    BTN1 (fire 1) --+--> AsyncFFSynchronizer --> the board's reset (SerialBoard.reset; sync has no reset)
                         the accelerator's reset flip-flop --> ECP5GlobalBuffer (a DCCA) --> its registers
    uart rx/tx  <-->  SerialBoard (UART, host link, accelerator)
    led 0 busy, led 1 link activity, led 2 error, led 6 PLL locked, led 7 heartbeat
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import AsyncFFSynchronizer

from ..design import AcceleratorDesign
from .ecp5_global import ECP5GlobalBuffer
from .pll import PLLConfig, ECP5PLL
from .serial_board import SerialBoard, connect_to_pins

__all__ = ["ULX3STop", "ULX3S_OSCILLATOR_HZ"]

ULX3S_OSCILLATOR_HZ = 25e6
LED_LOCKED = 6


class ULX3STop(Elaboratable):
    """The ULX3S board top (an amaranth-boards ULX3S platform's resources: clk25, button_fire 0, uart 0, led).

    Parameters: the AcceleratorDesign, the model id (docs/host-link.md), the PLLConfig of the design clock
    and the UART baud rate.
    """

    def __init__(self, design: AcceleratorDesign, model_id: bytes, pll: PLLConfig, baud: int):
        if not isinstance(pll, PLLConfig):
            raise TypeError(f"ULX3STop needs a PLLConfig, got {type(pll).__name__}")
        self.pll = pll
        self.board = SerialBoard(design, model_id, round(pll.output_hz), baud, reset_buffer=ECP5GlobalBuffer)

    def elaborate(self, platform):
        m = Module()
        # no domain reset: the board's reset reaches the board through its port, and the accelerator's
        # registers only through BoardCore's one flip-flop (docs/boards.md)
        m.domains.sync = ClockDomain("sync", reset_less=True)
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        m.submodules.pll = pll = ECP5PLL(self.pll)
        m.d.comb += [pll.clk_in.eq(clk25.i), ClockSignal("sync").eq(pll.clk_out)]
        # no constraint of our own: nextpnr derives the PLL output's from the oscillator's and the dividers
        m.submodules.button = button = io.Buffer("i", platform.request("button_fire", 0, dir="-"))
        board_reset = Signal(init=1)
        m.submodules.reset = AsyncFFSynchronizer(~pll.locked | button.i, board_reset, o_domain="sync")
        m.d.comb += self.board.reset.eq(board_reset)

        m.submodules.board = self.board
        connect_to_pins(m, platform, self.board, {LED_LOCKED: pll.locked})
        return m
