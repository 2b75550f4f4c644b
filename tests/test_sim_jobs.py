"""Parallel simulation jobs (sim/jobs.py): the frames split at sequence starts, one native Verilator build
run by several processes at once, the results merged. On the stand-in (sim/standin.py) and a small
accelerator model: the same words, registers and verdict as one job, and a job that mismatches fails the
whole run, named by the frame in the whole run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparselstm import cli
from sparselstm.sim.jobs import job_shares, run_jobs
from sparselstm.sim.runner import SIDECAR_NAME, flatten_sequences, run_stream_sim
from sparselstm.sim.reference import expected_words, load_reference_model
from sparselstm.sim.standin import STANDIN_TOP, generate_standin, standin_reference
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.format import write_encoded
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode
from test_cocotb_infra import _require

pytestmark = pytest.mark.cocotb

INPUT_SIZE = 5


def _stimulus(frames: int, restart_at: tuple, seed: int = 0):
    x = np.random.default_rng(seed).integers(-30000, 30000, (frames, INPUT_SIZE))
    starts = np.zeros(frames, dtype=bool)
    starts[[0, *restart_at]] = True
    return x, starts, standin_reference(x, starts)


def test_shares_begin_at_sequence_starts_and_are_even():
    starts = np.zeros(100, dtype=bool)
    starts[[0, 10, 20, 45, 55, 90]] = True
    assert job_shares(starts, 1) == [(0, 100)]
    assert job_shares(starts, 2) == [(0, 55), (55, 100)]         # the largest share as small as it can be
    assert job_shares(starts, 3) == [(0, 45), (45, 90), (90, 100)]
    assert job_shares(np.ones(100, dtype=bool), 3) == [(0, 34), (34, 68), (68, 100)]
    # No more shares than the largest (the 35 frames from 20 to 55) needs.
    assert job_shares(starts, 50) == [(0, 20), (20, 55), (55, 90), (90, 100)]
    assert job_shares(np.ones(1, dtype=bool), 4) == [(0, 1)]
    # Two interleaved streams: a share begins where both streams start a sequence, at an even frame.
    pairs = np.zeros(12, dtype=bool)
    pairs[[0, 1, 5, 6, 7, 8, 9]] = True                      # 5/6 straddle a pair; 6/7 is one
    assert job_shares(pairs, 2, streams=2) == [(0, 6), (6, 12)]
    assert job_shares(pairs[:4], 2, streams=2) == [(0, 4)] and job_shares(pairs[:4], 2) == [(0, 1), (1, 4)]
    with pytest.raises(ParameterError, match="jobs must be an int >= 1"):
        job_shares(starts, 0)
    with pytest.raises(ParameterError, match="streams must be an int >= 1 dividing"):
        job_shares(starts, 2, streams=3)


def test_a_job_that_raises_stops_the_others():
    """A share whose simulator cannot run raises at once; the others see `stop` and end their simulators."""
    seen = {}

    def run_share(k, begin, end, on_progress, stop):
        if k == 1:
            raise ValueError("share 1 cannot run")
        seen[k] = stop.wait(timeout=30)
        raise RuntimeError("stopped")

    with pytest.raises(ValueError, match="share 1 cannot run"):
        run_jobs([(0, 5), (5, 10), (10, 15)], run_share)
    assert seen == {0: True, 2: True}


@pytest.fixture(scope="module")
def standin_build(tmp_path_factory):
    """A stand-in built once for the native main; runs reuse the build."""
    _require("verilator")
    directory = tmp_path_factory.mktemp("standin_jobs")
    generate_standin(directory, input_size=INPUT_SIZE)
    x, starts, expected = _stimulus(4, ())
    first = run_stream_sim(directory / f"{STANDIN_TOP}.json", x, starts, expected, simulator="verilator",
                           build_dir=directory / "build")
    assert first.passed, first.failure_summary()
    return directory


def _run(directory, x, starts, expected, **options):
    return run_stream_sim(directory / f"{STANDIN_TOP}.json", x, starts, expected, simulator="verilator",
                          build_dir=directory / "build", build=False, **options)


def test_two_jobs_give_what_one_gives_with_stalls_and_restarts(standin_build):
    x, starts, expected = _stimulus(40, restart_at=(6, 7, 19, 23, 31))
    options = dict(stall_in=0.3, stall_out=0.3, seed=4, first_noise=True)
    one = _run(standin_build, x, starts, expected, jobs=1, **options)
    progress = []
    two = _run(standin_build, x, starts, expected, jobs=2, progress=progress.append, **options)
    assert one.passed and two.passed, [run.failure_summary() for run in (one, two)]
    np.testing.assert_array_equal(two.outputs, expected)
    np.testing.assert_array_equal(two.outputs, one.outputs)
    assert two.tests == one.tests == {"idle_after_reset": "pass", "stream_frames": "pass"}
    assert [job["frames"] for job in two.jobs] == [[0, 19], [19, 40]] and not one.jobs
    assert all(job["passed"] for job in two.jobs)
    assert two.status["frames_done"] == 40 and two.status["busy"] == 0
    assert two.counters == one.counters and two.counters["mac_cycles"] == [3 * 40, 2 * 40]
    assert two.sim_cycles == sum(job["sim_cycles"] for job in two.jobs)
    assert len(two.frame_done_cycles) == 40 and two.frame_done_cycles == sorted(two.frame_done_cycles)
    assert two.stream_cpu_seconds == pytest.approx(sum(job["stream_cpu_seconds"] for job in two.jobs), abs=0.01)
    # The parallel stream spans the jobs' streams (one monotonic clock) and lies within the whole run.
    assert max(job["stream_seconds"] for job in two.jobs) - 0.001 <= two.stream_seconds <= two.run_seconds
    assert progress and progress[-1]["frames"] == 40 and progress[-1]["total"] == 40


def test_a_job_that_mismatches_fails_the_run_named_by_its_frame(standin_build):
    x, starts, expected = _stimulus(30, restart_at=(10, 20))
    wrong = expected.copy()
    wrong[24, 3] += 1                                         # in the last of three shares
    result = _run(standin_build, x, starts, wrong, jobs=3)
    assert [job["frames"] for job in result.jobs] == [[0, 10], [10, 20], [20, 30]]
    assert not result.passed and [job["passed"] for job in result.jobs] == [True, True, False]
    assert result.mismatches == 1
    assert result.first_mismatch == {"frame": 24, "element": 3, "expected": int(wrong[24, 3]),
                                     "got": int(expected[24, 3])}
    assert result.tests["stream_frames"].startswith("job 2 (frames 20-29): first mismatch at frame 24, element 3")
    assert result.tests["idle_after_reset"] == "pass"
    np.testing.assert_array_equal(result.outputs, expected)   # what the DUT really sent
    assert result.build_dir.name == "job2" and "frame 24, element 3" in result.failure_summary()


def test_jobs_run_on_the_native_path_only(tmp_path, capsys):
    generate_standin(tmp_path, input_size=INPUT_SIZE)
    x, starts, expected = _stimulus(4, (2,))
    with pytest.raises(ParameterError, match="native harness only"):
        run_stream_sim(tmp_path / f"{STANDIN_TOP}.json", x, starts, expected, simulator="icarus", jobs=2)
    with pytest.raises(ParameterError, match="jobs must be an int >= 1"):
        run_stream_sim(tmp_path / f"{STANDIN_TOP}.json", x, starts, expected, simulator="verilator", jobs=0)
    _require("icarus")
    model = random_model(4, 6, 3, num_layers=1, peephole=False, seed=2)
    write_encoded(compress_and_encode(model, 2, 0.5).encoded, tmp_path / "enc")
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 4)))
    code = cli.main(["sim", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                     "--simulator", "icarus", "--jobs", "2"])
    assert code == 1 and "--jobs 2: parallel jobs run on the native Verilator path only" in capsys.readouterr().err


def test_small_accelerator_two_jobs_as_one(tmp_path, capsys):
    """`sparselstm sim --jobs 2` on a two-layer model with stalls and restarts inside the sequences: the
    golden model's words, and the same words, registers and verdict as one job on the same build."""
    _require("verilator")
    model = random_model(4, 8, 4, num_layers=2, peephole=True, seed=5)
    write_encoded(compress_and_encode(model, 2, 0.5).encoded, tmp_path / "enc")
    x = np.random.default_rng(5).integers(-300, 300, (4, 5, 4))
    starts = np.zeros((4, 5), dtype=bool)
    starts[1, 3] = True
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "s.npy", starts)
    build = tmp_path / "build"
    code = cli.main(["sim", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "--raw", "--starts",
                     str(tmp_path / "s.npy"), "-o", str(tmp_path / "y.npy"), "--simulator", "verilator",
                     "--stall-in", "0.2", "--stall-out", "0.3", "--jobs", "2", "--build-dir", str(build),
                     "--report", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "PASS: 20/20 frame(s), 0 mismatching word(s)" in out and "2 parallel jobs" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [job["frames"] for job in report["jobs"]] == [[0, 10], [10, 20]]
    frames, flat_starts, _ = flatten_sequences(x, starts)
    expected = expected_words(load_reference_model(tmp_path / "enc"), frames, flat_starts)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy").reshape(-1, expected.shape[1]), expected)
    one = run_stream_sim(build / "verilog" / SIDECAR_NAME, frames, flat_starts, expected, simulator="verilator",
                         build_dir=build / "sim_verilator", build=False, stall_in=0.2, stall_out=0.3, jobs=1)
    assert one.passed, one.failure_summary()
    # Busy cycles and stall patterns differ between the splits (job k stalls with seed + k); the work not.
    assert report["status"]["frames_done"] == one.status["frames_done"] == 20
    assert report["counters"] == one.counters
    assert report["tests"] == one.tests and report["mismatches"] == one.mismatches == 0


def test_two_streams_split_between_pairs_of_sequences(tmp_path, capsys):
    """With 2 interleaved streams a share begins where both streams start a sequence: 4 sequences of 5
    frames split after the first pair, and the outputs come back in input order."""
    _require("verilator")
    model = random_model(4, 8, 4, num_layers=1, peephole=False, seed=6)
    write_encoded(compress_and_encode(model, 2, 0.5).encoded, tmp_path / "enc")
    x = np.random.default_rng(6).integers(-300, 300, (4, 5, 4))
    np.save(tmp_path / "x.npy", x)
    code = cli.main(["sim", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "--raw", "-o",
                     str(tmp_path / "y.npy"), "--simulator", "verilator", "--streams", "2", "--jobs", "2",
                     "--report", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert [job["frames"] for job in json.loads((tmp_path / "r.json").read_text())["jobs"]] == [[0, 10], [10, 20]]
    assert cli.main(["golden", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "--raw",
                     "-o", str(tmp_path / "g.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "g.npy"))
