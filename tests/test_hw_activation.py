# amaranth: UnusedElaboratable=no
"""hw/activation.py against sw.fixedpoint.sigmoid_q / tanh_q, word for word.

Every input code goes through the datapath (ActivationPipeline, two lanes at full rate); the stream wrapper
(ActivationUnit) gets edge codes plus a random subset under random stalls on both sides, with its tag and
the stream protocol checked.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from sparselstm.hw.activation import ActivationPipeline, ActivationUnit
from sparselstm.sw.fixedpoint import Numerics, activation_tables, sigmoid_q, tanh_q

REFERENCE = {"sigmoid": sigmoid_q, "tanh": tanh_q}

# pre_bits=12/table_log2=6 (S = 5); and S = 0 (no interpolation) with narrow unit words.
NON_DEFAULT = [Numerics(pre_bits=12, pre_frac=8, table_log2=6),
               Numerics(pre_bits=8, pre_frac=4, table_log2=7, unit_bits=10, unit_frac=7)]


def all_codes(numerics: Numerics) -> np.ndarray:
    return np.arange(-(1 << (numerics.pre_bits - 1)), 1 << (numerics.pre_bits - 1), dtype=np.int64)


def run_pipeline(function: str, numerics: Numerics, tables, lane_codes: list[np.ndarray]) -> list[np.ndarray]:
    """Stream each lane's codes through ActivationPipeline with en = 1 every cycle; the outputs per lane."""
    dut = ActivationPipeline(function, numerics, tables, lanes=len(lane_codes))
    count = len(lane_codes[0])
    latency = ActivationPipeline.LATENCY
    outputs = [[] for _ in lane_codes]

    async def testbench(ctx):
        ctx.set(dut.en, 1)
        for cycle in range(count + latency):
            if cycle < count:
                ctx.set(dut.x, [int(codes[cycle]) for codes in lane_codes])
            await ctx.tick()
            if cycle >= latency - 1 and len(outputs[0]) < count:
                for lane, value in enumerate(ctx.get(dut.y)):
                    outputs[lane].append(value)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return [np.array(lane, dtype=np.int64) for lane in outputs]


def assert_words_equal(got: np.ndarray, expected: np.ndarray, codes: np.ndarray, what: str) -> None:
    wrong = np.flatnonzero(got != expected)
    assert wrong.size == 0, (f"{what}: {wrong.size} wrong words, first at x = {codes[wrong[:5]].tolist()}: "
                             f"got {got[wrong[:5]].tolist()}, expected {expected[wrong[:5]].tolist()}")


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
def test_pipeline_exhaustive_default_numerics(function):
    numerics = Numerics()
    tables = activation_tables(numerics)
    codes = all_codes(numerics)
    half = len(codes) // 2
    # Lane 0 takes the negative half, lane 1 the positive half backwards: both lanes share one ROM.
    lanes = [codes[:half], codes[half:][::-1]]
    got = run_pipeline(function, numerics, tables, lanes)
    for lane_codes, lane_got in zip(lanes, got):
        assert_words_equal(lane_got, REFERENCE[function](lane_codes, tables, numerics), lane_codes, function)


@pytest.mark.parametrize("numerics", NON_DEFAULT, ids=["pre12_log6", "no_interpolation"])
@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
def test_pipeline_exhaustive_other_numerics(function, numerics):
    tables = activation_tables(numerics)
    codes = all_codes(numerics)
    [got] = run_pipeline(function, numerics, tables, [codes])
    assert_words_equal(got, REFERENCE[function](codes, tables, numerics), codes, function)


@st.composite
def small_numerics(draw) -> Numerics:
    """Any valid activation format with at most 2**11 input codes (exhaustive in a fraction of a second)."""
    pre_bits = draw(st.integers(2, 11))
    unit_bits = draw(st.integers(3, 20))
    return Numerics(pre_bits=pre_bits, pre_frac=draw(st.integers(0, pre_bits - 1)),
                    table_log2=draw(st.integers(1, pre_bits - 1)), unit_bits=unit_bits,
                    unit_frac=draw(st.integers(0, unit_bits - 2)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(numerics=small_numerics(), function=st.sampled_from(["sigmoid", "tanh"]))
def test_pipeline_exhaustive_any_format(numerics, function):
    tables = activation_tables(numerics)
    codes = all_codes(numerics)
    [got] = run_pipeline(function, numerics, tables, [codes])
    assert_words_equal(got, REFERENCE[function](codes, tables, numerics), codes, function)


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
def test_pipeline_reads_the_given_tables(function, rng):
    """The hardware uses the integers it is given (an encoded model's tables), not ones of its own."""
    numerics = Numerics(pre_bits=12, pre_frac=8, table_log2=6)
    tables = {name: np.array(table) for name, table in activation_tables(numerics).items()}
    table = tables[f"{function}_T"]
    low = 0 if function == "sigmoid" else -numerics.one
    table[:] = np.clip(table + rng.integers(-300, 301, table.shape), low, numerics.one)
    tables[f"{function}_D"] = np.append(np.diff(table), 0)
    codes = all_codes(numerics)
    [got] = run_pipeline(function, numerics, tables, [codes])
    assert_words_equal(got, REFERENCE[function](codes, tables, numerics), codes, function)
    assert not np.array_equal(got, REFERENCE[function](codes, activation_tables(numerics), numerics))


def run_unit_with_stalls(dut: ActivationUnit, codes: np.ndarray, tags: np.ndarray, rng,
                         idle: float, stall: float) -> list[tuple[int, int]]:
    """Drive dut.i with random gaps and dut.o.ready with random stalls; check the stream protocol on o.

    Returns the (y, tag) pairs in the order they were taken."""
    received: list[tuple[int, int]] = []
    gaps = rng.random(len(codes) * 4) < idle
    stalls = rng.random(len(codes) * 8 + 64) < stall

    async def producer(ctx):
        gap = iter(gaps)
        for code, tag in zip(codes, tags):
            while next(gap):
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"x": int(code), "tag": int(tag)})
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        held = None       # an offered but untaken word must stay offered, unchanged (stream rules)
        for stalled in stalls:
            ctx.set(dut.o.ready, int(not stalled))
            _, _, valid, y, tag = await ctx.tick().sample(dut.o.valid, dut.o.p.y, dut.o.p.tag)
            if held is not None:
                assert valid and (y, tag) == held, "output word withdrawn or changed before it was taken"
            held = (y, tag) if valid and stalled else None
            if valid and not stalled:
                received.append((y, tag))
            if len(received) == len(codes):
                return
        raise AssertionError(f"only {len(received)} of {len(codes)} words came out")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return received


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.3, 0.5), (0.0, 0.8)])
def test_unit_stream_with_stalls(function, idle, stall, rng):
    numerics = Numerics()
    tables = activation_tables(numerics)
    low, high = -(1 << (numerics.pre_bits - 1)), (1 << (numerics.pre_bits - 1)) - 1
    s = numerics.interp_bits
    edges = [low, low + 1, -1, 0, 1, high, high - 1, 1 << s, (1 << s) - 1, -(1 << s), -(1 << s) + 1]
    codes = np.concatenate([edges, rng.integers(low, high + 1, 1500)]).astype(np.int64)
    tags = np.arange(len(codes)) % 256
    dut = ActivationUnit(function, numerics, tables, tag_shape=unsigned(8))
    received = run_unit_with_stalls(dut, codes, tags, rng, idle, stall)
    got = np.array([y for y, _ in received], dtype=np.int64)
    assert [tag for _, tag in received] == tags.tolist(), "words lost, duplicated or reordered"
    assert_words_equal(got, REFERENCE[function](codes, tables, numerics), codes, function)


def test_unit_without_tag(rng):
    numerics = NON_DEFAULT[0]
    tables = activation_tables(numerics)
    codes = all_codes(numerics)[::7]
    received = run_unit_with_stalls(ActivationUnit("sigmoid", numerics, tables), codes, np.zeros_like(codes),
                                    rng, 0.2, 0.3)
    got = np.array([y for y, _ in received], dtype=np.int64)
    assert_words_equal(got, sigmoid_q(codes, tables, numerics), codes, "sigmoid")


def test_from_design_takes_the_encoded_tables():
    from sparselstm.hw.design import AcceleratorDesign
    from sparselstm.sw.format import encode
    from sparselstm.sw.model import random_model
    from sparselstm.sw.quantize import quantize_model

    numerics = Numerics(pre_bits=12, pre_frac=8, table_log2=6)
    design = AcceleratorDesign.from_encoded(encode(quantize_model(random_model(3, 4), numerics), n_pes=2))
    dut = ActivationUnit.from_design(design, "tanh", tag_shape=unsigned(3))
    assert dut.numerics == numerics and dut.tables is design.tables
    codes = all_codes(numerics)[::5]
    received = run_unit_with_stalls(dut, codes, np.arange(len(codes)) % 8, np.random.default_rng(1), 0.1, 0.1)
    got = np.array([y for y, _ in received], dtype=np.int64)
    assert_words_equal(got, tanh_q(codes, design.tables, numerics), codes, "tanh")


def test_constructors_reject_bad_parameters():
    numerics = Numerics()
    tables = activation_tables(numerics)
    with pytest.raises(ValueError, match="function"):
        ActivationUnit("relu", numerics, tables)
    with pytest.raises(ValueError, match="Numerics"):
        ActivationUnit("tanh", {"pre_bits": 16}, tables)
    with pytest.raises(ValueError, match="lanes"):
        ActivationPipeline("tanh", numerics, tables, lanes=0)
    with pytest.raises(ValueError, match="missing"):
        ActivationUnit("tanh", numerics, {"sigmoid_T": tables["sigmoid_T"], "sigmoid_D": tables["sigmoid_D"]})
    with pytest.raises(ValueError, match="expected 1025 integers"):
        ActivationUnit("sigmoid", numerics, activation_tables(NON_DEFAULT[0]))
    broken = dict(tables, sigmoid_D=tables["sigmoid_D"] + 1)
    with pytest.raises(ValueError, match="differences"):
        ActivationUnit("sigmoid", numerics, broken)
    negative = dict(tables, sigmoid_T=tables["sigmoid_T"] - 9000)   # same differences, below 0
    with pytest.raises(ValueError, match=r"\[0, 16384\]"):
        ActivationUnit("sigmoid", numerics, negative)
