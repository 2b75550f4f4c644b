# amaranth: UnusedElaboratable=no
"""delayed_any (hw/status_flags.py): the OR of a flag over the given number of cycles before this one."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from sparselstm.hw.status_flags import delayed_any


@pytest.mark.parametrize("cycles", [0, 1, 3])
def test_the_or_over_the_cycles_before(cycles):
    m = Module()
    flag, before = Signal(), Signal()
    m.d.comb += before.eq(delayed_any(m, flag, cycles, "flag"))
    toggle = Signal()
    m.d.sync += toggle.eq(~toggle)      # a clock domain even with no chain (cycles 0)
    rng = random.Random(cycles)
    pattern = [int(rng.random() < 0.2) for _ in range(200)]

    async def testbench(ctx):
        for now, value in enumerate(pattern):
            ctx.set(flag, value)
            assert ctx.get(before) == any(pattern[max(0, now - cycles):now])
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def test_a_negative_count_is_rejected():
    with pytest.raises(ValueError, match="cycles"):
        delayed_any(Module(), Signal(), -1, "flag")
