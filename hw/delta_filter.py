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

Lanes (design.lanes > 1, hw/lanes.py): an m word carries a group of `lanes` columns and `value` marks
the columns of the group that exist (the scheduler sends every existing column in delta mode, zeros too;
an x or y word uses lane 0). The memory holds `lanes` last values per row: a row per x and y column (lane 0
used) and one per m group, so a word reads and writes one row, its lanes side by side. The rule above
holds per lane; the output word goes out if at least one of its columns is sent, `value` then marks the
sent columns (the LaneUnpackers AND it with their own column masks) and `values` carry their deltas.

Pipeline (one word per cycle, all stages advancing together): the word's row is read as the word is taken;
in stage a, while the read completes, the threshold test's bounds `v - threshold` and `v + threshold` are
formed. The row as read is registered (stage b), behind no more than a multiplexer, and the new last
values and the sent bits are formed from that register (`base < v - threshold or base > v + threshold`:
one comparison per bound, no subtraction before them). Stage c registers the output word and the new row,
and writes that row back from its register, so no path runs from the memory's output to its write data in
one cycle. The output's delta is new - old, formed after the stage c register. The read (as the word
enters stage a) misses the writes of the three words ahead of it: the one written at that edge and the two
not yet at stage c. When the word is in stage b they are in c, d and e (d and e: the two rows written
last), and stage b takes the row of the youngest of them with the same address, else the row read: d's and
e's are known as the row read is registered and replace it there (they are in c and d then), so the loop
through stage b has one multiplexer (c's row). A word none of whose columns is sent leaves no word.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import BUSY_LAG, PHASE_PROJ, PHASE_R, RELAY_STAGES, STATUS_STAGES, AcceleratorDesign, memory_depth
from .interfaces import design_broadcast_layout, design_lane_broadcast_layout
from .status_flags import delayed_any

__all__ = ["DeltaFilter", "delta_columns"]


def delta_columns(design: AcceleratorDesign) -> list[tuple[int, int, int]]:
    """Per phase (hw/design.py): (first last-sent row, columns, threshold in words). A proj phase has a row
    per group of `design.lanes` columns, an x or recurrent phase one per column (module docstring)."""
    if not isinstance(design, AcceleratorDesign):
        raise TypeError(f"expected an AcceleratorDesign, got {type(design).__name__}")
    if not design.delta_mode:
        raise ValueError("the design is not in delta mode (its encoded model has no delta thresholds)")
    table, base = [], 0
    for l, (layer, thresholds) in enumerate(zip(design.layers, design.delta_thresholds)):
        has_proj = layer.proj_size is not None
        for columns, rows, threshold in ((layer.input_size, layer.input_size, thresholds.x),
                                         (layer.recurrent_size, layer.recurrent_size, thresholds.y),
                                         (layer.cell_size if has_proj else 0, design.lane_groups(l) if has_proj
                                          else 0, thresholds.m)):
            table.append((base, columns, threshold))
            base += rows
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
        Words: column `column` of phase `phase` has the value `value` (an x, y or m word). With lanes > 1
        `design_lane_broadcast_layout(design)`: columns `column + k` have `values[k]`, for the bits k set
        in `value` (the columns that exist).
    restart : In(1)
        With the word on `i`: its frame starts a sequence.
    o : Out(stream.Signature(design_broadcast_layout(design)))
        The sent columns, `value` = the delta; in the order of `i`, three cycles later at the earliest. With
        lanes > 1 the lane layout: `value` marks the sent columns, `values` their deltas.
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
        layout = design_broadcast_layout(design) if design.lanes == 1 else design_lane_broadcast_layout(design)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "restart": In(1),
            "o": Out(stream.Signature(layout)),
            "busy": Out(1),
            "proj_busy": Out(1),
        })

    def elaborate(self, platform):
        design = self._design
        lanes = design.lanes
        word_bits = design.value_bits - 1
        depth = memory_depth(design.delta_depth)
        m = Module()

        # one row holds the last values of a word's columns, lane by lane (module docstring)
        row_shape = signed(word_bits) if lanes == 1 else data.ArrayLayout(signed(word_bits), lanes)
        m.submodules.last_sent = memory = Memory(shape=row_shape, depth=depth, init=[])
        write = memory.write_port()
        read = memory.read_port()   # not transparent: the rows in flight are forwarded

        phases = range(len(self._columns))
        bases = Array(Const(base, range(depth + 1)) for base, _, _ in self._columns)   # + 1: an unused phase at the end
        thresholds = Array(Const(threshold, signed(word_bits + 1)) for _, _, threshold in self._columns)
        is_recurrent = Array(Const(int(p % 3 == PHASE_R), 1) for p in phases)
        is_proj = Array(Const(int(p % 3 == PHASE_PROJ), 1) for p in phases)

        # The pipeline advances as a whole (`enable`): stage a holds the word whose row the read port
        # fetched, stage b the row as read (registered behind one multiplexer, no arithmetic) and
        # the new last values formed from it, stage c the output word and the row written back, stage d
        # the row written last. The row read for the word in b misses the writes of the three words ahead
        # of it (in c, d and the one before d), so their rows are forwarded, the youngest first.
        enable = Signal()
        m.d.comb += enable.eq(~self.o.valid | self.o.ready)
        stages = "abcd"
        valid = {s: Signal(name=f"valid_{s}") for s in stages}
        addr = {s: Signal.like(read.addr, name=f"addr_{s}") for s in stages}
        word = {s: Signal.like(self.i.payload, name=f"word_{s}") for s in "abc"}
        restart = {s: Signal(name=f"restart_{s}") for s in "ab"}
        new_row = {s: Signal(row_shape, name=f"new_row_{s}") for s in "cd"}   # the rows written (back)
        row = self.i.payload.column
        if lanes > 1:   # an m word's group has a row, an x or y word's column one
            row = Mux(is_proj[self.i.payload.phase], self.i.payload.column >> (lanes.bit_length() - 1), row)
        m.d.comb += [
            self.i.ready.eq(enable),
            read.en.eq(enable),
            read.addr.eq(bases[self.i.payload.phase] + row),
        ]
        # stage b: the row read for its word, or the same row as the word in c or d wrote it (the youngest)
        read_row = Signal(row_shape)
        same_as_c = Signal()                # stage b: its row is the one of the word in c
        with m.If(enable):
            m.d.sync += [valid["a"].eq(self.i.valid), word["a"].eq(self.i.payload), restart["a"].eq(self.restart),
                         addr["a"].eq(read.addr),
                         valid["b"].eq(valid["a"]), word["b"].eq(word["a"]), restart["b"].eq(restart["a"]),
                         addr["b"].eq(addr["a"]), same_as_c.eq(valid["b"] & (addr["b"] == addr["a"]))]
            # the rows that will be in d and e are known now: resolved into read_row, which leaves one
            # forwarding multiplexer (stage c's row) in the loop through stage b
            with m.If(valid["c"] & (addr["c"] == addr["a"])):
                m.d.sync += read_row.eq(new_row["c"])
            with m.Elif(valid["d"] & (addr["d"] == addr["a"])):
                m.d.sync += read_row.eq(new_row["d"])
            with m.Else():
                m.d.sync += read_row.eq(read.data)
            for later, earlier in (("c", "b"), ("d", "c")):
                m.d.sync += [valid[later].eq(valid[earlier]), addr[later].eq(addr[earlier])]
            m.d.sync += new_row["d"].eq(new_row["c"])

        last_row = Signal(row_shape)        # stage b: the row as it stands after the words ahead of it
        m.d.comb += last_row.eq(Mux(same_as_c, new_row["c"], read_row))

        # per lane, the new last value: the threshold test against 0 at a restart, else against the stored
        # value. |value - base| > threshold is tested as base < value - threshold or base > value + threshold,
        # both bounds formed in stage a: one carry chain (a comparison) between the stored row and the new
        # one, not a subtraction followed by comparisons
        if lanes == 1:
            lane_words, lane_last = [word["a"].value], [last_row]
            lane_new = [Signal(signed(word_bits), name="new_last")]
        else:
            lane_words, lane_last = list(word["a"].values), list(last_row)
            lane_new = [Signal(signed(word_bits), name=f"new_last_{k}") for k in range(lanes)]
        current = word["b"]
        sent = Signal(lanes)
        for k in range(lanes):
            value_a = Mux(restart["a"] & is_recurrent[word["a"].phase], 0, lane_words[k])
            value = Signal(signed(word_bits), name=f"value_{k}")               # stage b
            low = Signal(signed(word_bits + 2), name=f"low_{k}")               # value - threshold
            high = Signal(signed(word_bits + 2), name=f"high_{k}")             # value + threshold
            with m.If(enable):
                m.d.sync += [value.eq(value_a), low.eq(value_a - thresholds[word["a"].phase]),
                             high.eq(value_a + thresholds[word["a"].phase])]
            base = Signal(signed(word_bits), name=f"base_{k}")
            moved = (base < low) | (base > high)
            if lanes > 1:
                # a lane without a column keeps its value, 0 from the start (a restart's base is 0 too):
                # it never counts as sent
                moved = moved & current.value[k]
            m.d.comb += [
                base.eq(Mux(restart["b"], 0, lane_last[k])),
                lane_new[k].eq(Mux(moved, value, base)),
                # new != last, with the comparisons formed beside the threshold test rather than after it
                sent[k].eq(Mux(moved, value != lane_last[k], restart["b"] & (lane_last[k] != 0))),
            ]

        # stage c: the output word, and the new row written from a register
        out_valid = Signal()
        out = word["c"]
        out_old = Signal(row_shape)
        with m.If(enable):
            m.d.sync += [out_valid.eq(valid["b"] & sent.any()), out.eq(current),
                         new_row["c"].eq(lane_new[0] if lanes == 1 else Cat(*lane_new)), out_old.eq(last_row)]
        m.d.comb += [
            write.addr.eq(addr["c"]),
            write.data.eq(new_row["c"]),
            write.en.eq(enable & valid["c"]),
        ]
        out_new = new_row["c"]
        m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.eq(out)]
        if lanes == 1:
            m.d.comb += self.o.payload.value.eq(out_new - out_old)
        else:
            sent_out = Signal(lanes)
            with m.If(enable):
                m.d.sync += sent_out.eq(sent)
            m.d.comb += self.o.payload.value.eq(sent_out)
            for k in range(lanes):
                m.d.comb += self.o.payload.values[k].eq(out_new[k] - out_old[k])

        held_proj = Signal()
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += held_proj.eq(is_proj[out.phase])
        with m.Elif(self.o.ready):
            m.d.sync += held_proj.eq(0)
        # the caller registers proj_busy once, a PE's flag STATUS_STAGES times, and a PE's flag counts a word from
        # the BUSY_LAG-th cycle after it left the broadcaster's relay: held_proj stays in the flag for the cycles
        # between (as the scheduler's own proj_word_held does, hw/scheduler.py)
        held_proj_before = delayed_any(m, held_proj, BUSY_LAG + STATUS_STAGES - 2 + RELAY_STAGES, "held_proj")
        m.d.comb += [
            self.busy.eq(valid["a"] | valid["b"] | out_valid),
            self.proj_busy.eq((valid["a"] & is_proj[word["a"].phase]) | (valid["b"] & is_proj[word["b"].phase])
                              | (out_valid & is_proj[out.phase]) | held_proj | held_proj_before),
        ]
        return m
