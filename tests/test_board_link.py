"""The host link gateware (hw/boards/host_link.py) with a small accelerator behind it (hw/boards/core.py), in
the Amaranth simulator at the byte-stream level: frames built by sw.hostlink, random stalls on both byte
streams, outputs word for word against the golden model, and every error the protocol names."""

from __future__ import annotations

import gc
import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sparselstm.hw.boards.core import BoardCore
from sparselstm.hw.boards.host_link import RX_PATH_CYCLES
from sparselstm.hw.boards.serial_board import SerialBoard
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.spec.host_link import Command, LinkErrorCode, Reply, crc16
from sparselstm.sw.fixedpoint import quantize_input
from sparselstm.sw.golden import golden_forward_encoded
from sparselstm.sw.hostlink.frames import (FrameReader, encode_frame, input_payload, output_words,
                                           parse_counters, parse_error, parse_identity)
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode

MODEL_ID = bytes(range(1, 9))
TIMEOUT_CYCLES = 400
QUIET_CYCLES = 150


@pytest.fixture(scope="module")
def encoded():
    return compress_and_encode(random_model(6, 8, 4, seed=3), n_pes=2, density=0.5).encoded


@pytest.fixture(scope="module")
def design(encoded):
    return AcceleratorDesign.from_encoded(encoded, HardwareParams())


def frames_in(encoded, count, seed=0):
    x = np.random.default_rng(seed).normal(0.0, 1.5, (count, encoded.layers[0].input_size))
    return quantize_input(x, encoded.numerics)[0]


class WireBuffer(wiring.Component):
    """A stand-in for a board's reset buffer (an ECP5 global network is a wire with a delay)."""

    def __init__(self):
        super().__init__({"i": In(1), "o": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(self.i)
        return m


def exchange(design, steps, *, stall=0.0, seed=0, overrun_after=None, reset_buffer=None,
             timeout_cycles=TIMEOUT_CYCLES, quiet_cycles=QUIET_CYCLES):
    """Send `steps` (bytes; an int: that many idle cycles; ("board reset", n): the reset port high for n
    cycles) to a BoardCore, byte by byte with random
    stalls on both streams, and return the frames it sent back. `overrun_after`: pulse rx_overrun after that
    many bytes; `reset_buffer`, `timeout_cycles`, `quiet_cycles`: BoardCore's."""
    core = BoardCore(design, MODEL_ID, clock_hz=1_000_000, timeout_cycles=timeout_cycles,
                     quiet_cycles=quiet_cycles, reset_buffer=reset_buffer)
    rng = random.Random(seed)
    sent_back = bytearray()
    state = {"done": False}

    async def host(ctx):
        count = 0
        for step in steps:
            if isinstance(step, int):
                await ctx.tick().repeat(step)
                continue
            if isinstance(step, tuple):         # ("board reset", cycles): the board's reset port held high
                ctx.set(core.reset, 1)
                await ctx.tick().repeat(step[1])
                ctx.set(core.reset, 0)
                continue
            for byte in step:
                while rng.random() < stall:
                    await ctx.tick()
                ctx.set(core.rx.payload, byte)
                ctx.set(core.rx.valid, 1)
                await ctx.tick().until(core.rx.ready)
                ctx.set(core.rx.valid, 0)
                count += 1
                if count == overrun_after:
                    ctx.set(core.rx_overrun, 1)
                    await ctx.tick()
                    ctx.set(core.rx_overrun, 0)
        await ctx.tick().repeat(TIMEOUT_CYCLES + 2000)      # let the board finish and answer
        state["done"] = True

    async def device(ctx):
        tx_rng = random.Random(seed + 1)
        while not state["done"]:
            ready = tx_rng.random() >= stall
            ctx.set(core.tx.ready, ready)
            _, _, valid, byte = await ctx.tick().sample(core.tx.valid, core.tx.payload)
            if valid and ready:
                sent_back.append(byte)

    simulator = Simulator(core)
    simulator.add_clock(1e-6)
    simulator.add_testbench(host)
    simulator.add_testbench(device, background=True)
    simulator.run()
    return FrameReader().feed(bytes(sent_back))


def input_frame(x_row, start):
    return encode_frame(Command.INPUT_START if start else Command.INPUT, input_payload(x_row, 16))


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_commands_and_frames_match_the_golden_model(encoded, design, stall):
    x_q = frames_in(encoded, 4)
    starts = np.array([True, False, True, False])
    steps = [encode_frame(Command.IDENTIFY), encode_frame(Command.RESET)]
    steps += [input_frame(x_q[t], starts[t]) for t in range(len(x_q))]
    steps += [3000, encode_frame(Command.COUNTERS), encode_frame(Command.RESET), encode_frame(Command.COUNTERS)]
    frames = exchange(design, steps, stall=stall, seed=int(stall * 10))

    assert [f.type for f in frames] == [Reply.IDENTITY, Reply.ACK] + [Reply.OUTPUT] * 4 + \
        [Reply.COUNTERS, Reply.ACK, Reply.COUNTERS]
    identity = parse_identity(frames[0])
    assert (identity.model_id, identity.input_size, identity.output_size, identity.act_bits) == \
        (MODEL_ID, design.input_size, design.output_size, design.act_bits)
    got = np.array([output_words(f, design.output_size) for f in frames[2:6]])
    expected = golden_forward_encoded(encoded, x_q, sequence_starts=starts)
    assert np.array_equal(got, expected)
    counters = parse_counters(frames[6])
    assert counters.frames_done == 4 and not counters.busy and counters.cycles > 0
    assert parse_counters(frames[-1]).frames_done == 0 == parse_counters(frames[-1]).cycles   # RESET



@pytest.mark.parametrize("reset_buffer", [None, WireBuffer])
def test_a_sequence_after_a_reset_matches_the_golden_model(encoded, design, reset_buffer):
    # the PEs' cleared state lives in memories (tag bits), which RESET leaves consistent with the sums
    x_q = frames_in(encoded, 3, seed=2)
    sequence = [input_frame(x_q[t], t == 0) for t in range(len(x_q))]
    frames = exchange(design, [*sequence, 3000, encode_frame(Command.RESET), 200, *sequence],
                      reset_buffer=reset_buffer)
    got = np.array([output_words(f, design.output_size) for f in frames if f.type == Reply.OUTPUT])
    expected = golden_forward_encoded(encoded, x_q)
    assert np.array_equal(got, np.concatenate([expected, expected]))


@pytest.mark.parametrize("cycles, reset_buffer", [(1, None), (5, None), (1, WireBuffer)])
def test_the_board_reset_port_resets_link_and_accelerator(encoded, design, cycles, reset_buffer):
    # in the middle of a sequence, between frames (a reset inside a frame leaves its sums in the accumulators,
    # docs/boards.md): afterwards the counters start from 0 and a new sequence matches the golden model
    x_q = frames_in(encoded, 3, seed=4)
    sequence = [input_frame(x_q[t], t == 0) for t in range(len(x_q))]
    frames = exchange(design, [*sequence[:2], 3000, ("board reset", cycles), 200, encode_frame(Command.COUNTERS),
                               *sequence], reset_buffer=reset_buffer)
    replies = [f for f in frames if f.type != Reply.OUTPUT]
    assert [f.type for f in replies] == [Reply.COUNTERS]
    assert parse_counters(replies[0]).frames_done == 0 == parse_counters(replies[0]).cycles
    got = np.array([output_words(f, design.output_size) for f in frames if f.type == Reply.OUTPUT][-3:])
    assert np.array_equal(got, golden_forward_encoded(encoded, x_q))


def test_the_board_reset_drops_a_half_received_frame(design):
    # the link's reset (a flip-flop of its own behind the board's): its parser starts over, so a frame cut off by
    # the reset neither swallows the next one nor times out after it
    frames = exchange(design, [encode_frame(Command.COUNTERS)[:2], 100, ("board reset", 1), 50,
                               encode_frame(Command.IDENTIFY), TIMEOUT_CYCLES + 2 * QUIET_CYCLES])
    assert [f.type for f in frames] == [Reply.IDENTITY]


def corrupt_crc(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0x01])


def test_a_bad_crc_drops_the_frame_and_reports_it(encoded, design):
    x_q = frames_in(encoded, 3, seed=1)
    steps = [input_frame(x_q[0], True), corrupt_crc(input_frame(x_q[1], False)), 2 * QUIET_CYCLES,
             input_frame(x_q[1], False), input_frame(x_q[2], False)]
    frames = exchange(design, steps, stall=0.3)
    errors = [parse_error(f) for f in frames if f.type == Reply.ERROR]
    assert errors == [(LinkErrorCode.BAD_CRC, Command.INPUT)]
    got = np.array([output_words(f, design.output_size) for f in frames if f.type == Reply.OUTPUT])
    assert np.array_equal(got, golden_forward_encoded(encoded, x_q))      # the dropped frame never ran


@pytest.mark.parametrize("bad, error", [
    (encode_frame(0x42), (LinkErrorCode.UNKNOWN_TYPE, 0x42)),
    (encode_frame(Command.IDENTIFY, b"\x00"), (LinkErrorCode.BAD_LENGTH, Command.IDENTIFY)),
    (encode_frame(Command.INPUT, b"\x00\x00"), (LinkErrorCode.BAD_LENGTH, Command.INPUT)),
    (encode_frame(Command.COUNTERS)[:-1], (LinkErrorCode.TIMEOUT, Command.COUNTERS)),  # the last byte never comes
    (encode_frame(Command.COUNTERS)[:1], (LinkErrorCode.TIMEOUT, 0)),                   # not even the type
])
def test_protocol_errors_get_an_error_frame_and_the_link_recovers(design, bad, error):
    frames = exchange(design, [bad, TIMEOUT_CYCLES + 2 * QUIET_CYCLES, encode_frame(Command.IDENTIFY)])
    assert [f.type for f in frames] == [Reply.ERROR, Reply.IDENTITY]
    assert parse_error(frames[0]) == error


@pytest.mark.parametrize("timeout", [RX_PATH_CYCLES, TIMEOUT_CYCLES])
@pytest.mark.parametrize("late", [False, True])
def test_a_frame_times_out_after_exactly_the_timeout_without_a_byte(design, late, timeout):
    # the gap before a frame's last byte: one cycle short of timeout_cycles completes the frame, timeout_cycles
    # makes it a TIMEOUT (the test is a flip-flop loaded from the idle counter's next value: #10); at the
    # shortest timeout too, while the bytes before it are still on their way to the parser
    counters = encode_frame(Command.COUNTERS)
    frames = exchange(design, [counters[:-1], timeout - 1 + late, counters[-1:]], timeout_cycles=timeout)
    assert [f.type for f in frames] == ([Reply.ERROR] if late else [Reply.COUNTERS])


@pytest.mark.parametrize("quiet", [False, True])
def test_after_an_error_the_link_listens_again_after_exactly_the_quiet_time(design, quiet):
    identify = encode_frame(Command.IDENTIFY)
    frames = exchange(design, [corrupt_crc(identify), QUIET_CYCLES - 1 + quiet, identify])
    assert [f.type for f in frames] == [Reply.ERROR, *([Reply.IDENTITY] if quiet else [])]


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
@pytest.mark.parametrize("name", ["timeout_cycles", "quiet_cycles"])
def test_a_time_shorter_than_a_bytes_way_to_the_parser_is_refused(design, name):
    times = {"timeout_cycles": TIMEOUT_CYCLES, "quiet_cycles": QUIET_CYCLES, name: RX_PATH_CYCLES - 1}
    with pytest.raises(ValueError, match=name):
        BoardCore(design, MODEL_ID, clock_hz=1_000_000, **times)
    gc.collect()        # the refused link's "never used" warning, here rather than in the next test


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_a_reset_buffer_that_is_not_a_component_with_i_and_o_is_refused(design):
    for bad in (object(), lambda: object(), lambda: wiring.Signature({"i": In(1)}).create()):
        with pytest.raises(TypeError, match="reset_buffer"):
            BoardCore(design, MODEL_ID, clock_hz=1_000_000, timeout_cycles=TIMEOUT_CYCLES,
                      quiet_cycles=QUIET_CYCLES, reset_buffer=bad)
    gc.collect()        # the refused objects' "never used" warnings, here rather than in the next test


def test_an_overrun_is_reported(design):
    identify = encode_frame(Command.IDENTIFY)
    frames = exchange(design, [identify, 500, b"\x00\x01", 2 * QUIET_CYCLES, identify],
                      overrun_after=len(identify) + 2)
    assert [f.type for f in frames] == [Reply.IDENTITY, Reply.ERROR, Reply.IDENTITY]
    assert parse_error(frames[1])[0] == LinkErrorCode.OVERRUN


def test_frames_from_sw_match_the_crc_of_the_spec():
    # CRC-16/IBM-3740 check value of the reveng catalogue
    assert crc16(b"123456789") == 0x29B1
    frame = encode_frame(Command.IDENTIFY)
    assert crc16(frame[1:]) == 0            # the residue the gateware's receiver checks


def test_serial_board_answers_over_the_uart_lines(design):
    """The same link behind the UART (hw/boards/serial_board.py), bit by bit on the rx and tx lines."""
    divisor = 4
    board = SerialBoard(design, MODEL_ID, clock_hz=divisor * 100_000, baud=100_000)
    request = encode_frame(Command.IDENTIFY)
    reader, frames = FrameReader(), []

    async def host(ctx):
        for byte in request:
            for bit in [0, *((byte >> k) & 1 for k in range(8)), 1]:
                ctx.set(board.rx, bit)
                await ctx.tick().repeat(divisor)
        await ctx.tick().repeat(40 * 10 * divisor)        # room for the 26-byte answer

    async def listener(ctx):
        while True:
            while ctx.get(board.tx):
                await ctx.tick()
            await ctx.tick().repeat(divisor // 2 + divisor)       # the middle of data bit 0
            byte = 0
            for k in range(8):
                byte |= ctx.get(board.tx) << k
                await ctx.tick().repeat(divisor)
            frames.extend(reader.feed(bytes([byte])))

    simulator = Simulator(board)
    simulator.add_clock(1e-6)
    simulator.add_testbench(host)
    simulator.add_testbench(listener, background=True)
    simulator.run()
    assert len(frames) == 1 and parse_identity(frames[0]).model_id == MODEL_ID
