"""What every board top holds in its one clock domain: the accelerator behind the host link, on a UART, and
the status LEDs."""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Module, ResetInserter
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from ..design import AcceleratorDesign
from .core import BoardCore
from .heartbeat import Heartbeat
from .leds import PulseStretcher
from ...spec.host_link import CRC_BYTES, HEADER_BYTES, WORD_BYTES
from .uart import BITS_PER_BYTE, UARTReceiver, UARTTransmitter, baud_divisor

__all__ = ["SerialBoard", "connect_to_pins", "link_frames_per_second", "LINK_TIMEOUT_SECONDS",
           "LINK_QUIET_SECONDS"]

# A frame that stops for longer than this is an error; the host sends each frame in one write, so gaps
# inside a frame are USB scheduling gaps (about a millisecond).
LINK_TIMEOUT_SECONDS = 0.05
# After an error the link drops bytes until the line has been quiet this long (the host waits longer).
LINK_QUIET_SECONDS = 0.01
EVENT_LED_SECONDS = 0.05
ERROR_LED_SECONDS = 1.0
HEARTBEAT_HZ = 1
LED_BUSY, LED_LINK, LED_ERROR, LED_HEARTBEAT = 0, 1, 2, 7


class SerialBoard(wiring.Component):
    """BoardCore on a UART, with status LEDs.

    Ports:
      reset      In(1): the board's reset (a top whose clock domain has no reset drives it; see BoardCore)
      rx         In(1), init 1: the UART line from the host
      tx         Out(1), init 1: the UART line to the host
      led_busy   Out(1): the accelerator is computing (stretched to be visible)
      led_link   Out(1): a byte went over the link
      led_error  Out(1): the link sent an ERROR frame (lit for a second)
      heartbeat  Out(1): blinks at HEARTBEAT_HZ while the clock runs and reset is released

    Parameters: the AcceleratorDesign, the model id, the clock frequency (Hz, an int) and the baud rate;
    keyword-only, for a simulated board: the link's timeout and quiet times in cycles (default:
    LINK_TIMEOUT_SECONDS and LINK_QUIET_SECONDS at `clock_hz`) and its receive buffer in bytes (default: as
    BoardCore); for a board top, BoardCore's `reset_buffer`.
    """

    def __init__(self, design: AcceleratorDesign, model_id: bytes, clock_hz: int, baud: int, *,
                 timeout_cycles: int | None = None, quiet_cycles: int | None = None,
                 rx_buffer_bytes: int | None = None, reset_buffer: Callable[[], wiring.Component] | None = None):
        if not isinstance(clock_hz, int) or isinstance(clock_hz, bool):
            raise TypeError(f"clock_hz must be an int, got {type(clock_hz).__name__}")
        self.clock_hz = clock_hz
        self.divisor = baud_divisor(clock_hz, baud)
        self.core = BoardCore(
            design, model_id, clock_hz=clock_hz,
            timeout_cycles=round(LINK_TIMEOUT_SECONDS * clock_hz) if timeout_cycles is None else timeout_cycles,
            quiet_cycles=round(LINK_QUIET_SECONDS * clock_hz) if quiet_cycles is None else quiet_cycles,
            rx_buffer_bytes=rx_buffer_bytes, reset_buffer=reset_buffer)
        super().__init__({
            "reset": In(1),
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "led_busy": Out(1),
            "led_link": Out(1),
            "led_error": Out(1),
            "heartbeat": Out(1),
        })

    @property
    def baud(self) -> float:
        """The baud rate the UART actually runs at."""
        return self.clock_hz / self.divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        # everything but the core, which takes the reset as a port, under the board's reset
        board = Module()
        board.submodules.uart_rx = uart_rx = UARTReceiver(self.divisor)
        board.submodules.uart_tx = uart_tx = UARTTransmitter(self.divisor)
        board.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx), core.rx_overrun.eq(uart_rx.overrun)]
        wiring.connect(board, uart_rx.o, core.rx)
        wiring.connect(board, core.tx, uart_tx.i)

        for name, source, seconds in (("busy", core.busy, EVENT_LED_SECONDS),
                                      ("link", core.activity, EVENT_LED_SECONDS),
                                      ("error", core.error, ERROR_LED_SECONDS)):
            stretcher = board.submodules[f"{name}_led"] = PulseStretcher(round(seconds * self.clock_hz))
            board.d.comb += [stretcher.i.eq(source), getattr(self, f"led_{name}").eq(stretcher.o)]

        board.submodules.heartbeat = heartbeat = Heartbeat(self.clock_hz // (2 * HEARTBEAT_HZ))
        board.d.comb += self.heartbeat.eq(heartbeat.o)
        m.submodules.board = ResetInserter(self.reset)(board)
        m.d.comb += core.reset.eq(self.reset)
        return m

def link_frames_per_second(input_size: int, output_size: int, baud: float) -> float:
    """The most frames per second the UART link carries: an INPUT frame in and an OUTPUT frame out per frame
    (docs/host-link.md), both directions at once (full duplex), so the longer of the two bounds it."""
    frame_bytes = max(HEADER_BYTES + WORD_BYTES * size + CRC_BYTES for size in (input_size, output_size))
    return baud / (BITS_PER_BYTE * frame_bytes)


def connect_to_pins(m: Module, platform, board: SerialBoard, extra_leds: dict | None = None) -> None:
    """Wire a SerialBoard to the platform's `uart 0` and LEDs (LED_BUSY ... LED_HEARTBEAT, and `extra_leds`:
    LED number -> 1-bit value)."""
    uart = platform.request("uart", 0, dir="-")
    m.submodules.uart_rx_pin = rx_pin = io.Buffer("i", uart.rx)
    m.submodules.uart_tx_pin = tx_pin = io.Buffer("o", uart.tx)
    m.d.comb += [board.rx.eq(rx_pin.i), tx_pin.o.eq(board.tx)]
    leds = {LED_BUSY: board.led_busy, LED_LINK: board.led_link, LED_ERROR: board.led_error,
            LED_HEARTBEAT: board.heartbeat, **(extra_leds or {})}
    for index, source in sorted(leds.items()):
        m.submodules[f"led{index}_pin"] = led = io.Buffer("o", platform.request("led", index, dir="-"))
        m.d.comb += led.o.eq(source)
