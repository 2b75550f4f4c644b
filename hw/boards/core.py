"""The board-independent part of a board top: the accelerator behind the host link, on byte streams."""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.host_link import CRC_BYTES, HEADER_BYTES, WORD_BYTES
from ..accelerator import Accelerator
from ..design import AcceleratorDesign
from ..skid import SkidBuffer
from .host_link import HostLink

__all__ = ["BoardCore", "default_rx_buffer_bytes"]

MIN_RX_BUFFER_BYTES = 2048      # one ECP5 block RAM (DP16KD, 2048 x 9)


def default_rx_buffer_bytes(input_size: int) -> int:
    """A power of two holding at least two input frames (the host keeps up to that many unanswered)."""
    frame = HEADER_BYTES + WORD_BYTES * input_size + CRC_BYTES
    size = MIN_RX_BUFFER_BYTES
    while size < 2 * frame:
        size *= 2
    return size


class BoardCore(wiring.Component):
    """An Accelerator and the HostLink that feeds it, reset by the link's RESET command. The two meet through a
    register slice on each stream (reset with the accelerator): the link sits by the UART's pins, the accelerator
    wherever the placer puts it, and at 32 PEs the accelerator's input `ready` through the link's parser into its
    CRC register's enable was the board top's worst path (#10: 9.32 ns with seed 1).

    Ports:
      reset                In(1): the board's reset (for a top whose clock domain has none: the accelerator's
                           reset then comes from one flip-flop, not an OR of two in front of its every register)
      rx, rx_overrun, tx   as HostLink (bytes from and to the UART)
      busy                 Out(1): the accelerator has a frame in flight (registered: a cycle late, for an LED)
      activity, error      as HostLink (for status LEDs)

    Parameters: the AcceleratorDesign, the model id (docs/host-link.md), the clock frequency in Hz, the link's
    timeout and quiet times in cycles, the receive buffer in bytes (default: default_rx_buffer_bytes), and
    `reset_buffer`: a factory of a component with ports `i` In(1) and `o` Out(1) that carries the accelerator's
    reset from its flip-flop to the accelerator's registers (the ULX3S: a global network, ECP5GlobalBuffer);
    None: a wire.
    """

    def __init__(self, design: AcceleratorDesign, model_id: bytes, *, clock_hz: int, timeout_cycles: int,
                 quiet_cycles: int, rx_buffer_bytes: int | None = None,
                 reset_buffer: Callable[[], wiring.Component] | None = None):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"BoardCore needs an AcceleratorDesign, got {type(design).__name__}")
        if reset_buffer is not None and not callable(reset_buffer):
            raise TypeError(f"reset_buffer must make a component (a class or function), got {reset_buffer!r}")
        self.reset_buffer = None if reset_buffer is None else reset_buffer()
        if self.reset_buffer is not None and not (isinstance(self.reset_buffer, wiring.Component)
                                                  and {"i", "o"} <= set(self.reset_buffer.signature.members)):
            raise TypeError(f"reset_buffer must make a component with ports i and o, got {self.reset_buffer!r}")
        self.design = design
        self.accelerator = Accelerator(design)
        self.link = HostLink(
            input_layout=self.accelerator.i.payload.shape(),
            output_layout=self.accelerator.o.payload.shape(),
            input_size=design.input_size, output_size=design.output_size, model_id=model_id,
            counter_bits=len(self.accelerator.frames_done), cycle_counter_bits=len(self.accelerator.cycles),
            rx_buffer_bytes=rx_buffer_bytes or default_rx_buffer_bytes(design.input_size),
            timeout_cycles=timeout_cycles, quiet_cycles=quiet_cycles, clock_hz=clock_hz)
        super().__init__({
            "reset": In(1),
            "rx": In(stream.Signature(8)),
            "rx_overrun": In(1),
            "tx": Out(stream.Signature(8)),
            "busy": Out(1),
            "activity": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        accelerator, link = self.accelerator, self.link
        # the link's reset from a flip-flop of its own, which the placer can put among the link's registers: the
        # board's reset comes from a synchronizer by the button's pin (#10: its route to the link's counters took
        # 9.0 ns in a 16-PE board top)
        link_reset = Signal()      # configuration leaves the link's registers at their reset values
        m.submodules.link = ResetInserter(link_reset)(link)
        accelerator_reset = Signal(init=1)      # high from configuration until the board's reset is released
        if self.reset_buffer is None:
            distributed_reset = accelerator_reset
        else:
            m.submodules.reset_buffer = self.reset_buffer
            m.d.comb += self.reset_buffer.i.eq(accelerator_reset)
            distributed_reset = self.reset_buffer.o
        m.submodules.accelerator = ResetInserter(distributed_reset)(accelerator)
        input_slice = SkidBuffer(accelerator.i.payload.shape())
        output_slice = SkidBuffer(accelerator.o.payload.shape())
        m.submodules.input_slice = ResetInserter(distributed_reset)(input_slice)
        m.submodules.output_slice = ResetInserter(distributed_reset)(output_slice)
        wiring.connect(m, wiring.flipped(self.rx), link.rx)
        wiring.connect(m, link.tx, wiring.flipped(self.tx))
        wiring.connect(m, link.i, input_slice.i)
        wiring.connect(m, input_slice.o, accelerator.i)
        wiring.connect(m, accelerator.o, output_slice.i)
        wiring.connect(m, output_slice.o, link.o)
        m.d.comb += [
            link.rx_overrun.eq(self.rx_overrun),
            link.busy.eq(accelerator.busy),
            link.frames_done.eq(accelerator.frames_done),
            link.cycles.eq(accelerator.cycles),
            self.activity.eq(link.activity),
            self.error.eq(link.error),
        ]
        m.d.sync += [link_reset.eq(self.reset), accelerator_reset.eq(self.reset | link.accelerator_reset),
                     # a status LED: a register by the accelerator, so its `busy` (from the output queue's
                     # state) does not cross the chip to the LED's register (#10: 8.23 ns, 16-PE seed 3)
                     self.busy.eq(accelerator.busy)]
        return m
