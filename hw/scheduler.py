"""The scheduler: the frame/layer state machine, the y memory and the output streamer.

Per frame, for each layer l (docs/architecture.md has the timeline):

    X_SETUP   layer > 0: point the y reader at y_{l-1}
    X_INPUT   layer 0: wait until the input engine has sent the frame's input words (phase x of layer 0);
              the frame's first word latches `first`
    X_READ    layer > 0: y_{l-1} from the y memory -> broadcast (phase x of layer l)
    R_SETUP   at a sequence start skip yprev (it is 0), else point the y reader at y_l
    R_READ    y_l (previous frame) -> broadcast (phase r of layer l)
    DRAIN_G   wait until the broadcaster and every PE are idle: the gate accumulators are final
    EW        CellReader streams the cells into the ElementwiseUnit; each m_j it returns is broadcast as
              column j of the proj phase (so the projection runs during the element-wise pass), or, without
              a projection, narrowed to y_l[j] and written to the y memory. Independent words are
              interleaved: in the last layer the next frame's input words (into the other copy of layer
              0's accumulators), else layer l+1's recurrent words (whose R_READ is then skipped)
    DRAIN_P   (projection) wait until no proj word is held, queued or in flight; start the ProjReader
    LAYER_END next layer, or for the last layer: hand the frame to the output streamer, next frame

The y reader never overtakes the ProjReader: while a layer's y words are being written it reads only the
ones already written (it follows one word behind), so layer l+1 and the next frame start without waiting
for the whole readout.

The y memory holds every layer's y (layer l at `design.y_bases[l]`): it is layer l+1's input and layer l's
recurrent input of the next frame. The output buffer holds the last layer's y of one frame while the streamer
sends it, so a slow output consumer stalls the accelerator only when the next frame's output is ready.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import PHASES_PER_LAYER, AcceleratorDesign, bits_for
from .layouts import elementwise_out_layout, input_word_layout, output_word_layout
from .pe import pe_broadcast_layout
from .readout import _Command, round_shift_saturate, y_word_layout

__all__ = ["Scheduler"]


class Scheduler(wiring.Component):
    """Ports: `i`/`o` (the accelerator's streams), `bcast` (to the broadcaster), `m` (from the
    ElementwiseUnit), `cells` / `proj` (commands to the readers), `y` (y words from the ProjReader),
    `pes_busy`, `bcast_busy`, and the status outputs `busy`, `frames_done`, `cycles`."""

    def __init__(self, design: AcceleratorDesign):
        if not isinstance(design, AcceleratorDesign):
            raise ValueError(f"Scheduler needs an AcceleratorDesign, got {type(design).__name__}")
        self._design = design
        self._has_proj = any(layer.proj_size is not None for layer in design.layers)
        members = {
            "i": In(stream.Signature(input_word_layout(design.act_bits))),
            "o": Out(stream.Signature(output_word_layout(design.act_bits))),
            "bcast": Out(stream.Signature(pe_broadcast_layout(design))),
            "m": In(stream.Signature(elementwise_out_layout(
                design.numerics.unit_bits, design.layer_bits, design.cell_index_bits))),
            "cells": Out(_Command(design, with_first_frame=True)),
            "pes_busy": In(1),
            "pes_proj_busy": In(1),
            "bcast_busy": In(1),
            "busy": Out(1),
            "frames_done": Out(design.params.counter_bits),
            "cycles": Out(design.params.cycle_counter_bits),
        }
        if self._has_proj:
            members["proj"] = Out(_Command(design, with_first_frame=False))
            members["y"] = In(stream.Signature(y_word_layout(design), always_ready=True))
        super().__init__(members)

    def elaborate(self, platform):
        design = self._design
        layers = design.layers
        n_layers = design.n_layers
        act_bits = design.act_bits
        m = Module()

        # ---- submodules: y memory and output buffer ------------------------------------------------------
        m.submodules.y_memory = y_memory = Memory(shape=signed(act_bits), depth=max(2, design.y_depth), init=[])  # >= 2: no zero-width address
        m.submodules.output_buffer = output_buffer = Memory(
            shape=signed(act_bits), depth=max(2, design.output_size), init=[])
        y_read = y_memory.read_port()
        y_write = y_memory.write_port()
        out_read = output_buffer.read_port()
        out_write = output_buffer.write_port()

        # ---- per-layer constants ---------------------------------------------------------------------------
        size_bits = bits_for(max(max(l.input_size, l.recurrent_size, l.cell_size) for l in layers))
        y_addr_bits = bits_for(design.y_depth)

        def table(values, width):
            return Array(Const(v, width) for v in values)

        input_sizes = table([l.input_size for l in layers], size_bits)
        recurrent_sizes = table([l.recurrent_size for l in layers], size_bits)
        cell_sizes = table([l.cell_size for l in layers], size_bits)
        y_bases = table(design.y_bases, y_addr_bits)
        has_proj = table([int(l.proj_size is not None) for l in layers], 1)

        layer = Signal(design.layer_bits)
        is_last_layer = layer == n_layers - 1
        seq_start = Signal()          # the current frame starts a sequence
        frame_active = Signal()

        # ---- y reader: y memory -> broadcast, the memory's read register is the output register -------------
        rd_active = Signal()
        rd_valid = Signal()
        rd_index = Signal(size_bits)
        rd_count = Signal(size_bits)
        rd_base = Signal(y_addr_bits)
        rd_column = Signal(size_bits)
        rd_phase = Signal(design.phase_bits)
        rd_layer = Signal(design.layer_bits)      # whose y the reader reads
        # The ProjReader writes y_l one word per cycle; the reader may follow right behind it.
        readout_layer = Signal(design.layer_bits)
        y_progress = Signal(size_bits + 1)        # y words of readout_layer written so far
        readout_running = Signal()
        if self._has_proj:
            rd_allowed = ~readout_running | (rd_layer != readout_layer) | (rd_index < y_progress)
        else:
            rd_allowed = Const(1)
        rd_issue = rd_active & rd_allowed
        rd_selected = Signal()    # the broadcaster takes the reader's word this cycle (set by the FSM)
        rd_advance = ~rd_valid | (rd_selected & self.bcast.ready)
        m.d.comb += [y_read.addr.eq(rd_base + rd_index), y_read.en.eq(rd_advance)]
        with m.If(rd_advance):
            m.d.sync += rd_valid.eq(rd_issue)
            with m.If(rd_issue):
                m.d.sync += [rd_column.eq(rd_index), rd_index.eq(rd_index + 1)]
                with m.If(rd_index + 1 == rd_count):
                    m.d.sync += rd_active.eq(0)
        rd_done = ~rd_active & ~rd_valid

        def start_reader(base, count, phase, layer_read):
            m.d.sync += [rd_active.eq(1), rd_index.eq(0), rd_base.eq(base), rd_count.eq(count),
                         rd_phase.eq(phase), rd_layer.eq(layer_read)]

        # ---- y words: from the element-wise pass (no projection) or the ProjReader ----------------------------
        narrowed_m = Signal(signed(act_bits))
        per_layer_m = {index: round_shift_saturate(m, self.m.payload.m, design.y_shift(index), act_bits)
                       for index, info in enumerate(layers) if info.proj_size is None}
        with m.Switch(self.m.payload.layer):
            for index, value in per_layer_m.items():
                with m.Case(index):
                    m.d.comb += narrowed_m.eq(value)
        m_to_y = Signal()             # set by the FSM in EW for a layer without projection
        with m.If(m_to_y):
            m.d.comb += [
                y_write.en.eq(self.m.valid),
                y_write.addr.eq(y_bases[self.m.payload.layer] + self.m.payload.cell),
                y_write.data.eq(narrowed_m),
                out_write.en.eq(self.m.valid & (self.m.payload.layer == n_layers - 1)),
                out_write.addr.eq(self.m.payload.cell),
                out_write.data.eq(narrowed_m),
            ]
        if self._has_proj:
            with m.Elif(self.y.valid):
                m.d.comb += [
                    y_write.en.eq(1),
                    y_write.addr.eq(y_bases[self.y.payload.layer] + self.y.payload.index),
                    y_write.data.eq(self.y.payload.value),
                    out_write.en.eq(self.y.payload.layer == n_layers - 1),
                    out_write.addr.eq(self.y.payload.index),
                    out_write.data.eq(self.y.payload.value),
                ]
            proj_busy = self.proj.busy
            m.d.comb += readout_running.eq(proj_busy)
            with m.If(self.proj.start):
                m.d.sync += [readout_layer.eq(self.proj.layer), y_progress.eq(0)]
            with m.Elif(self.y.valid):
                m.d.sync += y_progress.eq(y_progress + 1)
        else:
            proj_busy = Const(0)

        # ---- output streamer ----------------------------------------------------------------------------
        out_start = Signal()
        out_pending = Signal()        # the last layer's ProjReader is still filling the output buffer
        out_active = Signal()
        out_valid = Signal()
        out_index = Signal(range(design.output_size + 1))
        out_column = Signal(range(max(2, design.output_size)))
        out_advance = ~out_valid | self.o.ready
        m.d.comb += [
            out_read.addr.eq(out_index), out_read.en.eq(out_advance),
            self.o.valid.eq(out_valid),
            self.o.payload.value.eq(out_read.data),
            self.o.payload.last.eq(out_column == design.output_size - 1),
        ]
        with m.If(out_advance):
            m.d.sync += out_valid.eq(out_active)
            with m.If(out_active):
                m.d.sync += [out_column.eq(out_index), out_index.eq(out_index + 1)]
                with m.If(out_index + 1 == design.output_size):
                    m.d.sync += out_active.eq(0)
        with m.If(self.o.valid & self.o.ready & self.o.payload.last):
            m.d.sync += self.frames_done.eq(self.frames_done + 1)
        with m.If(out_pending & ~proj_busy):
            m.d.comb += out_start.eq(1)
            m.d.sync += out_pending.eq(0)
        with m.If(out_start):
            m.d.sync += [out_active.eq(1), out_index.eq(0)]
        output_busy = out_active | out_valid | out_pending

        # ---- input engine: input words -> broadcast (layer 0, phase x) --------------------------------------
        # It runs in X_INPUT and also, for the *next* frame, during the last layer's element-wise pass
        # (prefetch): those words accumulate into the other copy of layer 0's gate accumulators.
        input_column = Signal(size_bits + 1)
        input_complete = input_column == input_sizes[0]
        input_allowed = Signal()
        input_buffer = Signal()
        input_offer = input_allowed & ~input_complete & self.i.valid
        input_taken = self.i.valid & self.i.ready
        with m.If(input_taken):
            m.d.sync += input_column.eq(input_column + 1)
            with m.If(input_column == 0):
                m.d.sync += [seq_start.eq(self.i.payload.first), frame_active.eq(1)]

        def offer_input():
            return [
                self.bcast.valid.eq(input_offer),
                self.bcast.payload.segment.eq(0),
                self.bcast.payload.buffer.eq(input_buffer),
                self.bcast.payload.column.eq(input_column),
                self.bcast.payload.value.eq(self.i.payload.value),
                self.i.ready.eq(self.bcast.ready & input_allowed & ~input_complete),
            ]

        # ---- broadcaster bookkeeping: arbitration and "a proj word is still held" ----------------------------
        prefer_input = Signal()       # EW: the other source's turn when it and an m word both wait
        proj_word_held = Signal()     # the broadcaster's register may hold a proj word not yet in the FIFOs
        bcast_from_m = Signal()       # set by the FSM while it offers an m word
        m_sent = bcast_from_m & self.bcast.ready
        with m.If(self.bcast.valid & self.bcast.ready):
            m.d.sync += [proj_word_held.eq(m_sent), prefer_input.eq(m_sent)]
        with m.Elif(self.bcast.ready):
            m.d.sync += proj_word_held.eq(0)   # the held word (if any) went out at this edge

        # ---- what else may be broadcast during an element-wise pass ------------------------------------------
        recurrent_ahead = Signal()    # layer l+1's recurrent words were started during layer l's EW
        secondary_offer = Mux(is_last_layer, input_offer, rd_valid)

        def offer_secondary():
            with m.If(is_last_layer):
                m.d.comb += offer_input()
            with m.Else():
                m.d.comb += self._reader_to_broadcast(rd_valid, rd_phase, rd_column, y_read.data, rd_selected)

        # ---- the frame / layer state machine --------------------------------------------------------------
        frame_parity = Signal()       # layer 0's accumulator copy of the current frame
        m_count = Signal(size_bits)
        pipeline_idle = ~self.bcast_busy & ~self.pes_busy
        phase_x = layer * PHASES_PER_LAYER
        m.d.comb += [self.cells.layer.eq(layer), self.cells.first_frame.eq(seq_start),
                     self.cells.buffer.eq(frame_parity)]
        if self._has_proj:
            m.d.comb += self.proj.layer.eq(layer)

        with m.FSM(name="schedule"):
            with m.State("X_SETUP"):
                with m.If(layer == 0):
                    m.next = "X_INPUT"
                with m.Else():
                    # the recurrent words sent ahead during the previous layer's EW may not be all out yet
                    m.d.comb += self._reader_to_broadcast(rd_valid, rd_phase, rd_column, y_read.data, rd_selected)
                    with m.If(rd_done):
                        start_reader(y_bases[layer - 1], input_sizes[layer], phase_x, layer - 1)
                        m.next = "X_READ"

            with m.State("X_INPUT"):
                m.d.comb += [input_allowed.eq(1), input_buffer.eq(frame_parity)]
                m.d.comb += offer_input()
                with m.If(input_complete):
                    m.d.sync += input_column.eq(0)
                    m.next = "R_SETUP"

            with m.State("X_READ"):
                m.d.comb += self._reader_to_broadcast(rd_valid, rd_phase, rd_column, y_read.data, rd_selected)
                with m.If(rd_done):
                    m.next = "R_SETUP"

            with m.State("R_SETUP"):
                with m.If(seq_start | recurrent_ahead):
                    m.d.sync += recurrent_ahead.eq(0)
                    m.next = "DRAIN_G"
                with m.Else():
                    start_reader(y_bases[layer], recurrent_sizes[layer], phase_x + 1, layer)
                    m.next = "R_READ"

            with m.State("R_READ"):
                m.d.comb += self._reader_to_broadcast(rd_valid, rd_phase, rd_column, y_read.data, rd_selected)
                m.d.comb += self.bcast.payload.buffer.eq(frame_parity)
                with m.If(rd_done):
                    m.next = "DRAIN_G"

            with m.State("DRAIN_G"):
                # without a projection the last layer writes the output buffer during EW: it must be free.
                # The m words of EW accumulate into the proj rows, so the previous frame's readout of them
                # must be over; R_READ follows that readout, but a sequence start skips R_READ.
                with m.If(pipeline_idle & ~proj_busy & ~(is_last_layer & ~has_proj[layer] & output_busy)):
                    m.d.comb += self.cells.start.eq(1)
                    m.d.sync += m_count.eq(0)
                    # layer l+1's recurrent input (its y of the previous frame) does not depend on this
                    # layer: send it during the element-wise pass
                    if n_layers > 1:
                        with m.If(~is_last_layer & ~seq_start):
                            start_reader(y_bases[layer + 1], recurrent_sizes[layer + 1],
                                         phase_x + PHASES_PER_LAYER + 1, layer + 1)
                            m.d.sync += recurrent_ahead.eq(1)
                    m.next = "EW"

            with m.State("EW"):
                # the m words share the broadcaster with independent work, alternating when both wait (a
                # gate word carries ~4x the PE work of an m word, so the PEs stay busy): in the last layer
                # the next frame's input words, else the next layer's recurrent words
                m.d.comb += [input_allowed.eq(is_last_layer), input_buffer.eq(~frame_parity)]
                with m.If(has_proj[layer]):
                    with m.If(self.m.valid & ~(prefer_input & secondary_offer)):
                        m.d.comb += [
                            bcast_from_m.eq(1),
                            self.bcast.valid.eq(1),
                            self.bcast.payload.segment.eq(phase_x + 2),
                            self.bcast.payload.column.eq(self.m.payload.cell),
                            self.bcast.payload.value.eq(self.m.payload.m),
                            self.m.ready.eq(self.bcast.ready),
                        ]
                    with m.Else():
                        offer_secondary()
                with m.Else():
                    m.d.comb += [m_to_y.eq(1), self.m.ready.eq(1)]
                    offer_secondary()
                with m.If(self.m.valid & self.m.ready):
                    m.d.sync += m_count.eq(m_count + 1)
                    with m.If(m_count == cell_sizes[layer] - 1):
                        with m.If(has_proj[layer]):
                            m.next = "DRAIN_P"
                        with m.Else():
                            m.next = "LAYER_END"

            with m.State("DRAIN_P"):
                # wait for the proj words only; the next frame's input keeps flowing meanwhile
                m.d.comb += [input_allowed.eq(is_last_layer), input_buffer.eq(~frame_parity)]
                offer_secondary()
                if self._has_proj:
                    with m.If(~proj_word_held & ~self.pes_proj_busy & ~proj_busy
                              & ~(is_last_layer & output_busy)):
                        m.d.comb += self.proj.start.eq(1)
                        m.next = "LAYER_END"

            with m.State("LAYER_END"):
                m.d.comb += [input_allowed.eq(is_last_layer), input_buffer.eq(~frame_parity)]
                offer_secondary()
                with m.If(is_last_layer):
                    with m.If(has_proj[layer]):
                        m.d.sync += out_pending.eq(1)
                    with m.Else():
                        m.d.comb += out_start.eq(1)
                    m.d.sync += [layer.eq(0), frame_parity.eq(~frame_parity)]
                    # the next frame is active at once if its input already started flowing in
                    m.d.sync += frame_active.eq((input_column != 0) | input_taken)
                with m.Else():
                    m.d.sync += layer.eq(layer + 1)
                m.next = "X_SETUP"

        # ---- status ----------------------------------------------------------------------------------------
        m.d.comb += self.busy.eq(frame_active | proj_busy | output_busy | self.pes_busy | self.bcast_busy)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        return m

    def _reader_to_broadcast(self, valid, phase, column, value, selected):
        return [
            selected.eq(1),
            self.bcast.valid.eq(valid),
            self.bcast.payload.segment.eq(phase),
            self.bcast.payload.buffer.eq(0),
            self.bcast.payload.column.eq(column),
            self.bcast.payload.value.eq(value),
        ]
