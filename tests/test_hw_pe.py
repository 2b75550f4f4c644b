"""SparsePE against a NumPy SpMV over the same quantised matrices (ref_* computes, rtl_* simulates)."""

from __future__ import annotations

import dataclasses
import gc
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparselstm.hw.design import BUSY_LAG, AcceleratorDesign, phase_index
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.design import ENTRY_BANK_WORDS
from sparselstm.hw.interfaces import CELL_READ_DATA_LATENCY
from sparselstm.hw.pe import SparsePE
from sparselstm.hw.pe_shape import pe_memory_contents
from sparselstm.hw.testing import busy_window, stream_send
from sparselstm.spec.encoded import DeltaThresholds
from sparselstm.sw.format import encode, segment_entries
from sparselstm.sw.fixedpoint import Numerics
from sparselstm.sw.quantized import QuantizedLayer, QuantizedModel

NUMERICS = Numerics()


def make_layer(w_gates, w_proj=None, fw_x=10, fw_r=8, seed=0, peephole=True) -> QuantizedLayer:
    """A quantised layer with chosen integer matrices (fw_x != fw_r so both product shifts are exercised)."""
    rng = np.random.default_rng(seed)
    w_gates = np.asarray(w_gates, dtype=np.int64)
    cells = w_gates.shape[0] // 4
    recurrent = cells if w_proj is None else w_proj.shape[0]
    inputs = w_gates.shape[1] - recurrent
    facc = NUMERICS.act_frac + max(fw_x, fw_r)
    return QuantizedLayer(
        input_size=inputs, cell_size=cells, recurrent_size=recurrent, w_gates=w_gates,
        fw_x=fw_x, fw_r=fw_r, facc=facc, bias=rng.integers(-5000, 5000, 4 * cells),
        peephole=rng.integers(-3000, 3000, (3, cells)) if peephole else None, fp=14 if peephole else None,
        w_proj=w_proj, fw_p=12 if w_proj is not None else None)


def random_sparse(rng, shape, density, bits=12):
    values = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), shape)
    return np.where(rng.random(shape) < density, values, 0)


# ---- reference ---------------------------------------------------------------------------------------------
def ref_pe_accumulators(layer: QuantizedLayer, n_pes: int, pe: int, x, yprev, m):
    """Expected gate sums (cells_p, 4; without the bias, which the CellReader adds) and proj accumulators
    (proj_rows_p,) of one PE."""
    shift_x, shift_r = layer.shift_x, layer.shift_r
    acc = (layer.w_input @ np.asarray(x, dtype=np.int64)) * (1 << shift_x) \
        + (layer.w_recurrent @ np.asarray(yprev, dtype=np.int64)) * (1 << shift_r)
    cells = np.arange(pe, layer.cell_size, n_pes)
    gates = np.stack([acc[k * layer.cell_size + cells] for k in range(4)], axis=1)
    proj = None
    if layer.w_proj is not None:
        proj = (layer.w_proj @ np.asarray(m, dtype=np.int64))[np.arange(pe, layer.proj_size, n_pes)]
    return gates, proj


# ---- RTL ---------------------------------------------------------------------------------------------------
def rtl_pe_accumulators(design, pe_index, words, layer_index=0, stall=0.3, seed=0):
    """Send broadcast words [(phase, column, value)] with random gaps, wait until idle, read every cell
    and proj accumulator twice (the second read checks the reset). Returns (gates, proj, resets, counts)."""
    dut = SparsePE(design, pe_index)
    pe = design.pes[pe_index]
    result = {}

    async def testbench(ctx):
        payloads = [{"phase": phase, "column": column, "value": value} for phase, column, value in words]
        await stream_send(ctx, dut.i, payloads, rng=random.Random(seed), idle=stall, room=dut.room)
        await ctx.tick()
        while ctx.get(dut.busy):
            await ctx.tick()

        async def read_and_reset(port, index, latency, held):
            ctx.set(port.en, 1)
            ctx.set(port.layer, layer_index)
            ctx.set(port.index, index)
            await ctx.tick()
            ctx.set(port.en, 0)
            for _ in range(latency - 1):
                await ctx.tick()
            data = ctx.get(port.data)
            await ctx.tick()
            later = ctx.get(port.data)
            if held:        # the proj port's data must survive an idle cycle
                assert later == data
            else:           # the cell port's is zero but in the cycle after the read (the reader ORs the PEs')
                assert [later.acc_i, later.acc_f, later.acc_g, later.acc_o] == [0] * 4
            return data

        async def read_cell(q):
            data = await read_and_reset(dut.cell_read, q, CELL_READ_DATA_LATENCY, held=False)
            return [data.acc_i, data.acc_f, data.acc_g, data.acc_o]

        async def read_proj(r):
            return await read_and_reset(dut.proj_read, r, 1, held=True)

        cells = pe.cells[layer_index]
        result["gates"] = [await read_cell(q) for q in range(cells)]
        result["after_reset"] = [(await read_cell(q)) for q in range(cells)]
        rows = pe.proj_rows[layer_index]
        result["proj"] = [await read_proj(r) for r in range(rows)]
        result["proj_after_reset"] = [await read_proj(r) for r in range(rows)]
        result["mac_cycles"] = ctx.get(dut.mac_cycles)
        result["pad_cycles"] = ctx.get(dut.pad_cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return result


def broadcast_words(layer: QuantizedLayer, x, yprev, m, layer_index=0):
    """Every non-zero vector element as a broadcast word, in the accelerator's order."""
    words = [(phase_index(layer_index, 0), c, int(v)) for c, v in enumerate(x) if v]
    words += [(phase_index(layer_index, 1), c, int(v)) for c, v in enumerate(yprev) if v]
    if m is not None:
        words += [(phase_index(layer_index, 2), c, int(v)) for c, v in enumerate(m) if v]
    return words


def check_pe(qmodel: QuantizedModel, n_pes: int, pe_index: int, seed: int, stall=0.3, fifo_depth=8):
    layer = qmodel.layers[0]
    encoded = encode(qmodel, n_pes, balance_cells=False)   # ref_pe_accumulators deals cells in model order
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(fifo_depth=fifo_depth))
    rng = np.random.default_rng(seed)
    x = rng.integers(-30000, 30000, layer.input_size) * (rng.random(layer.input_size) < 0.8)
    yprev = rng.integers(-30000, 30000, layer.recurrent_size)
    m = rng.integers(-16384, 16384, layer.cell_size) if layer.w_proj is not None else None
    gates, proj = ref_pe_accumulators(layer, n_pes, pe_index, x, yprev, m)
    got = rtl_pe_accumulators(design, pe_index, broadcast_words(layer, x, yprev, m), stall=stall, seed=seed)
    assert np.array_equal(np.array(got["gates"], dtype=np.int64).reshape(-1, 4), gates)
    assert got["after_reset"] == [[0] * 4] * len(gates)
    if proj is not None:
        assert got["proj"] == [int(v) for v in proj]
        assert got["proj_after_reset"] == [0] * len(proj)
    segments = [encoded.segment(pe_index, 0, "gates")] + \
        ([encoded.segment(pe_index, 0, "proj")] if layer.w_proj is not None else [])
    return got, segments, (x, yprev, m)


@pytest.mark.parametrize("n_pes, pe_index", [(1, 0), (2, 1), (4, 3)])
@pytest.mark.parametrize("density", [1.0, 0.3, 0.05])
def test_pe_matches_numpy_spmv(n_pes, pe_index, density):
    rng = np.random.default_rng(int(density * 100) + n_pes)
    cells, inputs, proj = 6, 5, 3
    w_proj = random_sparse(rng, (proj, cells), density)
    layer = make_layer(random_sparse(rng, (4 * cells, inputs + proj), density), w_proj=w_proj)
    check_pe(QuantizedModel(NUMERICS, (layer,)), n_pes, pe_index, seed=n_pes)


def test_pointer_memory_flags_every_column_by_its_two_pointers():
    # the pointer memory's words (pe_shape.column_pointers): pointer i, and whether column [p[i], p[i+1]) has
    # entries and exactly one; words past the pointers read as empty columns
    rng = np.random.default_rng(11)
    w = random_sparse(rng, (4 * 7, 6 + 7), 0.15)
    w[:, 2] = 0                                     # an empty column in every PE
    w[:, 3] = 0
    w[5, 3] = 9                                     # a column with one entry in one PE
    model = QuantizedModel(NUMERICS, (make_layer(w, peephole=False),))
    design = AcceleratorDesign.from_encoded(encode(model, 2), HardwareParams(fifo_depth=4))
    flags = set()
    for pe_index, pe in enumerate(design.pes):
        memory = pe_memory_contents(design, pe_index)["column_pointers"]
        p = pe.pointers
        words = list(memory.init) + [{"start": 0, "occupied": 0, "single": 0}] * (memory.depth - len(memory.init))
        assert [word["start"] for word in words[:len(p)]] == list(p)
        assert [word["occupied"] for word in words] == \
            [int(p[i + 1] > p[i]) for i in range(len(p) - 1)] + [0] * (memory.depth - len(p) + 1)
        assert [word["single"] for word in words] == \
            [int(p[i + 1] == p[i] + 1) for i in range(len(p) - 1)] + [0] * (memory.depth - len(p) + 1)
        flags |= {(word["occupied"], word["single"]) for word in words[:len(p) - 1]}
    assert flags == {(0, 0), (1, 1), (1, 0)}      # empty, single and longer columns all occur


def test_pe_counts_every_entry_processed():
    rng = np.random.default_rng(7)
    layer = make_layer(random_sparse(rng, (4 * 9, 7 + 9), 0.2), peephole=False)
    got, segments, (x, yprev, _) = check_pe(QuantizedModel(NUMERICS, (layer,)), 1, 0, seed=3, stall=0.0)
    gates = segments[0]
    encoded_pe = segment_entries(encode(QuantizedModel(NUMERICS, (layer,)), 1), 0, 0, "gates")
    values = np.concatenate([x, yprev])
    active = values[encoded_pe.column] != 0        # zero activations are skipped: their columns cost nothing
    assert got["mac_cycles"] == int(np.count_nonzero(active & ~encoded_pe.padding))
    assert got["pad_cycles"] == int(np.count_nonzero(active & encoded_pe.padding))
    assert gates.padding > 0, "the test matrix must contain padding"


def test_pe_same_row_at_column_boundary_and_empty_columns():
    # Every column holds only local row 5 (or nothing): each update reads the row the previous one writes.
    cells, inputs = 2, 6
    w = np.zeros((4 * cells, inputs + cells), dtype=np.int64)
    local_row_5 = 1 * cells + 1            # gate f of cell 1 -> local row 4*1 + 1 = 5 with one PE
    w[local_row_5, [0, 1, 2, 4, 6, 7]] = [100, -200, 300, 7, -1, 2047]
    layer = make_layer(w, peephole=False)
    check_pe(QuantizedModel(NUMERICS, (layer,)), 1, 0, seed=1, stall=0.0)
    check_pe(QuantizedModel(NUMERICS, (layer,)), 1, 0, seed=2, stall=0.5)


def test_pe_padding_heavy_columns_and_minimum_fifo():
    # 40 cells on one PE = 160 local rows; non-zeros only every 37th row -> two padding entries per gap.
    cells, inputs = 40, 3
    rng = np.random.default_rng(5)
    w = np.zeros((4 * cells, inputs + cells), dtype=np.int64)
    rows = np.arange(0, 4 * cells, 37)
    w[rows, :] = rng.integers(1, 2000, (rows.size, inputs + cells))
    layer = make_layer(w, peephole=True)
    got, segments, _ = check_pe(QuantizedModel(NUMERICS, (layer,)), 1, 0, seed=4, stall=0.2, fifo_depth=2)
    assert segments[0].padding >= segments[0].nonzeros


def test_pe_entry_memory_of_several_banks():
    # 2.5 block RAMs of entries on one PE: columns cross the bank boundaries, and stay exact
    rng = np.random.default_rng(6)
    cells, inputs = 16, 24
    layer = make_layer(random_sparse(rng, (4 * cells, inputs + cells), 0.95), peephole=False)
    qmodel = QuantizedModel(NUMERICS, (layer,))
    assert len(encode(qmodel, 1).pes[0].entries) > 2 * ENTRY_BANK_WORDS
    check_pe(qmodel, 1, 0, seed=6, stall=0.1)


def test_pe_all_zero_matrix_reads_zero():
    layer = make_layer(np.zeros((4 * 3, 4 + 3), dtype=np.int64))
    got, _, _ = check_pe(QuantizedModel(NUMERICS, (layer,)), 2, 0, seed=0)
    assert got["mac_cycles"] == 0


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_pe_rejects_bad_index():
    layer = make_layer(np.ones((4, 2), dtype=np.int64))
    design = AcceleratorDesign.from_encoded(encode(QuantizedModel(NUMERICS, (layer,)), 1))
    with pytest.raises(ValueError, match="pe_index"):
        SparsePE(design, 1)
    gc.collect()   # the half-built component warns when collected: let that happen under this filter


async def read_gate_words(ctx, dut, cells, buffer=0):
    """Read cells 0 .. cells-1 of accumulator copy `buffer` through `cell_read`, one per cycle (each cell's
    data CELL_READ_DATA_LATENCY cycles after its `en`): their four gate words each."""
    values = []
    for step in range(cells + CELL_READ_DATA_LATENCY - 1):
        ctx.set(dut.cell_read.en, step < cells)
        ctx.set(dut.cell_read.index, min(step, cells - 1))
        ctx.set(dut.cell_read.buffer, buffer)
        await ctx.tick()
        if step >= CELL_READ_DATA_LATENCY - 1:
            data = ctx.get(dut.cell_read.data)
            values.append([data.acc_i, data.acc_f, data.acc_g, data.acc_o])
    ctx.set(dut.cell_read.en, 0)
    return values


def test_pe_double_buffer_and_write_back_stalls_are_exact():
    """Layer 0's gate accumulators have two copies. Words for copy 1 are processed while every cell of
    copy 0 is read and reset (the resets land while MACs are in flight): both stay exact."""
    rng = np.random.default_rng(11)
    cells, inputs = 5, 6
    layer = make_layer(random_sparse(rng, (4 * cells, inputs + cells), 0.7), peephole=False)
    qmodel = QuantizedModel(NUMERICS, (layer,))
    design = AcceleratorDesign.from_encoded(encode(qmodel, 1))
    dut = SparsePE(design, 0)
    x0, x1 = rng.integers(-30000, 30000, (2, inputs))
    y0, y1 = rng.integers(-30000, 30000, (2, cells))
    expected0, _ = ref_pe_accumulators(layer, 1, 0, x0, y0, None)
    expected1, _ = ref_pe_accumulators(layer, 1, 0, x1, y1, None)
    words0 = broadcast_words(layer, x0, y0, None)
    words1 = broadcast_words(layer, x1, y1, None)
    got = {"copy0": [], "copy1": [], "busy_proj": 0}

    async def send(ctx, words, buffer):
        await stream_send(ctx, dut.i, [{"phase": phase, "buffer": buffer, "column": column, "value": value}
                                       for phase, column, value in words], room=dut.room)

    async def read_cells(ctx, buffer, into):
        into.extend(await read_gate_words(ctx, dut, cells, buffer))

    async def idle(ctx):
        await ctx.tick()
        while ctx.get(dut.busy):
            got["busy_proj"] |= ctx.get(dut.proj_busy)
            await ctx.tick()

    async def testbench(ctx):
        await send(ctx, words0, 0)
        await idle(ctx)
        await send(ctx, words1[:3], 1)              # the MAC is busy with copy 1 ...
        await read_cells(ctx, 0, got["copy0"])      # ... while copy 0 is read and reset every cycle
        await send(ctx, words1[3:], 1)
        await idle(ctx)
        await read_cells(ctx, 1, got["copy1"])
        leftover = []
        await read_cells(ctx, 0, leftover)          # copy 0 was reset
        got["leftover"] = leftover
        got["macs"] = ctx.get(dut.mac_cycles) + ctx.get(dut.pad_cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert np.array_equal(np.array(got["copy0"]), expected0)
    assert np.array_equal(np.array(got["copy1"]), expected1)
    assert np.array_equal(np.array(got["leftover"]), np.zeros((cells, 4)))
    entries = segment_entries(encode(qmodel, 1), 0, 0, "gates")
    values = [np.concatenate([x0, y0]), np.concatenate([x1, y1])]
    assert got["macs"] == sum(int(np.count_nonzero(v[entries.column] != 0)) for v in values)
    assert got["busy_proj"] == 0


@pytest.mark.parametrize("phase_kind, column", [(0, 0), (2, 1), (0, 2)])
def test_pe_busy_rises_within_the_lag_the_scheduler_waits(phase_kind, column):
    """The scheduler's drains trust an idle PE's `busy` (and `proj_busy` for a proj word) to be high from the
    BUSY_LAG-th cycle after a lone word arrived until its work is done: a word into an empty column included."""
    rng = np.random.default_rng(3)
    cells, inputs, proj = 6, 3, 3
    w_gates = random_sparse(rng, (4 * cells, inputs + proj), 0.5)
    w_gates[:, 2] = 0                                   # x column 2 is empty in every PE: its job is dropped
    layer = make_layer(w_gates, w_proj=random_sparse(rng, (proj, cells), 1.0))
    design = AcceleratorDesign.from_encoded(encode(QuantizedModel(NUMERICS, (layer,)), 1))
    dut = SparsePE(design, 0)
    trace = []

    async def testbench(ctx):
        for _ in range(3):
            await ctx.tick()
        ctx.set(dut.i.payload, {"phase": phase_index(0, phase_kind), "buffer": 0, "column": column, "value": 700})
        ctx.set(dut.i.valid, 1)
        await ctx.tick()                    # the word arrived in the cycle before this one
        ctx.set(dut.i.valid, 0)
        for _ in range(40):
            trace.append((ctx.get(dut.busy), ctx.get(dut.proj_busy)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    is_proj = phase_kind == 2
    for flag, expected_up in ((0, True), (1, is_proj)):
        flags = [t[flag] for t in trace]
        if not expected_up:
            assert not any(flags)
            continue
        busy_window(flags, BUSY_LAG)


def test_pe_proj_busy_covers_proj_words_only():
    rng = np.random.default_rng(12)
    cells, inputs, proj = 6, 3, 3
    layer = make_layer(random_sparse(rng, (4 * cells, inputs + proj), 0.5),
                       w_proj=random_sparse(rng, (proj, cells), 1.0))
    design = AcceleratorDesign.from_encoded(encode(QuantizedModel(NUMERICS, (layer,)), 1))
    dut = SparsePE(design, 0)
    trace = []

    async def testbench(ctx):
        await stream_send(ctx, dut.i, [{"phase": phase, "buffer": 0, "column": column, "value": 1000}
                                       for phase, column in [(phase_index(0, 0), 0), (phase_index(0, 2), 1),
                                                             (phase_index(0, 0), 1)]], room=dut.room)
        for _ in range(60):                 # the words' last MAC writes back ~40 cycles in
            trace.append((ctx.get(dut.busy), ctx.get(dut.proj_busy)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    busy = [b for b, _ in trace]
    proj_busy = [p for _, p in trace]
    assert proj_busy[0] == 1 and busy[-1] == 0 and proj_busy[-1] == 0
    # the proj word is done before the gate word queued behind it: proj_busy falls while busy is still up
    fall = proj_busy.index(0)
    assert busy[fall] == 1
    assert all(p == 0 for p in proj_busy[fall:])


def test_pe_words_reset_with_and_without_macs_between_resets():
    """A word is cleared when its tag differs from the written tag at its address: over rounds of MACs and
    read-and-resets, words written every round, in some rounds only, or never must each read as their sum
    or as 0, whatever their tags were before."""
    rng = np.random.default_rng(13)
    cells, inputs = 4, 6
    w = random_sparse(rng, (4 * cells, inputs + cells), 0.25)
    w[:, 0] = 0
    w[::3, 0] = rng.integers(1, 2000, len(w[::3, 0]))   # column 0 alone reaches every third row
    layer = make_layer(w, peephole=False)
    design = AcceleratorDesign.from_encoded(encode(QuantizedModel(NUMERICS, (layer,)), 1))
    dut = SparsePE(design, 0)
    # which columns are non-zero per round: all, column 0 only, none, all but column 0, all
    masks = [np.ones(inputs + cells, bool), np.arange(inputs + cells) == 0, np.zeros(inputs + cells, bool),
             np.arange(inputs + cells) != 0, np.ones(inputs + cells, bool)]
    vectors = [rng.integers(-30000, 30000, inputs + cells) * mask for mask in masks]
    got = []

    async def testbench(ctx):
        for vector in vectors:
            words = broadcast_words(layer, vector[:inputs], vector[inputs:], None)
            await stream_send(ctx, dut.i, [{"phase": phase, "column": column, "value": value}
                                           for phase, column, value in words], rng=random.Random(1), idle=0.2,
                              room=dut.room)
            await ctx.tick()
            while ctx.get(dut.busy):
                await ctx.tick()
            got.extend(await read_gate_words(ctx, dut, cells))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    expected = [ref_pe_accumulators(layer, 1, 0, v[:inputs], v[inputs:], None)[0] for v in vectors]
    assert np.array_equal(np.array(got), np.concatenate(expected))
    assert not np.array_equal(expected[1], expected[2])     # round 1 wrote some words, round 2 none


def test_pe_split_sums_add_each_frame_into_the_sum_banks():
    """Delta mode with one layer (hw/design.py, split sums): each copy collects one frame's words, a cell read
    gives the sum bank plus the copy (the bias plus every frame so far), writes it back and clears the copy,
    while the next frame's words go into the other copy; cleared words read as 0."""
    rng = np.random.default_rng(12)
    cells, inputs = 5, 6
    layer = make_layer(random_sparse(rng, (4 * cells, inputs + cells), 0.7), peephole=False)
    qmodel = QuantizedModel(NUMERICS, (layer,))
    encoded = dataclasses.replace(encode(qmodel, 1), delta_thresholds=(DeltaThresholds(1, 1, 0),))
    design = AcceleratorDesign.from_encoded(encoded)
    assert design.split_sums
    dut = SparsePE(design, 0)
    frames = [(rng.integers(-30000, 30000, inputs), rng.integers(-30000, 30000, cells)) for _ in range(3)]
    bias = layer.bias.reshape(4, cells).T
    sums = [ref_pe_accumulators(layer, 1, 0, x, y, None)[0] for x, y in frames]
    reads = []

    async def send(ctx, words, buffer):
        await stream_send(ctx, dut.i, [{"phase": phase, "buffer": buffer, "column": column, "value": value}
                                       for phase, column, value in words], rng=random.Random(3), idle=0.3,
                          room=dut.room)

    async def read_cells(ctx, buffer):
        reads.append(await read_gate_words(ctx, dut, cells, buffer))

    async def idle(ctx):
        await ctx.tick()
        while ctx.get(dut.busy):
            await ctx.tick()

    async def testbench(ctx):
        words = [broadcast_words(layer, x, y, None) for x, y in frames]
        await send(ctx, words[0], 0)
        await idle(ctx)
        await send(ctx, words[1][:3], 1)      # the next frame's words go into copy 1 ...
        await read_cells(ctx, 0)              # ... while copy 0 is read into the sum banks
        await send(ctx, words[1][3:], 1)
        await idle(ctx)
        await read_cells(ctx, 1)
        await send(ctx, words[2], 0)          # copy 0 was cleared: it holds frame 2 alone
        await idle(ctx)
        await read_cells(ctx, 0)
        await read_cells(ctx, 1)              # nothing new: the sums again

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    expected = [bias + sums[0], bias + sums[0] + sums[1], bias + sums[0] + sums[1] + sums[2]]
    for got, want in zip(reads, expected + [expected[-1]]):
        assert np.array_equal(np.array(got), want)
