# amaranth: UnusedElaboratable=no
"""EventCounter (hw/event_counter.py): the count of a flag up to three cycles before, exact through every wrap."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from sparselstm.hw.event_counter import EventCounter


@pytest.mark.parametrize("width, low_bits, density, seed", [(8, 4, 0.9, 0), (8, 1, 0.5, 1), (6, 5, 1.0, 2),
                                                            (10, 3, 0.3, 3)])
def test_the_value_is_the_count_three_cycles_before(width, low_bits, density, seed):
    dut = EventCounter(width, low_bits)
    rng = random.Random(seed)
    # long enough that the whole counter wraps more than once
    pattern = [int(rng.random() < density) for _ in range(3 * 2 ** width + 50)]

    async def testbench(ctx):
        for now, value in enumerate(pattern):
            ctx.set(dut.event, value)
            assert ctx.get(dut.value) == sum(pattern[:max(0, now - 2)]) % 2 ** width, now
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("width, low_bits", [(8, 0), (8, 8), (4, 9)])
def test_a_low_part_outside_the_width_is_rejected(width, low_bits):
    with pytest.raises(ValueError, match="low_bits"):
        EventCounter(width, low_bits)


def test_a_width_that_is_not_an_integer_is_rejected():
    with pytest.raises(TypeError, match="width"):
        EventCounter(8.0)
