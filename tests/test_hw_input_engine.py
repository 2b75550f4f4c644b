"""InputEngine: input words of a frame -> broadcast words of layer 0's input phase, with stalls on both sides."""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest
from amaranth.sim import Simulator

from sparselstm.hw.design import AcceleratorDesign, PHASE_X, phase_index
from sparselstm.hw.input_engine import InputEngine
from sparselstm.hw.testing import stream_receive, stream_send
from sparselstm.spec.encoded import DeltaThresholds

from test_hw_design import encoded_model



def input_frames(design, frames, rng) -> list[list[dict]]:
    """Input words per frame; `first` at random on every word (only a frame's first word counts)."""
    half = 1 << (design.act_bits - 1)
    return [[{"value": int(rng.integers(-half, half)), "first": int(rng.integers(0, 2))}
             for _ in range(design.input_size)] for _ in range(frames)]


def expected_broadcast(frame: list[dict], buffer: int) -> list[dict]:
    """The reference: column c of phase 0 (layer 0, input columns) for each input word, in order."""
    return [{"phase": phase_index(0, PHASE_X), "buffer": buffer, "column": c, "value": word["value"]}
            for c, word in enumerate(frame)]


def run_engine(design, frames, rng, idle, stall, disabled_cycles=3):
    """Send every frame's words (random gaps); per frame enable the engine for buffer t % 2, take the words
    (random stalls), check the frame status outputs, rewind. Returns per frame the received broadcast
    words and, with each, (frame_start, sequence_start, started) and in delta mode `restart`."""
    dut = InputEngine(design)
    got = []

    async def source(ctx):
        await stream_send(ctx, dut.i, [word for frame in frames for word in frame], rng=rng, idle=idle)

    async def scheduler(ctx):
        for t in range(len(frames)):
            # disabled: nothing is offered or taken, whatever the input does
            for _ in range(disabled_cycles):
                _, _, valid, ready = await ctx.tick().sample(dut.o.valid, dut.i.ready)
                assert not valid and not ready, "the engine sends while disabled"
            ctx.set(dut.enable, 1)
            ctx.set(dut.buffer, t % 2)
            received = await stream_receive(ctx, dut.o, design.input_size, rng=rng, stall=stall,
                                            sample=(dut.frame_start, dut.sequence_start, dut.started,
                                                    *([dut.restart] if design.delta_mode else [])),
                                            max_cycles=50 * design.input_size)
            got.append(received)
            # the frame is complete: nothing more is offered until the rewind, even if the next frame waits
            ctx.set(dut.o.ready, 1)
            for _ in range(3):
                _, _, valid, complete, started = await ctx.tick().sample(dut.o.valid, dut.complete, dut.started)
                assert not valid and complete and started
            ctx.set(dut.o.ready, 0)
            ctx.set(dut.enable, 0)
            ctx.set(dut.rewind, 1)
            await ctx.tick()
            ctx.set(dut.rewind, 0)
            assert not ctx.get(dut.complete) and not ctx.get(dut.started)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(scheduler)
    sim.run()
    return got


@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.3, 0.5), (0.6, 0.1)])
def test_engine_sends_each_frame_as_phase_zero_columns(idle, stall, rng):
    design = AcceleratorDesign.from_encoded(encoded_model(input_size=5, layers=1, n_pes=2))
    frames = input_frames(design, 4, rng)
    got = run_engine(design, frames, rng, idle, stall)
    for t, (frame, received) in enumerate(zip(frames, got)):
        expected = expected_broadcast(frame, t % 2)
        assert [dict(phase=w.payload.phase, buffer=w.payload.buffer, column=w.payload.column,
                     value=w.payload.value) for w in received] == expected
        # frame_start with the first word only, carrying that word's `first`; started from then on
        assert [w.sampled[0] for w in received] == [1] + [0] * (len(frame) - 1)
        assert received[0].sampled[1] == frame[0]["first"]
        assert all(w.sampled[2] for w in received)


def test_engine_with_a_single_input():
    design = AcceleratorDesign.from_encoded(encoded_model(input_size=1, layers=1, n_pes=2))
    frames = [[{"value": 7, "first": 1}], [{"value": -3, "first": 0}]]
    got = run_engine(design, frames, None, 0.0, 0.0)
    assert [[w.payload.value for w in received] for received in got] == [[7], [-3]]
    assert [received[0].sampled[:2] for received in got] == [(1, 1), (1, 0)]


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_engine_needs_a_design():
    with pytest.raises(TypeError, match="AcceleratorDesign"):
        InputEngine({"input_size": 5})
    gc.collect()


def test_engine_in_delta_mode_tells_each_word_whether_its_frame_restarts(rng):
    """`restart` is the frame's first word's `first`, on every word of the frame (the `first` bits of the
    other words are noise)."""
    encoded = encoded_model(input_size=4, layers=1, n_pes=2)
    design = AcceleratorDesign.from_encoded(replace(encoded, delta_thresholds=(DeltaThresholds(1, 2, 3),)))
    frames = input_frames(design, 6, rng)
    frames[0][0]["first"], frames[1][0]["first"] = 1, 0      # both cases, whatever the rng gives
    got = run_engine(design, frames, rng, 0.3, 0.3)
    for frame, received in zip(frames, got):
        assert [w.sampled[3] for w in received] == [frame[0]["first"]] * len(frame)
