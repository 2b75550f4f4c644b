"""The input engine: the accelerator's input words -> broadcast words of layer 0's input phase.

It counts the words of a frame (column 0 .. input_size-1) and turns each into a broadcast word of phase 0
(layer 0, input columns) for the accumulator copy `buffer`. The scheduler enables it in X_INPUT and, for the
*next* frame, during the last layer's element-wise pass (prefetch into the other copy of layer 0's gate
accumulators); when a frame's words are all in (`complete`), the scheduler `rewind`s it for the next one.

In delta mode it also says, with each word, whether the word's frame starts a sequence (`restart`): the
words of the next frame may flow while the scheduler still runs the current one.

A different input (a host link with its own framing, a delta-encoded input stream) is a different component
with the same `o` and frame-status ports.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .design import AcceleratorDesign, PHASE_X, bits_for, phase_index
from .interfaces import design_broadcast_layout, input_word_layout

__all__ = ["InputEngine"]


class InputEngine(wiring.Component):
    """Input words of one frame at a time -> broadcast words (layer 0, input phase).

    Parameters
    ----------
    design : AcceleratorDesign

    Attributes
    ----------
    i : In(stream.Signature(input_word_layout(design.act_bits)))
        The accelerator's input words, `input_size` per frame; `first` counts on a frame's first word only.
    o : Out(stream.Signature(design_broadcast_layout(design)))
        Column c of phase 0 with accumulator copy `buffer`; valid while `enable` and the frame is not
        complete. `i` is ready exactly when the word is taken on `o` (no register in between).
    enable : In(1)
        Words may be sent.
    buffer : In(1)
        Accumulator copy of layer 0 the words go to.
    rewind : In(1)
        Start the next frame at column 0 (only while `complete`).
    complete : Out(1)
        Every word of the current frame has been taken.
    started : Out(1)
        The current frame's first word has been taken (or is taken this cycle).
    frame_start : Out(1)
        The current frame's first word is taken this cycle; `sequence_start` is its `first` bit.
    sequence_start : Out(1)
    restart : Out(1)
        Delta mode only: the frame of the word on `o` starts a sequence (its first word's `first`).
    """

    def __init__(self, design: AcceleratorDesign):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"InputEngine needs an AcceleratorDesign, got {type(design).__name__}")
        self._design = design
        delta = {"restart": Out(1)} if design.delta_mode else {}
        super().__init__({
            "i": In(stream.Signature(input_word_layout(design.act_bits))),
            "o": Out(stream.Signature(design_broadcast_layout(design))),
            "enable": In(1),
            "buffer": In(1),
            "rewind": In(1),
            "complete": Out(1),
            "started": Out(1),
            "frame_start": Out(1),
            "sequence_start": Out(1),
            **delta,
        })

    def elaborate(self, platform):
        input_size = self._design.input_size
        m = Module()

        column = Signal(bits_for(input_size))
        taken = Signal()
        m.d.comb += [
            self.complete.eq(column == input_size),
            self.o.valid.eq(self.enable & ~self.complete & self.i.valid),
            self.o.payload.phase.eq(phase_index(0, PHASE_X)),
            self.o.payload.buffer.eq(self.buffer),
            self.o.payload.column.eq(column),
            self.o.payload.value.eq(self.i.payload.value),
            self.i.ready.eq(self.o.ready & self.enable & ~self.complete),
            taken.eq(self.i.valid & self.i.ready),
            self.frame_start.eq(taken & (column == 0)),
            self.sequence_start.eq(self.i.payload.first),
            self.started.eq((column != 0) | taken),
        ]

        if self._design.delta_mode:
            sequence = Signal()       # `first` of the current frame's first word
            with m.If(self.frame_start):
                m.d.sync += sequence.eq(self.i.payload.first)
            m.d.comb += self.restart.eq(Mux(column == 0, self.i.payload.first, sequence))

        with m.If(self.rewind):
            m.d.sync += column.eq(0)
        with m.Elif(taken):
            m.d.sync += column.eq(column + 1)
        return m
