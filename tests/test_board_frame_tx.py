"""The host link's FrameTransmitter (hw/boards/frame_tx.py) in the Amaranth simulator: the bytes of each frame
against the host driver's own encoder (sw/hostlink/frames.py), with random stalls on the payload and the output,
and its `payload.ready` a register (no path from the output's ready)."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from sparselstm.hw.boards.frame_tx import FrameTransmitter
from sparselstm.sw.hostlink.frames import encode_frame


def _frames(seed: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    lengths = [0, 1, 2, 7, 33, 3]
    return [(rng.randrange(256), bytes(rng.randrange(256) for _ in range(n))) for n in lengths]


@pytest.mark.parametrize("seed, stall", [(1, 0.0), (2, 0.3), (3, 0.7)])
def test_frames_match_the_host_encoder_under_stalls(seed, stall):
    dut = FrameTransmitter()
    frames = _frames(seed)
    rng = random.Random(seed + 100)
    received = bytearray()
    expected = b"".join(encode_frame(kind, payload) for kind, payload in frames)

    async def sender(ctx):
        for kind, payload in frames:
            ctx.set(dut.header.payload.type, kind)
            ctx.set(dut.header.payload.length, len(payload))
            ctx.set(dut.header.valid, 1)
            await ctx.tick().until(dut.header.ready)
            ctx.set(dut.header.valid, 0)
            for byte in payload:
                while rng.random() < stall:
                    await ctx.tick()
                ctx.set(dut.payload.payload, byte)
                ctx.set(dut.payload.valid, 1)
                await ctx.tick().until(dut.payload.ready)
                ctx.set(dut.payload.valid, 0)

    async def receiver(ctx):
        while len(received) < len(expected):
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            # the payload's ready is the output register's emptiness, whatever the output's ready says
            assert ctx.get(dut.payload.ready) in (0, int(not ctx.get(dut.o.valid)))
            if ready and ctx.get(dut.o.valid):
                received.append(ctx.get(dut.o.payload))
            await ctx.tick()
        ctx.set(dut.o.ready, 0)
        for _ in range(20):          # nothing more comes out, and the transmitter comes to rest
            await ctx.tick()
        assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(sender, background=True)
    sim.add_testbench(receiver)
    sim.run()
    assert bytes(received) == expected


def test_busy_until_the_last_byte_has_left():
    dut = FrameTransmitter()

    async def bench(ctx):
        ctx.set(dut.header.payload.length, 0)
        ctx.set(dut.header.valid, 1)
        await ctx.tick().until(dut.header.ready)
        ctx.set(dut.header.valid, 0)
        sent = 0
        ctx.set(dut.o.ready, 1)
        while sent < len(encode_frame(0)):
            assert ctx.get(dut.busy)
            sent += ctx.get(dut.o.valid)
            await ctx.tick()
        assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
