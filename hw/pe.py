"""One sparse processing element (PE): interleaved-CSC sparse matrix x broadcast vector, 1 MAC per cycle.

Pipeline (one entry per cycle in steady state):

    broadcast word --> [FIFO] --pop--> F: pointer fetch  ptr[off+c], ptr[off+c+1]     (2 read ports)
                                         |  job = (start, end, value, phase constants); empty jobs dropped
                                         v
                                       W: walker  issues entry address start .. end-1, one per cycle; takes the
                                         |         next job in the cycle it issues the last entry of a column
                                         v
                                       M: decode  w, z; row = cursor + z + 1 (cursor = -1 at a column start);
                                         |         product = (w * value) << shift; issue accumulator read
                                         v
                                       A: acc[row] += product  (read port transparent for the write port,
                                                                so back-to-back updates of one row are exact)

W, M and A stall together for one cycle when a cell's bias write-back (below) needs the gate banks' write
port in the same cycle as a gate MAC; the frozen stages re-issue their reads, so forwarding stays exact.

Accumulators (hw/design.py): four gate banks (bank k = gate k, address cell_base[l] + q) initialised with the
bias, one proj bank initialised with 0. Two read-and-reset ports serve the controller:

- `cell_read`: `en` with (`layer`, `index` = local cell q, `buffer` = accumulator copy for layer 0) at
  cycle t gives, from t+1 and held until the next `en`, the cell's four gate accumulators and three peephole
  weights; at t+1 the PE writes the bias back.
- `proj_read`: the same for a local proj row; the accumulator is reset to 0.

The controller must only read a cell while no word for that cell's layer and copy is queued or in flight,
and use `proj_read` while no proj-phase word is (`proj_busy` low; the reset shares the proj bank's write
port with the MAC).
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import GATE_TARGET, PROJ_TARGET, AcceleratorDesign, PEDesign, bits_for, memory_depth
from .interfaces import CellReadSignature, ProjReadSignature, design_broadcast_layout
from .memory_images import image_init

__all__ = ["SparsePE"]


class SparsePE(wiring.Component):
    """PE `pe_index` of `design`: its share of every sparse matrix times the broadcast columns.

    Parameters
    ----------
    design : AcceleratorDesign
    pe_index : int
        Which PE, in [0, design.n_pes).

    Attributes
    ----------
    i : In(stream.Signature(design_broadcast_layout(design)))
        Broadcast words into the PE's FIFO.
    cell_read : In(CellReadSignature(design))
        Read-and-reset of one local cell's gate accumulators (the bias is written back).
    proj_read : In(ProjReadSignature(design))
        Read-and-reset of one local proj row (reset to 0).
    busy : Out(1)
        Work queued or in flight.
    proj_busy : Out(1)
        Proj-phase work queued or in flight.
    mac_cycles, pad_cycles : Out(params.counter_bits)
        Entries processed: real non-zeros / padding.
    """

    def __init__(self, design: AcceleratorDesign, pe_index: int):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"SparsePE needs an AcceleratorDesign, got {type(design).__name__}")
        if not isinstance(pe_index, int) or isinstance(pe_index, bool):
            raise TypeError(f"pe_index must be an integer, got {type(pe_index).__name__}")
        if not 0 <= pe_index < design.n_pes:
            raise ValueError(f"pe_index must be in [0, {design.n_pes}), got {pe_index!r}")
        self._design = design
        self._pe: PEDesign = design.pes[pe_index]
        counter_bits = design.params.counter_bits
        super().__init__({
            "i": In(stream.Signature(design_broadcast_layout(design))),
            "cell_read": In(CellReadSignature(design)),
            "proj_read": In(ProjReadSignature(design)),
            "busy": Out(1),
            "proj_busy": Out(1),
            "mac_cycles": Out(counter_bits),
            "pad_cycles": Out(counter_bits),
        })

    def elaborate(self, platform):
        design, pe = self._design, self._pe
        numerics = design.numerics
        acc_bits, index_bits, weight_bits = design.acc_bits, numerics.index_bits, numerics.weight_bits
        peephole_bits = numerics.peephole_bits
        word_layout = design_broadcast_layout(design)
        max_rows = max([4 * c for c in pe.cells] + list(pe.proj_rows) + [1])
        row_bits = bits_for(max_rows - 1)
        max_shift = max(phase.shift for phase in pe.phases)

        m = Module()

        # ---- submodules: FIFO and memories -----------------------------------------------------------
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=word_layout.size, depth=design.params.fifo_depth)
        m.submodules.entries = entry_mem = Memory(
            shape=unsigned(design.entry_bits), depth=memory_depth(len(pe.entries)),
            init=image_init(platform, pe.entries or [0]))
        m.submodules.pointers = pointer_mem = Memory(
            shape=unsigned(design.pointer_bits), depth=memory_depth(len(pe.pointers)),
            init=image_init(platform, pe.pointers))
        cell_depth = memory_depth(pe.cell_depth)
        gate_depth = memory_depth(pe.gate_depth)
        gate_banks = []
        for k in range(4):
            bank = Memory(shape=signed(acc_bits), depth=gate_depth, init=pe.gate_bank_init(k))
            m.submodules[f"gate_bank{k}"] = bank
            gate_banks.append(bank)
        m.submodules.proj_bank = proj_bank = Memory(
            shape=signed(acc_bits), depth=memory_depth(pe.proj_depth), init=[])
        bias_layout = data.ArrayLayout(signed(acc_bits), 4)
        peep_layout = data.ArrayLayout(signed(peephole_bits), 3)
        m.submodules.bias_rom = bias_rom = Memory(
            shape=bias_layout, depth=cell_depth, init=[list(b) for b in pe.bias] or [[0] * 4])
        m.submodules.peephole_rom = peephole_rom = Memory(
            shape=peep_layout, depth=cell_depth, init=[list(p) for p in pe.peephole] or [[0] * 3])

        ptr_lo = pointer_mem.read_port()
        ptr_hi = pointer_mem.read_port()
        entry_port = entry_mem.read_port()
        gate_wr = [bank.write_port() for bank in gate_banks]
        gate_mac_rd = [bank.read_port(transparent_for=(wr,)) for bank, wr in zip(gate_banks, gate_wr)]
        gate_out_rd = [bank.read_port() for bank in gate_banks]
        proj_wr = proj_bank.write_port()
        proj_mac_rd = proj_bank.read_port(transparent_for=(proj_wr,))
        proj_out_rd = proj_bank.read_port()
        bias_rd = bias_rom.read_port()
        peep_rd = peephole_rom.read_port()

        # ---- connections: broadcast stream into the FIFO ---------------------------------------------
        m.d.comb += [
            fifo.w_data.eq(self.i.payload),
            fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
        ]

        # ---- F: pointer fetch --------------------------------------------------------------------------
        word = data.View(word_layout, fifo.r_data)
        phase_ptr_offset = Signal(range(len(pe.pointers) + 1))
        phase_target = Signal(1)
        phase_base = Signal(range(max(gate_depth, pe.proj_depth, 1) + 1))
        phase_shift = Signal(bits_for(max_shift))   # >= 1 bit: no zero-width wires in the Verilog
        with m.Switch(word.phase):
            for index, phase in enumerate(pe.phases):
                if phase.used:
                    with m.Case(index):
                        m.d.comb += [phase_ptr_offset.eq(phase.ptr_offset), phase_target.eq(phase.target),
                                     phase_base.eq(Mux(word.buffer, phase.base_for(1), phase.base_for(0))),
                                     phase_shift.eq(phase.shift)]

        job_valid = Signal()
        job_value = Signal.like(word.value)
        job_target = Signal.like(phase_target)
        job_base = Signal.like(phase_base)
        job_shift = Signal.like(phase_shift)
        job_start, job_end = ptr_lo.data, ptr_hi.data   # held by the read ports while not advancing
        job_empty = job_start == job_end
        job_taken = Signal()
        fetch_advance = ~job_valid | job_empty | job_taken
        m.d.comb += [
            fifo.r_en.eq(fetch_advance),
            ptr_lo.en.eq(fetch_advance),
            ptr_hi.en.eq(fetch_advance),
            ptr_lo.addr.eq(phase_ptr_offset + word.column),
            ptr_hi.addr.eq(phase_ptr_offset + word.column + 1),
        ]
        with m.If(fetch_advance):
            m.d.sync += [
                job_valid.eq(fifo.r_rdy),
                job_value.eq(word.value),
                job_target.eq(phase_target),
                job_base.eq(phase_base),
                job_shift.eq(phase_shift),
            ]

        # ---- W: walker ---------------------------------------------------------------------------------
        walk_active = Signal()
        walk_addr = Signal.like(job_start)
        walk_end = Signal.like(job_end)
        walk_first = Signal()
        walk_value = Signal.like(job_value)
        walk_target = Signal.like(job_target)
        walk_base = Signal.like(job_base)
        walk_shift = Signal.like(job_shift)
        walk_last = walk_addr + 1 == walk_end
        stall = Signal()              # a bias write-back owns the gate banks' write port this cycle
        m.d.comb += [
            job_taken.eq(~stall & job_valid & ~job_empty & (~walk_active | walk_last)),
            entry_port.addr.eq(walk_addr),
            entry_port.en.eq(~stall),
        ]
        with m.If(walk_active & ~stall):
            m.d.sync += [walk_addr.eq(walk_addr + 1), walk_first.eq(0)]
            with m.If(walk_last):
                m.d.sync += walk_active.eq(0)
        with m.If(job_taken):
            m.d.sync += [
                walk_active.eq(1), walk_addr.eq(job_start), walk_end.eq(job_end), walk_first.eq(1),
                walk_value.eq(job_value), walk_target.eq(job_target), walk_base.eq(job_base),
                walk_shift.eq(job_shift),
            ]

        # ---- M: decode, multiply, accumulator read ------------------------------------------------------
        mul_valid = Signal()
        mul_first = Signal()
        mul_value = Signal.like(walk_value)
        mul_target = Signal.like(walk_target)
        mul_base = Signal.like(walk_base)
        mul_shift = Signal.like(walk_shift)
        with m.If(~stall):
            m.d.sync += [
                mul_valid.eq(walk_active), mul_first.eq(walk_first), mul_value.eq(walk_value),
                mul_target.eq(walk_target), mul_base.eq(walk_base), mul_shift.eq(walk_shift),
            ]
        weight = entry_port.data[index_bits:index_bits + weight_bits].as_signed()
        skip = entry_port.data[:index_bits]
        cursor = Signal(row_bits)
        row = Signal(row_bits)
        m.d.comb += row.eq(Mux(mul_first, 0, cursor + 1) + skip)
        with m.If(mul_valid & ~stall):
            m.d.sync += cursor.eq(row)
        product = Signal(signed(acc_bits))
        m.d.comb += product.eq((weight * mul_value) << mul_shift)
        gate_addr = mul_base + row[2:]
        for port in gate_mac_rd + [proj_mac_rd]:
            m.d.comb += port.en.eq(~stall)
        for port in gate_mac_rd:
            m.d.comb += port.addr.eq(gate_addr)
        m.d.comb += proj_mac_rd.addr.eq(mul_base + row)

        is_padding = weight == 0
        with m.If(mul_valid & ~stall & ~is_padding):
            m.d.sync += self.mac_cycles.eq(self.mac_cycles + 1)
        with m.If(mul_valid & ~stall & is_padding):
            m.d.sync += self.pad_cycles.eq(self.pad_cycles + 1)

        # ---- A: accumulate -----------------------------------------------------------------------------
        add_valid = Signal()
        add_target = Signal.like(mul_target)
        add_bank = Signal(2)
        add_gate_addr = Signal.like(gate_mac_rd[0].addr)
        add_proj_addr = Signal.like(proj_mac_rd.addr)
        add_product = Signal.like(product)
        with m.If(~stall):
            m.d.sync += [
                add_valid.eq(mul_valid & ~is_padding), add_target.eq(mul_target), add_bank.eq(row[:2]),
                add_gate_addr.eq(gate_addr), add_proj_addr.eq(mul_base + row), add_product.eq(product),
            ]
        gate_old = Array(port.data for port in gate_mac_rd)[add_bank]
        accumulated = Signal(signed(acc_bits))
        m.d.comb += accumulated.eq(Mux(add_target == PROJ_TARGET, proj_mac_rd.data, gate_old) + add_product)

        # ---- read-and-reset ports -------------------------------------------------------------------------
        cell_base = Array(Const(base, range(cell_depth + 1)) for base in pe.cell_base)
        proj_base = Array(Const(base, range(memory_depth(pe.proj_depth) + 1)) for base in pe.proj_base)
        cell_addr = Signal(range(cell_depth + 1))          # bias / peephole address (one copy)
        bank_addr = Signal(range(gate_depth + 1))          # gate bank address (copy 1 of layer 0 after all)
        second_copy = self.cell_read.buffer & (self.cell_read.layer == 0)
        m.d.comb += [
            cell_addr.eq(cell_base[self.cell_read.layer] + self.cell_read.index),
            bank_addr.eq(cell_addr + Mux(second_copy, pe.alt_base, 0)),
        ]
        for port in gate_out_rd:
            m.d.comb += [port.addr.eq(bank_addr), port.en.eq(self.cell_read.en)]
        for port in [bias_rd, peep_rd]:
            m.d.comb += [port.addr.eq(cell_addr), port.en.eq(self.cell_read.en)]
        peeps = data.View(peep_layout, peep_rd.data)
        m.d.comb += [
            self.cell_read.data.acc_i.eq(gate_out_rd[0].data),
            self.cell_read.data.acc_f.eq(gate_out_rd[1].data),
            self.cell_read.data.acc_g.eq(gate_out_rd[2].data),
            self.cell_read.data.acc_o.eq(gate_out_rd[3].data),
            self.cell_read.data.peep_i.eq(peeps[0]),
            self.cell_read.data.peep_f.eq(peeps[1]),
            self.cell_read.data.peep_o.eq(peeps[2]),
        ]
        proj_addr = proj_base[self.proj_read.layer] + self.proj_read.index
        m.d.comb += [
            proj_out_rd.addr.eq(proj_addr), proj_out_rd.en.eq(self.proj_read.en),
            self.proj_read.data.eq(proj_out_rd.data),
        ]
        cell_reset_pending = Signal()
        cell_reset_addr = Signal.like(gate_out_rd[0].addr)
        proj_reset_pending = Signal()
        proj_reset_addr = Signal.like(proj_out_rd.addr)
        m.d.sync += [
            cell_reset_pending.eq(self.cell_read.en), cell_reset_addr.eq(bank_addr),
            proj_reset_pending.eq(self.proj_read.en), proj_reset_addr.eq(proj_addr),
        ]

        # ---- accumulator writes: MAC, or the reset half of a read-and-reset ----------------------------------
        biases = data.View(bias_layout, bias_rd.data)
        m.d.comb += stall.eq(cell_reset_pending & add_valid & (add_target == GATE_TARGET))
        for k, port in enumerate(gate_wr):
            with m.If(cell_reset_pending):
                m.d.comb += [port.addr.eq(cell_reset_addr), port.data.eq(biases[k]), port.en.eq(1)]
            with m.Else():
                m.d.comb += [
                    port.addr.eq(add_gate_addr), port.data.eq(accumulated),
                    port.en.eq(add_valid & (add_target == GATE_TARGET) & (add_bank == k)),
                ]
        with m.If(proj_reset_pending):
            m.d.comb += [proj_wr.addr.eq(proj_reset_addr), proj_wr.data.eq(0), proj_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [
                proj_wr.addr.eq(add_proj_addr), proj_wr.data.eq(accumulated),
                proj_wr.en.eq(add_valid & (add_target == PROJ_TARGET)),
            ]

        # ---- status: all work, and proj work (words counted from FIFO entry until the walker takes them) --------
        proj_words = Signal(range(design.params.fifo_depth + 3))
        pushed_proj = Signal()
        released_proj = Signal()
        with m.Switch(self.i.payload.phase):
            for index, phase in enumerate(pe.phases):
                if phase.used and phase.target == PROJ_TARGET:
                    with m.Case(index):
                        m.d.comb += pushed_proj.eq(self.i.valid & self.i.ready)
        m.d.comb += released_proj.eq(fetch_advance & job_valid & (job_target == PROJ_TARGET))
        with m.If(pushed_proj & ~released_proj):
            m.d.sync += proj_words.eq(proj_words + 1)
        with m.Elif(released_proj & ~pushed_proj):
            m.d.sync += proj_words.eq(proj_words - 1)
        m.d.comb += [
            self.busy.eq(fifo.level.any() | job_valid | walk_active | mul_valid | add_valid | cell_reset_pending),
            self.proj_busy.eq(proj_words.any() | (walk_active & (walk_target == PROJ_TARGET))
                              | (mul_valid & (mul_target == PROJ_TARGET))
                              | (add_valid & (add_target == PROJ_TARGET))),
        ]
        return m
