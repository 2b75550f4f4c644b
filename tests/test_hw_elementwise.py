# amaranth: UnusedElaboratable=no
"""hw/elementwise.py against the software numerics, word for word.

Two sources of expected words: sw.golden.golden_trace of a quantised model (the real forward pass), and, for
inputs no sensible model produces (huge accumulators, extreme peepholes, saturated cells), a cell step
assembled from sw.fixedpoint primitives following docs/numerics.md, itself checked against golden_trace.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from amaranth.hdl import ClockDomain, Fragment, Module
from amaranth.sim import Simulator

from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.elementwise import ElementwiseLayer, ElementwiseUnit, revisits_need_checking
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.testing import stream_receive, stream_send
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.fixedpoint import Numerics, activation_tables, align, narrow, sigmoid_q, tanh_q
from sparselstm.sw.golden import golden_trace
from sparselstm.sw.model import LSTMPLayer, LSTMPModel
from sparselstm.sw.pipeline import compress_and_encode

from test_hw_accelerator import encoded_model

GATES = ("i", "f", "g", "o")


# ---- the expected words -------------------------------------------------------------------------------------

def reference_cell(n: Numerics, tables, layer: ElementwiseLayer, acc: dict, peep: dict, c_prev: int):
    """(c, m) of one cell, docs/numerics.md steps 2-7, from sw.fixedpoint primitives (Python ints)."""
    def peephole_term(gate, c):
        return align(peep[gate] * c, layer.fp + n.cell_frac, layer.facc) if layer.peephole else 0

    pre_i = narrow(acc["i"] + peephole_term("i", c_prev), layer.facc, n.pre_frac, n.pre_bits)
    pre_f = narrow(acc["f"] + peephole_term("f", c_prev), layer.facc, n.pre_frac, n.pre_bits)
    pre_g = narrow(acc["g"], layer.facc, n.pre_frac, n.pre_bits)
    i, f, g = sigmoid_q(pre_i, tables, n), sigmoid_q(pre_f, tables, n), tanh_q(pre_g, tables, n)
    fs = n.cell_sum_frac
    cell_sum = ((f * c_prev) << (fs - n.unit_frac - n.cell_frac)) + ((i * g) << (fs - 2 * n.unit_frac))
    c = narrow(cell_sum, fs, n.cell_frac, n.cell_bits)
    pre_o = narrow(acc["o"] + peephole_term("o", c), layer.facc, n.pre_frac, n.pre_bits)
    tc = tanh_q(narrow(c, n.cell_frac, n.pre_frac, n.pre_bits), tables, n)
    m = narrow(sigmoid_q(pre_o, tables, n) * tc, 2 * n.unit_frac, n.unit_frac, n.unit_bits)
    return c, m


def reference_outputs(n: Numerics, tables, layers, items: list[dict]) -> tuple[list[tuple], list[int]]:
    """Expected (layer, cell, m) per item in order, and every c produced, keeping c per (layer, cell)."""
    state: dict[tuple[int, int], int] = {}
    outputs, cells = [], []
    for item in items:
        key = (item["layer"], item["cell"])
        c_prev = 0 if item["first_frame"] else state.get(key, 0)
        acc = {gate: item[f"acc_{gate}"] for gate in GATES}
        peep = {gate: item[f"peep_{gate}"] for gate in ("i", "f", "o")}
        c, m = reference_cell(n, tables, layers[item["layer"]], acc, peep, c_prev)
        state[key] = c
        outputs.append((item["layer"], item["cell"], m))
        cells.append(c)
    return outputs, cells


def item(layer, cell, first_frame, acc, peep=(0, 0, 0)) -> dict:
    return dict(layer=layer, cell=cell, first_frame=int(first_frame),
                **{f"acc_{gate}": int(a) for gate, a in zip(GATES, acc)},
                **{f"peep_{gate}": int(p) for gate, p in zip(("i", "f", "o"), peep)})


def frames_of_items(layers, frames: int, starts, make_acc, make_peep, rng, shuffle=True) -> list[dict]:
    """Every cell of every layer for each frame, in a random cell order per layer and frame."""
    items = []
    for t in range(frames):
        for index, layer in enumerate(layers):
            order = rng.permutation(layer.cell_size) if shuffle else range(layer.cell_size)
            for j in order:
                peep = make_peep(index, int(j)) if layer.peephole else (0, 0, 0)
                items.append(item(index, int(j), starts[t], make_acc(index, int(j), t), peep))
    return items


# ---- driving the unit --------------------------------------------------------------------------------------

def run_unit(dut: ElementwiseUnit, items: list[dict], rng, idle: float = 0.0, stall: float = 0.0):
    """Offer `items` with random gaps, take outputs with random stalls, check the stream protocol on o.

    Returns (outputs as (layer, cell, m) in order, input handshake cycles, output handshake cycles)."""
    result = {}

    async def producer(ctx):
        result["accepted_at"] = await stream_send(ctx, dut.i, items, rng=rng, idle=idle)

    async def consumer(ctx):
        result["received"] = await stream_receive(ctx, dut.o, len(items), rng=rng, stall=stall,
                                                  max_cycles=len(items) * 40 + 400)
        ctx.set(dut.o.ready, 1)
        for _ in range(2 * ElementwiseUnit.LATENCY):     # nothing more may come out
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "more outputs than inputs"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    outputs = [(word.payload.layer, word.payload.cell, word.payload.m) for word in result["received"]]
    return outputs, result["accepted_at"], [word.cycle for word in result["received"]]


def assert_outputs_equal(got: list[tuple], expected: list[tuple]) -> None:
    assert len(got) == len(expected)
    assert [w[:2] for w in got] == [w[:2] for w in expected], "outputs lost, duplicated or reordered"
    wrong = [k for k, (a, b) in enumerate(zip(got, expected)) if a != b]
    assert not wrong, (f"{len(wrong)} wrong m words, first at items {wrong[:5]}: got {[got[k] for k in wrong[:5]]}"
                       f", expected {[expected[k] for k in wrong[:5]]}")


# ---- a quantised model and its golden trace ----------------------------------------------------------------

def mixed_model(seed: int) -> LSTMPModel:
    """Two layers with different scales (so different FACC and fp); peepholes in layer 0 only."""
    rng = np.random.default_rng(seed)
    h0, p0, h1 = 7, 3, 6
    return LSTMPModel((
        LSTMPLayer(rng.uniform(-0.8, 0.8, (4 * h0, 5)), rng.uniform(-0.8, 0.8, (4 * h0, p0)),
                   rng.uniform(-1, 1, 4 * h0), peephole=rng.uniform(-1.5, 1.5, (3, h0)),
                   w_proj=rng.uniform(-1, 1, (p0, h0)), name="layer0"),
        LSTMPLayer(rng.uniform(-6, 6, (4 * h1, p0)), rng.uniform(-6, 6, (4 * h1, h1)),
                   rng.uniform(-4, 4, 4 * h1), name="layer1"),
    ))


def test_matches_golden_trace_over_frames_and_sequences(rng):
    """acc words from golden_trace in, m words of golden_trace out; two sequences, so c resets once."""
    numerics = Numerics()
    compressed = compress_and_encode(mixed_model(3), 2, numerics=numerics)
    qmodel, design = compressed.qmodel, AcceleratorDesign.from_encoded(compressed.encoded)
    assert design.layers[0].facc != design.layers[1].facc
    frames = 7
    starts = np.array([1, 0, 0, 0, 1, 0, 0], dtype=bool)
    x = rng.integers(-8 << numerics.act_frac, 8 << numerics.act_frac, (frames, qmodel.input_size))
    trace = golden_trace(qmodel, x, sequence_starts=starts)
    dut = ElementwiseUnit.from_design(design)

    def acc(layer, j, t):
        h = qmodel.layers[layer].cell_size
        return [trace[t][layer]["acc"][k * h + j] for k in range(4)]

    def peep(layer, j):
        return [qmodel.layers[layer].peephole[k, j] for k in range(3)]

    items = frames_of_items(dut.layers, frames, starts, acc, peep, rng)
    per_frame = sum(layer.cell_size for layer in dut.layers)
    expected = [(it["layer"], it["cell"], int(trace[k // per_frame][it["layer"]]["m"][it["cell"]]))
                for k, it in enumerate(items)]
    got, _, _ = run_unit(dut, items, rng, idle=0.2, stall=0.3)
    assert_outputs_equal(got, expected)
    # The primitive-built reference agrees with golden_trace, so the tests below that use it are sound.
    reference, _ = reference_outputs(numerics, design.tables, dut.layers, items)
    assert reference == expected
    assert len({m for _, _, m in expected}) > len(expected) // 2, "too many equal m words to be a real test"


# ---- configurations beyond one model --------------------------------------------------------------------

OTHER_NUMERICS = [
    Numerics(),
    # cell_frac < unit_frac (the f*c_prev product is shifted), pre_frac > cell_frac (tanh input shifted left),
    # a narrow cell word that saturates quickly, smaller tables.
    Numerics(cell_bits=16, cell_frac=12, pre_bits=14, pre_frac=13, table_log2=8),
    # cell_frac > unit_frac (the i*g product is shifted), narrow unit words.
    Numerics(unit_bits=12, unit_frac=10, cell_bits=22, cell_frac=15, pre_bits=12, pre_frac=7, table_log2=6),
]

# facc below pre_frac (left shift to pre), peephole term shifted right and shifted left; one layer without.
LAYERS = (ElementwiseLayer(cell_size=12, facc=25, fp=17), ElementwiseLayer(cell_size=5, facc=5),
          ElementwiseLayer(cell_size=11, facc=40, fp=10))
ACC_BITS = 52


def realistic_acc(layers, rng):
    """Accumulators of a few units, so the gates are neither all saturated nor all at 0.5."""
    return lambda layer, j, t: [int(v) for v in np.round(rng.normal(0, 2.5, 4) * 2.0 ** layers[layer].facc)]


def extreme_acc(rng):
    """Anything in the accumulator word, extremes included."""
    low, high = -(1 << (ACC_BITS - 1)), (1 << (ACC_BITS - 1)) - 1
    choices = [low, high, 0, -1, 1]
    return lambda layer, j, t: [int(rng.choice(choices)) if rng.random() < 0.3 else int(rng.integers(low, high))
                                for _ in range(4)]


def any_peephole(numerics, rng):
    low, high = -(1 << (numerics.peephole_bits - 1)), (1 << (numerics.peephole_bits - 1)) - 1
    return lambda layer, j: [int(rng.choice([low, high])) if rng.random() < 0.2 else int(rng.integers(low, high))
                             for _ in range(3)]


@pytest.mark.parametrize("numerics", OTHER_NUMERICS, ids=["default", "narrow_cell", "wide_cell"])
@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.5, 0.2), (0.1, 0.7)])
def test_three_layers_random_stalls(numerics, idle, stall, rng):
    tables = activation_tables(numerics)
    dut = ElementwiseUnit(numerics, tables, LAYERS, acc_bits=ACC_BITS)
    frames = 4
    starts = [1, 0, 1, 0]
    items = frames_of_items(LAYERS, frames, starts, realistic_acc(LAYERS, rng), any_peephole(numerics, rng), rng)
    expected, _ = reference_outputs(numerics, tables, LAYERS, items)
    got, _, _ = run_unit(dut, items, rng, idle, stall)
    assert_outputs_equal(got, expected)


@pytest.mark.parametrize("numerics", OTHER_NUMERICS[:2], ids=["default", "narrow_cell"])
def test_saturating_inputs(numerics, rng):
    """Huge accumulators and extreme peepholes: every narrowing saturates somewhere, nothing wraps."""
    tables = activation_tables(numerics)
    dut = ElementwiseUnit(numerics, tables, LAYERS, acc_bits=ACC_BITS)
    items = frames_of_items(LAYERS, 3, [1, 0, 0], extreme_acc(rng), any_peephole(numerics, rng), rng)
    expected, _ = reference_outputs(numerics, tables, LAYERS, items)
    got, _, _ = run_unit(dut, items, rng, idle=0.2, stall=0.4)
    assert_outputs_equal(got, expected)


def test_cell_state_saturates_and_comes_back(rng):
    """i = f = g = 1 drives c up by 1.0 per frame into saturation; then g = -1 drives it down to the other.

    Two one-cell layers: every item revisits a cell right behind its previous visit (the interlock case)."""
    numerics = Numerics(cell_bits=18, cell_frac=14)        # c in [-8, 8): saturates after 8 frames
    tables = activation_tables(numerics)
    layers = (ElementwiseLayer(cell_size=1, facc=20, fp=14), ElementwiseLayer(cell_size=1, facc=12))
    dut = ElementwiseUnit(numerics, tables, layers, acc_bits=40)
    big = (1 << 39) - 1
    items = []
    for t in range(36):
        g = big if t < 12 else -big
        for layer in range(2):
            items.append(item(layer, 0, t == 0, (big, big, g, big), (0, 0, 0) if layer else (1000, 1000, -1000)))
    expected, cells = reference_outputs(numerics, tables, layers, items)
    assert max(cells) == (1 << 17) - 1 and min(cells) == -(1 << 17), "the test must drive c into both limits"
    got, _, _ = run_unit(dut, items, rng, idle=0.1, stall=0.3)
    assert_outputs_equal(got, expected)


def test_first_frame_clears_state_without_waiting(rng):
    """A first frame uses c_prev = 0 even right behind the same cell, and needs no interlock."""
    numerics = Numerics()
    tables = activation_tables(numerics)
    layers = (ElementwiseLayer(cell_size=2, facc=20, fp=15),)
    dut = ElementwiseUnit(numerics, tables, layers, acc_bits=32)
    acc = realistic_acc(layers, rng)
    peep = any_peephole(numerics, rng)
    items = [item(0, j, True, acc(0, j, 0), peep(0, j)) for _ in range(6) for j in range(2)]
    expected, _ = reference_outputs(numerics, tables, layers, items)
    got, accepted_at, _ = run_unit(dut, items, rng)
    assert_outputs_equal(got, expected)
    assert np.all(np.diff(accepted_at) == 1), "first-frame items must not wait for the cell-state write"


def test_reset_mid_sequence_drops_the_items_in_flight(rng):
    """A reset while items fill the pipeline and the queue: none of them comes out, and a new sequence after it
    runs exact at full rate (data registers have no reset; valid bits, credits and the queue do)."""
    numerics = Numerics()
    tables = activation_tables(numerics)
    layers = (ElementwiseLayer(cell_size=ElementwiseUnit.MIN_REVISIT_DISTANCE, facc=20, fp=15),)
    dut = ElementwiseUnit(numerics, tables, layers, acc_bits=32)
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.dut = dut
    acc = realistic_acc(layers, rng)
    peep = any_peephole(numerics, rng)
    dropped = frames_of_items(layers, 2, [1, 0], acc, peep, rng)[:ElementwiseUnit.QUEUE_STAGE]
    after = frames_of_items(layers, 3, [1, 0, 0], acc, peep, rng, shuffle=False)
    expected, _ = reference_outputs(numerics, tables, layers, after)
    state = {}

    async def producer(ctx):
        await stream_send(ctx, dut.i, dropped)
        await ctx.tick().repeat(ElementwiseUnit.LATENCY // 2)    # some in the queue, some in the pipeline
        assert ctx.get(dut.o.valid)
        ctx.set(sync.rst, 1)
        await ctx.tick()
        ctx.set(sync.rst, 0)
        state["reset"] = True
        state["accepted_at"] = await stream_send(ctx, dut.i, after)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 0)
        while "reset" not in state:
            await ctx.tick()
        state["received"] = await stream_receive(ctx, dut.o, len(after),
                                                 max_cycles=len(after) + 4 * ElementwiseUnit.LATENCY)
        ctx.set(dut.o.ready, 1)
        for _ in range(2 * ElementwiseUnit.LATENCY):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "an item from before the reset came out"

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    got = [(word.payload.layer, word.payload.cell, word.payload.m) for word in state["received"]]
    assert_outputs_equal(got, expected)
    assert np.all(np.diff(state["accepted_at"]) == 1), "credits must start again from zero after the reset"


def test_latency_throughput_and_interlock(rng):
    """No stalls: LATENCY cycles to the first output, then one per cycle while cells revisit no sooner than
    MIN_REVISIT_DISTANCE items; a cell revisited sooner waits for its own write, and stays exact."""
    numerics = Numerics()
    tables = activation_tables(numerics)
    distance = ElementwiseUnit.MIN_REVISIT_DISTANCE
    layers = (ElementwiseLayer(cell_size=distance, facc=20, fp=15), ElementwiseLayer(cell_size=3, facc=18))
    dut = ElementwiseUnit(numerics, tables, layers, acc_bits=32)
    acc = realistic_acc(layers, rng)
    peep = any_peephole(numerics, rng)
    wide = frames_of_items(layers[:1], 3, [1, 0, 0], acc, peep, rng, shuffle=False)
    narrow_layer = [dict(it, layer=1) for it in frames_of_items(layers[1:], 3, [1, 0, 0], acc, peep, rng,
                                                                 shuffle=False)]
    items = wide + narrow_layer
    expected, _ = reference_outputs(numerics, tables, layers, items)
    got, accepted_at, taken_at = run_unit(dut, items, rng)
    assert_outputs_equal(got, expected)
    assert taken_at[0] - accepted_at[0] == ElementwiseUnit.LATENCY
    steps = np.diff(accepted_at)
    assert np.all(steps[:len(wide) - 1] == 1), "a layer of MIN_REVISIT_DISTANCE cells must run at full rate"
    # Layer 1 (3 cells): from its second frame on, cell 0 waits at the head of the input buffer until its
    # previous c is written, i.e. until MIN_REVISIT_DISTANCE cycles after its previous visit; cell 1 takes the
    # buffer's second slot, so cell 2's handshake waits (until cell 0 leaves).
    wait = distance - 2
    assert steps[len(wide) - 1:].tolist() == [1, 1, 1, 1, 1, wait, 1, 1, wait]



def test_unit_without_revisit_checks_is_exact_when_revisits_are_far_apart(rng):
    """revisits_checked=False (the accelerator's choice for layers of >= MIN_REVISIT_DISTANCE groups): the
    same outputs at full rate under stalls, frame after frame; a 3-cell layer revisited sooner reads a stale
    c (the interlock is really gone), which is why the accelerator keeps it for such layers."""
    numerics = Numerics()
    tables = activation_tables(numerics)
    distance = ElementwiseUnit.MIN_REVISIT_DISTANCE
    wide = (ElementwiseLayer(cell_size=distance, facc=20, fp=15),)
    acc = realistic_acc(wide, rng)
    peep = any_peephole(numerics, rng)
    items = frames_of_items(wide, 3, [1, 0, 0], acc, peep, rng, shuffle=False)
    expected, _ = reference_outputs(numerics, tables, wide, items)
    dut = ElementwiseUnit(numerics, tables, wide, acc_bits=32, revisits_checked=False)
    got, accepted_at, _ = run_unit(dut, items, rng, idle=0.2, stall=0.2)
    assert_outputs_equal(got, expected)
    got, accepted_at, _ = run_unit(ElementwiseUnit(numerics, tables, wide, acc_bits=32, revisits_checked=False),
                                   items, rng)
    assert np.all(np.diff(accepted_at) == 1)

    narrow = (ElementwiseLayer(cell_size=3, facc=18),)
    items = frames_of_items(narrow, 3, [1, 0, 0], realistic_acc(narrow, rng), peep, rng, shuffle=False)
    expected, _ = reference_outputs(numerics, tables, narrow, items)
    got, _, _ = run_unit(ElementwiseUnit(numerics, tables, narrow, acc_bits=32, revisits_checked=False), items, rng)
    assert got != expected, "without the interlock a 3-cell layer must read a stale c"
    with pytest.raises(TypeError, match="revisits_checked"):
        ElementwiseUnit(numerics, tables, narrow, acc_bits=32, revisits_checked=1)


def test_accelerator_checks_revisits_only_for_layers_of_few_groups():
    small = AcceleratorDesign.from_encoded(encoded_model(6, 8, 4, density=0.5, n_pes=2, seed=1),
                                           HardwareParams(lanes=2))
    large = AcceleratorDesign.from_encoded(encoded_model(6, 2 * ElementwiseUnit.MIN_REVISIT_DISTANCE, 4,
                                                         density=0.5, n_pes=2, seed=1), HardwareParams(lanes=2))
    assert revisits_need_checking(small) and not revisits_need_checking(large)
    assert revisits_need_checking(AcceleratorDesign.from_encoded(
        encoded_model(6, 2 * ElementwiseUnit.MIN_REVISIT_DISTANCE - 2, 4, density=0.5, n_pes=2, seed=1),
        HardwareParams(lanes=2)))


def test_back_to_back_visits_of_one_cell_wait_for_each_other(rng):
    """A one-cell layer frame after frame: every visit after the first waits at the head of the input buffer
    until the previous visit's c is written, while the next one waits in the second slot and must then wait
    for the head that just left (stage 1), not start with a stale c."""
    numerics = Numerics()
    tables = activation_tables(numerics)
    layers = (ElementwiseLayer(cell_size=1, facc=20, fp=15),)
    dut = ElementwiseUnit(numerics, tables, layers, acc_bits=32)
    items = frames_of_items(layers, 5, [1, 0, 0, 0, 0], realistic_acc(layers, rng), any_peephole(numerics, rng),
                            rng, shuffle=False)
    expected, _ = reference_outputs(numerics, tables, layers, items)
    got, accepted_at, _ = run_unit(dut, items, rng)
    assert_outputs_equal(got, expected)
    # visits leave stage 0 MIN_REVISIT_DISTANCE cycles apart; a handshake waits for a free slot
    distance = ElementwiseUnit.MIN_REVISIT_DISTANCE
    assert np.diff(accepted_at).tolist() == [1, 1, distance, distance]

@st.composite
def formats_and_layers(draw):
    """Any valid number format (small tables) with 1-3 small layers of any FACC and peephole scale."""
    unit_bits, cell_bits, pre_bits = draw(st.integers(3, 18)), draw(st.integers(2, 24)), draw(st.integers(2, 14))
    try:
        numerics = Numerics(unit_bits=unit_bits, unit_frac=draw(st.integers(0, unit_bits - 2)),
                            cell_bits=cell_bits, cell_frac=draw(st.integers(0, cell_bits - 1)),
                            pre_bits=pre_bits, pre_frac=draw(st.integers(0, pre_bits - 1)),
                            table_log2=draw(st.integers(1, min(pre_bits - 1, 8))),
                            peephole_bits=draw(st.integers(2, 18)))
    except ParameterError:
        assume(False)
    layers = tuple(ElementwiseLayer(cell_size=draw(st.integers(1, 4)), facc=draw(st.integers(-4, 40)),
                                    fp=draw(st.none() | st.integers(-4, 30)))
                   for _ in range(draw(st.integers(1, 3))))
    return numerics, layers, draw(st.integers(2, 48))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=formats_and_layers(), seed=st.integers(0, 2**32 - 1))
def test_any_format_and_layers(config, seed):
    numerics, layers, acc_bits = config
    rng = np.random.default_rng(seed)
    tables = activation_tables(numerics)
    low, high = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    peep_low, peep_high = -(1 << (numerics.peephole_bits - 1)), (1 << (numerics.peephole_bits - 1)) - 1

    def acc(layer, j, t):
        if rng.random() < 0.5:      # the whole word
            return [int(v) for v in rng.integers(low, high, 4, endpoint=True)]
        # a few units at FACC, inside the word
        return [int(np.clip(np.round(v * 2.0 ** layers[layer].facc), low, high)) for v in rng.normal(0, 3, 4)]

    def peep(layer, j):
        return [int(v) for v in rng.integers(peep_low, peep_high, 3, endpoint=True)]

    items = frames_of_items(layers, 3, [1, 0, 0], acc, peep, rng)
    expected, _ = reference_outputs(numerics, tables, layers, items)
    got, _, _ = run_unit(ElementwiseUnit(numerics, tables, layers, acc_bits=acc_bits), items, rng, 0.2, 0.3)
    assert_outputs_equal(got, expected)


# ---- construction ------------------------------------------------------------------------------------------

def test_from_design_uses_the_design_constants():
    design = AcceleratorDesign.from_encoded(compress_and_encode(mixed_model(5), 3).encoded)
    dut = ElementwiseUnit.from_design(design)
    assert dut.layers == (ElementwiseLayer(7, design.layers[0].facc, design.layers[0].fp),
                          ElementwiseLayer(6, design.layers[1].facc, None))
    assert (dut.acc_bits, dut.layer_bits, dut.cell_index_bits) == (design.acc_bits, design.layer_bits,
                                                                    design.cell_index_bits)
    assert dut.cell_bases == (0, 7) and dut.cell_depth == 13
    Fragment.get(dut, platform=None)          # and it elaborates


def test_constructor_rejects_bad_parameters():
    numerics = Numerics()
    tables = activation_tables(numerics)
    layers = (ElementwiseLayer(cell_size=4, facc=20),)
    with pytest.raises(ValueError, match="cell_size"):
        ElementwiseLayer(cell_size=0, facc=20)
    with pytest.raises(TypeError, match="fp"):
        ElementwiseLayer(cell_size=4, facc=20, fp=1.5)
    with pytest.raises(ValueError, match="empty"):
        ElementwiseUnit(numerics, tables, (), acc_bits=32)
    with pytest.raises(ValueError, match="acc_bits"):
        ElementwiseUnit(numerics, tables, layers, acc_bits=1)
    with pytest.raises(TypeError, match="acc_bits"):
        ElementwiseUnit(numerics, tables, layers, acc_bits=32.0)
    with pytest.raises(ValueError, match="cell_index_bits"):
        ElementwiseUnit(numerics, tables, (ElementwiseLayer(cell_size=5, facc=20),), acc_bits=32,
                        cell_index_bits=2)
    with pytest.raises(ValueError, match="layer_bits"):
        ElementwiseUnit(numerics, tables, layers * 3, acc_bits=32, layer_bits=1)
    with pytest.raises(TypeError, match="Numerics"):
        ElementwiseUnit(numerics.to_dict(), tables, layers, acc_bits=32)
    with pytest.raises(ValueError, match="tanh_T"):
        ElementwiseUnit(numerics, {k: v for k, v in tables.items() if k != "tanh_T"}, layers, acc_bits=32)
