"""The output buffer and its streamer: the last layer's y of one frame -> the accelerator's output stream.

The buffer holds the last layer's y of one frame while the streamer sends it, so a slow output consumer
stalls the accelerator only when the next frame's output is ready. Words of the last layer arriving on
`write` are stored; `start` sends the whole buffer, word 0 .. output_size-1, `last` on the final word. The
buffer is read ahead, as long as a small queue has room for the words read, into a register and that queue,
whose output register is the output register.

A board top or a host link (UART framing) consumes `o` as it is; it needs no change here.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import NO_COLLISIONS, AcceleratorDesign, memory_depth
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

    QUEUE_DEPTH = 8     # covers the credits' round trip (read, register, queue, its output register)

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

        # no collisions: the scheduler starts the last layer's readout only once the streamer is idle
        m.submodules.output_buffer = output_buffer = Memory(
            shape=signed(design.act_bits), depth=memory_depth(output_size), init=[], attrs=NO_COLLISIONS)
        read_port = output_buffer.read_port()
        write_port = output_buffer.write_port()
        # The buffer is read ahead into a queue under credits: the block RAM's output goes into a register and
        # no handshake reaches the read (#10: the RAM's output through the output slice's multiplexer was a
        # routed late path, and its enable came from the consumer's ready)
        word_layout = output_word_layout(design.act_bits)
        m.submodules.queue = queue = SyncFIFOBuffered(width=word_layout.size, depth=self.QUEUE_DEPTH)
        queued = Signal(word_layout)

        active = Signal()
        index = Signal(range(output_size + 1))        # next word to read
        issue = Signal()
        credits_used = Signal(range(self.QUEUE_DEPTH + 1))   # words read and not yet sent
        valid_1, last_1 = Signal(), Signal()          # a word on the read port's output
        valid_2, last_2 = Signal(), Signal()          # ... and in a register
        word_2 = Signal(signed(design.act_bits), reset_less=True)
        sent = Signal()
        # The count follows the sent last word a cycle late, from a flip-flop: its 32-bit enable behind the
        # consumer's handshake and `last` crossed the chip (#10: the routed design's worst path, 9.6 ns).
        # `busy` covers that cycle.
        sent_last = Signal()
        # `index` is the buffer's last word, as a flip-flop: `active` and its enable end one LUT after `index`,
        # not behind the increment's carry chain and a comparison (#10: 8.74 ns at 32 PEs)
        at_last = Signal()
        m.d.comb += [
            write_port.en.eq(self.write.valid & (self.write.payload.layer == design.n_layers - 1)),
            write_port.addr.eq(self.write.payload.index),
            write_port.data.eq(self.write.payload.value),
            issue.eq(active & (credits_used < self.QUEUE_DEPTH)),
            read_port.addr.eq(index),
            queue.w_en.eq(valid_2),
            queued.value.eq(word_2),
            queued.last.eq(last_2),
            queue.w_data.eq(queued),
            self.o.valid.eq(queue.r_rdy),
            self.o.payload.eq(queue.r_data),
            queue.r_en.eq(self.o.ready),
            sent.eq(self.o.valid & self.o.ready),
            self.busy.eq(active | valid_1 | valid_2 | queue.r_rdy | sent_last),
        ]

        m.d.sync += [
            credits_used.eq(credits_used + issue - sent),
            valid_1.eq(issue),
            last_1.eq(at_last),
            valid_2.eq(valid_1),
            last_2.eq(last_1),
            word_2.eq(read_port.data),
            sent_last.eq(sent & self.o.payload.last),
        ]
        with m.If(issue):
            m.d.sync += [index.eq(index + 1), at_last.eq(index == output_size - 2 if output_size > 1 else 0)]
            with m.If(at_last):
                m.d.sync += active.eq(0)
        with m.If(sent_last):
            m.d.sync += self.frames_done.eq(self.frames_done + 1)
        with m.If(self.start):
            m.d.sync += [active.eq(1), index.eq(0), at_last.eq(output_size == 1)]
        return m
