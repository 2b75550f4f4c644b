"""The cocotb testbench of the accelerator's stream interface (in the style of cocotb's matrix_multiplier
example): a driver, a monitor, a reference (expected words), a checker, and the glue that runs one case.

Everything about the DUT comes from its sidecar JSON (docs/dev/sidecar.md) through `DutSpec`; everything
about the case (input words, sequence starts, expected words, stall probabilities, seed) comes from files in
the case directory written by sim/runner.py (`CaseConfig`). The expected words are computed outside the
simulator by the golden model (sw.golden); nothing here knows the numerics or the memory format.

Timing discipline (the same on Icarus and Verilator): drive inputs right after a rising edge, sample in the
ReadOnly phase of the same cycle (settled values of both sides of every handshake), and count a transfer
at the next rising edge when `valid & ready` was seen. Values read right after RisingEdge differ between
simulators (Verilator shows post-edge values), so they are never used to decide a handshake. Idle cycles
(input refused, no output offered) are slept through on the DUT's `ready`/`valid` edge, not polled.

The pure-Python parts (DutSpec, CaseConfig, FrameChecker) import no cocotb and are used by the runner too.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..spec.errors import SparseLSTMError

CASE_FILE = "case.json"
CASE_DIR_VARIABLE = "SPARSELSTM_SIM_CASE"   # the runner passes the case directory to the simulator in it
CLOCK_PERIOD_NS = 10


class SidecarError(SparseLSTMError):
    """A sidecar JSON is missing a key or has a value of the wrong type (the message names both)."""


# ----------------------------------------------------------------------------------------------------------
# The DUT, as its sidecar describes it


@dataclass(frozen=True)
class PayloadField:
    offset: int
    width: int
    signed: bool

    def decode(self, word: int) -> int:
        value = (word >> self.offset) & ((1 << self.width) - 1)
        if self.signed and value >> (self.width - 1):
            value -= 1 << self.width
        return value

    def encode(self, value: int) -> int:
        return (int(value) & ((1 << self.width) - 1)) << self.offset


@dataclass(frozen=True)
class StreamSpec:
    valid: str
    ready: str
    payload: str
    width: int
    fields: dict[str, PayloadField]


@dataclass(frozen=True)
class DutSpec:
    """What the testbench needs to know about a DUT, all from its sidecar."""

    top: str
    verilog: str
    clock: str
    reset: str
    reset_active_high: bool
    input: StreamSpec
    output: StreamSpec
    input_size: int
    output_size: int
    status: dict[str, str]                 # "busy", "frames_done", "cycles" -> port name
    status_widths: dict[str, int]
    counters: dict[str, list[str]]         # e.g. "mac_cycles" -> one port name per PE
    n_pes: int
    cycles_per_frame: int | None           # the sidecar's cycle model (steady state), if it has one
    first_frame_cycles: int | None
    total_entries: int | None

    @classmethod
    def from_sidecar(cls, sidecar: dict, source: str = "sidecar") -> "DutSpec":
        def get(mapping, key, kind, where):
            if not isinstance(mapping, dict) or key not in mapping:
                raise SidecarError(f"{source}: missing key {where}{key!r}")
            value = mapping[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise SidecarError(f"{source}: {where}{key!r} should be {kind.__name__}, got {value!r}")
            return value

        def stream_spec(name, required_fields):
            info = get(get(sidecar, "streams", dict, ""), name, dict, "streams.")
            where = f"streams.{name}."
            fields = {}
            for field_name, field_info in get(info, "fields", dict, where).items():
                fields[field_name] = PayloadField(get(field_info, "offset", int, f"{where}fields.{field_name}."),
                                                  get(field_info, "width", int, f"{where}fields.{field_name}."),
                                                  get(field_info, "signed", bool, f"{where}fields.{field_name}."))
            missing = set(required_fields) - set(fields)
            if missing:
                raise SidecarError(f"{source}: {where}fields lacks {sorted(missing)}")
            return StreamSpec(get(info, "valid", str, where), get(info, "ready", str, where),
                              get(info, "payload", str, where), get(info, "width", int, where), fields)

        version = get(sidecar, "sidecar_version", int, "")
        if version != 1:
            raise SidecarError(f"{source}: sidecar_version {version} is not supported (expected 1)")
        status = get(sidecar, "status", dict, "")
        for key in ("busy", "frames_done", "cycles"):
            get(status, key, str, "status.")
        counters = {name: list(ports) for name, ports in get(sidecar, "counters", dict, "").items()
                    if isinstance(ports, list)}
        model = sidecar.get("cycle_model") or {}
        work = sidecar.get("work") or {}
        return cls(
            top=get(sidecar, "top", str, ""), verilog=get(sidecar, "verilog", str, ""),
            clock=get(sidecar, "clock", str, ""), reset=get(sidecar, "reset", str, ""),
            reset_active_high=bool(sidecar.get("reset_active_high", True)),
            input=stream_spec("input", ("value", "first")), output=stream_spec("output", ("value", "last")),
            input_size=get(sidecar, "input_size", int, ""), output_size=get(sidecar, "output_size", int, ""),
            status=dict(status), status_widths=dict(sidecar.get("status_widths") or {}),
            counters=counters, n_pes=get(sidecar, "n_pes", int, ""),
            cycles_per_frame=model.get("cycles_per_frame"), first_frame_cycles=model.get("first_frame_cycles"),
            total_entries=work.get("total_entries"),
        )

    @classmethod
    def load(cls, path) -> "DutSpec":
        path = Path(path)
        try:
            sidecar = json.loads(path.read_text())
        except FileNotFoundError:
            raise SidecarError(f"{path}: sidecar not found") from None
        except json.JSONDecodeError as error:
            raise SidecarError(f"{path}: not valid JSON ({error})") from None
        return cls.from_sidecar(sidecar, str(path))

    def frame_cycle_budget(self) -> int:
        """A generous bound on the cycles one frame may take without stalls, for the watchdog."""
        known = [v for v in (self.cycles_per_frame, self.first_frame_cycles, self.total_entries) if v]
        return max(known + [self.input_size + self.output_size])


# ----------------------------------------------------------------------------------------------------------
# The case: files written by the runner, read by the cocotb test


@dataclass
class CaseConfig:
    """One simulation case. Paths are relative to the case directory (the build directory)."""

    sidecar: str                          # absolute path of the DUT's sidecar JSON
    inputs: str = "inputs.npy"            # int64 (frames, input_size) input words
    sequence_starts: str = "sequence_starts.npy"   # bool (frames,)
    expected: str = "expected.npy"        # int64 (frames, output_size) expected output words
    outputs: str = "outputs.npy"          # written by the test: the received words
    result: str = "result.json"           # written by the test: counts, first mismatch, counters, errors
    progress: str = "progress.jsonl"      # appended by the test while it runs
    stall_in: float = 0.0                 # probability of holding input `valid` low before a word
    stall_out: float = 0.0                # probability of holding output `ready` low while a word is offered
    first_noise: bool = False             # set `first` at random on words where it must be ignored
    seed: int = 0
    drain_cycles: int = 64                # cycles watched after the last frame for extra words

    def write(self, directory) -> Path:
        path = Path(directory) / CASE_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, directory) -> "CaseConfig":
        return cls(**json.loads((Path(directory) / CASE_FILE).read_text()))


# ----------------------------------------------------------------------------------------------------------
# The checker (no cocotb): in-order comparison of whole frames


@dataclass
class Mismatch:
    frame: int
    element: int
    expected: int
    got: int

    def __str__(self) -> str:
        return f"frame {self.frame}, element {self.element}: expected {self.expected}, got {self.got}"


@dataclass
class FrameChecker:
    """Compares received frames in order against the expected words; keeps the first mismatch and counts all."""

    expected: np.ndarray
    mismatches: int = 0
    mismatching_frames: int = 0
    first_mismatch: Mismatch | None = None
    frames_checked: int = 0
    unexpected_frames: int = 0

    def check(self, frame_index: int, words: np.ndarray) -> int:
        """Check one received frame; return its number of mismatching words."""
        if frame_index >= len(self.expected):
            self.unexpected_frames += 1
            return 0
        expected = self.expected[frame_index]
        differs = np.flatnonzero(np.asarray(words, dtype=np.int64) != expected)
        self.frames_checked += 1
        if differs.size:
            self.mismatches += int(differs.size)
            self.mismatching_frames += 1
            if self.first_mismatch is None:
                k = int(differs[0])
                self.first_mismatch = Mismatch(frame_index, k, int(expected[k]), int(words[k]))
        return int(differs.size)

    def summary(self) -> str:
        if self.first_mismatch is None:
            return f"{self.frames_checked} frame(s) match"
        return (f"first mismatch at {self.first_mismatch}; {self.mismatches} mismatching word(s) in "
                f"{self.mismatching_frames} of {self.frames_checked} frame(s)")


# ----------------------------------------------------------------------------------------------------------
# cocotb components (imported lazily: the runner process only needs the parts above)


def _cocotb():
    import cocotb
    from cocotb import triggers
    return cocotb, triggers


def _sim_cycle() -> int:
    from cocotb.simtime import get_sim_time
    return int(get_sim_time("ns")) // CLOCK_PERIOD_NS


def _is_one(handle) -> bool:
    value = handle.value
    return value.is_resolvable and int(value) == 1


class InputDriver:
    """Streams input frames: `value` per word, `first` on the first word of a frame that starts a sequence;
    before each word `valid` is held low for a random number of cycles (probability `stall` per cycle)."""

    def __init__(self, dut, spec: DutSpec, stall: float, rng: random.Random, first_noise: bool = False):
        self._clk = dut[spec.clock]
        self._valid = dut[spec.input.valid]
        self._ready = dut[spec.input.ready]
        self._payload = dut[spec.input.payload]
        self._value_field = spec.input.fields["value"]
        self._first_field = spec.input.fields["first"]
        self._stall = stall
        self._rng = rng
        self._first_noise = first_noise
        self.frame_start_cycles: list[int] = []   # cycle in which each frame's first word was accepted
        self.frames_sent = 0

    def idle(self) -> None:
        self._valid.value = 0
        self._payload.value = 0

    def _words(self, frames: np.ndarray, starts: np.ndarray) -> list[list[int]]:
        packed = []
        for t, frame in enumerate(frames):
            words = [self._value_field.encode(v) for v in frame]
            if starts[t]:
                words[0] |= self._first_field.encode(1)
            if self._first_noise:
                # The protocol says `first` is ignored after a frame's first word: set it at random there.
                for k in range(1, len(words)):
                    if self._rng.random() < 0.5:
                        words[k] |= self._first_field.encode(1)
            packed.append(words)
        return packed

    async def send(self, frames: np.ndarray, starts: np.ndarray) -> None:
        _, triggers = _cocotb()
        rising, read_only = triggers.RisingEdge(self._clk), triggers.ReadOnly()
        ready_rises = triggers.RisingEdge(self._ready)
        for words in self._words(frames, starts):
            for k, word in enumerate(words):
                while self._stall and self._rng.random() < self._stall:
                    self._valid.value = 0
                    await rising
                self._payload.value = word
                self._valid.value = 1
                while True:
                    await read_only
                    if _is_one(self._ready):
                        await rising          # the word moves on this edge
                        break
                    # Refused: sleep until `ready` rises instead of polling every cycle (it can only rise
                    # after a clock edge, and this trigger is armed before the next one, so none is missed).
                    await ready_rises
                if k == 0:
                    self.frame_start_cycles.append(_sim_cycle())
            self.frames_sent += 1
        self._valid.value = 0


class OutputMonitor:
    """Drives output `ready` (low with probability `stall` in each cycle in which the DUT offers a word; it
    keeps its last value while nothing is offered), collects the words moved on each `valid & ready` into
    frames closed by `last`, checks every frame's length, and hands whole frames to `on_frame`."""

    def __init__(self, dut, spec: DutSpec, stall: float, rng: random.Random, on_frame):
        self._clk = dut[spec.clock]
        self._valid = dut[spec.output.valid]
        self._ready = dut[spec.output.ready]
        self._payload = dut[spec.output.payload]
        self._value_field = spec.output.fields["value"]
        self._last_field = spec.output.fields["last"]
        self._size = spec.output_size
        self._stall = stall
        self._rng = rng
        self._on_frame = on_frame
        self._task = None
        self._current: list[int] = []
        self.frames: list[np.ndarray] = []
        self.frame_done_cycles: list[int] = []
        self.words = 0
        self.errors: list[str] = []
        self.frame_event = None

    def start(self) -> None:
        cocotb, triggers = _cocotb()
        if self._task is not None:
            raise RuntimeError("OutputMonitor already started")
        self.frame_event = triggers.Event()
        self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _error(self, message: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(message)

    def _take(self, word_bits) -> None:
        if not word_bits.is_resolvable:
            self._error(f"frame {len(self.frames)}, element {len(self._current)}: output payload has "
                        f"X/Z bits ({word_bits}) while valid")
            word = 0
        else:
            word = int(word_bits)
        self.words += 1
        self._current.append(self._value_field.decode(word))
        last = self._last_field.decode(word) == 1
        if not last and len(self._current) < self._size:
            return
        frame_index = len(self.frames)
        if not last:
            self._error(f"frame {frame_index}: `last` not set on word {self._size - 1} "
                        f"(output_size {self._size})")
        elif len(self._current) != self._size:
            self._error(f"frame {frame_index}: `last` set on word {len(self._current) - 1}, expected on word "
                        f"{self._size - 1} (output_size {self._size})")
        words = np.zeros(self._size, dtype=np.int64)
        received = self._current[:self._size]
        words[:len(received)] = received
        self._current = []
        self.frames.append(words)
        self.frame_done_cycles.append(_sim_cycle())
        self._on_frame(frame_index, words)
        self.frame_event.set()

    async def _run(self) -> None:
        _, triggers = _cocotb()
        rising, read_only = triggers.RisingEdge(self._clk), triggers.ReadOnly()
        valid_rises = triggers.RisingEdge(self._valid)
        ready = None
        while True:
            # One ready decision per cycle in which the DUT offers a word (and one at each wake-up).
            want = 0 if self._stall and self._rng.random() < self._stall else 1
            if want != ready:
                self._ready.value = ready = want
            await read_only
            if not _is_one(self._valid):
                # Nothing offered: sleep until `valid` rises (armed before the next edge, so never missed)
                # instead of polling every cycle; most cycles of a frame have no output word.
                await valid_rises
                continue
            word_bits = self._payload.value if ready else None
            await rising
            if word_bits is not None:
                self._take(word_bits)

    @property
    def partial_words(self) -> int:
        return len(self._current)


@dataclass
class CaseResult:
    """What the cocotb test writes to result.json (the runner reads it back)."""

    frames_sent: int = 0
    frames_expected: int = 0
    frames_received: int = 0
    words_received: int = 0
    mismatches: int = 0
    mismatching_frames: int = 0
    first_mismatch: dict | None = None
    errors: list[str] = field(default_factory=list)
    status: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    sim_cycles: int = 0                   # from reset release to the last output word
    frame_start_cycles: list[int] = field(default_factory=list)
    frame_done_cycles: list[int] = field(default_factory=list)
    wall_seconds: float = 0.0


class StreamBench:
    """Reset, drive, monitor, check and report one case on one DUT."""

    def __init__(self, dut, spec: DutSpec, case: CaseConfig, case_dir: Path):
        self.dut, self.spec, self.case, self.case_dir = dut, spec, case, case_dir
        self.inputs = np.load(case_dir / case.inputs)
        self.starts = np.load(case_dir / case.sequence_starts).astype(bool)
        self.expected = np.load(case_dir / case.expected)
        self._check_shapes()
        self.checker = FrameChecker(self.expected)
        self.driver = InputDriver(dut, spec, case.stall_in, random.Random(f"{case.seed}:in"), case.first_noise)
        self.monitor = OutputMonitor(dut, spec, case.stall_out, random.Random(f"{case.seed}:out"),
                                     self._on_frame)
        self.result = CaseResult(frames_expected=len(self.expected))
        self._progress_file = case_dir / case.progress
        self._last_progress = 0.0
        self._started = time.monotonic()
        self._reset_cycle = 0                 # set when reset is released; cycles are reported from there

    def _check_shapes(self) -> None:
        frames = self.inputs.shape[0]
        problems = []
        if self.inputs.ndim != 2 or self.inputs.shape[1] != self.spec.input_size:
            problems.append(f"inputs shape {self.inputs.shape}, DUT input_size {self.spec.input_size}")
        if self.expected.shape != (frames, self.spec.output_size):
            problems.append(f"expected shape {self.expected.shape}, want ({frames}, {self.spec.output_size})")
        if self.starts.shape != (frames,):
            problems.append(f"sequence_starts shape {self.starts.shape}, want ({frames},)")
        if problems:
            raise ValueError("case files do not fit the DUT: " + "; ".join(problems))

    def watchdog_cycles(self) -> int:
        """Cycles to wait for the next output frame before declaring the DUT stuck: 20x the sidecar's
        per-frame bound, stretched by the stall probabilities, plus a constant for the pipeline."""
        slowdown = 1.0 / ((1.0 - min(self.case.stall_in, 0.99)) * (1.0 - min(self.case.stall_out, 0.99)))
        return int(20 * self.spec.frame_cycle_budget() * slowdown) + 2000

    def _on_frame(self, index: int, words: np.ndarray) -> None:
        self.checker.check(index, words)
        now = time.monotonic()
        done = len(self.monitor.frames)
        if now - self._last_progress >= 0.5 or done == len(self.expected):
            self._last_progress = now
            line = {"frames": done, "total": len(self.expected), "cycles": _sim_cycle() - self._reset_cycle,
                    "mismatches": self.checker.mismatches, "wall": round(now - self._started, 3)}
            with open(self._progress_file, "a") as handle:
                handle.write(json.dumps(line) + "\n")

    async def reset(self, cycles: int = 3) -> None:
        cocotb, triggers = _cocotb()
        from cocotb.clock import Clock

        clk = self.dut[self.spec.clock]
        cocotb.start_soon(Clock(clk, CLOCK_PERIOD_NS, "ns").start())
        reset = self.dut[self.spec.reset]
        active = 1 if self.spec.reset_active_high else 0
        self.driver.idle()
        self.dut[self.spec.output.ready].value = 0
        reset.value = active
        await triggers.ClockCycles(clk, cycles)
        reset.value = 1 - active
        await triggers.RisingEdge(clk)
        self._reset_cycle = _sim_cycle()

    def read_status(self) -> tuple[dict, dict]:
        def read(name):
            value = self.dut[name].value
            return int(value) if value.is_resolvable else str(value)

        status = {key: read(port) for key, port in self.spec.status.items()}
        counters = {key: [read(port) for port in ports] for key, ports in self.spec.counters.items()}
        return status, counters

    async def idle_check(self, cycles: int = 16) -> list[str]:
        """After reset with no input: no output word, not busy, every counter zero."""
        _, triggers = _cocotb()
        clk = self.dut[self.spec.clock]
        self.dut[self.spec.output.ready].value = 1
        errors = []
        for _ in range(cycles):
            await triggers.ReadOnly()
            if _is_one(self.dut[self.spec.output.valid]):
                errors.append("output valid without any input")
                break
            await triggers.RisingEdge(clk)
        status, counters = self.read_status()
        readings = dict(status)
        readings.update({f"{name}[{pe}]": value for name, values in counters.items()
                         for pe, value in enumerate(values)})
        for key, value in readings.items():
            if value != 0:
                errors.append(f"{key} = {value} after reset without input (expected 0)")
        return errors

    async def run(self) -> CaseResult:
        """Stream every frame, wait for every output frame (watchdog per frame), drain, read the counters."""
        cocotb, triggers = _cocotb()
        clk = self.dut[self.spec.clock]
        result = self.result
        (self.case_dir / self.case.progress).write_text("")
        await self.reset()
        self.monitor.start()
        sender = cocotb.start_soon(self.driver.send(self.inputs, self.starts))
        watchdog = self.watchdog_cycles()
        try:
            while len(self.monitor.frames) < len(self.expected):
                received = len(self.monitor.frames)
                try:
                    await triggers.with_timeout(self.monitor.frame_event.wait(), watchdog * CLOCK_PERIOD_NS, "ns")
                except triggers.SimTimeoutError:
                    result.errors.append(
                        f"timeout: no output frame for {watchdog} cycles after {received} of "
                        f"{len(self.expected)} frame(s) (inputs accepted: {self.driver.frames_sent} frame(s); "
                        f"{self.monitor.partial_words} word(s) of a partial frame)")
                    break
                self.monitor.frame_event.clear()
            result.sim_cycles = _sim_cycle() - self._reset_cycle
            if not result.errors:
                # Extra words after the last expected frame are errors: watch a while longer, then give
                # the DUT time to go idle before reading its counters.
                await triggers.ClockCycles(clk, self.case.drain_cycles)
                busy_port = self.dut[self.spec.status["busy"]]
                for _ in range(watchdog):
                    await triggers.ReadOnly()
                    if not _is_one(busy_port):
                        break
                    await triggers.RisingEdge(clk)
            else:
                await triggers.ReadOnly()
            result.status, result.counters = self.read_status()
        finally:
            self.monitor.stop()
            sender.cancel()
            self._finish()
        return result

    def _finish(self) -> None:
        result, spec = self.result, self.spec
        result.frames_sent = self.driver.frames_sent
        result.frames_received = len(self.monitor.frames)
        result.words_received = self.monitor.words
        result.mismatches = self.checker.mismatches
        result.mismatching_frames = self.checker.mismatching_frames
        result.first_mismatch = asdict(self.checker.first_mismatch) if self.checker.first_mismatch else None
        result.frame_start_cycles = [c - self._reset_cycle for c in self.driver.frame_start_cycles]
        result.frame_done_cycles = [c - self._reset_cycle for c in self.monitor.frame_done_cycles]
        result.errors = self.monitor.errors + result.errors
        if self.checker.unexpected_frames or self.monitor.partial_words:
            result.errors.append(f"{self.checker.unexpected_frames} unexpected extra frame(s) and "
                                 f"{self.monitor.partial_words} stray word(s) after the last expected frame")
        frames_done = result.status.get("frames_done")
        width = spec.status_widths.get("frames_done", 32)
        if isinstance(frames_done, int) and frames_done != result.frames_received % (1 << width):
            result.errors.append(f"frames_done counter = {frames_done}, but {result.frames_received} frame(s) "
                                 "were received")
        if result.status.get("busy") not in (0, None):
            result.errors.append(f"busy = {result.status.get('busy')} after the last frame was sent")
        result.wall_seconds = time.monotonic() - self._started
        outputs = np.array(self.monitor.frames, dtype=np.int64).reshape(-1, spec.output_size)
        np.save(self.case_dir / self.case.outputs, outputs)
        (self.case_dir / self.case.result).write_text(json.dumps(asdict(result)) + "\n")

    def verdict(self) -> None:
        """Fail the cocotb test (AssertionError) with the first problem, if there is any."""
        result = self.result
        problems = []
        if self.checker.mismatches:
            problems.append(self.checker.summary())
        problems += result.errors
        if problems:
            raise AssertionError("; ".join(problems))


def case_dir_from_environment() -> Path:
    case_dir = os.environ.get(CASE_DIR_VARIABLE)
    if not case_dir:
        raise RuntimeError(f"${CASE_DIR_VARIABLE} is not set: run the cocotb tests through sim/runner.py")
    return Path(case_dir)


async def run_case(dut, case_dir) -> CaseResult:
    """Run the case in `case_dir` on `dut` and fail the test on any mismatch or protocol error."""
    case_dir = Path(case_dir)
    case = CaseConfig.read(case_dir)
    spec = DutSpec.load(case.sidecar)
    bench = StreamBench(dut, spec, case, case_dir)
    result = await bench.run()
    dut._log.info("%d/%d frame(s), %d cycle(s), %s", result.frames_received, result.frames_expected,
                  result.sim_cycles, bench.checker.summary())
    bench.verdict()
    return result


async def run_idle_check(dut, case_dir) -> None:
    """Reset the DUT and check it stays idle with all counters at zero when given no input."""
    case_dir = Path(case_dir)
    case = CaseConfig.read(case_dir)
    spec = DutSpec.load(case.sidecar)
    bench = StreamBench(dut, spec, case, case_dir)
    await bench.reset()
    errors = await bench.idle_check()
    if errors:
        raise AssertionError("; ".join(errors))
