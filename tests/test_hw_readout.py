"""CellReader and ProjReader: every cell (proj row) of a layer is read exactly once, from PE j mod N at local
index j div N, and no PE is read for a cell past the layer's last (a lane of the last group may have none)."""

from __future__ import annotations

from collections import Counter

import pytest
from amaranth.sim import Simulator

from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.readout import CellReader, ProjReader
from sparselstm.hw.testing import stream_receive

from test_hw_design import encoded_model


def simulate(dut, monitor, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(testbench)
    sim.run()


def reads_monitor(dut, fields, reads: list):
    """Every cycle, the (PE, *fields) of each PE port whose enable is up."""
    async def monitor(ctx):
        while True:
            await ctx.tick()
            for p, port in enumerate(dut.pes):
                if ctx.get(port.en):
                    reads.append((p, *(ctx.get(getattr(port, name)) for name in fields)))
    return monitor


@pytest.mark.parametrize("cells, n_pes, lanes", [(9, 4, 2), (7, 4, 2), (9, 4, 4), (10, 8, 4), (9, 4, 1)])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_cell_reader_reads_each_cell_once_and_no_cell_past_the_last(cells, n_pes, lanes, stall, rng):
    design = AcceleratorDesign.from_encoded(encoded_model(cells=cells, n_pes=n_pes), HardwareParams(lanes=lanes))
    dut = CellReader(design)
    commands = [(1, 1), (0, 0), (1, 0)]        # (layer, buffer)
    reads, groups = [], []

    async def testbench(ctx):
        for layer, buffer in commands:
            assert not ctx.get(dut.command.busy)
            ctx.set(dut.command.start, 1)
            ctx.set(dut.command.layer, layer)
            ctx.set(dut.command.buffer, buffer)
            await ctx.tick()
            ctx.set(dut.command.start, 0)
            received = await stream_receive(ctx, dut.o, design.lane_groups(layer), rng=rng, stall=stall,
                                            max_cycles=400)
            groups.append([word.payload.group for word in received])
            while ctx.get(dut.command.busy):
                await ctx.tick()

    simulate(dut, reads_monitor(dut, ("layer", "index", "buffer"), reads), testbench)
    expected = Counter((j % n_pes, layer, j // n_pes, buffer)
                       for layer, buffer in commands for j in range(design.layers[layer].cell_size))
    assert Counter(reads) == expected
    assert groups == [list(range(design.lane_groups(layer))) for layer, _ in commands]


@pytest.mark.parametrize("proj, n_pes", [(5, 4), (8, 4), (3, 8)])
def test_proj_reader_reads_each_row_once_in_order(proj, n_pes):
    design = AcceleratorDesign.from_encoded(encoded_model(proj=proj, n_pes=n_pes))
    dut = ProjReader(design)
    reads, words = [], []

    async def testbench(ctx):
        for layer in (1, 0):
            ctx.set(dut.command.start, 1)
            ctx.set(dut.command.layer, layer)
            await ctx.tick()
            ctx.set(dut.command.start, 0)
            for _ in range(proj + 20):
                if ctx.get(dut.o.valid):
                    words.append((ctx.get(dut.o.payload.layer), ctx.get(dut.o.payload.index)))
                await ctx.tick()
            assert not ctx.get(dut.command.busy)

    simulate(dut, reads_monitor(dut, ("layer", "index"), reads), testbench)
    assert reads == [(r % n_pes, layer, r // n_pes) for layer in (1, 0) for r in range(proj)]
    assert words == [(layer, r) for layer in (1, 0) for r in range(proj)]
