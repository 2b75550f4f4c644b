"""DeltaFilter: words in, the deltas of the sent columns out, against a Python model of the rule of
docs/numerics.md ("Delta mode") and of the filter's sequence restart (hw/delta_filter.py), with stalls on
both sides and the same column again at every distance the pipeline has in flight; one lane, and
lanes 2 and 4 (group words of m columns, each column with its own last value)."""

from __future__ import annotations

import gc
import random
from dataclasses import replace

import pytest
from amaranth.sim import Simulator

from sparselstm.hw.delta_filter import DeltaFilter, delta_columns
from sparselstm.hw.design import PHASE_PROJ, PHASE_R, AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.testing import stream_receive
from sparselstm.spec.encoded import DeltaThresholds

from test_hw_design import encoded_model


def delta_design(thresholds, lanes=1, **model):
    encoded = encoded_model(**model)
    return AcceleratorDesign.from_encoded(replace(encoded, delta_thresholds=tuple(thresholds)),
                                          HardwareParams(lanes=lanes))


def reference(design, words) -> list[tuple]:
    """The filter's output words for (phase, column, value, restart) words."""
    columns = delta_columns(design)
    last = {}
    out = []
    for phase, column, value, restart in words:
        _, _, threshold = columns[phase]
        stored = last.get((phase, column), 0)
        value = 0 if restart and phase % 3 == PHASE_R else value
        base = 0 if restart else stored
        new = value if abs(value - base) > threshold else base
        last[(phase, column)] = new
        if new != stored:
            out.append((phase, column, new - stored))
    return out


def random_words(design, rng, count, restart_chance):
    """Words of the used phases; often the column just sent again (same value or not)."""
    columns = delta_columns(design)
    phases = [p for p, (_, size, _) in enumerate(columns) if size > 0]
    act, unit = design.numerics.act_bits, design.numerics.unit_bits
    words = []
    for _ in range(count):
        if words and rng.random() < 0.3:
            phase, column, value, _ = words[-1]
            value = value if rng.random() < 0.5 else value + rng.randint(-40, 40)
        else:
            phase = rng.choice(phases)
            column = rng.randrange(columns[phase][1])
            half = 1 << ((unit if phase % 3 == 2 else act) - 1)
            # small values too, near the thresholds
            value = rng.randint(-half, half - 1) if rng.random() < 0.5 else rng.randint(-300, 300)
        half = 1 << ((unit if phase % 3 == 2 else act) - 1)
        words.append((phase, column, max(-half, min(half - 1, value)), int(rng.random() < restart_chance)))
    return words


def lane_words(design, words):
    """One-column words as the scheduler sends them with lanes > 1: x and y words in lane 0, the m words of
    a group packed into one word (`value` = the columns that exist), (phase, column, values, mask, restart)."""
    lanes, columns = design.lanes, delta_columns(design)
    packed = []
    for phase, column, value, restart in words:
        if phase % 3 != PHASE_PROJ:
            packed.append((phase, column, (value,) + (0,) * (lanes - 1), 1, restart))
            continue
        first = column - column % lanes
        exists = [first + k < columns[phase][1] for k in range(lanes)]
        # the other columns of the group: values near the word's, so that some move and some do not
        values = tuple(value if first + k == column else value + 37 * (k - column % lanes) for k in range(lanes))
        packed.append((phase, first, values, sum(int(e) << k for k, e in enumerate(exists)), restart))
    return packed


def lane_reference(design, packed) -> list[tuple]:
    """The filter's output words for lane words: (phase, column, sent mask, deltas of the sent columns)."""
    columns = delta_columns(design)
    last, out = {}, []
    for phase, column, values, mask, restart in packed:
        threshold = columns[phase][2]
        sent, deltas = 0, []
        for k, value in enumerate(values):
            if not mask >> k & 1:
                continue
            stored = last.get((phase, column + k), 0)
            value = 0 if restart and phase % 3 == PHASE_R else value
            base = 0 if restart else stored
            new = value if abs(value - base) > threshold else base
            last[(phase, column + k)] = new
            if new != stored:
                sent |= 1 << k
                deltas.append(new - stored)
        if sent:
            out.append((phase, column, sent, tuple(deltas)))
    return out


def run_filter(design, words, seed, in_stall, out_stall):
    """Words (phase, column, value, restart) through the filter; with lanes > 1 packed by `lane_words`."""
    dut = DeltaFilter(design)
    lanes = design.lanes
    if lanes > 1:
        words = lane_words(design, words)
        expected = lane_reference(design, words)
    else:
        expected = reference(design, words)
    result = {}

    async def sender(ctx):
        rng = random.Random(seed)
        for word in words:
            while rng.random() < in_stall:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            if lanes > 1:
                phase, column, values, mask, restart = word
                ctx.set(dut.i.payload, {"phase": phase, "buffer": 0, "column": column, "value": mask,
                                        "values": list(values)})
            else:
                phase, column, value, restart = word
                ctx.set(dut.i.payload, {"phase": phase, "buffer": 0, "column": column, "value": value})
            ctx.set(dut.restart, restart)
            ctx.set(dut.i.valid, 1)
            while not (await ctx.tick().sample(dut.i.ready))[2]:
                pass
        ctx.set(dut.i.valid, 0)

    async def receiver(ctx):
        received = await stream_receive(ctx, dut.o, len(expected), rng=random.Random(seed + 1), stall=out_stall,
                                        max_cycles=20 * len(words) + 100)
        if lanes > 1:
            result["words"] = [(w.payload.phase, w.payload.column, w.payload.value,
                                tuple(w.payload.values[k] for k in range(lanes) if w.payload.value >> k & 1))
                               for w in received]
        else:
            result["words"] = [(w.payload.phase, w.payload.column, w.payload.value) for w in received]
        ctx.set(dut.o.ready, 1)
        for _ in range(len(words) + 5):      # the rest of the words are not sent: nothing more comes out
            await ctx.tick()
            assert not ctx.get(dut.o.valid)
        result["idle"] = not ctx.get(dut.busy) and not ctx.get(dut.proj_busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(sender, background=True)
    sim.add_testbench(receiver)
    sim.run()
    assert result["words"] == expected
    assert result["idle"]
    return expected


@pytest.mark.parametrize("seed, in_stall, out_stall", [(1, 0.0, 0.0), (2, 0.3, 0.0), (3, 0.0, 0.5), (4, 0.4, 0.4)])
def test_filter_matches_the_reference_with_stalls_and_restarts(seed, in_stall, out_stall):
    design = delta_design([DeltaThresholds(40, 25, 300), DeltaThresholds(0, 90, 7)], seed=seed)
    words = random_words(design, random.Random(seed), 300, restart_chance=0.1)
    sent = run_filter(design, words, seed, in_stall, out_stall)
    assert 0 < len(sent) < len(words)       # the test exercises both outcomes


@pytest.mark.parametrize("lanes, seed, in_stall, out_stall", [(2, 11, 0.0, 0.0), (2, 12, 0.3, 0.4),
                                                              (4, 13, 0.0, 0.0), (4, 14, 0.4, 0.3)])
def test_lane_words_compare_each_column_with_its_own_last_value(lanes, seed, in_stall, out_stall):
    """Odd cell counts (a partial last group), restarts, stalls; a group word goes out if any column moved."""
    design = delta_design([DeltaThresholds(40, 25, 60), DeltaThresholds(0, 90, 7)], lanes=lanes, cells=11,
                          proj=6, seed=seed)
    words = random_words(design, random.Random(seed), 300, restart_chance=0.1)
    sent = run_filter(design, words, seed, in_stall, out_stall)
    assert 0 < len(sent) < len(words)
    groups = [word for word in sent if word[0] % 3 == PHASE_PROJ]
    # some group words carry only part of their columns, some more than one
    assert any(bin(mask).count("1") == 1 for _, _, mask, _ in groups)
    assert any(bin(mask).count("1") > 1 for _, _, mask, _ in groups)


@pytest.mark.parametrize("in_stall, out_stall", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.4, 0.4)])
@pytest.mark.parametrize("distance", [1, 2, 3, 4])
@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_a_row_again_at_every_distance_in_flight(lanes, distance, in_stall, out_stall):
    """The filter writes a row three words after reading it, forwarding the rows in flight (hw/delta_filter.py):
    each row here comes back every `distance` words (1..3 forwarded, 4 read from the memory), an m group's row
    first, with restarts, and stalls that spread the words apart."""
    design = delta_design([DeltaThresholds(40, 25, 60), DeltaThresholds(0, 90, 7)], lanes=lanes, cells=17,
                          proj=6, seed=20 + lanes)
    rng = random.Random(100 * lanes + distance)
    slots = [(PHASE_PROJ, 0), (0, 1), (PHASE_R, 2), (0, 3)]     # (phase, column): a different row each
    words = [slots[i % distance] + (rng.randint(-150, 150), int(rng.random() < 0.1)) for i in range(80)]
    sent = run_filter(design, words, 7 * distance + lanes, in_stall, out_stall)
    assert 0 < len(sent) < len(words)


def test_threshold_zero_sends_every_change_and_nothing_else():
    design = delta_design([DeltaThresholds()], layers=1, seed=5)
    words = [(0, 3, 100, 1), (0, 3, 100, 0), (0, 3, -7, 0), (0, 4, 0, 0), (1, 2, 9, 0), (1, 2, 9, 0)]
    assert run_filter(design, words, 5, 0.0, 0.0) == [(0, 3, 100), (0, 3, -107), (1, 2, 9)]


def test_a_change_of_exactly_the_threshold_is_not_sent():
    """|delta| > threshold, strictly, on both sides of the stored value (the filter tests it as bounds)."""
    design = delta_design([DeltaThresholds(10, 10, 10)], layers=1, seed=6)
    words = [(0, 1, 10, 0), (0, 1, 11, 0), (0, 1, 1, 0), (0, 1, 21, 0), (0, 1, 22, 0), (0, 1, 0, 0),
             (0, 1, -10, 0), (0, 1, -11, 0), (0, 1, -1, 0), (0, 1, -21, 0), (0, 1, -22, 0)]
    assert run_filter(design, words, 8, 0.0, 0.0) == [(0, 1, 11), (0, 1, 11), (0, 1, -22), (0, 1, -11),
                                                       (0, 1, -11)]


def test_restart_takes_back_the_old_columns():
    """A restart word sends new - old last value: x at its own value (or 0 under the threshold), a recurrent
    column always back to 0."""
    design = delta_design([DeltaThresholds(10, 10, 10)], layers=1, seed=6)
    words = [(0, 1, 50, 0), (1, 1, 60, 0), (0, 1, 5, 1), (1, 1, 999, 1), (0, 1, 30, 1)]
    assert run_filter(design, words, 6, 0.0, 0.0) == [(0, 1, 50), (1, 1, 60), (0, 1, -50), (1, 1, -60),
                                                       (0, 1, 30)]


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_filter_rejects_a_design_without_delta_mode():
    with pytest.raises(ValueError, match="delta mode"):
        DeltaFilter(AcceleratorDesign.from_encoded(encoded_model(layers=1)))
    with pytest.raises(TypeError, match="AcceleratorDesign"):
        DeltaFilter("design")
    gc.collect()   # the half-built components warn when collected: let that happen under this filter
