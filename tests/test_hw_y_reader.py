"""YReader: y words written into the y memory come back as broadcast words of the commanded phase, and a
read of a layer under proj readout never overtakes the readout's writes."""

from __future__ import annotations

import gc

import pytest
from amaranth.sim import Simulator

from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.testing import stream_receive
from sparselstm.hw.y_reader import YReader

from test_hw_design import encoded_model



def random_y(design, rng) -> list[list[int]]:
    half = 1 << (design.act_bits - 1)
    return [[int(v) for v in rng.integers(-half, half, layer.recurrent_size)] for layer in design.layers]


def expected_broadcast(values: list[int], phase: int, buffer: int) -> list[tuple]:
    """The reference: column c = y[c] of the layer, in order, with the commanded phase and copy."""
    return [(phase, buffer, c, value) for c, value in enumerate(values)]


def as_tuples(received) -> list[tuple]:
    return [(w.payload.phase, w.payload.buffer, w.payload.column, w.payload.value) for w in received]


async def write_words(ctx, dut, layer, values, rng=None, gap=0.0):
    """y words of `layer` one per cycle (random gaps), as the ProjReader or the m narrowing writes them."""
    for index, value in enumerate(values):
        while rng is not None and rng.random() < gap:
            await ctx.tick()
        ctx.set(dut.write.valid, 1)
        ctx.set(dut.write.payload, {"layer": layer, "index": index, "value": value})
        await ctx.tick()
        ctx.set(dut.write.valid, 0)


async def command(ctx, dut, layer, phase, buffer):
    assert not ctx.get(dut.command.busy)
    ctx.set(dut.command.start, 1)
    ctx.set(dut.command.layer, layer)
    ctx.set(dut.command.phase, phase)
    ctx.set(dut.command.buffer, buffer)
    await ctx.tick()
    ctx.set(dut.command.start, 0)


def simulate(dut, *testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for testbench in testbenches[:-1]:
        sim.add_testbench(testbench, background=True)
    sim.add_testbench(testbenches[-1])
    sim.run()


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_reader_sends_each_layers_y(stall, rng):
    design = AcceleratorDesign.from_encoded(encoded_model(layers=3, n_pes=2))
    dut = YReader(design)
    y = random_y(design, rng)
    reads = [(2, 7, 0), (0, 1, 1), (1, 5, 0), (2, 2, 1)]     # (layer, phase, buffer) in any order
    got = []

    async def testbench(ctx):
        for layer, values in enumerate(y):
            await write_words(ctx, dut, layer, values)
        for layer, phase, buffer in reads:
            await command(ctx, dut, layer, phase, buffer)
            got.append(await stream_receive(ctx, dut.o, len(y[layer]), rng=rng, stall=stall, max_cycles=200))
            await ctx.tick()     # the last word leaves the read register
            assert not ctx.get(dut.command.busy) and not ctx.get(dut.o.valid)

    simulate(dut, testbench)
    for (layer, phase, buffer), received in zip(reads, got):
        assert as_tuples(received) == expected_broadcast(y[layer], phase, buffer)


@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.5, 0.0), (0.7, 0.3)])
def test_reader_follows_a_running_readout(gap, stall, rng):
    """The old y_1 is in memory; a readout writes the new y_1 while the reader reads it: every word read
    must be the new one, so the reader waits for each write."""
    design = AcceleratorDesign.from_encoded(encoded_model(layers=3, n_pes=2))
    dut = YReader(design)
    old, new = random_y(design, rng), random_y(design, rng)
    got = []

    async def readout(ctx):
        for layer, values in enumerate(old):
            await write_words(ctx, dut, layer, values)
        ctx.set(dut.readout.start, 1)
        ctx.set(dut.readout.layer, 1)
        await ctx.tick()
        ctx.set(dut.readout.start, 0)
        ctx.set(dut.readout.busy, 1)
        await write_words(ctx, dut, 1, new[1], rng, gap)
        ctx.set(dut.readout.busy, 0)

    async def reader(ctx):
        for _ in range(sum(len(values) for values in old) + 2):
            await ctx.tick()             # the readout has started
        await command(ctx, dut, 1, 4, 0)
        got.append(await stream_receive(ctx, dut.o, len(new[1]), rng=rng, stall=stall, max_cycles=500))
        # another layer is not held back by the readout
        await ctx.tick()
        await command(ctx, dut, 0, 0, 1)
        got.append(await stream_receive(ctx, dut.o, len(old[0]), rng=rng, stall=stall, max_cycles=500))

    simulate(dut, readout, reader)
    assert as_tuples(got[0]) == expected_broadcast(new[1], 4, 0)
    assert as_tuples(got[1]) == expected_broadcast(old[0], 0, 1)


def test_reader_is_held_while_the_readout_has_not_written():
    design = AcceleratorDesign.from_encoded(encoded_model(layers=1, n_pes=2))
    dut = YReader(design)

    async def testbench(ctx):
        ctx.set(dut.readout.start, 1)
        ctx.set(dut.readout.layer, 0)
        await ctx.tick()
        ctx.set(dut.readout.start, 0)
        ctx.set(dut.readout.busy, 1)
        await command(ctx, dut, 0, 1, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(10):
            _, _, valid, busy = await ctx.tick().sample(dut.o.valid, dut.command.busy)
            assert not valid and busy

    simulate(dut, testbench)


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_reader_needs_a_design():
    with pytest.raises(TypeError, match="AcceleratorDesign"):
        YReader(None)
    gc.collect()
