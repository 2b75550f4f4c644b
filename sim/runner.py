"""Build generated Verilog with Icarus or Verilator and run a case on it, from Python.

    result = run_accelerator_sim(verilog_dir, encoded_dir, x_q, simulator="verilator")
    result.passed, result.outputs, result.mismatches, result.first_mismatch, result.cycles_per_frame ...

Each case lives in its own build directory, which is also how the two processes talk: this side writes the
input words, sequence starts, expected words (from sw.golden), `case.json` and, for the HDL harness
(sim/harness.py, written there as `harness.v` and built around the DUT), the payload words `inputs.hex`;
the harness logs `events.log`; the cocotb test (running in the simulator's Python), or for the native
main (sim/native.py) this process, writes `outputs.npy`, `result.json` and `progress.jsonl` next to them;
cocotb writes `results.xml`, the native main `native.json`. Logs: `build.log` and `sim.log` in the build
directory. Waveforms only on request (waves=True or WAVES=1, under cocotb): FST, `<top>.fst` (Icarus) or
`dump.fst` (Verilator; `dump.vcd` where the lz4/zlib headers that Verilator's FST writer needs are missing).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..spec.errors import ParameterError, SparseLSTMError
from . import native, tools
from .case import CASE_DIR_VARIABLE, HARNESSES, CaseConfig
from .dut import DutSpec
from .frames import interleave_order, pack_frames
from .harness import harness_module, harness_plusargs, write_harness
from .jobs import check_jobs, job_shares, run_jobs
from .progress import ProgressTail
from .reference import expected_words, load_reference_model
from .result import SimResult

__all__ = ["SimulationError", "build_dut", "run_stream_sim", "run_accelerator_sim", "flatten_sequences",
           "default_jobs", "runs_native", "TEST_MODULE", "SIDECAR_NAME"]

TEST_MODULE = "sparselstm.sim.test_dut"   # the cocotb tests, the same for every DUT
SIDECAR_NAME = "sparselstm_top.json"
HARNESS_FILE = "harness.v"                # the HDL harness, written into the build directory
# cocotb makes every signal public (--public-flat-rw), which keeps Verilator from optimising the design; the
# harness marks its own ports public, and nothing else needs to be.
HARNESS_VERILATOR_ARGS = ("--no-public-flat-rw",)
TIMESCALE = ("1ns", "1ps")
# Yosys-generated Verilog trips Verilator's default lint warnings (widths, unused bits); they are linted
# separately with documented waivers (hw/verilog.py LINT_WAIVERS), so here they must not stop the build.
VERILATOR_BUILD_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]


class SimulationError(SparseLSTMError):
    """The simulation could not run (build failure, simulator crash, mismatched inputs). The message is one
    line naming the log; `log_tail` holds the log's last lines (empty if there is no log)."""

    def __init__(self, message: str, log: Path | None = None):
        super().__init__(message if log is None else f"{message}; see {log}")
        self.log = log
        self.log_tail = _log_tail(log) if log is not None else ""


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@contextmanager
def _outside_pytest():
    """cocotb's runner changes behaviour under pytest (results file name, sys.exit on a failed test);
    we always read results.xml ourselves, so hide pytest from it."""
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


def _waves_requested(waves: bool) -> bool:
    value = os.environ.get("WAVES", "").strip().lower()
    return waves or value in ("1", "true", "yes", "on")


def waves_path(simulator: str, build_dir: Path, top: str) -> Path:
    if simulator == "icarus":
        return build_dir / f"{top}.fst"
    return build_dir / ("dump.fst" if tools.verilator_can_write_fst() else "dump.vcd")


def build_dut(sources, top: str, simulator: str, build_dir: Path, waves: bool = False,
              verilator_args=()) -> float:
    """Compile the Verilog files `sources` (top module `top`) for `simulator` in `build_dir` (more Verilator
    options in `verilator_args`); return the seconds it took."""
    from cocotb_tools.runner import get_runner

    tools.find_simulator(simulator)
    build_dir.mkdir(parents=True, exist_ok=True)
    waves = _waves_requested(waves)               # cocotb reads WAVES too: decide once, here
    log = build_dir / "build.log"
    started = time.monotonic()
    build_args, cache = [], None
    if simulator == "verilator":
        build_args = list(VERILATOR_BUILD_ARGS) + list(verilator_args)
        fst = waves and tools.verilator_can_write_fst()
        if fst:
            build_args.append("--trace-fst")      # else cocotb's default --trace: VCD
        cache = tools.VerilatorRuntimeCache(("fst" if fst else "vcd") if waves else None)

    def build(make_vars=()):
        with tools.simulator_environment(simulator, make_vars):
            get_runner(simulator).build(sources=[str(path) for path in sources], hdl_toplevel=top,
                                        build_dir=str(build_dir),
                                        always=True, timescale=TIMESCALE, build_args=build_args, waves=waves,
                                        log_file=str(log))

    try:
        cached = cache.make_vars() if cache else ()
        try:
            build(cached)
        except (RuntimeError, SystemExit):
            if not cached:
                raise
            build()                                # a stale runtime cache must never fail a build
            cached = ()
        if cache and not cached:
            cache.store(build_dir)
    except (RuntimeError, SystemExit) as error:
        raise SimulationError(f"{simulator} build of {', '.join(map(str, sources))} failed ({error})",
                              log) from None
    return time.monotonic() - started


def _parse_results(results_xml: Path) -> dict[str, str]:
    """cocotb's xUnit results: test name -> "pass", "skipped" or the failure message."""
    tests = {}
    root = ElementTree.parse(results_xml).getroot()
    for case in root.iter("testcase"):
        outcome = "pass"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = child.get("message") or child.text or child.tag
                break
            if child.tag == "skipped":
                outcome = "skipped"
        tests[case.get("name", "?")] = outcome
    return tests


HARNESS_CHOICES = ("auto", "native", *HARNESSES)


def _choose_harness(harness: str, simulator: str, waves: bool) -> str:
    """`harness` as run: "auto" is the native main on Verilator (the fast path) unless waveforms are wanted,
    else the HDL harness under cocotb."""
    if harness not in HARNESS_CHOICES:
        raise ParameterError(f"harness must be one of {', '.join(HARNESS_CHOICES)}, got {harness!r}")
    if harness == "auto":
        return "native" if simulator == "verilator" and not waves else "hdl"
    if harness == "native" and (simulator != "verilator" or waves):
        raise ParameterError("harness 'native' runs on Verilator only, without waveforms (use 'hdl')")
    return harness


def runs_native(simulator: str, waves: bool = False) -> bool:
    """Whether `harness="auto"` is the native main: the path that runs parallel jobs."""
    return _choose_harness("auto", simulator, _waves_requested(waves)) == "native"


def default_jobs(simulator: str, waves: bool = False) -> int:
    """Parallel jobs when none are asked for: one per CPU this process may use on the native path (the
    shares cap them further), else 1 (jobs run the native harness only)."""
    if not runs_native(simulator, waves):
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _run_cocotb(simulator: str, toplevel: str, build_dir: Path, waves: bool, seed: int, plusargs) -> None:
    """The cocotb tests (sim/test_dut.py) on the build in `build_dir`; they write the case's results."""
    from cocotb_tools.runner import get_runner

    with tools.simulator_environment(simulator), _outside_pytest():
        try:
            get_runner(simulator).test(test_module=TEST_MODULE, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                                       build_dir=str(build_dir), results_xml=str(build_dir / "results.xml"),
                                       waves=waves, seed=seed, plusargs=plusargs,
                                       log_file=str(build_dir / "sim.log"),
                                       extra_env={CASE_DIR_VARIABLE: str(build_dir)}, timescale=TIMESCALE)
        except (SystemExit, RuntimeError):
            pass   # a crashed simulator may still have written results; judged by the caller


def flatten_sequences(inputs_q, sequence_starts=None) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(T, I) or (B, T, I) integer words -> (frames, I) back to back, the start marker of every frame (each
    sequence's frame 0 starts one, plus any the caller marks), and the leading shape to restore outputs."""
    words = np.asarray(inputs_q)
    if words.dtype.kind not in "iu":
        raise ParameterError(f"input words: expected an integer array, got dtype {words.dtype}")
    if words.ndim not in (2, 3) or words.shape[-2] == 0:
        raise ParameterError(f"input words: expected shape (T, I) or (B, T, I) with T >= 1, got {words.shape}")
    leading = words.shape[:-1]
    starts = np.zeros(leading, dtype=bool)
    if sequence_starts is not None:
        given = np.asarray(sequence_starts, dtype=bool)
        if given.shape != leading:
            raise ParameterError(f"sequence_starts: expected shape {leading}, got {given.shape}")
        starts |= given
    starts[..., 0] = True
    return words.reshape(-1, words.shape[-1]).astype(np.int64), starts.reshape(-1), leading


def run_stream_sim(sidecar_path, frames, sequence_starts, expected, *, simulator: str = "icarus",
                   build_dir=None, waves: bool = False, stall_in: float = 0.0, stall_out: float = 0.0,
                   seed: int = 0, first_noise: bool = False, progress=None, build: bool = True,
                   harness: str = "auto", threads: int = 1, jobs: int = 1) -> SimResult:
    """Build the DUT its sidecar names and stream `frames` (F, input_size) through it, checking against
    `expected` (F, output_size). Generic: the accelerator and the stand-in both run through here.

    `harness` "hdl" wraps the DUT in the HDL harness of sim/harness.py, which moves the words inside the
    simulator, under cocotb; "native" runs the same harness from a Verilator C++ main without cocotb
    (sim/native.py; Verilator only, no waveforms; the fast path); "python" drives the streams from cocotb
    every cycle (slow; for debugging); "auto" (default) is "native" on Verilator without waveforms, else
    "hdl". With `build=False` the build in `build_dir` is reused: it must have been made with the same
    harness. `threads`: the native main's Verilator threads (`native.build_native`; 1 by default).
    `jobs` > 1 (native harness only) splits the frames at sequence starts into up to that many contiguous
    shares, run at once by as many processes of the one build, each in `build_dir`/job<k> with stall seed
    `seed` + k, and merges their results (sim/jobs.py)."""
    sidecar_path = Path(sidecar_path).resolve()
    spec = DutSpec.load(sidecar_path)
    frames = np.asarray(frames, dtype=np.int64)
    expected = np.asarray(expected, dtype=np.int64)
    starts = np.asarray(sequence_starts, dtype=bool)
    if frames.ndim != 2 or frames.shape[1] != spec.input_size or frames.shape[0] == 0:
        raise ParameterError(f"input frames: expected shape (F, {spec.input_size}) with F >= 1, got {frames.shape}")
    if starts.shape != (frames.shape[0],) or not starts[0]:
        raise ParameterError(f"sequence starts: expected a bool ({frames.shape[0]},) array with the first frame "
                             f"marked (the first frame after reset starts a sequence), got shape {starts.shape}")
    if expected.shape != (frames.shape[0], spec.output_size):
        raise ParameterError(f"expected words: shape {expected.shape}, want ({frames.shape[0]}, {spec.output_size})")
    harness = _choose_harness(harness, simulator, _waves_requested(waves))
    if threads != 1 and harness != "native":
        raise ParameterError(f"threads={threads!r}: only the native harness builds a multi-threaded model")
    check_jobs(jobs)
    if jobs != 1 and harness != "native":
        raise ParameterError(f"jobs={jobs}: parallel jobs run the native harness only (Verilator, no waveforms)")
    for name, p in (("stall_in", stall_in), ("stall_out", stall_out)):
        if not 0.0 <= p < 1.0:
            raise ParameterError(f"{name} must be a probability in [0, 1), got {p}")
    value = spec.input.fields["value"]
    low, high = -(1 << (value.width - 1)), (1 << (value.width - 1)) - 1
    if frames.size and (frames.min() < low or frames.max() > high):
        raise ParameterError(f"input words must fit {value.width}-bit signed values [{low}, {high}]")
    shares = [(0, len(frames))]
    if jobs > 1:
        streams = json.loads(sidecar_path.read_text()).get("hardware_params", {}).get("streams", 1)
        shares = job_shares(starts, jobs, streams)

    build_dir = Path(build_dir if build_dir is not None else sidecar_path.parent / f"sim_{simulator}").resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    waves = _waves_requested(waves)
    sources, toplevel, verilator_args = [sidecar_path.parent / spec.verilog], spec.top, ()
    if harness != "python":
        sources.append(build_dir / HARNESS_FILE)
        toplevel = write_harness(spec, sources[-1]) if build else harness_module(spec)
        verilator_args = HARNESS_VERILATOR_ARGS
    build_seconds = 0.0
    if build:
        build_seconds = (native.build_native(sources, spec, build_dir, threads) if harness == "native" else
                         build_dut(sources, toplevel, simulator, build_dir, waves, verilator_args))

    def run_case(case_dir: Path, lo: int, hi: int, case_seed: int, on_progress, stop=None) -> SimResult:
        """Frames [lo, hi) as one case in `case_dir`, on the build in `build_dir`."""
        case_dir.mkdir(parents=True, exist_ok=True)
        case = CaseConfig(sidecar=str(sidecar_path), stall_in=float(stall_in), stall_out=float(stall_out),
                          seed=int(case_seed), first_noise=bool(first_noise), first_frame=lo,
                          harness="python" if harness == "python" else "hdl")   # the native main runs the HDL harness
        for name in (case.outputs, case.result, case.progress, case.events, "results.xml"):
            (case_dir / name).unlink(missing_ok=True)
        if case_dir != build_dir:
            stage_memory_images(sidecar_path, case_dir)
        np.save(case_dir / case.inputs, frames[lo:hi])
        np.save(case_dir / case.sequence_starts, starts[lo:hi])
        np.save(case_dir / case.expected, expected[lo:hi])
        plusargs = []
        if harness != "python":
            noise = random.Random(f"{case_seed}:in") if first_noise else None
            words = pack_frames(frames[lo:hi], starts[lo:hi], value, spec.input.fields["first"], noise)
            (case_dir / case.input_words).write_text("".join(f"{word:x}\n" for frame in words for word in frame))
            plusargs = harness_plusargs(case_dir / case.input_words, case_dir / case.events)
        case.write(case_dir)
        return _run_case(spec, case, case_dir, build_dir, simulator, toplevel, harness, waves, case_seed,
                         plusargs, expected[lo:hi], on_progress, stop)

    stage_memory_images(sidecar_path, build_dir)
    if len(shares) == 1:
        result = run_case(build_dir, 0, len(frames), seed, progress)
    else:
        result = run_jobs(shares, lambda k, lo, hi, on_progress, stop: run_case(build_dir / f"job{k}", lo, hi,
                                                                                  seed + k, on_progress, stop),
                          progress)
    result.build_seconds = build_seconds
    result.waves = waves_path(simulator, build_dir, toplevel) if waves else None
    return result


def _run_case(spec: DutSpec, case: CaseConfig, case_dir: Path, build_dir: Path, simulator: str, toplevel: str,
              harness: str, waves: bool, seed: int, plusargs: list[str], expected: np.ndarray,
              progress, stop=None) -> SimResult:
    """Run the case written in `case_dir` on the build in `build_dir` and judge it."""
    results_xml = case_dir / "results.xml"
    tail = ProgressTail(case_dir / case.progress, progress) if progress else None
    started = time.monotonic()
    if tail:
        tail.start()
    try:
        if harness == "native":
            tests = native.run_native(spec, case, case_dir, plusargs, binary=build_dir / native.BINARY, stop=stop)
        else:
            _run_cocotb(simulator, toplevel, build_dir, waves, seed, plusargs)
            if not results_xml.exists() or not (case_dir / case.result).exists():
                raise SimulationError(f"{simulator} did not complete the cocotb run (no results)",
                                      case_dir / "sim.log")
            tests = _parse_results(results_xml)
    finally:
        if tail:
            tail.stop()
    run_seconds = time.monotonic() - started

    report = json.loads((case_dir / case.result).read_text())
    outputs = np.load(case_dir / case.outputs)
    # Judge here too, from the raw words, so a pass never rests on the in-simulator checker alone.
    complete = outputs.shape == expected.shape
    passed = (complete and np.array_equal(outputs, expected) and not report["errors"]
              and all(outcome in ("pass", "skipped") for outcome in tests.values()) and "stream_frames" in tests)
    return SimResult(
        passed=bool(passed), simulator=simulator, outputs=outputs, expected=expected, frames=len(expected),
        frames_received=report["frames_received"], mismatches=report["mismatches"],
        first_mismatch=report["first_mismatch"], errors=list(report["errors"]), tests=tests,
        status=report["status"], counters=report["counters"], sim_cycles=report["sim_cycles"],
        frame_start_cycles=report["frame_start_cycles"], frame_done_cycles=report["frame_done_cycles"],
        run_seconds=run_seconds, stream_seconds=report["wall_seconds"], stream_cpu_seconds=report["cpu_seconds"],
        stream_started_at=report.get("started_at"), build_dir=case_dir,
    )


def _check_sidecar_matches(sidecar_path: Path, encoded_dir: Path) -> None:
    """The Verilog must have been generated from this very encoded model (sidecar records its sha256)."""
    import hashlib

    recorded = (json.loads(sidecar_path.read_text()).get("encoded") or {}).get("manifest_sha256")
    if recorded is None:
        return
    actual = hashlib.sha256((encoded_dir / "manifest.json").read_bytes()).hexdigest()
    if actual != recorded:
        raise SimulationError(f"{sidecar_path} was generated from a different encoded model than {encoded_dir} "
                              "(manifest sha256 differs): regenerate the Verilog")


def stage_memory_images(sidecar_path: Path, run_dir: Path) -> None:
    """Copy the memory images the sidecar lists (paths relative to it) into `run_dir`: the Verilog's
    `$readmemh` paths are relative to the simulator's working directory, which is the run directory."""
    for image in json.loads(Path(sidecar_path).read_text()).get("memory_images", []):
        target = run_dir / image["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(sidecar_path).parent / image["file"], target)


def run_accelerator_sim(verilog_dir, encoded_dir, inputs_q, sequence_starts=None, simulator: str = "icarus",
                        build_dir=None, waves: bool = False, stall_in: float = 0.0, stall_out: float = 0.0,
                        seed: int = 0, first_noise: bool = False, progress=None, encoded=None,
                        harness: str = "auto", jobs: int = 1) -> SimResult:
    """Run input words `inputs_q` ((T, I) or (B, T, I) act words; sequences back to back, a sequence start
    at each, plus any `sequence_starts` marks) through the accelerator in `verilog_dir` (hw.verilog.generate's
    output) and check every output word against sw.golden.golden_forward_encoded of `encoded_dir`. A
    design with several streams (its sidecar's hardware_params) takes B sequences S at a time, frames
    interleaved (sim.frames.interleave_order); the result's first mismatch names the frame's input position.

    `progress(dict)` is called from a thread while it runs with {"frames", "total", "cycles", ...}.
    `harness`: "auto" (default), "native", "hdl" or "python"; `jobs`: parallel native jobs; see `run_stream_sim`.
    Returns a SimResult whose `outputs` are reshaped like the inputs ((T, O) / (B, T, O)) when complete."""
    verilog_dir, encoded_dir = Path(verilog_dir), Path(encoded_dir)
    sidecar_path = verilog_dir / SIDECAR_NAME
    if not sidecar_path.exists():
        raise SimulationError(f"{sidecar_path} not found: generate the Verilog first (sparselstm verilog)")
    _check_sidecar_matches(sidecar_path, encoded_dir)
    encoded = encoded if encoded is not None else load_reference_model(encoded_dir)
    frames, starts, leading = flatten_sequences(inputs_q, sequence_starts)
    expected = expected_words(encoded, frames, starts)
    streams = json.loads(sidecar_path.read_text()).get("hardware_params", {}).get("streams", 1)
    if streams > 1:   # the design takes the sequences' frames in turn (hw/params.py, streams)
        try:
            order = interleave_order(leading, streams)
        except ValueError as error:
            raise ParameterError(str(error)) from None
        frames, starts, expected = frames[order], starts[order], expected[order]
    result = run_stream_sim(sidecar_path, frames, starts, expected, simulator=simulator, build_dir=build_dir,
                            waves=waves, stall_in=stall_in, stall_out=stall_out, seed=seed,
                            first_noise=first_noise, progress=progress, harness=harness, jobs=jobs)
    if streams > 1 and result.first_mismatch:    # named by its place in the input
        result.first_mismatch["frame"] = int(order[result.first_mismatch["frame"]])
    if result.outputs.shape[0] == frames.shape[0]:
        if streams > 1:
            for name in ("outputs", "expected"):
                restored = np.empty_like(getattr(result, name))
                restored[order] = getattr(result, name)
                setattr(result, name, restored)
        result.outputs = result.outputs.reshape(*leading, -1)
        result.expected = result.expected.reshape(*leading, -1)
    return result
