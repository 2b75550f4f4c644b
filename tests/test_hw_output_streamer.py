"""OutputStreamer: the last layer's y words written into the output buffer come out as one frame of output
words, `last` on the final one, under random stalls of the consumer."""

from __future__ import annotations

import gc

import pytest
from amaranth.sim import Simulator

from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.output_streamer import OutputStreamer
from sparselstm.hw.testing import stream_receive

from test_hw_design import encoded_model



def expected_frame(values: list[int]) -> list[tuple[int, int]]:
    """The reference: (value, last) of each word of the last layer's y, in order."""
    return [(value, int(index == len(values) - 1)) for index, value in enumerate(values)]


def run_streamer(design, frames, rng, stall):
    """Per frame: write every layer's y (the last layer's words in a random order, other layers' words
    at the same indices in between), start, take the frame with random stalls. Returns the received
    frames and `frames_done` after each."""
    dut = OutputStreamer(design)
    half = 1 << (design.act_bits - 1)
    got, done = [], []

    async def testbench(ctx):
        for values in frames:
            writes = [(design.n_layers - 1, index, value) for index, value in enumerate(values)]
            writes += [(layer, index, int(rng.integers(-half, half)))
                       for layer in range(design.n_layers - 1) for index in range(len(values))]
            for k in rng.permutation(len(writes)):
                layer, index, value = writes[k]
                ctx.set(dut.write.valid, 1)
                ctx.set(dut.write.payload, {"layer": layer, "index": index, "value": value})
                await ctx.tick()
            ctx.set(dut.write.valid, 0)
            assert not ctx.get(dut.busy)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            assert ctx.get(dut.busy)
            got.append(await stream_receive(ctx, dut.o, len(values), rng=rng, stall=stall, max_cycles=500))
            # nothing follows the frame's last word; `busy` lasts one cycle more, while the count follows it,
            # so a status reader that waits for `busy` to fall reads the new count
            ctx.set(dut.o.ready, 1)
            for cycle in range(3):
                _, _, valid, busy, count = await ctx.tick().sample(dut.o.valid, dut.busy, dut.frames_done)
                assert not valid and busy == (cycle == 0)
                if not busy:
                    assert count == len(done) + 1
            ctx.set(dut.o.ready, 0)
            done.append(ctx.get(dut.frames_done))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return got, done


@pytest.mark.parametrize("layers,proj", [(2, 4), (1, None), (1, 1), (2, 2)])
@pytest.mark.parametrize("stall", [0.0, 0.6])
def test_streamer_sends_the_last_layers_y_per_frame(layers, proj, stall, rng):
    """Also frames of one and two words: the streamer's last-word flag is set at the start or by the read
    before the last."""
    design = AcceleratorDesign.from_encoded(encoded_model(layers=layers, proj=proj, n_pes=2))
    assert design.output_size == (proj or 9)
    half = 1 << (design.act_bits - 1)
    frames = [[int(v) for v in rng.integers(-half, half, design.output_size)] for _ in range(3)]
    got, done = run_streamer(design, frames, rng, stall)
    assert [[(w.payload.value, w.payload.last) for w in received] for received in got] \
        == [expected_frame(values) for values in frames]
    assert done == [1, 2, 3]
    if stall == 0.0:    # read ahead under credits: a word every cycle once the first is out
        for received in got:
            cycles = [w.cycle for w in received]
            assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_streamer_needs_a_design():
    with pytest.raises(TypeError, match="AcceleratorDesign"):
        OutputStreamer("design")
    gc.collect()
