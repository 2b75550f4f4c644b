"""The scheduler: the frame / layer state machine that steers the input engine, the y reader, the
readouts and the output streamer, and chooses what the broadcaster sends.

Per frame, for each layer l (docs/architecture.md has the timeline):

    X_SETUP   layer > 0: point the y reader at y_{l-1}
    X_INPUT   layer 0: wait until the input engine has sent the frame's input words (phase x of layer 0);
              the frame's first word latches `first`
    X_READ    layer > 0: y_{l-1} from the y memory -> broadcast (phase x of layer l)
    R_SETUP   at a sequence start skip yprev (it is 0), else point the y reader at y_l
    R_READ    y_l (previous frame) -> broadcast (phase r of layer l)
    DRAIN_G   wait until the broadcaster and every PE are idle: the gate accumulators are final
    EW        CellReader streams the cells into the element-wise lanes, a group of `lanes` cells per cycle;
              each group's m words are broadcast as columns of the proj phase in one word (so the
              projection runs during the element-wise pass), or, without a projection, narrowed to y_l[j]
              and written to the y memory one per cycle. Independent words are
              interleaved: in the last layer the next frame's input words (into the other copy of layer
              0's accumulators), else layer l+1's recurrent words (whose R_READ is then skipped)
    DRAIN_P   (projection) wait until no proj word is held, queued or in flight; start the ProjReader
    LAYER_END next layer, or for the last layer: hand the frame to the output streamer, next frame

Streams (docs/architecture.md, *Streams*): frame k belongs to stream k mod `streams`; the y memory and
the cell state have a part per stream (`stream` selects it). The next frame is another stream's, so in the
last layer's EW, DRAIN_P and LAYER_END its recurrent words (that stream's y, written long before) follow
its input words into the other copy of layer 0's accumulators, and its R_READ only finishes them.

Delta mode (docs/architecture.md): the words go through a DeltaFilter, with `restart` telling it whether
the word's frame starts a sequence; R_READ is not skipped at a sequence start (the filter takes back the
recurrent columns sent in the old sequence). The next frame's input flows during the last layer's
element-wise pass as without delta mode: with one layer into the other copy of the frame's deltas (split
sums, hw/design.py), with more into layer 0's accumulators, which that pass does not read.

The datapath lives in the components: InputEngine (hw/input_engine.py), YReader and the y memory
(hw/y_reader.py), OutputStreamer and the output buffer (hw/output_streamer.py). What stays here is which
source the broadcaster takes in each state, the y words' source (ProjReader, or m narrowed to y for a layer
without projection), and the frame / layer bookkeeping.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .design import (BUSY_LAG, PHASE_PROJ, PHASE_R, PHASES_PER_LAYER, RELAY_STAGES, STATUS_STAGES, AcceleratorDesign,
                     bits_for)
from .fixed import round_shift_saturate
from .input_engine import InputEngine
from .interfaces import (ReadoutCommandSignature, ReadoutStatusSignature, design_broadcast_layout,
                         design_lane_broadcast_layout, elementwise_group_out_layout, input_word_layout,
                         output_word_layout, y_word_layout)
from .output_streamer import OutputStreamer
from .status_flags import delayed_any
from .y_reader import YReader

__all__ = ["Scheduler"]


class Scheduler(wiring.Component):
    """The frame / layer state machine of the accelerator.

    Parameters
    ----------
    design : AcceleratorDesign

    Attributes
    ----------
    i : In(stream.Signature(input_word_layout(design.act_bits)))
        The accelerator's input stream.
    o : Out(stream.Signature(output_word_layout(design.act_bits)))
        The accelerator's output stream.
    bcast : Out(stream.Signature(design_broadcast_layout(design)))
        To the broadcaster; `design_lane_broadcast_layout(design)` with more than one lane (a group's m
        words in one word, x and y words in lane 0).
    m : In(stream.Signature(elementwise_group_out_layout(...)))
        From the element-wise lanes (hw/lanes.py): the m words of a group of `lanes` cells.
    cells : Out(ReadoutCommandSignature(design, cell_readout=True))
        To the CellReader.
    proj : Out(ReadoutCommandSignature(design, cell_readout=False))
        To the ProjReader (only when a layer has a projection).
    y : In(stream.Signature(y_word_layout(design), always_ready=True))
        y words from the ProjReader (only when a layer has a projection).
    proj_status : In(ReadoutStatusSignature(design))
        The ProjReader's readout as it runs, for the YReader (only when a layer has a projection).
    pes_busy, pes_proj_busy : In(1)
        Some PE had work / proj work queued or in flight STATUS_STAGES cycles before (registered by the
        caller, per region and then once: the OR of every PE's flag spans the chip), counting a broadcast word
        from the BUSY_LAG-th cycle after it reached the PE. The drains allow for that: see `pipeline_idle`.
    bcast_busy : In(1)
        The broadcaster (or the delta filter in front of it) holds a word.
    stream : Out(range(design.streams))
        With more than one stream only: the stream of the current frame (element-wise lanes, y memory).
    restart : Out(1)
        Delta mode only: the word on `bcast` belongs to a frame that starts a sequence.
    busy : Out(1)
        A frame is in flight (and one cycle more, while `cycles` counts the last).
    frames_done : Out(params.counter_bits)
        Frames completely sent on `o`.
    cycles : Out(params.cycle_counter_bits)
        Clock cycles with a frame in flight.
    """

    def __init__(self, design: AcceleratorDesign):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"Scheduler needs an AcceleratorDesign, got {type(design).__name__}")
        self._design = design
        self._has_proj = any(layer.proj_size is not None for layer in design.layers)
        members = {
            "i": In(stream.Signature(input_word_layout(design.act_bits))),
            "o": Out(stream.Signature(output_word_layout(design.act_bits))),
            "bcast": Out(stream.Signature(design_broadcast_layout(design) if design.lanes == 1
                                          else design_lane_broadcast_layout(design))),
            "m": In(stream.Signature(elementwise_group_out_layout(
                design.numerics.unit_bits, design.layer_bits, design.group_bits, design.lanes))),
            "cells": Out(ReadoutCommandSignature(design, cell_readout=True)),
            "pes_busy": In(1),
            "pes_proj_busy": In(1),
            "bcast_busy": In(1),
            "busy": Out(1),
            "frames_done": Out(design.params.counter_bits),
            "cycles": Out(design.params.cycle_counter_bits),
        }
        if design.delta_mode:
            members["restart"] = Out(1)
        if design.streams > 1:
            members["stream"] = Out(range(design.streams))
        if self._has_proj:
            members["proj"] = Out(ReadoutCommandSignature(design, cell_readout=False))
            members["y"] = In(stream.Signature(y_word_layout(design), always_ready=True))
            members["proj_status"] = In(ReadoutStatusSignature(design))
        super().__init__(members)

    def elaborate(self, platform):
        design = self._design
        layers = design.layers
        n_layers = design.n_layers
        m = Module()

        # ---- submodules ----------------------------------------------------------------------------------
        m.submodules.input_engine = input_engine = InputEngine(design)
        m.submodules.y_reader = y_reader = YReader(design)
        m.submodules.output_streamer = output_streamer = OutputStreamer(design)

        # ---- connections ---------------------------------------------------------------------------------
        y_words = stream.Signature(y_word_layout(design), always_ready=True).create()
        wiring.connect(m, wiring.flipped(self.i), input_engine.i)
        wiring.connect(m, output_streamer.o, wiring.flipped(self.o))
        for consumer in (y_reader.write, output_streamer.write):   # fan-out: both consumers are always ready
            m.d.comb += [consumer.valid.eq(y_words.valid), consumer.payload.eq(y_words.payload)]

        # ---- per-layer constants and state ---------------------------------------------------------------
        lanes = design.lanes
        cell_sizes = Array(Const(l.cell_size, bits_for(max(l.cell_size for l in layers))) for l in layers)
        group_counts = Array(Const(design.lane_groups(l), design.group_bits + 1) for l in range(n_layers))
        has_proj = Array(Const(int(l.proj_size is not None), 1) for l in layers)
        layer = Signal(design.layer_bits)
        is_last_layer = layer == n_layers - 1
        phase_x = layer * PHASES_PER_LAYER
        seq_start = Signal()          # the current frame starts a sequence
        frame_active = Signal()
        frame_parity = Signal()       # layer 0's accumulator copy of the current frame
        m_count = Signal(design.group_bits + 1)       # m groups taken in EW (0 outside it)
        m_passed = Signal()                           # EW: the pass's last m group was taken a cycle ago
        m_lane = Signal(range(max(2, lanes)))     # without a projection: the lane of the group turned into y
        first_cell = self.m.payload.group * lanes  # cell of lane 0 of the group
        recurrent_ahead = Signal()    # layer l+1's recurrent words were started during layer l's EW
        out_pending = Signal()        # the last layer's ProjReader is still filling the output buffer
        proj_word_held = Signal()     # the broadcaster's register may hold a proj word not yet in the FIFOs
        proj_busy = self.proj.busy if self._has_proj else Const(0)
        output_busy = output_streamer.busy | out_pending
        # pes_busy is STATUS_STAGES cycles old and a PE's flag counts a word from the BUSY_LAG-th cycle after it
        # arrived, so the flags of the broadcaster's side must have been low for the BUSY_LAG + STATUS_STAGES - 1
        # cycles before too: a word that was with the broadcaster then may be with a PE now (and a PE takes work
        # from nowhere else). The same holds
        # for proj words and proj_word_held, which covers only the broadcaster's word register: a proj word leaves
        # it RELAY_STAGES cycles before a PE has it.
        flags_lag = BUSY_LAG + STATUS_STAGES - 1
        bcast_busy_before = delayed_any(m, self.bcast_busy, flags_lag, "bcast_busy")
        proj_word_held_before = delayed_any(m, proj_word_held, flags_lag + RELAY_STAGES, "proj_word_held")
        pipeline_idle = Signal()      # both flip-flops, a cycle late (bookkeeping below)
        proj_words_gone = Signal()

        # ---- y words: from the element-wise pass (no projection) or the ProjReader ----------------------
        m_to_y = Signal()             # set by the FSM in EW for a layer without projection
        narrowed_m = Signal(signed(design.act_bits))
        lane_m = self.m.payload.m[m_lane]
        per_layer_m = {index: round_shift_saturate(m, lane_m, design.y_shift(index), design.act_bits)
                       for index, info in enumerate(layers) if info.proj_size is None}
        with m.Switch(self.m.payload.layer):
            for index, value in per_layer_m.items():
                with m.Case(index):
                    m.d.comb += narrowed_m.eq(value)
        # The two sources never give a word in the same cycle (a layer's element-wise pass starts after the
        # previous readout has been read back), so the payload is chosen by the ProjReader's valid, a flip-flop,
        # not by the state machine's decode (#10: the state through `m_to_y` into the y memory's and the output
        # buffer's write data was a routed late path)
        m.d.comb += [y_words.valid.eq(m_to_y & self.m.valid), y_words.payload.layer.eq(self.m.payload.layer),
                     y_words.payload.index.eq(first_cell + m_lane), y_words.payload.value.eq(narrowed_m)]
        if self._has_proj:
            with m.If(self.y.valid):
                m.d.comb += [y_words.valid.eq(1), y_words.payload.eq(self.y.payload)]
            # the y reader follows the readout as it runs (it starts a cycle after the command, hw/readout.py)
            wiring.connect(m, wiring.flipped(self.proj_status), y_reader.readout)
            m.d.comb += self.proj.layer.eq(layer)

        # ---- the broadcaster's sources: input words, y words, m words ----------------------------------------
        def send(source):
            if lanes == 1:
                payload = [self.bcast.payload.eq(source.payload)]
            else:   # an x or y word goes in lane 0
                payload = [self.bcast.payload.phase.eq(source.payload.phase),
                           self.bcast.payload.buffer.eq(source.payload.buffer),
                           self.bcast.payload.column.eq(source.payload.column),
                           # delta mode: every column goes to the filter, a zero too (its last value may not be 0)
                           self.bcast.payload.value.eq(1 if design.delta_mode else source.payload.value != 0),
                           self.bcast.payload.values[0].eq(source.payload.value)]
            return [self.bcast.valid.eq(source.valid), *payload, source.ready.eq(self.bcast.ready)]

        m_sent = Signal()
        m_word = Signal.like(self.bcast.payload)
        m.d.comb += [m_word.phase.eq(phase_x + PHASE_PROJ), m_word.column.eq(first_cell)]
        if lanes == 1:
            m.d.comb += m_word.value.eq(self.m.payload.m[0])
        else:   # every lane of the group whose cell exists; zeros are dropped like single words (not in
            # delta mode: the filter decides what is sent)
            if design.value_bits == design.numerics.unit_bits:
                m.d.comb += m_word.values.eq(self.m.payload.m)
            else:   # lane by lane: the values are wider than m (a delta word's by a bit)
                m.d.comb += [m_word.values[k].eq(self.m.payload.m[k]) for k in range(lanes)]
            for k in range(lanes):
                exists = first_cell + k < cell_sizes[layer]
                m.d.comb += m_word.value[k].eq(exists if design.delta_mode else (self.m.payload.m[k] != 0) & exists)

        streams = design.streams
        # with streams, the next frame's recurrent words follow its input words in the last layer
        input_next = is_last_layer & ~input_engine.complete if streams > 1 else is_last_layer

        def send_secondary():
            # what else may be broadcast during an element-wise pass
            with m.If(input_next):
                m.d.comb += send(input_engine.o)
            with m.Else():
                m.d.comb += send(y_reader.o)
        # EW: after an m word the other source's turn when both wait, but not in a single stream's last layer
        prefer_input = Signal()
        m_turn = ~(prefer_input & Mux(input_next, input_engine.o.valid, y_reader.o.valid))
        if streams == 1:
            m_turn = m_turn | is_last_layer

        stream_now = Signal(range(streams))   # stream of the current frame
        stream_next = Mux(stream_now == streams - 1, 0, stream_now + 1)

        def start_y_reader(layer_read, phase, buffer=0, stream_read=stream_now):
            m.d.comb += [y_reader.command.start.eq(1), y_reader.command.layer.eq(layer_read),
                         y_reader.command.phase.eq(phase), y_reader.command.buffer.eq(buffer)]
            if streams > 1:
                m.d.comb += y_reader.command.stream.eq(stream_read)

        def prefetch_recurrent():
            # the next frame's input is in and it continues its sequence: its yprev may be sent now
            if streams > 1:
                with m.If(is_last_layer & input_engine.complete & ~seq_start & ~recurrent_ahead
                          & ~y_reader.command.busy):
                    start_y_reader(0, PHASE_R, buffer=~frame_parity, stream_read=stream_next)
                    m.d.sync += recurrent_ahead.eq(1)

        if streams > 1:
            m.d.comb += [self.stream.eq(stream_now), y_reader.stream.eq(stream_now)]

        # ---- status ----------------------------------------------------------------------------------------
        m.d.comb += [
            self.cells.layer.eq(layer), self.cells.first_frame.eq(seq_start), self.cells.buffer.eq(frame_parity),
            self.frames_done.eq(output_streamer.frames_done),
        ]
        # the counter counts a cycle late, from a register: its enable was the OR of every PE's busy flag across
        # the chip (#10); `busy` stays up until it has counted, so a reader that sees it low reads the total
        working = frame_active | proj_busy | output_busy | self.pes_busy | self.bcast_busy
        counting = Signal()
        m.d.sync += counting.eq(working)
        m.d.comb += self.busy.eq(working | counting)
        with m.If(counting):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        delta = design.delta_mode
        if delta:
            # the input engine's words may be the next frame's (it is the source exactly when it sees
            # `ready`), and its first word updates `seq_start` while the last layer's m words still flow
            m_restart = Signal()      # seq_start of the frame whose element-wise pass runs
            m.d.comb += self.restart.eq(Mux(m_sent, m_restart,
                                            Mux(input_engine.o.ready, input_engine.restart, seq_start)))

        # ---- bookkeeping -----------------------------------------------------------------------------------
        with m.If(input_engine.frame_start):
            m.d.sync += [seq_start.eq(input_engine.sequence_start), frame_active.eq(1)]
        with m.If(self.bcast.valid & self.bcast.ready):
            m.d.sync += [proj_word_held.eq(m_sent), prefer_input.eq(m_sent)]
        with m.Elif(self.bcast.ready):
            m.d.sync += proj_word_held.eq(0)   # the held word (if any) went out at this edge
        # the drains' tests from flip-flops, a cycle late (#10: the flags through the tests into the state register's
        # enable were the 32-PE design's worst path, 9.35 ns). What was idle a cycle ago is idle now if no word
        # entered at that edge, and none can: DRAIN_G follows R_SETUP, which sends nothing, or R_READ once the y
        # reader is done (its `busy` covers its output register); DRAIN_P follows the cycle after the pass's last
        # m word (`m_passed`), in which no m word is sent
        m.d.sync += [
            pipeline_idle.eq(~(self.bcast_busy | bcast_busy_before | self.pes_busy)),
            proj_words_gone.eq(~(proj_word_held | proj_word_held_before | self.pes_proj_busy)),
        ]
        with m.If(out_pending & ~proj_busy):
            m.d.comb += output_streamer.start.eq(1)
            m.d.sync += out_pending.eq(0)

        # ---- the frame / layer state machine --------------------------------------------------------------
        with m.FSM(name="schedule"):
            with m.State("X_SETUP"):
                with m.If(layer == 0):
                    m.next = "X_INPUT"
                with m.Else():
                    # the recurrent words sent ahead during the previous layer's EW may not be all out yet
                    m.d.comb += send(y_reader.o)
                    with m.If(~y_reader.command.busy):
                        start_y_reader(layer - 1, phase_x)
                        m.next = "X_READ"

            with m.State("X_INPUT"):
                m.d.comb += [input_engine.enable.eq(1), input_engine.buffer.eq(frame_parity)]
                m.d.comb += send(input_engine.o)
                with m.If(input_engine.complete):
                    m.d.comb += input_engine.rewind.eq(1)
                    m.next = "R_SETUP"

            with m.State("X_READ"):
                m.d.comb += send(y_reader.o)
                with m.If(~y_reader.command.busy):
                    m.next = "R_SETUP"

            with m.State("R_SETUP"):
                if streams > 1:   # the words sent ahead may not be all out yet: R_READ waits for them
                    with m.If(recurrent_ahead):
                        m.d.sync += recurrent_ahead.eq(0)
                        m.next = "R_READ"
                    with m.Elif(seq_start):
                        m.next = "DRAIN_G"
                    with m.Else():
                        start_y_reader(layer, phase_x + PHASE_R, buffer=frame_parity)
                        m.next = "R_READ"
                else:
                    with m.If(recurrent_ahead if delta else seq_start | recurrent_ahead):
                        m.d.sync += recurrent_ahead.eq(0)
                        m.next = "DRAIN_G"
                    with m.Else():
                        start_y_reader(layer, phase_x + PHASE_R, buffer=frame_parity)
                        m.next = "R_READ"

            with m.State("R_READ"):
                m.d.comb += send(y_reader.o)
                with m.If(~y_reader.command.busy):
                    m.next = "DRAIN_G"

            with m.State("DRAIN_G"):
                # without a projection the last layer writes the output buffer during EW: it must be free.
                # The m words of EW accumulate into the proj rows, so the previous frame's readout of them
                # must be over; R_READ follows that readout, but a sequence start skips R_READ.
                with m.If(pipeline_idle & ~proj_busy & ~(is_last_layer & ~has_proj[layer] & output_busy)):
                    m.d.comb += self.cells.start.eq(1)
                    if delta:
                        m.d.sync += m_restart.eq(seq_start)
                    # layer l+1's recurrent input (its y of the previous frame) does not depend on this
                    # layer: send it during the element-wise pass
                    if n_layers > 1:
                        with m.If(~is_last_layer if delta else ~is_last_layer & ~seq_start):
                            start_y_reader(layer + 1, phase_x + PHASES_PER_LAYER + PHASE_R)
                            m.d.sync += recurrent_ahead.eq(1)
                    m.next = "EW"

            with m.State("EW"):
                # the m words share the broadcaster with independent work: in the last layer the next
                # frame's input words, else the next layer's recurrent words. They alternate when both wait
                # (a gate word carries more PE work than an m word), except in a single stream's last layer,
                # where an m word goes first: the projection, its readout and the recurrent words behind it
                # are the frame's chain, while the input words only have to be in before the next DRAIN_G.
                m.d.comb += [input_engine.enable.eq(is_last_layer), input_engine.buffer.eq(~frame_parity)]
                prefetch_recurrent()
                with m.If(has_proj[layer]):
                    with m.If(self.m.valid & m_turn):
                        m.d.comb += [m_sent.eq(self.bcast.ready), self.bcast.valid.eq(1),
                                     self.bcast.payload.eq(m_word), self.m.ready.eq(self.bcast.ready)]
                    with m.Else():
                        send_secondary()
                with m.Else():
                    # one y word per cycle: the group's lanes in turn, the group taken with its last cell
                    last_lane = (m_lane == lanes - 1) | (first_cell + m_lane == cell_sizes[layer] - 1)
                    m.d.comb += [m_to_y.eq(1), self.m.ready.eq(last_lane)]
                    if lanes > 1:
                        with m.If(self.m.valid):
                            m.d.sync += m_lane.eq(Mux(last_lane, 0, m_lane + 1))
                    send_secondary()
                with m.If(self.m.valid & self.m.ready):
                    m.d.sync += m_count.eq(m_count + 1)
                    with m.If(m_count == group_counts[layer] - 1):
                        # zero for the next pass here, not in DRAIN_G: there its enable waited for the
                        # idle test of the broadcaster and every PE (#10: a routed late path)
                        m.d.sync += [m_count.eq(0), m_passed.eq(1)]
                # the state changes a cycle after the last group was taken, from a flip-flop: the m handshake
                # (behind the input stream's valid) no longer reaches the state register's enable (#10: a routed
                # late path). No m word comes in that cycle: the next pass starts in another DRAIN_G.
                with m.If(m_passed):
                    m.d.sync += m_passed.eq(0)
                    with m.If(has_proj[layer]):
                        m.next = "DRAIN_P"
                    with m.Else():
                        m.next = "LAYER_END"

            with m.State("DRAIN_P"):
                # wait for the proj words only; the next frame's input keeps flowing meanwhile
                m.d.comb += [input_engine.enable.eq(is_last_layer), input_engine.buffer.eq(~frame_parity)]
                send_secondary()
                prefetch_recurrent()
                if self._has_proj:
                    with m.If(proj_words_gone & ~proj_busy & ~(is_last_layer & output_busy)):
                        m.d.comb += self.proj.start.eq(1)
                        m.next = "LAYER_END"

            with m.State("LAYER_END"):
                m.d.comb += [input_engine.enable.eq(is_last_layer), input_engine.buffer.eq(~frame_parity)]
                send_secondary()
                prefetch_recurrent()
                with m.If(is_last_layer):
                    with m.If(has_proj[layer]):
                        m.d.sync += out_pending.eq(1)
                    with m.Else():
                        m.d.comb += output_streamer.start.eq(1)
                    m.d.sync += [layer.eq(0), frame_parity.eq(~frame_parity)]
                    if streams > 1:
                        m.d.sync += stream_now.eq(stream_next)
                    # the next frame is active at once if its input already started flowing in
                    m.d.sync += frame_active.eq(input_engine.started)
                with m.Else():
                    m.d.sync += layer.eq(layer + 1)
                m.next = "X_SETUP"
        return m
