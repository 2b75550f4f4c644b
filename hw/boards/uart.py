"""UART receiver and transmitter: 8 data bits, no parity, 1 stop bit (8N1), LSB first."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTReceiver", "UARTTransmitter", "baud_divisor", "BITS_PER_BYTE"]

BITS_PER_BYTE = 10  # on the line: start bit, 8 data bits, stop bit
MIN_DIVISOR = 4     # clock cycles per bit: below this the receiver's mid-bit sampling has no margin


def baud_divisor(clock_hz: float, baud: int) -> int:
    """Clock cycles per bit for `baud` (rounded); ValueError when the clock is too slow for it."""
    if not isinstance(baud, int) or isinstance(baud, bool):
        raise TypeError(f"baud rate must be an int, got {type(baud).__name__}")
    if baud <= 0:
        raise ValueError(f"baud rate must be positive, got {baud}")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"a {clock_hz / 1e6:g} MHz clock is too slow for {baud} baud (at least "
                         f"{MIN_DIVISOR} cycles per bit)")
    return divisor


def _bit_timer(divisor: int):
    """A down-counter for bit times and its `elapsed` flag. Loaded with n - 2 it is elapsed n cycles later,
    at -1: the flag is its sign bit, so no comparison lies in front of the enables it drives (#10: the line's
    registers sit by the pins, and `timer == 0` before them was a late path)."""
    timer = Signal(range(-1, divisor - 1), init=-1)
    return timer, timer[-1]


def _check_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise TypeError(f"divisor must be an int, got {type(divisor).__name__}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be at least {MIN_DIVISOR} clock cycles per bit, got {divisor}")


class UARTReceiver(wiring.Component):
    """Receives 8N1 bytes from the line `rx` (asynchronous; synchronised inside).

    Ports:
      rx             In(1), init 1: the serial line (idle high)
      o              Out(stream of 8-bit bytes): a received byte stays valid until taken or until the next
                     byte arrives, which replaces it and pulses `overrun`
      overrun        Out(1): one-cycle pulse, a byte was lost because `o` was not taken in time
      framing_error  Out(1): one-cycle pulse, a stop bit was 0 (the byte is dropped)

    Parameters: divisor, clock cycles per bit.
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "overrun": Out(1),
            "framing_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer, elapsed = _bit_timer(self.divisor)
        bit = Signal(range(8))
        shift = Signal(8)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 2)
                    m.next = "START"
            with m.State("START"):                      # middle of the start bit: still low?
                m.d.sync += timer.eq(timer - 1)
                with m.If(elapsed):
                    m.d.sync += [timer.eq(self.divisor - 2), bit.eq(0)]
                    m.next = "DATA"
                    with m.If(line):
                        m.next = "IDLE"                 # a glitch, not a start bit
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(elapsed):
                    m.d.sync += [timer.eq(self.divisor - 2), shift.eq(Cat(shift[1:], line)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(elapsed):
                    with m.If(line):
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                        m.d.comb += self.overrun.eq(self.o.valid & ~self.o.ready)
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                    m.next = "IDLE"                     # the line is high from the stop bit's middle on
        return m


class UARTTransmitter(wiring.Component):
    """Sends 8N1 bytes on the line `tx`.

    Ports:
      i     In(stream of 8-bit bytes)
      tx    Out(1), init 1: the serial line (idle high)
      busy  Out(1): a byte is being sent

    Parameters: divisor, clock cycles per bit.
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        timer, elapsed = _bit_timer(self.divisor)
        frame = Signal(9)                   # what follows the start bit: 8 data bits (LSB first), stop bit
        bits_left = Signal(range(11))       # bits of the byte not finished on the line, the current one included
        idle = Signal(init=1)               # bits_left == 0, as a flip-flop: `ready` reaches the sender's CRC
        m.d.comb += [self.busy.eq(~idle), self.i.ready.eq(idle)]
        with m.If(idle):
            with m.If(self.i.valid):
                m.d.sync += [self.tx.eq(0), frame.eq(Cat(self.i.payload, 1)), bits_left.eq(10), idle.eq(0),
                             timer.eq(self.divisor - 2)]
        with m.Elif(~elapsed):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += bits_left.eq(bits_left - 1)
            with m.If(bits_left != 1):
                m.d.sync += [self.tx.eq(frame[0]), frame.eq(frame >> 1), timer.eq(self.divisor - 2)]
            with m.Else():
                m.d.sync += idle.eq(1)
        return m
