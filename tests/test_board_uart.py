"""The UART of hw/boards/uart.py in the Amaranth simulator: the transmitter's line against an 8N1 decoder
written here, the receiver against a line driven here, and the two back to back with random stalls."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from sparselstm.hw.boards.uart import UARTReceiver, UARTTransmitter, baud_divisor

DIVISOR = 6


def run(dut, *testbenches, background=()):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for testbench in background:
        sim.add_testbench(testbench, background=True)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    sim.run()


async def drive_line(ctx, line, byte, divisor, stop=1, bit_error=0.0):
    """One 8N1 character on `line`, every bit `divisor` cycles (optionally off by one, a clock mismatch)."""
    for bit in [0, *((byte >> k) & 1 for k in range(8)), stop]:
        ctx.set(line, bit)
        await ctx.tick().repeat(divisor + (1 if random.random() < bit_error else 0))
    ctx.set(line, 1)


def test_transmitter_line_is_8n1_at_the_divisor():
    dut = UARTTransmitter(DIVISOR)
    data = [0x00, 0xFF, 0x5A, 0xA5, 0x01, 0x80]
    decoded = []

    async def sender(ctx):
        for byte in data:
            ctx.set(dut.i.payload, byte)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            for _ in range(random.randrange(3) * DIVISOR):
                await ctx.tick()

    async def decoder(ctx):
        while len(decoded) < len(data):
            await ctx.tick().until(~dut.tx)              # start bit edge
            await ctx.tick().repeat(DIVISOR // 2)        # to the middle of the start bit
            assert ctx.get(dut.tx) == 0
            bits = []
            for _ in range(9):
                await ctx.tick().repeat(DIVISOR)
                bits.append(ctx.get(dut.tx))
            assert bits[8] == 1, "stop bit"
            decoded.append(sum(bit << k for k, bit in enumerate(bits[:8])))

    random.seed(1)
    run(dut, decoder, background=[sender])
    assert decoded == data


def test_receiver_reads_bytes_and_flags_framing_errors_and_overruns():
    dut = UARTReceiver(DIVISOR)
    received, framing_errors, overruns = [], [], []

    async def line(ctx):
        for byte in (0x5A, 0x00):
            await drive_line(ctx, dut.rx, byte, DIVISOR)
        await drive_line(ctx, dut.rx, 0x33, DIVISOR, stop=0)       # broken stop bit: dropped
        await ctx.tick().repeat(3 * DIVISOR)
        for byte in (0xC3, 0x7E):                                   # not taken: the second overruns
            await drive_line(ctx, dut.rx, byte, DIVISOR)
        await ctx.tick().repeat(3 * DIVISOR)

    async def monitor(ctx):
        take = True
        async for _, _, valid, payload, framing, overrun in ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.framing_error, dut.overrun):
            if framing:
                framing_errors.append(len(received))
            if overrun:                         # sampled before the replacing byte is in place
                overruns.append(len(received))
                take = True
            elif valid and take:
                received.append(payload)
                take = len(received) < 2        # stop taking after two bytes, to provoke the overrun
            ctx.set(dut.o.ready, take)

    run(dut, line, background=[monitor])
    assert received[:2] == [0x5A, 0x00]
    assert framing_errors == [2]
    assert overruns == [2]
    assert received[2:] == [0x7E]               # the newer byte replaced the lost one


@pytest.mark.parametrize("seed", [0, 1])
def test_transmitter_to_receiver_with_random_stalls(seed):
    rng = random.Random(seed)
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(DIVISOR)
    m.submodules.rx = rx = UARTReceiver(DIVISOR)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [rng.randrange(256) for _ in range(24)]
    received = []

    async def sender(ctx):
        for byte in data:
            while rng.random() < 0.5:
                await ctx.tick()
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)

    async def receiver(ctx):
        while len(received) < len(data):
            # a consumer slower than a cycle but faster than a byte: never an overrun
            ready = rng.random() < 0.3
            ctx.set(rx.o.ready, ready)
            _, _, valid, payload, overrun = await ctx.tick().sample(rx.o.valid, rx.o.payload, rx.overrun)
            assert not overrun
            if valid and ready:
                received.append(payload)

    run(m, receiver, background=[sender])
    assert received == data


def test_baud_divisor_checks_its_arguments():
    assert baud_divisor(125e6, 3_000_000) == 42
    with pytest.raises(ValueError, match="too slow"):
        baud_divisor(10e6, 3_000_000)
    with pytest.raises(TypeError):
        baud_divisor(125e6, 3e6)
