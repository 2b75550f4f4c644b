# amaranth: UnusedElaboratable=no
"""Element-wise lanes (hw/lanes.py, issue #12): the lock-step LaneElementwise against the numerics.md
reference, the LaneUnpacker against the PE's pointers, the whole accelerator with 1, 2, 4 lanes word for
word against the golden model, the parameter checks and the cycle model with lanes."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparselstm.hw.cycle_model import default_lanes, predict_cycles
from sparselstm.hw.design import (BUSY_LAG, PHASE_PROJ, PHASE_R, PHASE_X, ROOM_MARGIN, AcceleratorDesign, pe_fifo_words,
                                  phase_index)
from sparselstm.hw.elementwise import ElementwiseLayer, ElementwiseUnit
from sparselstm.hw.lane_unpacker import LaneUnpacker
from sparselstm.hw.lanes import LaneElementwise
from sparselstm.hw.mask_address import MaskAddresser, mask_address, mask_address_parts, mask_bases
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.testing import busy_window, stream_receive, stream_send
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.fixedpoint import Numerics, activation_tables

from test_hw_accelerator import check_against_golden, encoded_model
from test_hw_design import simulated_steady_cycles
from test_hw_elementwise import GATES, any_peephole, realistic_acc, reference_outputs

LAYERS = (ElementwiseLayer(cell_size=12, facc=25, fp=17), ElementwiseLayer(cell_size=5, facc=5),
          ElementwiseLayer(cell_size=11, facc=40, fp=10))
ACC_BITS = 52


# ---- LaneElementwise ----------------------------------------------------------------------------------------

def group_items(layers, lanes, frames, starts, make_acc, make_peep):
    """Per frame and layer, every group of `lanes` cells in order: (group payloads, the cell items the
    reference sees, in the same order; cells past a layer's end get zeros and are not in the reference)."""
    groups, cells = [], []
    for t in range(frames):
        for index, layer in enumerate(layers):
            for group in range(-(-layer.cell_size // lanes)):
                lane_cells = []
                for k in range(lanes):
                    j = lanes * group + k
                    exists = j < layer.cell_size
                    acc = make_acc(index, j, t) if exists else [0] * 4
                    peep = make_peep(index, j) if exists and layer.peephole else [0, 0, 0]
                    data = {**{f"acc_{g}": int(a) for g, a in zip(GATES, acc)},
                            **{f"peep_{g}": int(p) for g, p in zip(("i", "f", "o"), peep)}}
                    lane_cells.append(data)
                    if exists:
                        cells.append(dict(layer=index, cell=j, first_frame=int(starts[t]), **data))
                groups.append(dict(layer=index, group=group, first_frame=int(starts[t]), cells=lane_cells))
    return groups, cells


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.4, 0.3), (0.1, 0.7)])
def test_lanes_match_the_reference_under_random_stalls(lanes, idle, stall):
    rng = np.random.default_rng(lanes * 10 + int(10 * idle))
    numerics = Numerics()
    tables = activation_tables(numerics)
    dut = LaneElementwise(numerics, tables, LAYERS, acc_bits=ACC_BITS, lanes=lanes)
    starts = [1, 0, 0, 1, 0]
    groups, cells = group_items(LAYERS, lanes, len(starts), starts, realistic_acc(LAYERS, rng),
                                any_peephole(numerics, rng))
    expected, _ = reference_outputs(numerics, tables, LAYERS, cells)
    result = {}

    async def producer(ctx):
        await stream_send(ctx, dut.i, groups, rng=random.Random(1), idle=idle)

    async def consumer(ctx):
        result["words"] = await stream_receive(ctx, dut.o, len(groups), rng=random.Random(2), stall=stall,
                                               max_cycles=40 * len(groups) + 400)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    got = []
    for word in result["words"]:
        layer, group = word.payload.layer, word.payload.group
        for k in range(lanes):
            if lanes * group + k < LAYERS[layer].cell_size:
                got.append((layer, lanes * group + k, word.payload.m[k]))
    assert got == expected
    assert len({m for *_, m in expected}) > len(expected) // 3, "too many equal m words to be a real test"


def test_lanes_full_rate_and_latency():
    """One group per cycle in and out, LATENCY cycles apart, when nothing stalls (a lane revisits a cell
    MIN_REVISIT_DISTANCE groups later: the interlock never waits)."""
    numerics = Numerics()
    layers = (ElementwiseLayer(cell_size=4 * ElementwiseUnit.MIN_REVISIT_DISTANCE, facc=20),)
    dut = LaneElementwise(numerics, activation_tables(numerics), layers, acc_bits=32, lanes=4)
    groups, _ = group_items(layers, 4, 2, [1, 0], lambda l, j, t: [j, -j, 2 * j, t], lambda l, j: [0, 0, 0])
    result = {}

    async def producer(ctx):
        result["in"] = await stream_send(ctx, dut.i, groups)

    async def consumer(ctx):
        result["out"] = [w.cycle for w in await stream_receive(ctx, dut.o, len(groups))]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    assert result["in"] == list(range(1, len(groups) + 1))
    assert np.all(np.diff(result["out"]) == 1)
    assert result["out"][0] - result["in"][0] == LaneElementwise.LATENCY


def test_lane_elementwise_rejects_bad_lanes():
    numerics = Numerics()
    for bad, error in ((0, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match="lanes"):
            LaneElementwise(numerics, activation_tables(numerics), LAYERS, acc_bits=ACC_BITS, lanes=bad)


# ---- LaneUnpacker -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, kept", [(PHASE_PROJ, True), (PHASE_X, True), (PHASE_X, False)])
def test_unpacker_busy_rises_within_the_lag_the_scheduler_waits(kind, kept):
    """An idle unpacker's `busy` (`proj_busy` for a proj word) is high from the BUSY_LAG-th cycle after a lone word
    arrived (the scheduler's drains wait that long) until the word has been handed over or dropped, and the PE
    side then takes over: every column arrives in the cycle the unpacker's flag is still up or just fell."""
    encoded = encoded_model(6, 24, 10, density=0.15, n_pes=8, seed=5)
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=4))
    pe = design.pes[1]
    dut = LaneUnpacker(design, 1)
    phase = phase_index(0, kind)
    ptr = pe.phases[phase].ptr_offset
    width = 6 if kind == PHASE_X else 24
    columns = [c for c in range(width) if (pe.pointers[ptr + c + 1] > pe.pointers[ptr + c]) == kept]
    assert columns, "the PE must have a column of the kind asked for"
    column = columns[0] if kind == PHASE_X else columns[0] // 4 * 4
    word = {"phase": phase, "buffer": 0, "column": column, "value": 1 if kind == PHASE_X else 0b1111,
            "values": [300, 301, 302, 303], **mask_address_parts(design, phase, column),
            "proj": int(kind == PHASE_PROJ)}
    trace = []

    async def testbench(ctx):
        ctx.set(dut.credit, 0)
        for _ in range(3):
            await ctx.tick()
        ctx.set(dut.i.payload, word)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(20):
            trace.append((ctx.get(dut.busy), ctx.get(dut.proj_busy), ctx.get(dut.o.valid)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    busy, proj_busy, sent = ([t[k] for t in trace] for k in range(3))
    fall = busy_window(busy, BUSY_LAG)
    assert proj_busy == (busy if kind == PHASE_PROJ else [0] * len(busy))
    if kept:                            # the last column leaves at least a cycle before the flag falls
        assert any(sent) and max(k for k, v in enumerate(sent) if v) < fall
    else:
        assert not any(sent)


def unpacker_of_pe1(lanes):
    """The lane unpacker of PE 1 of an 8-PE model (input 6, 24 cells, projection 10) with `lanes` lanes."""
    encoded = encoded_model(6, 24, 10, density=0.15, n_pes=8, seed=5)
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=lanes))
    return design, design.pes[1], LaneUnpacker(design, 1)


def columns_with_entries(pe, phase, columns):
    return [pe.pointers[pe.phases[phase].ptr_offset + c + 1] > pe.pointers[pe.phases[phase].ptr_offset + c]
            for c in range(columns)]


def x_word(design, column, value):
    """An x broadcast word: lane 0 carries the value (hw/interfaces.py)."""
    x = phase_index(0, PHASE_X)
    return {"phase": x, "buffer": 1, "column": column, "value": 1, "values": [value] + [0] * (design.lanes - 1),
            **mask_address_parts(design, x, column), "proj": 0}


@pytest.mark.parametrize("lanes, seed", [(4, 0), (2, 1), (8, 2)])
def test_unpacker_hands_over_the_columns_with_entries_in_order(lanes, seed):
    design, pe, dut = unpacker_of_pe1(lanes)
    proj, x = phase_index(0, PHASE_PROJ), phase_index(0, PHASE_X)
    has_entries = columns_with_entries(pe, proj, 24)
    x_has_entries = columns_with_entries(pe, x, 6)
    assert 0 < sum(has_entries) < 24, "the PE must have both empty and non-empty proj columns"
    assert 0 < sum(x_has_entries) < 6, "the PE must have both empty and non-empty x columns"
    rng = np.random.default_rng(seed)
    words, expected = [], []
    ends = []       # per word: its columns' end in `expected`
    groups = 24 // lanes
    for group in [g for _ in range(6) for g in range(groups)]:      # six frames: enough words to fill the PE
        values = [int(v) for v in rng.integers(-900, 900, lanes)]
        mask = int(rng.integers(1, 1 << lanes))
        words.append({"phase": proj, "buffer": 0, "column": lanes * group, "value": mask, "values": values,
                      **mask_address_parts(design, proj, lanes * group), "proj": 1})
        expected += [(proj, lanes * group + k, values[k]) for k in range(lanes)
                     if mask >> k & 1 and has_entries[lanes * group + k]]
        ends.append(len(expected))
        column = group % 6
        words.append(x_word(design, column, -5 - group))
        if x_has_entries[column]:    # an x word in whose column the PE has no entry is dropped too
            expected.append((x, column, -5 - group))
        ends.append(len(expected))
    result = {"room_low": 0, "accepted": 0, "handed": 0}

    async def broadcaster(ctx):
        # the Broadcaster's rule: send only while the room flag was up ROOM_MARGIN - 1 cycles before (the flag
        # through its region's register and `all_ready`), as late as it allows
        seen = [1] * ROOM_MARGIN        # the flag in the cycles before, oldest first, this cycle's last
        for word in words:
            while not seen[0]:
                result["room_low"] += 1
                _, _, room = await ctx.tick().sample(dut.room)
                seen = seen[1:] + [room]
            ctx.set(dut.i.payload, word)
            ctx.set(dut.i.valid, 1)
            _, _, room = await ctx.tick().sample(dut.room)
            result["accepted"] += 1
            seen = seen[1:] + [room]
            ctx.set(dut.i.valid, 0)

    capacity = pe_fifo_words(design.params.fifo_depth)

    async def pe_side(ctx):
        # the PE's FIFO: takes every word offered, pops slowly at random and returns a credit per pop a
        # cycle later (its `released` is a register)
        rng, held, got, credit = random.Random(3 + seed), [], [], 0
        result["full"] = 0
        for _ in range(4000):
            ctx.set(dut.credit, credit)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            credit = int(bool(held) and rng.random() < 0.2)
            if credit:
                got.append(held.pop(0))
            if valid:
                held.append((payload.phase, payload.column, payload.value))
                assert len(held) <= capacity, "the unpacker sent a word without a credit"
            # the words in the unpacker, at least: accepted, with a column, and not all handed over (a word with
            # none counts as gone at once) must fit in the room it announced, fifo_depth + ROOM_MARGIN
            handed = len(got) + len(held)
            inside = sum(1 for k in range(result["accepted"]) if ends[k] > (ends[k - 1] if k else 0)
                         and ends[k] > handed)
            result["most_inside"] = max(result.get("most_inside", 0), inside)
            assert inside <= design.params.fifo_depth + ROOM_MARGIN, "the unpacker took more than its room"
            result["full"] += len(held) == capacity
            if len(got) == len(expected):
                break
        result["got"] = got
        ctx.set(dut.credit, credit)
        for _ in range(4):
            await ctx.tick()
            ctx.set(dut.credit, 0)
        result["busy"] = (ctx.get(dut.busy), ctx.get(dut.proj_busy))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(broadcaster, background=True)
    sim.add_testbench(pe_side)
    sim.run()
    assert result["got"] == expected
    assert result["room_low"] > 0, "the slow PE side must have filled the unpacker"
    assert result["most_inside"] >= design.params.fifo_depth, "the broadcaster must have used the room"
    assert result["full"] > 0, "the unpacker must have spent every credit"
    assert result["busy"] == (0, 0)


@pytest.mark.parametrize("lanes", [2, 4])
def test_unpacker_room_falls_when_it_holds_fifo_depth_words(lanes):
    """With no credit back from the PE, words sent one at a time (each left to settle): `room` is up exactly while
    the words neither handed to the PE nor dropped number fewer than `fifo_depth`."""
    design, pe, dut = unpacker_of_pe1(lanes)
    columns = [c for c, has in enumerate(columns_with_entries(pe, phase_index(0, PHASE_X), 6)) if has]
    assert columns, "the PE must have an x column with entries"
    fifo_depth = design.params.fifo_depth
    n_words = pe_fifo_words(fifo_depth) + fifo_depth + 1
    seen = []

    async def testbench(ctx):
        ctx.set(dut.credit, 0)
        handed = 0
        for k in range(n_words):
            column = columns[k % len(columns)]
            ctx.set(dut.i.payload, x_word(design, column, k + 1))
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            for _ in range(12):
                _, _, valid = await ctx.tick().sample(dut.o.valid)
                handed += valid
            seen.append((k + 1 - handed, ctx.get(dut.room)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert max(held for held, _ in seen) > fifo_depth, "the test must fill the unpacker past its room"
    assert [room for _, room in seen] == [int(held < fifo_depth) for held, _ in seen]


# ---- MaskAddresser -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes, layers, proj", [(2, 1, 6), (4, 2, 10), (2, 2, None)])
def test_mask_addresser_gives_every_phase_its_rom_words(lanes, layers, proj):
    encoded = encoded_model(5, 12, proj, layers=layers, density=0.3, n_pes=4, seed=lanes + layers)
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=lanes))
    bases, size = mask_bases(design)
    assert LaneUnpacker(design, 2).group_masks()[0] == bases
    assert len(LaneUnpacker(design, 3).group_masks()[1]) == size
    # every column of every phase (proj: every group's first column), and a phase that is never broadcast
    words = []
    for phase in range(design.n_layers * 3):
        layer, kind = divmod(phase, 3)
        info = design.layers[layer]
        columns = {PHASE_X: info.input_size, PHASE_R: info.recurrent_size, PHASE_PROJ: info.cell_size}[kind]
        step = lanes if kind == PHASE_PROJ else 1
        words += [{"phase": phase, "buffer": c & 1, "column": c, "value": 1, "values": [c] * lanes}
                  for c in range(0, columns, step)]
    addresses = [mask_address(design, w["phase"], w["column"]) for w in words]
    # every broadcast phase's words at their own addresses, aligned so that base | offset is base + offset;
    # a phase without masks at the last word, all ones
    masked = [a for w, a in zip(words, addresses) if w["phase"] in bases]
    assert len(set(masked)) == len(masked) and max(masked) < size - 1
    assert {a for w, a in zip(words, addresses) if w["phase"] not in bases} <= {size - 1}
    for w in words:
        parts = mask_address_parts(design, w["phase"], w["column"])
        assert parts["mask_base"] & parts["mask_offset"] == 0
    rom = LaneUnpacker(design, 1).group_masks()[1]
    assert rom[size - 1] == (1 << lanes) - 1
    dut = MaskAddresser(design)
    got = []

    async def testbench(ctx):       # combinational: the handshake and the payload pass straight through
        for k, word in enumerate(words):
            ctx.set(dut.i.payload, word)
            ctx.set(dut.i.valid, k & 1)
            ctx.set(dut.o.ready, k % 3 != 0)
            await ctx.delay(1e-9)
            assert (ctx.get(dut.o.valid), ctx.get(dut.i.ready)) == (k & 1, k % 3 != 0)
            out = ctx.get(dut.o.payload)
            assert list(out.values) == word["values"] and out.buffer == word["buffer"]
            assert out.mask_base & out.mask_offset == 0
            got.append((out.phase, out.column, out.mask_base | out.mask_offset, out.proj))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    proj_phases = {phase_index(l, PHASE_PROJ) for l in range(design.n_layers)}
    assert got == [(w["phase"], w["column"], a, int(w["phase"] in proj_phases and w["phase"] in bases))
                   for w, a in zip(words, addresses)]


def test_mask_addresser_rejects_one_lane():
    encoded = encoded_model(5, 12, 6, n_pes=2)
    with pytest.raises(ValueError, match="one lane"):
        MaskAddresser(AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=1)))


# ---- the accelerator ----------------------------------------------------------------------------------------

SHAPES = {  # input, cells, projection, layers, peepholes
    "lstmp_peephole": (7, 13, 6, 1, True),
    "two_layers": (5, 10, 4, 2, False),
    "no_projection": (6, 9, None, 2, True),
}


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
@pytest.mark.parametrize("lanes,n_pes", [(1, 2), (2, 2), (2, 4), (4, 4), (2, 6), (4, 8)])
def test_accelerator_with_lanes_is_bit_exact(shape, lanes, n_pes):
    input_size, cells, proj, layers, peephole = SHAPES[shape]
    encoded = encoded_model(input_size, cells, proj, layers=layers, peephole=peephole, density=0.4, n_pes=n_pes,
                            seed=lanes + n_pes)
    check_against_golden(encoded, frames=4, restart_at=2, in_stall=0.1, out_stall=0.2, seed=n_pes,
                         params=HardwareParams(lanes=lanes))


# ---- parameters -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes, error", [(3, ValueError), (0, ValueError), (6, ValueError), (2.0, TypeError),
                                          (True, TypeError), (128, ValueError)])
def test_hardware_params_reject_bad_lanes(lanes, error):
    with pytest.raises(error, match="lanes"):
        HardwareParams(lanes=lanes)


def test_design_rejects_lanes_that_do_not_divide_the_pes():
    encoded = encoded_model(4, 8, 4, n_pes=6)
    with pytest.raises(ParameterError, match="lanes = 4 must divide the number of PEs"):
        AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=4))
    encoded = encoded_model(4, 8, 4, n_pes=2)
    with pytest.raises(ParameterError, match="lanes = 4"):
        AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=4))
    assert AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=2)).lanes == 2


# ---- the cycle model ----------------------------------------------------------------------------------------

def test_default_lanes_is_the_fewest_that_a_doubling_does_not_beat():
    # many PEs for a small model: the element-wise pass bounds the frame with one lane
    encoded = encoded_model(8, 64, 32, density=0.1, n_pes=16, seed=2)
    design = AcceleratorDesign.from_encoded(encoded)
    assert design.lanes > 1
    frame = {lanes: predict_cycles(AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=lanes))).steady_state
             for lanes in (design.lanes // 2, design.lanes, 2 * design.lanes)}
    assert frame[design.lanes] < 0.98 * frame[design.lanes // 2]
    assert frame[2 * design.lanes] >= 0.98 * frame[design.lanes]
    assert default_lanes(design) == design.lanes


CYCLE_MODEL_SHAPES = [(20, 64, 32, 1, 8), (24, 96, 48, 1, 8), (8, 48, 24, 2, 8), (10, 40, None, 1, 4)]
LARGEST_SHAPE = max(CYCLE_MODEL_SHAPES, key=lambda shape: shape[1])        # by cells


@pytest.mark.parametrize("shape, lanes", [
    # the largest shape, and two layers at 4 lanes, take ~2.5 of the CI's minutes: the slow suite has them
    pytest.param(shape, lanes, marks=[pytest.mark.slow] if shape == LARGEST_SHAPE or (shape[3] == 2 and lanes == 4)
                 else [], id=f"{lanes}-shape{index}")
    for lanes in (1, 2, 4) for index, shape in enumerate(CYCLE_MODEL_SHAPES)])
def test_cycle_model_is_within_two_percent_of_the_rtl(shape, lanes):
    # issue #12's bound; frames of a few hundred cycles (in tinier ones the fixed latencies weigh more)
    input_size, cells, proj, layers, n_pes = shape
    encoded = encoded_model(input_size, cells, proj, layers=layers, density=0.2, n_pes=n_pes, seed=1)
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=lanes))
    steady, _, _ = simulated_steady_cycles(design, input_size, encoded.numerics)
    assert predict_cycles(design).steady_state == pytest.approx(steady, rel=0.02)
