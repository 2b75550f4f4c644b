"""The output buffer and its streamer: the last layer's y of one frame -> the accelerator's output stream.

The buffer holds the last layer's y of one frame while the streamer sends it, so a slow output consumer
stalls the accelerator only when the next frame's output is ready. Words of the last layer arriving on
`write` are stored; `start` sends the whole buffer, word 0 .. output_size-1, `last` on the final word. The
buffer's read register is the output register.

A board top or a host link (UART framing) consumes `o` as it is; it needs no change here.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import AcceleratorDesign, memory_depth
from .interfaces import output_word_layout, y_word_layout

__all__ = ["OutputStreamer"]


class OutputStreamer(wiring.Component):
    """The output buffer: the last layer's y words in, one frame at a time out.

    Parameters
    ----------
    design : AcceleratorDesign

    Attributes
    ----------
    write : In(stream.Signature(y_word_layout(design), always_ready=True))
        y words of every layer; those of the last layer are stored at their index.
    start : In(1)
        Send the buffer (a pulse, only while not `busy`; the frame's words must all be written, and no
        word of the next frame may be written before they have been read).
    o : Out(stream.Signature(output_word_layout(design.act_bits)))
        The frame's words in order, `last` on word output_size-1.
    busy : Out(1)
        A frame is being sent.
    frames_done : Out(params.counter_bits)
        Frames completely sent.
    """

    def __init__(self, design: AcceleratorDesign):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"OutputStreamer needs an AcceleratorDesign, got {type(design).__name__}")
        self._design = design
        super().__init__({
            "write": In(stream.Signature(y_word_layout(design), always_ready=True)),
            "start": In(1),
            "o": Out(stream.Signature(output_word_layout(design.act_bits))),
            "busy": Out(1),
            "frames_done": Out(design.params.counter_bits),
        })

    def elaborate(self, platform):
        design = self._design
        output_size = design.output_size
        m = Module()

        m.submodules.output_buffer = output_buffer = Memory(
            shape=signed(design.act_bits), depth=memory_depth(output_size), init=[])
        read_port = output_buffer.read_port()
        write_port = output_buffer.write_port()

        active = Signal()
        valid = Signal()
        index = Signal(range(output_size + 1))        # next word to read
        last = Signal()                               # the word in the read register is the frame's last
        # The count follows the sent last word a cycle late, from a flip-flop: its 32-bit enable behind the
        # consumer's handshake and `last` crossed the chip (#10: the routed design's worst path, 9.6 ns).
        # `busy` covers that cycle.
        sent_last = Signal()
        advance = ~valid | self.o.ready
        m.d.comb += [
            write_port.en.eq(self.write.valid & (self.write.payload.layer == design.n_layers - 1)),
            write_port.addr.eq(self.write.payload.index),
            write_port.data.eq(self.write.payload.value),
            read_port.addr.eq(index),
            read_port.en.eq(advance),
            self.o.valid.eq(valid),
            self.o.payload.value.eq(read_port.data),
            self.o.payload.last.eq(last),
            self.busy.eq(active | valid | sent_last),
        ]

        with m.If(advance):
            m.d.sync += valid.eq(active)
            with m.If(active):
                m.d.sync += [last.eq(index == output_size - 1), index.eq(index + 1)]
                with m.If(index + 1 == output_size):
                    m.d.sync += active.eq(0)
        m.d.sync += sent_last.eq(self.o.valid & self.o.ready & last)
        with m.If(sent_last):
            m.d.sync += self.frames_done.eq(self.frames_done + 1)
        with m.If(self.start):
            m.d.sync += [active.eq(1), index.eq(0)]
        return m
