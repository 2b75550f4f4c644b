"""The accelerator top level: N sparse PEs, broadcaster, readers, element-wise unit, scheduler.

    i (InputWord) --> Scheduler --bcast--> Broadcaster ==> PE 0 .. PE N-1   (gate and proj SpMV)
                      (lanes > 1: --> MaskAddresser --> Broadcaster ==> LaneUnpacker --> PE, per PE)
                      (InputEngine, YReader, OutputStreamer inside)
                        ^   |                                 |  cell_read / proj_read
                        |   +--cells--> CellReader <----------+
                        |   |              | (4 gate sums per cell; the bias and peepholes added)
                        |   |              v
                        +---|------ m -- LaneElementwise (hw/lanes.py: `lanes` ElementwiseUnits)
                        |   +--proj---> ProjReader  <---------+
                        +------ y -------- |
    o (OutputWord) <-- Scheduler (OutputStreamer: output buffer)

The input and output streams, the cells into the element-wise lanes (two) and the m words out of them pass a
SkidBuffer (register slice), so the handshakes between the parts meet at flip-flops. With more than one lane the
broadcast words carry a group's m words and a LaneUnpacker in front of each PE hands them over one by one.
See docs/architecture.md for the schedule and the cycle budget.
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .broadcast import Broadcaster
from .delta_filter import DeltaFilter
from .design import ROOM_REGION, AcceleratorDesign
from .interfaces import design_broadcast_layout, input_word_layout, output_word_layout
from .lane_unpacker import LaneUnpacker
from .lanes import LaneElementwise
from .mask_address import MaskAddresser, unpacker_word_layout
from .pe import SparsePE
from .readout import CellReader, ProjReader
from .scheduler import Scheduler
from .shared_pe import per_pe
from .skid import SkidBuffer

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """The whole accelerator for one AcceleratorDesign.

    Parameters
    ----------
    design : AcceleratorDesign

    Attributes
    ----------
    i : In(stream.Signature(input_word_layout(design.act_bits)))
        Input words {value, first}: input_size words per frame.
    o : Out(stream.Signature(output_word_layout(design.act_bits)))
        Output words {value, last}: output_size words per frame.
    busy : Out(1)
        A frame is in flight (docs/verification.md).
    frames_done : Out(params.counter_bits)
        Frames completely sent on `o`.
    cycles : Out(params.cycle_counter_bits)
        Clock cycles with busy = 1.
    mac_cycles : Out(Signature({"pe0": ..., ...}))
        Per PE: cycles with a real non-zero MAC.
    pad_cycles : Out(Signature({"pe0": ..., ...}))
        Per PE: cycles spent on padding entries.
    """

    def __init__(self, design: AcceleratorDesign):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"Accelerator needs an AcceleratorDesign, got {type(design).__name__}")
        self.design = design
        counter_bits = design.params.counter_bits
        per_pe = wiring.Signature({f"pe{p}": Out(counter_bits) for p in range(design.n_pes)})
        super().__init__({
            "i": In(stream.Signature(input_word_layout(design.act_bits))),
            "o": Out(stream.Signature(output_word_layout(design.act_bits))),
            "busy": Out(1),
            "frames_done": Out(counter_bits),
            "cycles": Out(design.params.cycle_counter_bits),
            "mac_cycles": Out(per_pe),
            "pad_cycles": Out(per_pe),
        })

    CELL_SLICES = 2     # register slices between the CellReader and the LaneElementwise

    def elaborate(self, platform):
        design = self.design
        has_proj = any(layer.proj_size is not None for layer in design.layers)
        m = Module()

        # ---- submodules ----------------------------------------------------------------------------------
        # per_pe: in Verilog with memory images, instances of one PE / unpacker module (hw/shared_pe.py)
        pes = [per_pe(platform, SparsePE(design, p), "pe", design, p) for p in range(design.n_pes)]
        for p, pe in enumerate(pes):
            m.submodules[f"pe{p}"] = pe
        lanes = design.lanes
        word_layout = design_broadcast_layout(design) if lanes == 1 else unpacker_word_layout(design)
        m.submodules.broadcaster = broadcaster = Broadcaster(word_layout, design.n_pes)
        if lanes > 1:   # the unpackers' mask ROM address, once for all before the broadcast register
            m.submodules.mask_addresser = mask_addresser = MaskAddresser(design)
        # with more than one lane, an unpacker in front of each PE hands it the columns of a word one by one
        unpackers = [per_pe(platform, LaneUnpacker(design, p), "unpacker", design, p)
                     for p in range(design.n_pes)] if lanes > 1 else []
        for p, unpacker in enumerate(unpackers):
            m.submodules[f"unpacker{p}"] = unpacker
        m.submodules.cell_reader = cell_reader = CellReader(design)
        m.submodules.elementwise = elementwise = LaneElementwise.from_design(design)
        m.submodules.scheduler = scheduler = Scheduler(design)
        if has_proj:
            m.submodules.proj_reader = proj_reader = ProjReader(design)
        # register slices: the input port's ready, and the element-wise unit's one pipeline enable, depend
        # only on flip-flops, not on the scheduler / the PEs' readout multiplexer across the chip
        m.submodules.input_slice = input_slice = SkidBuffer(input_word_layout(design.act_bits))
        # the cells pass two: the reader sits among the PEs, the lanes elsewhere, and the lanes' slice's `ready`
        # into the reader's queue and credit count was the 32-PE board top's worst path (#10: 9.07 ns); between two
        # slices the long wires run from flip-flop to flip-flop or into a slice's few pointer registers
        m.submodules.cell_reader_slice = cell_reader_slice = SkidBuffer(elementwise.i.payload.shape())
        m.submodules.cell_slice = cell_slice = SkidBuffer(elementwise.i.payload.shape())
        m.submodules.m_slice = m_slice = SkidBuffer(elementwise.o.payload.shape())
        # and the output port's: its ready reaches the output streamer's read enable only through a flip-flop
        m.submodules.output_slice = output_slice = SkidBuffer(output_word_layout(design.act_bits))

        # ---- connections -----------------------------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.i), input_slice.i)
        wiring.connect(m, input_slice.o, scheduler.i)
        wiring.connect(m, scheduler.o, output_slice.i)
        wiring.connect(m, output_slice.o, wiring.flipped(self.o))
        if design.delta_mode:   # the words become the deltas of the sent columns (hw/delta_filter.py)
            m.submodules.delta_filter = delta_filter = DeltaFilter(design)
            wiring.connect(m, scheduler.bcast, delta_filter.i)
            bcast = delta_filter.o
            m.d.comb += delta_filter.restart.eq(scheduler.restart)
        else:
            bcast = scheduler.bcast
        if lanes > 1:
            wiring.connect(m, bcast, mask_addresser.i)
            bcast = mask_addresser.o
        wiring.connect(m, bcast, broadcaster.i)
        wiring.connect(m, scheduler.cells, cell_reader.command)
        wiring.connect(m, cell_reader.o, cell_reader_slice.i)
        wiring.connect(m, cell_reader_slice.o, cell_slice.i)
        wiring.connect(m, cell_slice.o, elementwise.i)
        wiring.connect(m, elementwise.o, m_slice.i)
        if design.streams > 1:
            m.d.comb += elementwise.stream.eq(scheduler.stream)
        wiring.connect(m, m_slice.o, scheduler.m)
        for p, pe in enumerate(pes):
            if unpackers:
                wiring.connect(m, broadcaster.o[p], unpackers[p].i)
                wiring.connect(m, unpackers[p].o, pe.i)
                m.d.comb += unpackers[p].credit.eq(pe.released)
                m.d.comb += broadcaster.room[p].eq(unpackers[p].room)
            else:
                wiring.connect(m, broadcaster.o[p], pe.i)
                m.d.comb += broadcaster.room[p].eq(pe.room)
            wiring.connect(m, cell_reader.pes[p], pe.cell_read)
        if has_proj:
            wiring.connect(m, scheduler.proj, proj_reader.command)
            wiring.connect(m, proj_reader.o, scheduler.y)
            wiring.connect(m, proj_reader.status, scheduler.proj_status)
            for p, pe in enumerate(pes):
                wiring.connect(m, proj_reader.pes[p], pe.proj_read)

        # ---- status --------------------------------------------------------------------------------------
        # the OR of every PE's flags spans the chip: per region of ROOM_REGION PEs (and their unpackers) into
        # registers, those into one, so the scheduler sees them STATUS_STAGES cycles late (hw/design.py)
        region_busy, region_proj_busy = [], []
        for start in range(0, design.n_pes, ROOM_REGION):
            parts = pes[start:start + ROOM_REGION] + unpackers[start:start + ROOM_REGION]
            busy, proj_busy = Signal(name=f"region{start}_busy"), Signal(name=f"region{start}_proj_busy")
            m.d.sync += [busy.eq(reduce(operator.or_, [part.busy for part in parts])),
                         proj_busy.eq(reduce(operator.or_, [part.proj_busy for part in parts]))]
            region_busy.append(busy)
            region_proj_busy.append(proj_busy)
        pes_proj_busy = reduce(operator.or_, region_proj_busy)
        bcast_busy = broadcaster.busy
        if design.delta_mode:   # words in the filter are on their way to the broadcaster and the PEs; its proj flag
            # enters the last register (hw/delta_filter.py counts on one)
            bcast_busy, pes_proj_busy = bcast_busy | delta_filter.busy, pes_proj_busy | delta_filter.proj_busy
        pes_busy_1, pes_proj_busy_1 = Signal(), Signal()
        m.d.sync += [pes_busy_1.eq(reduce(operator.or_, region_busy)), pes_proj_busy_1.eq(pes_proj_busy)]
        m.d.comb += [
            scheduler.pes_busy.eq(pes_busy_1),
            scheduler.pes_proj_busy.eq(pes_proj_busy_1),
            scheduler.bcast_busy.eq(bcast_busy),
            self.busy.eq(scheduler.busy | output_slice.o.valid),
            self.frames_done.eq(scheduler.frames_done),
            self.cycles.eq(scheduler.cycles),
        ]
        for p, pe in enumerate(pes):
            m.d.comb += [
                getattr(self.mac_cycles, f"pe{p}").eq(pe.mac_cycles),
                getattr(self.pad_cycles, f"pe{p}").eq(pe.pad_cycles),
            ]
        return m
