"""The delta filter of delta mode: broadcast words -> the deltas of the columns that moved enough.

Delta mode (docs/numerics.md, "Delta mode"; docs/architecture.md): per layer and side (x: the gate
matrix's input columns, y: its recurrent columns, m: the projection's columns) the filter keeps the last
value sent of every column in one memory, and for each word `v` of column c

    delta = v - last[c];  sent iff |delta| > threshold of the side;  if sent: last[c] = v, send delta

so the PEs add `W[:, c] * delta` to accumulators that keep their sums (`acc = b + W * last` after every
frame). Sequence start (`restart`): the state must become `last = 0, acc = b` before the frame. Rather
than resetting the accumulators, the filter takes back the old sequence's columns: it sends, in the same
word, the difference between the new last value (`v` if |v| > threshold, else 0; 0 for a recurrent column,
whose yprev is 0) and the old one, which keeps the invariant and leaves the sums exactly where a reset and
the frame's first deltas would. Every column goes through the filter in every frame (the scheduler does
not skip R_READ in delta mode), so nothing else is reset, ever; the memory starts at 0 and the gate
accumulators at the bias.

Pipeline: the word's last value is read as the word is taken (the read port is transparent to the write
of the word before, which may be the same column); the cycle after, the new last value is formed, written
and registered with the old one, and the output's delta is their difference, formed after that register
(the block RAM's output, a subtraction and the threshold test fill a cycle already). A column not sent
leaves no word.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import PHASE_PROJ, PHASE_R, AcceleratorDesign, memory_depth
from .interfaces import design_broadcast_layout

__all__ = ["DeltaFilter", "delta_columns"]


def delta_columns(design: AcceleratorDesign) -> list[tuple[int, int, int]]:
    """Per phase (hw/design.py): (first last-sent address, columns, threshold in words)."""
    if not isinstance(design, AcceleratorDesign):
        raise TypeError(f"expected an AcceleratorDesign, got {type(design).__name__}")
    if not design.delta_mode:
        raise ValueError("the design is not in delta mode (its encoded model has no delta thresholds)")
    table, base = [], 0
    for layer, thresholds in zip(design.layers, design.delta_thresholds):
        proj_columns = layer.cell_size if layer.proj_size is not None else 0
        for columns, threshold in ((layer.input_size, thresholds.x), (layer.recurrent_size, thresholds.y),
                                   (proj_columns, thresholds.m)):
            table.append((base, columns, threshold))
            base += columns
    return table


class DeltaFilter(wiring.Component):
    """Words of every phase in, the deltas of the sent columns out (module docstring).

    Parameters
    ----------
    design : AcceleratorDesign
        In delta mode.

    Attributes
    ----------
    i : In(stream.Signature(design_broadcast_layout(design)))
        Words: column `column` of phase `phase` has the value `value` (an x, y or m word).
    restart : In(1)
        With the word on `i`: its frame starts a sequence.
    o : Out(stream.Signature(design_broadcast_layout(design)))
        The sent columns, `value` = the delta; in the order of `i`, two cycles later at the earliest.
    busy : Out(1)
        A word is in the filter.
    proj_busy : Out(1)
        A proj-phase word is in the filter, or was taken from `o` by the Broadcaster (hw/broadcast.py)
        and is still held there: it is not in the PEs' FIFOs yet. `o.ready` without a word taken means
        the Broadcaster's register empties at this edge.
    """

    def __init__(self, design: AcceleratorDesign):
        self._columns = delta_columns(design)
        self._design = design
        layout = design_broadcast_layout(design)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "restart": In(1),
            "o": Out(stream.Signature(layout)),
            "busy": Out(1),
            "proj_busy": Out(1),
        })

    def elaborate(self, platform):
        design = self._design
        word_bits = design.value_bits - 1
        depth = memory_depth(design.delta_depth)
        m = Module()

        m.submodules.last_sent = memory = Memory(shape=signed(word_bits), depth=depth, init=[])
        write = memory.write_port()
        read = memory.read_port(transparent_for=(write,))

        phases = range(len(self._columns))
        bases = Array(Const(base, range(depth + 1)) for base, _, _ in self._columns)   # + 1: an unused phase at the end
        # |change| > threshold as two comparisons side by side, not a negation followed by one
        above = Array(Const(threshold, signed(word_bits + 1)) for _, _, threshold in self._columns)
        below = Array(Const(-threshold, signed(word_bits + 1)) for _, _, threshold in self._columns)
        is_recurrent = Array(Const(int(p % 3 == PHASE_R), 1) for p in phases)
        is_proj = Array(Const(int(p % 3 == PHASE_PROJ), 1) for p in phases)

        # stage 1: the word, its address, and its column's last value on the read port
        enable = Signal()
        word_valid = Signal()
        word = Signal.like(self.i.payload)
        word_restart = Signal()
        word_addr = Signal.like(read.addr)
        out_valid = Signal()
        out = Signal.like(self.o.payload)
        out_new = Signal(signed(word_bits))      # the column's new and old last values: delta = new - old
        out_old = Signal(signed(word_bits))
        m.d.comb += [
            enable.eq(~out_valid | self.o.ready),
            self.i.ready.eq(enable),
            read.en.eq(enable),
            read.addr.eq(bases[self.i.payload.phase] + self.i.payload.column),
        ]
        with m.If(enable):
            m.d.sync += [word_valid.eq(self.i.valid), word.eq(self.i.payload), word_restart.eq(self.restart),
                         word_addr.eq(read.addr)]

        # the new last value: the threshold test against 0 at a restart, else against the stored value
        last = read.data
        value = Signal(signed(word_bits))
        base = Signal(signed(word_bits))
        change = Signal(signed(word_bits + 1))
        new_last = Signal(signed(word_bits))
        m.d.comb += [
            value.eq(Mux(word_restart & is_recurrent[word.phase], 0, word.value)),
            base.eq(Mux(word_restart, 0, last)),
            change.eq(value - base),
            new_last.eq(Mux((change > above[word.phase]) | (change < below[word.phase]), value, base)),
            write.addr.eq(word_addr),
            write.data.eq(new_last),
            write.en.eq(enable & word_valid),
        ]
        with m.If(enable):
            m.d.sync += [out_valid.eq(word_valid & (new_last != last)), out.eq(word), out_new.eq(new_last),
                         out_old.eq(last)]
        m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.eq(out), self.o.payload.value.eq(out_new - out_old)]

        held_proj = Signal()
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += held_proj.eq(is_proj[out.phase])
        with m.Elif(self.o.ready):
            m.d.sync += held_proj.eq(0)
        m.d.comb += [
            self.busy.eq(word_valid | out_valid),
            self.proj_busy.eq((word_valid & is_proj[word.phase]) | (out_valid & is_proj[out.phase]) | held_proj),
        ]
        return m
