# amaranth: UnusedElaboratable=no
"""The status LEDs' PulseStretcher (hw/boards/leds.py) and Heartbeat (hw/boards/heartbeat.py) in the Amaranth
simulator, cycle by cycle against a reference: the stretcher's `o` is high for `cycles` cycles from two cycles
after a pulse, and a new pulse extends it; the heartbeat toggles every `half_period` cycles."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from sparselstm.hw.boards.heartbeat import Heartbeat
from sparselstm.hw.boards.leds import PulseStretcher


def _expected(pulses: list[int], cycles: int) -> list[int]:
    """The reference: o[t] = 1 when some pulse p has p + 2 <= t < p + 2 + cycles."""
    lit = [0] * len(pulses)
    for p, pulse in enumerate(pulses):
        if pulse:
            for t in range(p + 2, min(p + 2 + cycles, len(pulses))):
                lit[t] = 1
    return lit


def _simulate(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("cycles, density, seed", [(2, 0.2, 1), (3, 0.1, 2), (5, 0.05, 3), (16, 0.02, 4),
                                                   (37, 0.01, 5), (64, 0.3, 6)])
def test_output_follows_the_reference(cycles, density, seed):
    rng = random.Random(seed)
    pulses = [int(rng.random() < density) for _ in range(400)] + [0] * (cycles + 4)
    pulses[3] = 1                       # at least one isolated pulse, whatever the seed
    dut = PulseStretcher(cycles)
    seen = []

    async def bench(ctx):
        for pulse in pulses:
            ctx.set(dut.i, pulse)
            seen.append(ctx.get(dut.o))
            await ctx.tick()

    _simulate(dut, bench)
    assert seen == _expected(pulses, cycles)
    assert sum(seen) >= cycles


@pytest.mark.parametrize("cycles, error", [(1, ValueError), (0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_rejects_bad_cycles(cycles, error):
    with pytest.raises(error, match="cycles"):
        PulseStretcher(cycles)


@pytest.mark.parametrize("half_period", [2, 3, 7, 50])
def test_heartbeat_toggles_every_half_period(half_period):
    dut = Heartbeat(half_period)
    seen = []

    async def bench(ctx):
        for _ in range(6 * half_period + 3):
            seen.append(ctx.get(dut.o))
            await ctx.tick()

    _simulate(dut, bench)
    assert seen == [(t // half_period) % 2 for t in range(len(seen))]


@pytest.mark.parametrize("half_period, error", [(1, ValueError), (2.5, TypeError)])
def test_heartbeat_rejects_bad_half_period(half_period, error):
    with pytest.raises(error, match="half_period"):
        Heartbeat(half_period)
