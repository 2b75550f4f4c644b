"""One sparse processing element (PE): interleaved-CSC sparse matrix x broadcast vector, 1 MAC per cycle.

Pipeline (one entry per cycle in steady state; docs/architecture.md):

    broadcast word --> [FIFO] --pop--> L: addresses off+c, off+c+1 registered        (pops under credits:
                                       F: pointer fetch  ptr[off+c], ptr[off+c+1]      L, F, G, Q have no enable)
                                       G: pointers registered (start, end, value, phase constants)
                                       Q: the job registered with its empty test; empty jobs dropped
                                         |  into the job queue
                                         v
                                       W: walker  issues entry address start .. end-1, one per cycle; takes the
                                         |         next job in the cycle it issues the last entry of a column
                                         v
                   E entry registered -> D bank chosen -> B row = cursor + z + 1 -> R address, gate copy read;
                   w * value -> A accumulator and written-tag reads; << shift -> S cleared ? 0 : acc
                   -> X + product, forwarded from the four entries ahead -> Wb write

The MAC pipeline behind the walker never stalls: the walker waits only for work, the FIFO pop for work and credits.

Accumulators (hw/design.py): four gate banks (bank k = gate k, address cell_base[l] + q) holding the sums without
the bias, one proj bank; all start at 0. The MAC reads its gate words from a copy of the four banks in one
memory (a block RAM on an ECP5), written with them; the banks serve the cell read. Two read-and-reset ports serve
the controller:

- `cell_read`: `en` with (`layer`, `index` = local cell q, `buffer` = accumulator copy for layer 0) at
  cycle t gives, at t+2 (`CELL_READ_DATA_LATENCY`; zero in the cycles without a read), the cell's four gate
  sums (without the bias: the CellReader adds it and the peepholes once for all PEs, hw/readout.py); at t+1
  the four words are marked cleared (they read as 0 until the MAC writes them).
- `proj_read`: the same for a local proj row; the accumulator is reset to 0.

Delta mode keeps the sums from frame to frame: the ports only read. With split sums (one layer,
hw/design.py) the gate words are reset as above, and `cell_read` gives four *sum
banks* (one word per cell and gate, starting at the bias) plus the copy, writing that sum back into the sum
banks at t+1.

The controller must only read a cell while no word for that cell's layer and copy is queued or in flight,
and use `proj_read` while no proj-phase word is (`proj_busy` low; the reset shares the proj bank's write
port with the MAC).
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .credit_queue import CreditQueue
from .design import (ENTRY_BANK_WORDS, GATE_TARGET, NO_COLLISIONS, PROJ_TARGET, AcceleratorDesign, PEDesign, bits_for,
                     bram_slices, pe_fifo_words)
from .event_counter import EventCounter
from .interfaces import CellReadSignature, ProjReadSignature, design_broadcast_layout
from .multiplier import PipelinedMultiplier
from .pe_shape import entry_memory_names, pe_memory_contents

__all__ = ["SparsePE"]


class SparsePE(wiring.Component):
    """PE `pe_index` of `design`: its share of every sparse matrix times the broadcast columns.

    Every PE of a design is the same hardware (sized by `design.pe_shape`, hw/pe_shape.py) with its own
    memory contents: what differs between PEs, where a phase's pointers and a layer's accumulators start,
    comes from two small ROMs read without a clock where a constant table would be.

    Parameters
    ----------
    design : AcceleratorDesign
    pe_index : int
        Which PE, in [0, design.n_pes).

    Attributes
    ----------
    i : In(stream.Signature(design_broadcast_layout(design), always_ready=True))
        Broadcast words into the PE's FIFO, taken whenever valid: the producer sends only into room it was
        told of, `room` (the broadcaster) or `released` (a lane unpacker's credits).
    room : Out(1)
        Registered: the FIFO holds fewer than `fifo_depth` words (hw/broadcast.py).
    released : Out(1)
        Registered: a word left the FIFO in the previous cycle (a credit for a lane unpacker, hw/lanes.py).
    cell_read : In(CellReadSignature(design))
        Read-and-reset of one local cell's gate accumulators (marked cleared: it reads as 0 until the next MAC).
    proj_read : In(ProjReadSignature(design))
        Read-and-reset of one local proj row (reset to 0).
    busy : Out(1)
        Registered: work was queued or in flight in the previous cycle (a word on `i` from the cycle after it
        arrived; the scheduler's drains allow for it).
    proj_busy : Out(1)
        The same for proj-phase work.
    mac_cycles, pad_cycles : Out(params.counter_bits)
        Entries processed: real non-zeros / padding.
    """

    # jobs (columns with entries) between the pointer fetch and the walker: the three fetch stages and a
    # registered credit need five for one column per cycle; more lets the FIFO drain further ahead
    JOB_QUEUE_DEPTH = 8

    def __init__(self, design: AcceleratorDesign, pe_index: int):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"SparsePE needs an AcceleratorDesign, got {type(design).__name__}")
        if not isinstance(pe_index, int) or isinstance(pe_index, bool):
            raise TypeError(f"pe_index must be an integer, got {type(pe_index).__name__}")
        if not 0 <= pe_index < design.n_pes:
            raise ValueError(f"pe_index must be in [0, {design.n_pes}), got {pe_index!r}")
        self._design = design
        self._pe: PEDesign = design.pes[pe_index]
        self._pe_index = pe_index
        counter_bits = design.params.counter_bits
        super().__init__({
            "i": In(stream.Signature(design_broadcast_layout(design), always_ready=True)),
            "room": Out(1),
            "released": Out(1),
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
        word_layout = design_broadcast_layout(design)
        shape = design.pe_shape
        row_bits = shape.row_bits

        m = Module()

        # ---- submodules: FIFO and memories -----------------------------------------------------------
        fifo_depth = design.params.fifo_depth
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=word_layout.size, depth=pe_fifo_words(fifo_depth))
        # every memory the model fills (hw/pe_shape.py); the entry memory in banks of one block RAM's depth,
        # each output registered before the bank multiplexer
        memories = {name: contents.memory() for name, contents in pe_memory_contents(design, self._pe_index).items()}
        entry_mems = [memories[name] for name in entry_memory_names(shape)]
        for name in entry_memory_names(shape):
            m.submodules[name] = memories[name]
        m.submodules.column_pointers = pointer_mem = memories["column_pointers"]
        cell_depth, gate_depth, proj_depth = shape.cell_depth, shape.gate_depth, shape.proj_depth
        # A gate word is "cleared" (reads as 0 until the MAC writes it, so a cell's read-and-reset never
        # takes the banks' write port) when its tag differs from the bank's bit in `written_tags` at its
        # address: the MAC writes a word with that bit, a reset sets the four bits to the complement of the
        # four words' tags. One 4-bit memory and a bit per word instead of a flip-flop per word with two writers.
        gate_banks = []
        for k in range(4):
            m.submodules[f"gate_bank{k}"] = bank = memories[f"gate_bank{k}"]
            gate_banks.append(bank)
        # The MAC reads its gate words from a copy of the four banks (word (bank, addr) at addr * 4 + bank),
        # written with them: one read and one write port, block RAM on an ECP5. The banks serve only the cell
        # read, so each is one LUT-RAM copy, not one per read port (#10: 2 304 of the 4 011 LUT-RAM cells at 32
        # PEs were the banks' copies, and the LUT-RAM did not pack). The copy is cut into block RAM slices
        # (`design.bram_slices`) whose output registers take the flip-flops behind them
        gate_word_layout = gate_banks[0].shape
        gate_copy_slices = []
        for j, (_, width) in enumerate(bram_slices(gate_word_layout.size)):
            m.submodules[f"gate_mac_copy{j}"] = copy_slice = Memory(
                shape=width, depth=4 * gate_depth, init=[], attrs={**NO_COLLISIONS, "ram_style": "block"})
            gate_copy_slices.append(copy_slice)
        m.submodules.written_tags = written_tags = Memory(shape=4, depth=gate_depth, init=[])
        m.submodules.proj_bank = proj_bank = Memory(
            shape=signed(acc_bits), depth=proj_depth, init=[])
        split = pe.split_sums   # delta mode, one layer (hw/design.py): cleared words read as 0, the sums apart
        if split:
            sum_banks = []
            for k in range(4):
                m.submodules[f"sum_bank{k}"] = bank = memories[f"sum_bank{k}"]
                sum_banks.append(bank)
        m.submodules.multiplier = multiplier = PipelinedMultiplier(signed(weight_bits), word_layout["value"].shape,
                                                                   latency=2)

        ptr_lo = pointer_mem.read_port()
        ptr_hi = pointer_mem.read_port()
        entry_ports = [memory.read_port() for memory in entry_mems]
        gate_wr = [bank.write_port() for bank in gate_banks]
        gate_mac_wr = [copy_slice.write_port() for copy_slice in gate_copy_slices]
        gate_mac_rd = [copy_slice.read_port() for copy_slice in gate_copy_slices]
        gate_out_rd = [bank.read_port() for bank in gate_banks]
        tags_wr = written_tags.write_port()
        tags_mac_rd = written_tags.read_port(domain="comb")
        tags_out_rd = written_tags.read_port()
        proj_wr = proj_bank.write_port()
        proj_mac_rd = proj_bank.read_port()
        proj_out_rd = proj_bank.read_port()
        if split:
            sum_rd = [bank.read_port() for bank in sum_banks]
            sum_wr = [bank.write_port() for bank in sum_banks]

        # ---- connections: broadcast stream into the FIFO ---------------------------------------------
        # no ready: the producers count the room themselves (flag or credits), so no decision of this PE's
        # reaches a lane unpacker's FIFO read (#10: a ready, even a flip-flop, was the routed worst path)
        m.d.comb += [fifo.w_data.eq(self.i.payload), fifo.w_en.eq(self.i.valid)]
        m.d.sync += [self.room.eq(fifo.level < fifo_depth), self.released.eq(fifo.r_en & fifo.r_rdy)]

        # ---- F: pointer fetch (L: addresses registered, P: read issued, J: pointers registered) ---------------
        word = data.View(word_layout, fifo.r_data)
        phase_ptr_offset = Signal(range(max(shape.max_ptr_offset, 1) + 1))
        phase_end_ptr_offset = Signal(range(max(shape.max_ptr_offset, 1) + 2))
        phase_target = Signal(1)
        phase_base = Signal(range(max(shape.max_base, 1) + 1))
        phase_shift = Signal(bits_for(shape.max_shift))   # >= 1 bit: no zero-width wires in the Verilog
        # the PE's own pointer offsets and bases; target and shift are the same in every PE
        m.submodules.phase_rom = phase_table = memories["phase_rom"]
        phase_rd = phase_table.read_port(domain="comb")
        m.d.comb += [phase_rd.addr.eq(word.phase), phase_ptr_offset.eq(phase_rd.data.ptr_offset),
                     phase_end_ptr_offset.eq(phase_rd.data.end_ptr_offset),
                     phase_base.eq(Mux(word.buffer, phase_rd.data.base1, phase_rd.data.base0))]
        with m.Switch(word.phase):
            for index, (target, shift, used) in enumerate(zip(shape.phase_targets, shape.phase_shifts,
                                                               shape.phase_used)):
                if used:
                    with m.Case(index):
                        m.d.comb += [phase_target.eq(target), phase_shift.eq(shift)]

        # Registers that only carry data qualified by a valid flag have no reset: less logic in front of them
        # and freer packing (flip-flops of one slice share their reset).
        def job_fields(prefix):
            return {key: Signal.like(source, name=f"{prefix}_{key}", reset_less=True)
                    for key, source in (("value", word.value), ("target", phase_target), ("base", phase_base),
                                        ("shift", phase_shift))}

        def copy(dst, src):
            return [dst[key].eq(src[key]) for key in dst]

        # L: addresses registered; F: the pointers on the block RAM's outputs; G: registered; Q: the non-empty jobs
        # registered, then written into the job queue that the walker takes from. No stage has an enable: the FIFO pops
        # only while the job queue has room for every word popped and not yet taken (credits, a flip-flop), so the
        # walker's decisions reach no stage register and not the FIFO's output register (#10: that chain of advances
        # ended in their enables).
        located_valid = Signal()      # the popped word, with its two pointer addresses registered
        located = job_fields("located")
        located_lo = Signal.like(ptr_lo.addr, reset_less=True)
        located_hi = Signal.like(ptr_hi.addr, reset_less=True)
        fetch_valid = Signal()        # pointers of that word are on the pointer ports' outputs
        fetch = job_fields("fetch")
        fetched_valid = Signal()      # ... and in registers
        fetched = job_fields("fetched")
        fetched_start = Signal.like(ptr_lo.data.start, reset_less=True)
        fetched_end = Signal.like(ptr_hi.data.start, reset_less=True)
        # the column's flags come with its start pointer (pe_shape.column_pointers): no comparison of the two
        # pointers behind the block RAM
        fetched_occupied = Signal(reset_less=True)
        fetched_single = Signal(reset_less=True)
        job_layout = data.StructLayout({
            "start": fetched_start.shape(), "end": fetched_end.shape(), "single": 1,
            **{key: field.shape() for key, field in fetched.items()}})
        # no level count: the pop credits (`in_flight_above`, below) keep the queue from overflowing, and its `r_rdy`
        # is a flip-flop (#10: the SyncFIFO's level adder was a routed late path at 32 PEs, 8.02 ns)
        m.submodules.job_queue = job_queue = CreditQueue(job_layout.size, self.JOB_QUEUE_DEPTH)
        queued_job = Signal(job_layout)
        # Q: the job, its empty test and `single` registered before the job queue's write (#10: the comparisons
        # ended in the queue's level and LUT-RAM write data, routed late paths); the credits count it in flight
        enqueue_valid = Signal()
        enqueue_job = Signal(job_layout, reset_less=True)
        job = data.View(job_layout, job_queue.r_data)
        may_pop = Signal()
        popped = Signal()
        queued = Signal()
        job_taken = Signal()
        m.d.comb += [
            popped.eq(fifo.r_rdy & may_pop),
            fifo.r_en.eq(may_pop),
            ptr_lo.addr.eq(located_lo),
            ptr_hi.addr.eq(located_hi),
            queued.eq(fetched_valid & fetched_occupied),      # empty jobs are dropped
            queued_job.start.eq(fetched_start),
            queued_job.end.eq(fetched_end),
            queued_job.single.eq(fetched_single),
            *[queued_job[key].eq(field) for key, field in fetched.items()],
            job_queue.w_data.eq(enqueue_job),
            job_queue.w_en.eq(enqueue_valid),
            job_queue.r_en.eq(job_taken),
        ]
        # L: the phase table and the adders end in registers, not at the block RAM's address pins
        m.d.sync += [
            located_valid.eq(popped),
            located_lo.eq(phase_ptr_offset + word.column),
            located_hi.eq(phase_end_ptr_offset + word.column),
            *copy(located, {"value": word.value, "target": phase_target, "base": phase_base, "shift": phase_shift}),
            fetch_valid.eq(located_valid),
            *copy(fetch, located),
            fetched_valid.eq(fetch_valid),
            fetched_start.eq(ptr_lo.data.start),
            fetched_occupied.eq(ptr_lo.data.occupied),
            fetched_single.eq(ptr_lo.data.single),
            fetched_end.eq(ptr_hi.data.start),
            *copy(fetched, fetch),
            enqueue_valid.eq(queued),
            enqueue_job.eq(queued_job),
        ]
        # words popped and neither taken by the walker nor dropped empty (at most JOB_QUEUE_DEPTH): one more may
        # be popped if it fits. Kept as a thermometer code (`in_flight_above[j]`: more than j words), which each
        # cycle moves by at most one place up or two down, so the next `may_pop` is one multiplexer of its bits
        # (#10: the sum of five terms and a comparison behind the empty test was a routed late path). A taken or
        # dropped word gives its credit back a cycle late, from flip-flops (#10: the empty test and the walker's
        # take in front of the thermometer's enables were routed late paths); late is safe, the count only errs high
        depth = self.JOB_QUEUE_DEPTH
        in_flight_above = Signal(depth + 1)
        dropped = Signal()
        taken_1 = Signal()
        dropped_1 = Signal()
        up = popped & ~taken_1 & ~dropped_1
        down_two = ~popped & taken_1 & dropped_1
        down_one = (~popped & (taken_1 ^ dropped_1)) | (popped & taken_1 & dropped_1)
        m.d.comb += dropped.eq(fetched_valid & ~queued)
        m.d.sync += [taken_1.eq(job_taken), dropped_1.eq(dropped)]
        with m.If(up):
            m.d.sync += [in_flight_above.eq(Cat(C(1, 1), in_flight_above[:depth])),
                         may_pop.eq(~in_flight_above[depth - 2])]
        with m.Elif(down_two):
            m.d.sync += [in_flight_above.eq(in_flight_above[2:]), may_pop.eq(1)]
        with m.Elif(down_one):
            m.d.sync += [in_flight_above.eq(in_flight_above[1:]), may_pop.eq(~in_flight_above[depth])]
        with m.Else():
            m.d.sync += may_pop.eq(~in_flight_above[depth - 1])

        # ---- W: walker, one entry address per cycle ------------------------------------------------------
        walk_active = Signal()
        walk_addr = Signal.like(fetched_start)
        # the column's end less two, so the last entry is found by one equality of flip-flops (#10: the adder in
        # front of it, `walk_addr + 2 == end`, was a routed late path); modular, as the end of a single-entry
        # column starting at 0 wraps, but then walk_last comes from `single`
        walk_end_less_2 = Signal.like(fetched_end)
        walk_last = Signal(reset_less=True)          # walk_addr is the column's last entry
        walk_first = Signal(reset_less=True)
        walk = job_fields("walk")
        m.d.comb += [
            job_taken.eq(job_queue.r_rdy & (~walk_active | walk_last)),
            *[port.addr.eq(walk_addr) for port in entry_ports],   # truncated to the bank's address
        ]
        # `walk_active` and `walk_last` follow from whether a column is still being walked, not from `job_taken`:
        # past a column's last entry (or idle) the next state is the queue's (`r_rdy`, the head's `single`) whether
        # or not a job is taken, as neither is read while idle (#10: `walk_last` through `job_taken` and the
        # queue's head into itself, three LUTs, was the routed worst path at 32 PEs, 10.51 ns)
        mid_column = walk_active & ~walk_last
        with m.If(mid_column):
            m.d.sync += walk_last.eq(walk_addr == walk_end_less_2)
        with m.Else():
            m.d.sync += [walk_active.eq(job_queue.r_rdy), walk_last.eq(job.single)]
        with m.If(walk_active):
            m.d.sync += [walk_addr.eq(walk_addr + 1), walk_first.eq(0)]
        with m.If(job_taken):
            m.d.sync += [walk_addr.eq(job.start), walk_end_less_2.eq(job.end - 2), walk_first.eq(1)]
            m.d.sync += copy(walk, job)

        # ---- MAC pipeline: free-running, one stage per cycle --------------------------------------------------
        #   E  entry word on the memory output        -> registered (in the block RAM on an ECP5)
        #   D  the entry chosen among the banks       -> registered
        #   B  decode: row = cursor + z + 1, weight   -> registered, multiplier operands registered
        #   R  accumulator address from the row       -> registered; the gate copy's read issued; product registered
        #   A  accumulator and written-tag reads issued (the gate copy's block RAM reads); product shifted
        #   S  the gate word registered (the block RAM's output register); old value = cleared ? 0 : accumulator
        #   X  old value corrected by the four newer results not yet written (forwarding); + product
        #   Wb write
        def stage(prefix, fields):
            return {key: Signal(shape, name=f"{prefix}_{key}", reset_less=key != "valid")
                    for key, shape in fields.items()}

        meta = {"valid": 1, "first": 1, "value": walk["value"].shape(), "target": 1,
                "base": walk["base"].shape(), "shift": walk["shift"].shape()}
        e = stage("e", meta)
        m.d.sync += [e["valid"].eq(walk_active), e["first"].eq(walk_first)]
        m.d.sync += [e[key].eq(walk[key]) for key in ("value", "target", "base", "shift")]
        bank_bits = bits_for(len(entry_mems) - 1)
        e_bank = Signal(bank_bits, reset_less=True)
        m.d.sync += e_bank.eq(walk_addr[ENTRY_BANK_WORDS.bit_length() - 1:])
        d = stage("d", {**meta, "bank": bank_bits})
        m.d.sync += [d[key].eq(e[key]) for key in meta] + [d["bank"].eq(e_bank)]
        d_entries = [Signal(unsigned(design.entry_bits), name=f"d_entry{b}", reset_less=True)
                     for b in range(len(entry_mems))]
        m.d.sync += [word.eq(port.data) for word, port in zip(d_entries, entry_ports)]
        # B: one bank multiplexer for every field, into a register before the decode (#10: the block RAM's
        # output through the multiplexer and the padding test into R's valid was a routed late path, 9.85 ns)
        b = stage("b", meta)
        entry = Signal(unsigned(design.entry_bits), reset_less=True)
        m.d.sync += [b[key].eq(d[key]) for key in meta] + [entry.eq(Array(d_entries)[d["bank"]])]

        weight = entry[index_bits:index_bits + weight_bits].as_signed()
        skip = entry[:index_bits]
        cursor = Signal(row_bits, reset_less=True)
        row = Signal(row_bits)

        def past(at, width):
            """`at` + skip + 1 (mod 2 ** width) as `at` - ~skip: one carry chain whose carry-in is the + 1. Two
            adders in series into R's copy address were the 16-PE board top's late path (#10), and the + 1 in
            front of B's registers, behind the entry block RAMs' bank multiplexer, the next (8.34 ns with seed 3)"""
            operand = Cat(skip, C(0, max(0, width - index_bits)))[:width]
            return (at - ~operand)[:width]
        m.d.comb += row.eq(Mux(b["first"], skip, past(cursor, row_bits)))
        # the gate copy's address, 4 * base + row (= (bank, base + row // 4)), follows the row with its own cursor,
        # so that no adder stands between R's registers and the block RAM's address pins (#10: R's address adder
        # in front of them was a routed late path)
        copy_cursor = Signal.like(gate_mac_rd[0].addr, reset_less=True)
        copy_addr = Signal.like(gate_mac_rd[0].addr)
        m.d.comb += copy_addr.eq(Mux(b["first"], Cat(C(0, 2), b["base"]) + skip, past(copy_cursor, len(copy_addr))))
        with m.If(b["valid"]):
            m.d.sync += [cursor.eq(row), copy_cursor.eq(copy_addr)]
        is_padding = weight == 0

        addr_bits = max(len(gate_wr[0].addr), len(proj_mac_rd.addr))
        r = stage("r", {"valid": 1, "target": 1, "base": meta["base"], "shift": meta["shift"], "row": row_bits})
        r_padding = Signal()
        r_copy_addr = Signal.like(copy_addr, reset_less=True)
        m.d.sync += [r["valid"].eq(b["valid"] & ~is_padding), r_padding.eq(b["valid"] & is_padding), r["row"].eq(row),
                     r_copy_addr.eq(copy_addr)]
        # the counters count R's registers, not the decode: counting at the decode put the entry's zero test and the
        # enable of both 32-bit counters behind the block RAM's output (#10: a quarter of the late endpoints); each
        # is split (hw/event_counter.py) so that each of R's flags meets one flip-flop, not a 32-bit enable
        m.submodules.mac_counter = mac_counter = EventCounter(len(self.mac_cycles))
        m.submodules.pad_counter = pad_counter = EventCounter(len(self.pad_cycles))
        m.d.comb += [mac_counter.event.eq(r["valid"]), pad_counter.event.eq(r_padding),
                     self.mac_cycles.eq(mac_counter.value), self.pad_cycles.eq(pad_counter.value)]
        m.d.sync += [r[key].eq(b[key]) for key in ("target", "base", "shift")]
        # operands registered at R, the product at A (inside the DSP block on an ECP5: hw/multiplier.py)
        m.d.comb += [multiplier.a.eq(weight), multiplier.b.eq(b["value"])]

        key_layout = {"valid": 1, "target": 1, "bank": 2, "addr": addr_bits}
        # (base, row) names an accumulator word as (bank, addr) does, without the adder: the bases' regions are
        # disjoint (hw/design.py), so the forwarding matches below compare them a stage early
        word_key = {"base": meta["base"], "row": row_bits}
        a = stage("a", {**key_layout, **word_key, "shift": meta["shift"]})
        product = multiplier.p
        # the gate copy is read from R's register, a cycle before A (the block RAM's address register is A's), and
        # its word registered again before S (the block's output register, #10), so that read misses the four
        # results ahead; the proj bank and the written tags are read at A, as the banks were: the proj word misses
        # three, and the fourth's result, if forwarded, is the word it holds
        m.d.comb += [port.addr.eq(r_copy_addr) for port in gate_mac_rd]
        m.d.comb += [proj_mac_rd.addr.eq(a["addr"]), tags_mac_rd.addr.eq(a["addr"])]
        m.d.sync += [
            a["valid"].eq(r["valid"]), a["target"].eq(r["target"]), a["bank"].eq(r["row"][:2]),
            a["addr"].eq(r["base"] + Mux(r["target"] == PROJ_TARGET, r["row"], r["row"][2:])),
            a["base"].eq(r["base"]), a["row"].eq(r["row"]), a["shift"].eq(r["shift"]),
        ]

        s = stage("s", {**key_layout, **word_key})
        shifted = Signal(signed(acc_bits), reset_less=True)
        m.d.sync += [s[key].eq(a[key]) for key in s] + [shifted.eq(product << a["shift"])]
        # at S: the gate word as read, and the written tag of the entry's bank, chosen at A
        s_gate_word = Signal(gate_word_layout, name="s_gate_word", reset_less=True)
        s_written_tag = Signal(name="s_written_tag", reset_less=True)
        m.d.sync += [s_gate_word.eq(Cat(port.data for port in gate_mac_rd)),
                     s_written_tag.eq(tags_mac_rd.data.bit_select(a["bank"], 1))]

        # the results of the four entries ahead are not in the word X's read returned: the newest is wb's (X's
        # own output a cycle ago), the other three are wb's, wb2's and wb3's at S (wb3's written as the read
        # was issued)
        x = stage("x", {**key_layout, **word_key, "tag": 1})      # tag: the written tag the result is stored with
        wb = stage("wb", {**key_layout, **word_key, "tag": 1})
        sums = [Signal(signed(acc_bits), name=name, reset_less=True) for name in ("wb_sum", "wb2_sum", "wb3_sum")]

        def same_key(p, q):
            return p["valid"] & q["valid"] & (p["target"] == q["target"]) & (p["base"] == q["base"]) \
                & (p["row"] == q["row"])

        # X's old value is the newest result not yet written for the same word, else the stored word. Only the
        # newest (wb's, the adder's own output a cycle ago) is chosen at X, so the accumulate loop is one
        # multiplexer and the adder (#10: three multiplexers in it made 334 late endpoints); the rest is chosen
        # a cycle earlier, at S, into `x_base` (the three older results are wb's, wb2's and wb3's then), with
        # one-hot selects registered at A (S's matches against wb, wb2 and wb3 are A's against X, wb and wb2).
        # A's matches are R's against S, X and wb a cycle earlier, in flip-flops (#10: compared at A they were
        # routed late paths); the selects have no reset: x_base and wb_sum are computed every cycle, used only
        # under the valid flags
        newer = [Signal(name=f"a_matches_{name}", reset_less=True) for name in ("x", "wb", "wb2")]
        m.d.sync += [newer[0].eq(same_key(r, s)), newer[1].eq(same_key(r, x)), newer[2].eq(same_key(r, wb))]
        from_sum = [Signal(name=f"base_from_{name}", reset_less=True) for name in ("wb_sum", "wb2_sum", "wb3_sum")]
        from_proj = Signal(name="base_from_proj", reset_less=True)
        from_gate = Signal(name="base_from_gate", reset_less=True)
        stored = ~newer[0] & ~newer[1] & ~newer[2]
        m.d.sync += [
            from_sum[0].eq(newer[0]), from_sum[1].eq(~newer[0] & newer[1]),
            from_sum[2].eq(~newer[0] & ~newer[1] & newer[2]),
            from_proj.eq(stored & (a["target"] == PROJ_TARGET)),
            from_gate.eq(stored & (a["target"] == GATE_TARGET)),
        ]
        # a gate word counts when it is not cleared (a cleared word reads as 0: the bias is added by the CellReader)
        from_written = Signal(name="base_from_written_gate")
        m.d.comb += from_written.eq(from_gate & (s_gate_word.tag == s_written_tag))
        candidates = [*zip(from_sum, sums), (from_proj, proj_mac_rd.data), (from_written, s_gate_word.value)]
        terms = [Signal(signed(acc_bits), name=f"base_term{n}") for n in range(len(candidates))]
        m.d.comb += [term.eq(Mux(select, value, 0)) for term, (select, value) in zip(terms, candidates)]
        x_base = Signal(signed(acc_bits), reset_less=True)
        x_product = Signal(signed(acc_bits), reset_less=True)
        # X's word is wb's: the same pair (an entry and the one just ahead) compared at R against A, from
        # registers, then carried along with the entry (#10: compared at S against X, the (bank, addr)
        # comparison in front of `forward` was the only late path of 727a8c6, seed 1)
        follows_own_word = [Signal(name=f"{stage_name}_follows_own_word", reset_less=True) for stage_name in "as"]
        forward = Signal(reset_less=True)
        m.d.sync += [follows_own_word[0].eq(same_key(r, a)), follows_own_word[1].eq(follows_own_word[0]),
                     forward.eq(follows_own_word[1])]
        m.d.sync += [x[key].eq(s[key]) for key in {**key_layout, **word_key}] + [
            x["tag"].eq(s_written_tag),
            x_base.eq(reduce(operator.or_, terms)),
            x_product.eq(shifted),
        ]
        m.d.sync += [wb[key].eq(x[key]) for key in wb] + [sums[0].eq(Mux(forward, sums[0], x_base) + x_product)]
        # the accumulator banks' write enables decoded a cycle early: each drives the write enable of every
        # LUT-RAM of its bank straight from a flip-flop (#10: the decode before that fan-out, ~200 late endpoints)
        gate_write = [Signal(name=f"wb_gate_write{k}") for k in range(4)]
        gate_copy_write = Signal(name="wb_gate_copy_write")
        proj_write = Signal(name="wb_proj_write")
        m.d.sync += [*[gate_write[k].eq(x["valid"] & (x["target"] == GATE_TARGET) & (x["bank"] == k))
                       for k in range(4)],
                     gate_copy_write.eq(x["valid"] & (x["target"] == GATE_TARGET)),
                     proj_write.eq(x["valid"] & (x["target"] == PROJ_TARGET))]
        m.d.sync += [sums[1].eq(sums[0]), sums[2].eq(sums[1])]

        # ---- read-and-reset ports -------------------------------------------------------------------------
        # the PE's own layer bases, one read for the cell port and one for the proj port
        m.submodules.layer_rom = layer_table = memories["layer_rom"]
        cell_layer_rd = layer_table.read_port(domain="comb")
        proj_layer_rd = layer_table.read_port(domain="comb")
        cell_addr = Signal(range(cell_depth + 1))          # sum bank address (one copy)
        bank_addr = Signal(range(gate_depth + 1))          # gate bank address (copy 1 of layer 0 after all)
        m.d.comb += [
            cell_layer_rd.addr.eq(self.cell_read.layer), proj_layer_rd.addr.eq(self.proj_read.layer),
            cell_addr.eq(cell_layer_rd.data.cell_base + self.cell_read.index),
            bank_addr.eq(Mux(self.cell_read.buffer, cell_layer_rd.data.alt_base, cell_layer_rd.data.cell_base)
                         + self.cell_read.index),
        ]
        for port in gate_out_rd + [tags_out_rd]:
            m.d.comb += [port.addr.eq(bank_addr), port.en.eq(self.cell_read.en)]
        for port in sum_rd if split else []:
            m.d.comb += [port.addr.eq(cell_addr), port.en.eq(self.cell_read.en)]
        read_tags = Cat(port.data.tag for port in gate_out_rd)
        read_cleared = read_tags ^ tags_out_rd.data       # held with the data (the ports read only on `en`)
        # a gate word holds the sum without the bias; cleared, it reads as 0. An AND with a mask, not a Mux to 0:
        # Yosys maps `cleared ? 0 : word` onto the flip-flops' synchronous reset, and the XOR of two tags into
        # the reset of a gate word's acc_bits flip-flops was the board top's late path (#10: 8.9-9.2 ns, seeds 2
        # and 4 of 8af67fa)
        cell_values = [port.data.value & (~read_cleared[k]).replicate(len(port.data.value)).as_signed()
                       for k, port in enumerate(gate_out_rd)]
        if split:
            # the sums so far plus this frame's copy; written back into the sum bank one cycle after the read
            cell_sums = [Signal(signed(acc_bits), name=f"cell_sum{k}") for k in range(4)]
            sum_write_addr = Signal.like(sum_rd[0].addr, reset_less=True)
            m.d.sync += sum_write_addr.eq(cell_addr)
            for k in range(4):
                m.d.comb += [cell_sums[k].eq(sum_rd[k].data + cell_values[k]), sum_wr[k].addr.eq(sum_write_addr),
                             sum_wr[k].data.eq(cell_sums[k])]
            cell_values = cell_sums
        # the words as read (cleared -> 0) registered (CELL_READ_DATA_LATENCY), so the reader's capture across the
        # chip starts from a flip-flop; zero but in the cycle after the read, so that the reader ORs the PEs' words
        # as they come: the same AND as the cleared mask (one LUT4 a bit), from a flip-flop of the PE's own. The
        # reader's flags zeroing its capture registers instead, through their reset, were routed late paths at 32
        # PEs (#10: 38 of 180 late inputs, 10.08 ns). The bias and the peepholes are the CellReader's, added once
        # after it chose among the PEs: here they cost a ROM, 500 flip-flops and four adders per PE (#10: 32 PEs ran
        # out of flip-flops)
        read_1 = Signal()
        m.d.sync += read_1.eq(self.cell_read.en)
        read_words = Signal.like(self.cell_read.data, reset_less=True)
        m.d.sync += [getattr(read_words, f"acc_{gate}").eq(value & read_1.replicate(len(value)).as_signed())
                     for gate, value in zip("ifgo", cell_values)]
        m.d.comb += self.cell_read.data.eq(read_words)
        proj_addr = proj_layer_rd.data.proj_base + self.proj_read.index
        m.d.comb += [
            proj_out_rd.addr.eq(proj_addr), proj_out_rd.en.eq(self.proj_read.en),
            self.proj_read.data.eq(proj_out_rd.data),
        ]
        cell_reset_pending = Signal()
        cell_reset_addr = Signal.like(gate_out_rd[0].addr, reset_less=True)
        proj_reset_pending = Signal()
        proj_reset_addr = Signal.like(proj_out_rd.addr, reset_less=True)
        # delta mode: the sums persist from frame to frame, the ports only read (docs/architecture.md); with
        # split sums the gate copies hold one frame's deltas and are reset as without delta mode
        gate_resets, proj_resets = not design.delta_mode or split, not design.delta_mode
        m.d.sync += [
            cell_reset_pending.eq(self.cell_read.en if gate_resets else 0), cell_reset_addr.eq(bank_addr),
            proj_reset_pending.eq(self.proj_read.en if proj_resets else 0), proj_reset_addr.eq(proj_addr),
        ]

        # ---- accumulator writes: MAC results; a cell reset clears its words (the read ports hold their tags), a
        # proj reset writes 0 --------------------------------------------------------------------------------------
        for k, port in enumerate(gate_wr):
            m.d.comb += [
                port.addr.eq(wb["addr"]), port.data.value.eq(sums[0]), port.data.tag.eq(wb["tag"]),
                port.en.eq(gate_write[k]),
            ]
        gate_copy_word = Signal(gate_word_layout)
        m.d.comb += [gate_copy_word.value.eq(sums[0]), gate_copy_word.tag.eq(wb["tag"])]
        low = 0
        for port in gate_mac_wr:
            m.d.comb += [
                port.addr.eq(Cat(wb["bank"], wb["addr"][:len(gate_wr[0].addr)])),
                port.data.eq(gate_copy_word.as_value()[low:low + len(port.data)]), port.en.eq(gate_copy_write),
            ]
            low += len(port.data)
        m.d.comb += [tags_wr.addr.eq(cell_reset_addr), tags_wr.data.eq(~read_tags), tags_wr.en.eq(cell_reset_pending)]
        if split:
            m.d.comb += [port.en.eq(cell_reset_pending) for port in sum_wr]
        with m.If(proj_reset_pending):
            m.d.comb += [proj_wr.addr.eq(proj_reset_addr), proj_wr.data.eq(0), proj_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [
                proj_wr.addr.eq(wb["addr"]), proj_wr.data.eq(sums[0]),
                proj_wr.en.eq(proj_write),
            ]

        # ---- status: all work, and proj work (words counted from FIFO entry until the walker takes them) --------
        proj_words = Signal(range(fifo.depth + self.JOB_QUEUE_DEPTH + 1))
        pushed_proj = Signal()
        released_proj = Signal()
        with m.Switch(self.i.payload.phase):
            for index, phase in enumerate(pe.phases):
                if phase.used and phase.target == PROJ_TARGET:
                    with m.Case(index):
                        m.d.comb += pushed_proj.eq(self.i.valid)
        dropped_proj = dropped & (fetched["target"] == PROJ_TARGET)
        m.d.comb += released_proj.eq(job_taken & (job.target == PROJ_TARGET))
        # the count follows its three events a cycle late, so its adder starts from flip-flops (#10: the phase
        # decode, the job queue's read and the empty test in front of it were routed late paths). Still
        # covered: a word pushed a cycle ago by `pushed_proj_1`, a word released a cycle ago by the walk
        pushed_proj_1, released_proj_1, dropped_proj_1 = Signal(), Signal(), Signal()
        m.d.sync += [pushed_proj_1.eq(pushed_proj), released_proj_1.eq(released_proj),
                     dropped_proj_1.eq(dropped_proj),
                     proj_words.eq(proj_words + pushed_proj_1 - released_proj_1 - dropped_proj_1)]
        # the MAC pipeline's stages in a register of their own: an entry in E .. Wb now was in the walk .. X a cycle
        # ago (the stages only move on or drop padding), so the OR of those, a cycle late, covers them, and the
        # flags' OR is two levels shallower (#10: the OR into `busy` was the 16-PE board top's late path)
        a_cycle_ago = [(walk_active, walk["target"]), (e["valid"], e["target"]), (d["valid"], d["target"]),
                       (b["valid"], b["target"]), (r["valid"], r["target"]), (a["valid"], a["target"]),
                       (s["valid"], s["target"]), (x["valid"], x["target"])]
        macs_busy, macs_proj = Signal(), Signal()
        m.d.sync += [
            macs_busy.eq(reduce(operator.or_, [valid for valid, _ in a_cycle_ago])),
            macs_proj.eq(reduce(operator.or_, [valid & (target == PROJ_TARGET) for valid, target in a_cycle_ago])),
        ]
        any_busy = fifo.level.any() | located_valid | fetch_valid | fetched_valid | enqueue_valid | job_queue.r_rdy \
            | walk_active | cell_reset_pending | macs_busy
        any_proj = proj_words.any() | pushed_proj_1 | (walk_active & (walk["target"] == PROJ_TARGET)) | macs_proj
        # registered, so the OR over all PEs starts from flip-flops; a word arriving now counts from the next cycle
        # (in the FIFO's level, `pushed_proj_1`): with one lane `i` is the broadcaster's register across the chip
        m.d.sync += [self.busy.eq(any_busy), self.proj_busy.eq(any_proj)]
        return m
