"""Readout engines: they walk the PEs' read-and-reset ports in model order.

- `CellReader`: cells j = 0 .. H-1 of a layer (PE j mod N, local cell j div N) into the element-wise
  lanes' input stream (hw/lanes.py), `lanes` consecutive cells per cycle while the lanes are ready.
- `ProjReader`: proj rows r = 0 .. P-1 (PE r mod N, local row r div N), each narrowed to a y word
  `sat(align(acc, fw_p + unit_frac, act_frac), act_bits)` (docs/numerics.md step 8), one per cycle.

Both read through a fixed pipeline whose stages end at flip-flops (or, for the CellReader's queue, at a
memory's write port), so no path crosses the chip from the PEs' read ports to the consumer, nor from the
consumer's `ready` to the PEs: the enables go out registered, every PE's read data goes straight into a
register of its own (it may come from a block RAM, slow to leave), the multiplexer over the PEs has a stage
of its own (an OR of registers that hold zero unless their PE was read: the PEs' cell data is zero without a
read, the ProjReader zeroes the proj data by a flag of each PE's own), and the ProjReader
narrows in the next one (its output is always accepted). The CellReader adds the cells' biases and peepholes
from a ROM of its own after that OR (`pe_shape.cell_constants`: once for all PEs, not in each), writes its groups
into a small queue and issues a read only when the queue will have room for it (credits), so `ready` never
stalls the pipeline.

A third engine of the same kind, the YReader (hw/y_reader.py), reads the y memory for the broadcast.
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .credit_queue import CreditQueue
from .design import AcceleratorDesign, bram_slices
from .fixed import round_shift_saturate_parts, saturated
from .interfaces import (CELL_READ_DATA_LATENCY, CellReadSignature, ProjReadSignature, ReadoutCommandSignature,
                         ReadoutStatusSignature, elementwise_group_in_layout, gate_sums_layout, y_word_layout)
from .pe_shape import cell_constants, cell_constants_bases, cell_constants_layout

__all__ = ["CellReader", "ProjReader", "CELL_READ_LATENCY", "PROJ_READ_LATENCY", "START_LATENCY"]

# CellReader: the read decided (with each PE's selection, registered) -> the registered enables -> the PE port's
# data (CELL_READ_DATA_LATENCY: the bank read, the words registered, zero unless read) -> registered -> ORed per
# region of up to OR_REGION_ROWS PEs, registered -> the regions ORed, registered -> the biases added, registered ->
# into the queue -> counted by the queue (hw/credit_queue.py) -> the queue's output (the groups then go out one per
# cycle)
CELL_READ_LATENCY = 8 + CELL_READ_DATA_LATENCY
CELL_READ_SLOTS = CELL_READ_LATENCY + 2   # the queue's depth: one group per cycle of the loop read .. pop .. slot freed
# PEs of a lane ORed into one register: the OR of a lane's 8 PEs in one cycle, from flip-flops all over the chip,
# was the board top's worst path with seed 4 (#10: 9.19 ns): a region's register can sit among its PEs
OR_REGION_ROWS = 4

# ProjReader: the read decided -> each PE's decision registered (`pe{p}_wanted`) -> the registered enables -> the PE
# port's data -> registered, zero unless read -> the PEs ORed -> rounded, with the saturation tests -> the y word
PROJ_READ_LATENCY = 7

# Both: the scheduler's `start` is taken into a register before the first read is decided (`_taken_command`)
START_LATENCY = 1


def _at_last_pe(pe_sel, n_pes: int):
    """A flip-flop that is up while `pe_sel` is N - 1, kept by `_step_in_model_order` and zeroed with `pe_sel`
    (#10: the comparison in front of `local`'s enable, which fans out to every PE, was a routed late path)."""
    return Signal(init=int(n_pes == 1), name=f"{pe_sel.name}_at_last")


def _step_in_model_order(m: Module, index, pe_sel, at_last, local, n_pes: int, size, active):
    """Next `index` in model order and its place in the PEs (PE index mod N, local index div N); `active`
    falls after the last of `size`."""
    m.d.sync += index.eq(index + 1)
    with m.If(at_last):
        m.d.sync += [pe_sel.eq(0), local.eq(local + 1), at_last.eq(n_pes == 1)]
    with m.Else():
        m.d.sync += [pe_sel.eq(pe_sel + 1), at_last.eq(pe_sel == n_pes - 2)]
    with m.If(index + 1 == size):
        m.d.sync += active.eq(0)


def _taken_command(m: Module, command, fields, busy_now):
    """The scheduler's `start` taken into a flip-flop, with `fields` of the command, and `busy` given back from
    one, so no path runs from this reader through the scheduler's decision back into it in one cycle (#10: the
    projection reader's busy OR -> the scheduler's start -> the reader's registers was the routed worst path,
    12.4 ns). `busy` rises in the cycle after `start`, as before, and falls a cycle after the reader went idle.
    Returns the registered start pulse (START_LATENCY after `start`) and the fields taken with it."""
    taken = Signal()
    fields = {name: Signal.like(getattr(command, name), name=f"start_{name}", reset_less=True) for name in fields}
    busy = Signal()
    m.d.sync += [
        taken.eq(command.start & ~busy),
        *[field.eq(getattr(command, name)) for name, field in fields.items()],
        busy.eq(busy_now | taken | command.start),
    ]
    m.d.comb += command.busy.eq(busy)
    return taken, fields


def _registered_read(m: Module, p: int, port, reads, fields: dict):
    """Drive PE `p`'s read port from registers of its own: `en` is `reads` one cycle later, the other
    `fields` are the values of a cycle earlier, loaded every cycle (a PE looks at them only with `en`): no
    enable decided in the cycle reaches them (#10: the read decision as the enable of every PE's address
    registers across the chip was a routed late path). `keep`: each PE's copy is placed near the PE, not
    merged with the others' (the same values would then fan out from one register to every PE's memories)."""
    en = Signal(name=f"pe{p}_read_en")
    m.d.sync += en.eq(reads)
    m.d.comb += port.en.eq(en)
    for name, value in fields.items():
        held = Signal.like(value, name=f"pe{p}_read_{name}", reset_less=True, attrs={"keep": 1})
        m.d.sync += held.eq(value)
        m.d.comb += getattr(port, name).eq(held)
    return en


def _captured_if_read(m: Module, p: int, port, en) -> Signal:
    """PE `p`'s read data (a cycle after `en`) in a register of its own, zero unless the PE was read: the rows
    of PEs are then ORed together, with no row index selecting among them. Such an index, one register driving
    every bit of a multiplexer fed from PEs all over the chip, made the 16-PE design's worst routed path (#10:
    12.4 ns, 88 % routing); the flag here is a register of each PE's own (`keep`: not merged).
    `Mux(flag, data, 0)` becomes the flip-flops' synchronous reset (LSR), which costs no LUT: an AND in the data
    path instead cost one per bit (#10: 24d0dd4, +2 148 TRELLIS_COMB in the board top). (The cell port's data is
    zero without a read already, hw/interfaces.py: the CellReader takes it as it is.)"""
    data = Value.cast(port.data)
    captured = Signal.like(data, name=f"pe{p}_read_data", reset_less=True)
    was_read = Signal(name=f"pe{p}_was_read", attrs={"keep": 1})
    m.d.sync += [was_read.eq(en), captured.eq(Mux(was_read, data, 0))]
    return captured


def _ored_in_regions(m: Module, values: list, name: str) -> list:
    """`values` ORed in registers of up to OR_REGION_ROWS each (a register can sit among the PEs it ORs)."""
    regions = []
    for first in range(0, len(values), OR_REGION_ROWS):
        region = Signal.like(values[0], name=f"{name}_region{first // OR_REGION_ROWS}", reset_less=True)
        m.d.sync += region.eq(reduce(operator.or_, values[first:first + OR_REGION_ROWS]))
        regions.append(region)
    return regions


class CellReader(wiring.Component):
    """Streams every cell of a layer from the PEs into the element-wise lanes, a group of `design.lanes`
    consecutive cells per cycle.

    Cell j = lanes * group + k (lane k) lives in PE j mod N at local cell j div N; as `lanes` divides N, lane
    k only ever reads PEs k, k + lanes, ... and the cells of a group share their local index. A lane whose
    cell is past the layer's last reads no PE (its data is don't-care).

    Parameters
    ----------
    design : AcceleratorDesign

    Attributes
    ----------
    command : In(ReadoutCommandSignature(design, cell_readout=True))
        Start with the layer, `first_frame` and accumulator copy; `busy` until the last group has left.
    pes : Out(CellReadSignature(design)).array(design.n_pes)
        To every PE's `cell_read` port.
    o : Out(stream.Signature(elementwise_group_in_layout(...)))
        One group per cycle while the consumer is ready, groups 0 .. ceil(H / lanes) - 1 in order, each
        CELL_READ_LATENCY cycles after its read at the earliest.
    """

    def __init__(self, design: AcceleratorDesign):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"CellReader needs an AcceleratorDesign, got {type(design).__name__}")
        self._design = design
        super().__init__({
            "command": In(ReadoutCommandSignature(design, cell_readout=True)),
            "pes": Out(CellReadSignature(design)).array(design.n_pes),
            "o": Out(stream.Signature(elementwise_group_in_layout(
                design.acc_bits, design.numerics.peephole_bits, design.layer_bits, design.group_bits,
                design.lanes))),
        })

    def elaborate(self, platform):
        design = self._design
        lanes = design.lanes
        n_rows = design.n_pes // lanes           # PEs k, k + lanes, ... of lane k: one "row" of PEs per group
        m = Module()

        group_counts = Array(Const(design.lane_groups(l), design.group_bits + 1) for l in range(design.n_layers))
        # lane k has a cell in the groups below ceil((H - k) / lanes): kept as a flag per lane beside `group`, so a
        # PE's selection is one comparison and a flip-flop (#10: the group's bound compared in front of every PE's
        # `selected`, from the multiplexer of the layers' sizes, was a routed late path at 32 PEs, 8.09 ns)
        # (lane 0 has a cell in every group)
        lane_group_counts = {lane: Array(Const(max(0, -(-(layer.cell_size - lane) // lanes)), design.group_bits + 1)
                                         for layer in design.layers) for lane in range(1, lanes)}
        lane_exists = {lane: Signal(name=f"lane{lane}_exists") for lane in range(1, lanes)}
        active = Signal()
        layer = Signal(design.layer_bits)
        first_frame = Signal()
        buffer = Signal()
        group = Signal(design.group_bits + 1)           # next group to issue
        row_sel = Signal(range(max(2, n_rows)))         # group mod (N / lanes)
        row_sel_at_last = _at_last_pe(row_sel, n_rows)
        local = Signal(design.cell_index_bits)          # group div (N / lanes): the local cell of each lane
        outstanding = Signal(range(CELL_READ_SLOTS + 1))   # groups read and not yet taken from `o`
        read_valid = Signal()                           # stage 2 (1: `decided`): the PEs' enables, registered
        read_group = Signal(design.group_bits, reset_less=True)
        # stages 3 .. 2 + CELL_READ_DATA_LATENCY: the group in the PEs (the last: the PE ports hold it)
        fetched_valid = [Signal(name=f"fetched_valid_{k}") for k in range(CELL_READ_DATA_LATENCY)]
        fetched_group = [Signal(design.group_bits, name=f"fetched_group_{k}", reset_less=True)
                         for k in range(CELL_READ_DATA_LATENCY)]
        captured_valid = Signal()                       # then every PE's data in a register
        captured_group = Signal(design.group_bits, reset_less=True)
        regions_valid = Signal()                        # then each region's OR over its PEs, in a register
        regions_group = Signal(design.group_bits, reset_less=True)
        ored_valid = Signal()                           # then the regions of each lane ORed, in a register
        ored_group = Signal(design.group_bits, reset_less=True)
        gathered_valid = Signal()                       # then each lane's cell (the biases added)
        gathered_group = Signal(design.group_bits, reset_less=True)
        # the group's biases and peepholes: the ROM's address from flip-flops in step with the PE ports holding
        # the group, its output registered beside the lanes' ORs; in block RAM slices whose output registers take
        # those flip-flops (#10: the wide ROM's output into them, unregistered, was a routed late path, 8.62 ns),
        # and the sum registered (#10: the ROM's output through the bias adder into the queue was one, 8.21 ns)
        constants = cell_constants(design)
        words = constants.words()
        constants_rd = []
        for j, (low, width) in enumerate(bram_slices(constants.width)):
            m.submodules[f"constants_rom{j}"] = rom = Memory(
                shape=width, depth=constants.depth, init=[(word >> low) & ((1 << width) - 1) for word in words],
                attrs={"ram_style": "block", "rom_style": "block"})
            constants_rd.append(rom.read_port())
        constants_bases = Array(Const(base, len(constants_rd[0].addr)) for base in cell_constants_bases(design))
        constants_addr = Signal.like(constants_rd[0].addr, reset_less=True)
        group_constants = Signal(cell_constants_layout(design), reset_less=True)

        queue_layout = data.StructLayout({"group": design.group_bits,
                                          "cells": self.o.payload.shape()["cells"].shape})
        # room: `outstanding`
        m.submodules.queue = queue = CreditQueue(queue_layout.size, CELL_READ_SLOTS, counted_after=2)
        queued = data.View(queue_layout, queue.w_data)
        head = data.View(queue_layout, queue.r_data)
        gathered = Signal(queue_layout.members["cells"], reset_less=True)

        issue = active & (outstanding < CELL_READ_SLOTS)
        # a word taken from `o` frees its slot a cycle later: the queue's `r_rdy` reaches the count from a
        # flip-flop beside it (#10: `o.valid` into `outstanding`, 8.77 ns at 32 PEs)
        taken = Signal()
        m.d.sync += taken.eq(self.o.valid & self.o.ready)
        with m.If(issue & ~taken):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(taken & ~issue):
            m.d.sync += outstanding.eq(outstanding - 1)

        # The read decided in a cycle is registered (`decided`), and beside it, from the counters only, which PEs
        # it reads: the enables of the next cycle are one AND of two flip-flops, and the credit test does not
        # reach the 16 PEs' enables across the chip in one cycle (#10: `outstanding` through the selection into
        # the enables was a routed late path)
        decided = Signal()
        decided_group = Signal(design.group_bits, reset_less=True)
        read_fields = {"layer": layer, "index": local, "buffer": buffer}
        decided_fields = {name: Signal.like(value, name=f"decided_{name}", reset_less=True)
                          for name, value in read_fields.items()}
        m.d.sync += [decided.eq(issue), decided_group.eq(group),
                     *[decided_fields[name].eq(value) for name, value in read_fields.items()]]
        captured = []
        for p, port in enumerate(self.pes):
            row, lane = divmod(p, lanes)
            selected = Signal(name=f"pe{p}_selected")        # the group decided this cycle is read from PE p
            m.d.sync += selected.eq((row_sel == row) & (lane_exists[lane] if lane else 1))
            _registered_read(m, p, port, decided & selected, decided_fields)
            # the PE's words are zero but in the cycle they answer a read (hw/interfaces.py): no flag of ours zeroes
            # them (#10: the flags into these registers' reset were 38 of the 180 late inputs at 32 PEs)
            captured_word = Signal.like(Value.cast(port.data), name=f"pe{p}_read_data", reset_less=True)
            m.d.sync += captured_word.eq(port.data)
            captured.append(captured_word)
        m.d.sync += [read_valid.eq(decided), read_group.eq(decided_group),
                     fetched_valid[0].eq(read_valid), fetched_group[0].eq(read_group),
                     *[later.eq(earlier) for earlier, later in zip(fetched_valid, fetched_valid[1:])],
                     *[later.eq(earlier) for earlier, later in zip(fetched_group, fetched_group[1:])],
                     captured_valid.eq(fetched_valid[-1]), captured_group.eq(fetched_group[-1]),
                     regions_valid.eq(captured_valid), regions_group.eq(captured_group),
                     ored_valid.eq(regions_valid), ored_group.eq(regions_group),
                     gathered_valid.eq(ored_valid), gathered_group.eq(ored_group),
                     constants_addr.eq(constants_bases[layer] + fetched_group[-1]),
                     group_constants.eq(Cat(port.data for port in constants_rd))]
        m.d.comb += [port.addr.eq(constants_addr) for port in constants_rd]
        with m.If(issue):
            _step_in_model_order(m, group, row_sel, row_sel_at_last, local, n_rows, group_counts[layer], active)
            m.d.sync += [lane_exists[lane].eq(group + 1 < counts[layer]) for lane, counts in lane_group_counts.items()]

        m.d.comb += [queue.w_en.eq(gathered_valid), queued.group.eq(gathered_group), queued.cells.eq(gathered)]
        for lane in range(lanes):
            # one PE of the lane's row was read (or none, past the layer's last cell: don't-care); the regions' OR is
            # registered before the bias adder: the regions' registers sit among their PEs, and the OR of four of
            # them through the adder into the queue was a routed late path at 32 PEs (#10: 8.56 ns)
            sums = Signal(gate_sums_layout(design.acc_bits), name=f"lane{lane}_sums", reset_less=True)
            m.d.sync += sums.eq(reduce(operator.or_, _ored_in_regions(m, captured[lane::lanes], f"lane{lane}")))
            cell, lane_constants = gathered[lane], group_constants[lane]
            for k, gate in enumerate(("acc_i", "acc_f", "acc_g", "acc_o")):
                # with split sums the PEs' words start at the bias
                m.d.sync += cell[gate].eq(sums[gate] if design.split_sums else sums[gate] + lane_constants.bias[k])
            for k, gate in enumerate(("peep_i", "peep_f", "peep_o")):
                m.d.sync += cell[gate].eq(lane_constants.peep[k])
        m.d.comb += [
            self.o.valid.eq(queue.r_rdy),
            queue.r_en.eq(self.o.ready),
            self.o.payload.layer.eq(layer),
            self.o.payload.group.eq(head.group),
            self.o.payload.cells.eq(head.cells),
            self.o.payload.first_frame.eq(first_frame),
        ]
        taken, command = _taken_command(m, self.command, ("layer", "first_frame", "buffer"),
                                        active | (outstanding != 0))
        with m.If(taken):
            m.d.sync += [active.eq(1), layer.eq(command["layer"]), first_frame.eq(command["first_frame"]),
                         buffer.eq(command["buffer"]), group.eq(0), row_sel.eq(0), row_sel_at_last.eq(n_rows == 1),
                         local.eq(0),
                         *[lane_exists[lane].eq(counts[command["layer"]] != 0)
                           for lane, counts in lane_group_counts.items()]]
        return m


class ProjReader(wiring.Component):
    """Reads every proj accumulator of a layer (resetting it) and emits y words.

    Parameters
    ----------
    design : AcceleratorDesign
        It must have at least one layer with a projection.

    Attributes
    ----------
    command : In(ReadoutCommandSignature(design, cell_readout=False))
        Start with the layer; `busy` until the last y word has left.
    pes : Out(ProjReadSignature(design)).array(design.n_pes)
        To every PE's `proj_read` port.
    o : Out(stream.Signature(y_word_layout(design), always_ready=True))
        One y word per cycle in row order, always accepted (no ready); row r leaves PROJ_READ_LATENCY
        cycles after its read. Registered.
    status : Out(ReadoutStatusSignature(design))
        The readout as it runs, for the YReader: `start` when it starts (START_LATENCY after the command's),
        its `layer`, and `busy` as the command's.
    """

    def __init__(self, design: AcceleratorDesign):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"ProjReader needs an AcceleratorDesign, got {type(design).__name__}")
        if all(layer.proj_size is None for layer in design.layers):
            raise ValueError("ProjReader: the design has no layer with a projection")
        self._design = design
        super().__init__({
            "command": In(ReadoutCommandSignature(design, cell_readout=False)),
            "pes": Out(ProjReadSignature(design)).array(design.n_pes),
            "o": Out(stream.Signature(y_word_layout(design), always_ready=True)),
            "status": Out(ReadoutStatusSignature(design)),
        })

    def elaborate(self, platform):
        design = self._design
        n_pes = design.n_pes
        m = Module()

        index_bits = len(self.o.payload.index)
        proj_sizes = Array(Const(layer.proj_size or 0, index_bits + 1) for layer in design.layers)
        active = Signal()
        layer = Signal(design.layer_bits)
        row = Signal(index_bits + 1)
        pe_sel = Signal(range(max(2, n_pes)))
        pe_sel_at_last = _at_last_pe(pe_sel, n_pes)
        local = Signal(len(self.pes[0].index))
        wanted_valid = Signal()         # stage 1: each PE's decision, registered
        wanted_row = Signal(index_bits, reset_less=True)
        wanted_fields = {"layer": Signal.like(layer, name="wanted_layer", reset_less=True),
                         "index": Signal.like(local, name="wanted_index", reset_less=True)}
        read_valid = Signal()           # stage 2: the PEs' enables, registered
        read_row = Signal(index_bits, reset_less=True)
        fetched_valid = Signal()        # stage 3: the PE port holds the row
        fetched_row = Signal(index_bits, reset_less=True)
        captured_valid = Signal()       # stage 4: every PE's data in a register, zero unless read
        captured_row = Signal(index_bits, reset_less=True)
        selected_valid = Signal()       # stage 5: narrowed to the y word
        selected_row = Signal(index_bits, reset_less=True)
        selected = Signal(signed(design.acc_bits), reset_less=True)
        rounded_valid = Signal()        # stage 6: rounded, and whether it saturates
        rounded_row = Signal(index_bits, reset_less=True)
        out_valid = Signal()
        out_row = Signal(index_bits, reset_less=True)
        out_value = Signal(signed(design.act_bits), reset_less=True)

        # the PEs' words ORed, each zero unless its PE was read, as in the CellReader: no PE index fans out to a
        # multiplexer over all PEs (#10: `captured_pe` into `selected` was the board top's worst path, 8.43 ns)
        # each PE's decision in a register of its own before its enable's: the placer can set it half way, so no
        # path runs from `pe_sel` to the PEs across the chip in one cycle (#10: `pe_sel == p` into a PE's enable was
        # a routed late path at 32 PEs, 8.20 ns)
        captured = []
        for p, port in enumerate(self.pes):
            wanted = Signal(name=f"pe{p}_wanted")
            m.d.sync += wanted.eq(active & (pe_sel == p))
            captured.append(_captured_if_read(m, p, port, _registered_read(m, p, port, wanted, wanted_fields)))
        m.d.sync += [wanted_fields["layer"].eq(layer), wanted_fields["index"].eq(local)]
        m.d.sync += [fetched_valid.eq(read_valid), fetched_row.eq(read_row),
                     captured_valid.eq(fetched_valid), captured_row.eq(fetched_row),
                     selected_valid.eq(captured_valid), selected_row.eq(captured_row),
                     selected.eq(reduce(operator.or_, captured))]
        # the narrowing in two stages: the rounding adder beside the saturation tests, then the choice (#10: the
        # adder and the multiplexers behind it in one cycle were a routed late path)
        narrowing = {index: round_shift_saturate_parts(selected, design.y_shift(index), design.act_bits)
                     for index, info in enumerate(design.layers) if info.proj_size is not None}
        rounded_width = max(len(rounded) for rounded, _, _ in narrowing.values())
        rounded = Signal(signed(rounded_width), reset_less=True)
        over, under = Signal(reset_less=True), Signal(reset_less=True)
        with m.Switch(layer):
            for index, (value, value_over, value_under) in narrowing.items():
                with m.Case(index):
                    m.d.sync += [rounded.eq(value), over.eq(value_over), under.eq(value_under)]
        m.d.sync += [rounded_valid.eq(selected_valid), rounded_row.eq(selected_row),
                     out_valid.eq(rounded_valid), out_row.eq(rounded_row),
                     out_value.eq(saturated(rounded, over, under, design.act_bits))]
        m.d.comb += [
            self.o.valid.eq(out_valid),
            self.o.payload.layer.eq(layer),
            self.o.payload.index.eq(out_row),
            self.o.payload.value.eq(out_value),
        ]
        taken, command = _taken_command(m, self.command, ("layer",), active | wanted_valid | read_valid | fetched_valid
                                        | captured_valid | selected_valid | rounded_valid | out_valid)
        m.d.comb += [self.status.start.eq(taken), self.status.layer.eq(command["layer"]),
                     self.status.busy.eq(self.command.busy)]

        m.d.sync += [wanted_valid.eq(active), read_valid.eq(wanted_valid), read_row.eq(wanted_row)]
        with m.If(active):
            m.d.sync += wanted_row.eq(row)
            _step_in_model_order(m, row, pe_sel, pe_sel_at_last, local, n_pes, proj_sizes[layer], active)
        with m.If(taken):
            m.d.sync += [active.eq(1), layer.eq(command["layer"]), row.eq(0), pe_sel.eq(0),
                         pe_sel_at_last.eq(n_pes == 1), local.eq(0)]
        return m
