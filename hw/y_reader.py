"""The y memory and its reader: every layer's y, read back as broadcast words.

The y memory holds every layer's y (layer l at `design.y_bases[l]`): it is layer l+1's input and layer l's
recurrent input of the next frame. Words are written from `write` (the ProjReader, or the element-wise
output narrowed to y for a layer without projection). On `command.start` the reader sends every word of one
layer's y as the columns of one phase, three cycles after the read is issued: the block RAM's output goes
into a register of its own (it is slow to leave the RAM: the register becomes the RAM's output register), then
through a register slice (SkidBuffer) to the broadcaster's source multiplexer, whose registered `ready` is all
that the reader's state sees of the broadcaster's (#10: the broadcaster's `all_ready` across the chip into the
reader's `active` and index, 9.21 ns at 32 PEs; the slice straight after the RAM, its output into the slice's
two slots, 9.89 ns).

With several streams (docs/architecture.md, *Streams*) every stream has its own copy of every layer's y,
stream s at `s * design.y_depth`; words on `write` belong to the stream of the running proj readout (the
stream of the frame when it started), or, without one, to the scheduler's current `stream`.

The reader never overtakes a running proj readout (`readout`): while a layer's y words are being written it
reads only the ones already written (it follows one word behind), so the next layer and the next frame
start without waiting for the whole readout.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import NO_COLLISIONS, AcceleratorDesign, bits_for, memory_depth
from .interfaces import ReadoutStatusSignature, YReadCommandSignature, design_broadcast_layout, y_word_layout
from .skid import SkidBuffer

__all__ = ["YReader"]


class YReader(wiring.Component):
    """The y memory: y words in, one layer's y out as broadcast words.

    Parameters
    ----------
    design : AcceleratorDesign

    Attributes
    ----------
    write : In(stream.Signature(y_word_layout(design), always_ready=True))
        y words to store, one per cycle.
    readout : In(ReadoutStatusSignature(design))
        The proj readout whose words arrive on `write`: a read of its layer waits for each word.
    command : In(YReadCommandSignature(design))
        Start sending a layer's y as the columns of a phase; `busy` until the last word is taken.
    o : Out(stream.Signature(design_broadcast_layout(design)))
        Column c = y_layer[c], in order, with the commanded phase and accumulator copy.
    stream : In(range(design.streams))
        With more than one stream only: the stream of the frame the scheduler runs.
    """

    def __init__(self, design: AcceleratorDesign):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"YReader needs an AcceleratorDesign, got {type(design).__name__}")
        self._design = design
        super().__init__({
            "write": In(stream.Signature(y_word_layout(design), always_ready=True)),
            "readout": In(ReadoutStatusSignature(design)),
            "command": In(YReadCommandSignature(design)),
            "o": Out(stream.Signature(design_broadcast_layout(design))),
            **({"stream": In(range(design.streams))} if design.streams > 1 else {}),
        })

    def elaborate(self, platform):
        design = self._design
        m = Module()

        # no collisions: a word of the layer being written is read only once written (`written`, below)
        m.submodules.y_memory = y_memory = Memory(
            shape=signed(design.act_bits), depth=memory_depth(design.streams * design.y_depth), init=[],
            attrs=NO_COLLISIONS)
        read_port = y_memory.read_port()
        write_port = y_memory.write_port()
        m.submodules.out_slice = out_slice = SkidBuffer(self.o.payload.shape())
        wiring.connect(m, out_slice.o, wiring.flipped(self.o))

        widest = max(layer.recurrent_size for layer in design.layers)
        size_bits = bits_for(widest)
        address_bits = bits_for(design.streams * design.y_depth)
        y_bases = Array(Const(base, address_bits) for base in design.y_bases)
        y_sizes = Array(Const(layer.recurrent_size, size_bits) for layer in design.layers)

        active = Signal()
        valid_1 = Signal()              # a word at the memory's output
        valid_2 = Signal()              # a word in the output register
        index = Signal(size_bits)       # next word to read
        count = Signal(size_bits)
        base = Signal(address_bits)
        column_1 = Signal(size_bits)
        column_2 = Signal(size_bits)
        value_2 = Signal(signed(design.act_bits), reset_less=True)   # a reset would put a LUT after the RAM
        phase = Signal.like(self.command.phase)
        buffer = Signal()
        layer = Signal.like(self.command.layer)

        # the proj readout writes y_l one word per cycle: a read of y_l may follow right behind it
        readout_layer = Signal.like(self.readout.layer)
        written = Signal(size_bits + 1)
        allowed = ~self.readout.busy | (layer != readout_layer) | (index < written)
        write_address = y_bases[self.write.payload.layer] + self.write.payload.index
        if design.streams > 1:
            readout_stream = Signal.like(self.stream)
            read_stream = Signal.like(self.stream)
            with m.If(self.readout.start):
                m.d.sync += readout_stream.eq(self.stream)
            with m.If(self.command.start):
                m.d.sync += read_stream.eq(self.command.stream)
            allowed |= read_stream != readout_stream
            write_stream = Mux(self.readout.busy, readout_stream, self.stream)
            write_address += write_stream * design.y_depth
        issue = active & allowed
        advance = ~valid_2 | out_slice.i.ready

        m.d.comb += [
            write_port.en.eq(self.write.valid),
            write_port.addr.eq(write_address),
            write_port.data.eq(self.write.payload.value),
            read_port.addr.eq(base + index),
            read_port.en.eq(advance),
            out_slice.i.valid.eq(valid_2),
            out_slice.i.payload.phase.eq(phase),
            out_slice.i.payload.buffer.eq(buffer),
            out_slice.i.payload.column.eq(column_2),
            out_slice.i.payload.value.eq(value_2),
            self.command.busy.eq(active | valid_1 | valid_2 | out_slice.o.valid),
        ]

        with m.If(self.readout.start):
            m.d.sync += [readout_layer.eq(self.readout.layer), written.eq(0)]
        with m.Elif(self.write.valid):
            m.d.sync += written.eq(written + 1)

        with m.If(advance):
            m.d.sync += [valid_2.eq(valid_1), column_2.eq(column_1), value_2.eq(read_port.data),
                         valid_1.eq(issue)]
            with m.If(issue):
                m.d.sync += [column_1.eq(index), index.eq(index + 1)]
                with m.If(index + 1 == count):
                    m.d.sync += active.eq(0)
        with m.If(self.command.start):
            read_base = y_bases[self.command.layer]
            if design.streams > 1:
                read_base += self.command.stream * design.y_depth
            m.d.sync += [active.eq(1), index.eq(0), base.eq(read_base),
                         count.eq(y_sizes[self.command.layer]), phase.eq(self.command.phase),
                         buffer.eq(self.command.buffer), layer.eq(self.command.layer)]
        return m
