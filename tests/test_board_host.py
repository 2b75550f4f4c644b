"""The host driver (sw/hostlink) and `sparselstm board` against a simulated board: the host link gateware and a
small accelerator in the Amaranth simulator, served on a socket (pyserial socket://). Outputs must equal the
golden model bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("serial")

from sparselstm.cli import main
from sparselstm.hw.boards.simulated import SimulatedBoard
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.spec.host_link import Command, LinkErrorCode, Reply, model_id
from sparselstm.sw.format import load_encoded, write_encoded
from sparselstm.sw.fixedpoint import quantize_input
from sparselstm.sw.golden import golden_forward_encoded
from sparselstm.sw.hostlink.driver import BoardLink
from sparselstm.sw.hostlink.frames import FrameReader, LinkError, encode_frame, input_payload, parse_error
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode

QUIET_CYCLES = 300
SETTLE_SECONDS = 1.0        # the simulation runs far below a second per QUIET_CYCLES


@pytest.fixture(scope="module")
def encoded_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("board") / "encoded"
    write_encoded(compress_and_encode(random_model(6, 12, 6, seed=5), n_pes=2, density=0.5).encoded, directory)
    return directory


@pytest.fixture(scope="module")
def encoded(encoded_dir):
    return load_encoded(encoded_dir)


@pytest.fixture(scope="module")
def design(encoded):
    return AcceleratorDesign.from_encoded(encoded, HardwareParams())


def words(encoded, frames, seed=0):
    x = np.random.default_rng(seed).normal(0.0, 1.5, (frames, encoded.layers[0].input_size))
    return quantize_input(x, encoded.numerics)[0]


def test_run_matches_golden_and_a_bad_crc_is_reported_and_survived(encoded_dir, encoded, design):
    x_q = words(encoded, 5)
    starts = np.array([True, False, False, True, False])
    with SimulatedBoard(design, model_id(encoded_dir), quiet_cycles=QUIET_CYCLES) as board:
        with BoardLink.open(board.url, timeout=60, settle=SETTLE_SECONDS) as link:
            identity = link.identify()
            assert identity.model_id == model_id(encoded_dir)
            link.reset()
            first, _ = link.run(x_q[:3], starts[:3], identity)

            bad = bytearray(encode_frame(Command.INPUT, input_payload(x_q[3], identity.act_bits)))
            bad[6] ^= 0x40                                      # a payload bit flipped on the line
            link.send_raw(bytes(bad))
            with pytest.raises(LinkError, match="BAD_CRC"):
                link.identify()                                 # the error frame comes first
            link.recover()

            second, statistics = link.run(x_q[3:], starts[3:], identity)
            counters = link.counters()
    expected = golden_forward_encoded(encoded, x_q, sequence_starts=starts)
    assert np.array_equal(np.concatenate([first, second]), expected)
    assert counters.frames_done == 5
    assert statistics.frames == 2 and statistics.cycles > 0 and 0.0 <= statistics.link_share <= 1.0


def test_board_command_writes_the_outputs_and_refuses_another_model(encoded_dir, encoded, design, tmp_path,
                                                                      capsys):
    x = np.random.default_rng(1).normal(0.0, 1.0, (2, 3, encoded.layers[0].input_size))
    np.save(tmp_path / "x.npy", x)
    arguments = ["board", str(encoded_dir), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--raw", "--check", "--timeout", "60"]
    with SimulatedBoard(design, model_id(encoded_dir)) as board:
        assert main([*arguments, "--port", board.url]) == 0
    output = capsys.readouterr().out
    assert "0 of 36 words differ" in output and "cycles per frame" in output
    x_q, _ = quantize_input(x, encoded.numerics)
    assert np.array_equal(np.load(tmp_path / "y.npy"), golden_forward_encoded(encoded, x_q))

    with SimulatedBoard(design, b"another!") as board:
        assert main([*arguments, "--port", board.url]) == 1
    assert "rebuild the bitstream for this model" in capsys.readouterr().err

    (tmp_path / "y.npy").unlink()
    assert main([*arguments, "--sim", "amaranth"]) == 0     # the command starts the simulated board itself
    assert "0 of 36 words differ" in capsys.readouterr().out
    assert np.array_equal(np.load(tmp_path / "y.npy"), golden_forward_encoded(encoded, x_q))


def test_frame_reader_skips_noise_and_rejects_a_bad_crc():
    frame = encode_frame(Reply.ERROR, bytes([LinkErrorCode.TIMEOUT, 0x10]))
    reader = FrameReader()
    frames = reader.feed(b"\x00\x13" + frame[:3]) + reader.feed(frame[3:])
    assert [parse_error(f) for f in frames] == [(LinkErrorCode.TIMEOUT, 0x10)]
    with pytest.raises(LinkError, match="bad CRC"):
        FrameReader().feed(frame[:-1] + bytes([frame[-1] ^ 0xFF]))


def test_a_silent_or_echoing_port_is_a_link_error():
    with BoardLink.open("loop://", timeout=0.5) as link:           # pyserial's loopback echoes the command
        with pytest.raises(LinkError, match="expected IDENTITY from the board"):
            link.identify()

    class Silent:
        def write(self, data):
            return len(data)

        def read(self, size):
            return b""

    with pytest.raises(LinkError, match="no answer from the board within 0.2 s"):
        BoardLink(Silent(), timeout=0.2).counters()
