"""CreditQueue: order of the words through random pushes and pops within the writer's credits; r_rdy registered,
a word counted from the cycle after its write or from the second (`counted_after`)."""

from __future__ import annotations

import collections
import gc
import random

import pytest
from amaranth.sim import Simulator

from sparselstm.hw.credit_queue import ADDRESS_COPY_BITS, CreditQueue


@pytest.mark.parametrize("depth", [1, 3, 8])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("width", [12, 2 * ADDRESS_COPY_BITS + 7])
@pytest.mark.parametrize("counted_after", [1, 2])
def test_credit_queue_keeps_order_under_random_pushes_and_pops(depth, seed, width, counted_after):
    """A writer that spends a credit per push and gets it back per pop, a reader that pops at random: every
    word comes out once, in order, and `r_rdy` says exactly whether a word written `counted_after` cycles ago or
    earlier is held (a model queue beside it; with 2, the word of the last write is in flight). A wide queue is
    kept in slices, each with its own addresses: random words check every bit of every slice."""
    dut = CreditQueue(width, depth, counted_after=counted_after)
    rng = random.Random(seed)
    got, sent = [], []

    async def testbench(ctx):
        model = collections.deque()
        in_flight = []                                             # written in the cycle before: not yet counted
        next_word = rng.getrandbits(width)
        for _ in range(600):
            push = len(model) + len(in_flight) < depth and rng.random() < 0.6      # a credit left
            pop = rng.random() < 0.5
            ctx.set(dut.w_en, push)
            ctx.set(dut.w_data, next_word)
            ctx.set(dut.r_en, pop)
            assert ctx.get(dut.r_rdy) == bool(model)
            popped = pop and bool(model)
            if popped:
                assert ctx.get(dut.r_data) == model[0]
                got.append(model.popleft())
            await ctx.tick()
            model.extend(in_flight)
            in_flight = []
            if push:
                (in_flight if counted_after == 2 else model).append(next_word)
                sent.append(next_word)
                next_word = rng.getrandbits(width)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert got == sent[:len(got)] and len(got) > 100


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
@pytest.mark.parametrize("width, depth", [(0, 4), (8, 0), (-1, 2)])
def test_credit_queue_rejects_bad_sizes(width, depth):
    with pytest.raises(ValueError, match="must be at least 1"):
        CreditQueue(width, depth)
    with pytest.raises(TypeError):
        CreditQueue(True, 4)
    for counted_after in (0, 3, True):
        with pytest.raises(ValueError, match="counted_after"):
            CreditQueue(8, 4, counted_after=counted_after)
    gc.collect()   # the half-built components warn when collected: let that happen under this filter
