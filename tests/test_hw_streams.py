"""Interleaved independent streams (HardwareParams.streams) in the Amaranth simulator, word for word
against sw.golden run on each stream's sequence on its own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparselstm.cli import main
from sparselstm.hw.cycle_model import predict_cycles
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.verilog import TOP_NAME
from sparselstm.sim.frames import interleave_order
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.fixedpoint import quantize_input
from sparselstm.sw.format import write_encoded
from sparselstm.sw.golden import golden_forward_encoded
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode

from test_hw_accelerator import encoded_model, input_frames, rtl_forward


def check_streams(encoded, streams, frames_per_stream=3, restarts=(), in_stall=0.0, out_stall=0.0, seed=0,
                  lanes=None):
    """Stream s gets its own input sequence (a restart at each (stream, frame) in `restarts`); frame k of
    the accelerator's input is frame k // streams of stream k % streams."""
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(streams=streams, lanes=lanes))
    x_streams, expected_streams, start_streams = [], [], []
    for s in range(streams):
        x_q = input_frames(encoded, frames_per_stream, seed=seed * 31 + s)
        starts = np.zeros(frames_per_stream, dtype=bool)
        starts[0] = True
        for stream, frame in restarts:
            if stream == s:
                starts[frame] = True
        x_streams.append(x_q)
        start_streams.append(starts)
        expected_streams.append(golden_forward_encoded(encoded, x_q, sequence_starts=starts))
    interleave = lambda per_stream: np.stack(per_stream, axis=1).reshape(-1, *per_stream[0].shape[1:])
    got, status = rtl_forward(design, interleave(x_streams), interleave(start_streams), in_stall, out_stall, seed)
    expected = interleave(expected_streams)
    mismatches = np.argwhere(got != expected)
    assert mismatches.size == 0, (f"{len(mismatches)} words differ, first at (frame, index) "
                                  f"{tuple(mismatches[0])}: got {got[tuple(mismatches[0])]}, "
                                  f"expected {expected[tuple(mismatches[0])]}")
    assert status["frames_done"] == frames_per_stream * streams
    assert status["busy"] == 0
    return status


@pytest.mark.parametrize("streams", [2, 3])
def test_streams_with_projection_and_peepholes(streams):
    encoded = encoded_model(6, 20, 8, density=0.4, n_pes=4, seed=20 + streams)
    check_streams(encoded, streams, frames_per_stream=3, restarts=[(1, 2)], in_stall=0.2, out_stall=0.3,
                  seed=streams)


def test_two_streams_two_lanes_no_stalls():
    encoded = encoded_model(8, 24, 10, density=0.3, n_pes=4, seed=31)
    check_streams(encoded, 2, frames_per_stream=4, lanes=2, seed=5)


def test_two_streams_without_projection():
    encoded = encoded_model(5, 14, None, peephole=False, density=0.5, n_pes=2, seed=32)
    check_streams(encoded, 2, frames_per_stream=3, restarts=[(0, 1)], in_stall=0.3, out_stall=0.5, seed=6)


def test_three_streams_two_layers():
    encoded = encoded_model(6, 16, 8, layers=2, density=0.4, n_pes=2, seed=33)
    check_streams(encoded, 3, frames_per_stream=3, restarts=[(2, 1)], in_stall=0.2, out_stall=0.2, seed=7)


def test_streams_are_validated():
    with pytest.raises(ParameterError):
        HardwareParams(streams=0)
    with pytest.raises(TypeError):
        HardwareParams(streams=2.0)


@pytest.mark.parametrize("shape", [(20, 64, 32, 1, 4), (7, 16, 6, 2, 2)])
def test_cycle_model_predicts_simulated_cycles_with_two_streams(shape):
    input_size, cells, proj, layers, n_pes = shape
    encoded = compress_and_encode(random_model(input_size, cells, proj, num_layers=layers, seed=1), n_pes,
                                  0.2).encoded
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(streams=2))
    rng = np.random.default_rng(1)
    frames = 8
    # no zero activations in x (the model assumes none are skipped)
    x_q, _ = quantize_input(rng.uniform(0.5, 2.0, (frames, input_size)) * rng.choice([-1, 1], (frames, input_size)),
                            encoded.numerics)
    starts = np.arange(frames) < 2
    _, status = rtl_forward(design, x_q, starts, record_frame_cycles=True)
    marks = status["frame_cycles"]
    steady = (marks[6] - marks[2]) / 4
    assert predict_cycles(design).steady_state == pytest.approx(steady, rel=0.05)


def test_interleave_order_takes_sequences_in_turn():
    order = interleave_order((4, 3), 2)
    # sequences 0 and 1 in turn, then 2 and 3; frame t of sequence b is index b * 3 + t
    assert order.tolist() == [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]
    with pytest.raises(ValueError, match="multiple of 2"):
        interleave_order((3, 5), 2)


def test_delta_mode_takes_one_stream():
    from test_hw_delta import with_thresholds

    encoded = with_thresholds(encoded_model(6, 12, 4, n_pes=2, seed=34), 0, 0, 0)
    AcceleratorDesign.from_encoded(encoded, HardwareParams(streams=1))
    with pytest.raises(ParameterError, match="one stream"):
        AcceleratorDesign.from_encoded(encoded, HardwareParams(streams=2))


def test_cli_verilog_records_streams_and_lints_clean(tmp_path):
    from test_verilog import _lint, small_encoded

    encoded_dir, outdir = tmp_path / "enc", tmp_path / "out"
    write_encoded(small_encoded(n_pes=2, layers=2), encoded_dir)
    assert main(["verilog", str(encoded_dir), "-o", str(outdir), "--streams", "3"]) == 0
    info = json.loads((outdir / f"{TOP_NAME}.json").read_text())
    assert info["hardware_params"]["streams"] == 3
    _lint(outdir / f"{TOP_NAME}.v")
    assert main(["verilog", str(encoded_dir), "-o", str(outdir), "--streams", "0"]) == 1


@pytest.mark.cocotb
def test_sim_command_interleaves_sequences(tmp_path, capsys):
    from test_cocotb_accelerator import _require

    _require("icarus")
    model = random_model(4, 6, 3, num_layers=1, peephole=True, seed=10)
    write_encoded(compress_and_encode(model, 2, 0.5).encoded, tmp_path / "enc")
    x = np.random.default_rng(10).normal(0.0, 1.0, (4, 3, 4))
    np.save(tmp_path / "x.npy", x)
    code = main(["sim", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--simulator", "icarus", "--streams", "2", "--stall-in", "0.2", "--stall-out", "0.3"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "2 interleaved streams" in err and "PASS: 12/12 frame(s), 0 mismatching word(s)" in out
    # each sequence's outputs, put back in the input's order, are the golden model's on that sequence alone
    assert main(["golden", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "g.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "g.npy"))
    np.save(tmp_path / "x3.npy", x[:3])
    assert main(["sim", str(tmp_path / "enc"), "-i", str(tmp_path / "x3.npy"), "-o", str(tmp_path / "y3.npy"),
                 "--simulator", "icarus", "--streams", "2"]) == 1
    assert "multiple of 2" in capsys.readouterr().err
