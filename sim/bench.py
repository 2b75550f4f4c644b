"""The cocotb bench of one case (in the manner of cocotb's matrix_multiplier example). `CaseBench` adds to
the checking of sim/case_check.py what needs the simulator: reset, the idle check, reading the DUT's status;
`StreamBench` drives and samples the streams from Python every cycle (sim/streams.py, `harness="python"`),
`HarnessBench` (sim/harness_bench.py) lets the HDL harness of sim/harness.py do it inside the simulator
(`harness="hdl"`).

Everything about the DUT comes from its sidecar through `DutSpec`; everything about the case (input
words, sequence starts, expected words, stalls, seed) from the case directory written by sim/runner.py.
The expected words are computed outside the simulator; nothing here knows the numerics or the model.
"""

from __future__ import annotations

import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Event, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from .case import CaseConfig, CaseResult
from .case_check import CaseCheck
from .dut import DutSpec
from .frames import pack_frames
from .streams import StreamDriver, StreamMonitor, is_high, random_pauses

__all__ = ["CLOCK_PERIOD_NS", "CaseBench", "StreamBench", "run_case", "run_idle_check"]

CLOCK_PERIOD_NS = 10


def sim_cycle() -> int:
    """The current clock cycle since time 0."""
    return int(get_sim_time("ns")) // CLOCK_PERIOD_NS


class CaseBench(CaseCheck):
    """Reset, check and report one case on one DUT; a subclass moves the words (`run`).

    Parameters
    ----------
    dut : cocotb handle
        The top module: the DUT itself, or the HDL harness around it, which has the DUT's ports too.
    spec, case, case_dir
        As for `CaseCheck`.
    """

    def __init__(self, dut, spec: DutSpec, case: CaseConfig, case_dir: Path):
        super().__init__(spec, case, case_dir)
        self.dut = dut

    def hold_streams(self) -> None:
        """Offer no input word and take no output word (before and during reset)."""

    def release_streams(self) -> None:
        """Called as reset is released, before the first edge that sees it released."""

    async def reset(self, cycles: int = 3) -> None:
        """Start the clock (cocotb's C-level GPI clock) and reset the DUT."""
        clk = self.dut[self.spec.clock]
        Clock(clk, CLOCK_PERIOD_NS, "ns", impl="gpi").start()
        reset = self.dut[self.spec.reset]
        active = 1 if self.spec.reset_active_high else 0
        self.hold_streams()
        reset.value = active
        await ClockCycles(clk, cycles)
        reset.value = 1 - active
        self.release_streams()
        await RisingEdge(clk)

    def read_status(self) -> tuple[dict, dict]:
        def read(name):
            value = self.dut[name].value
            return int(value) if value.is_resolvable else str(value)

        status = {key: read(port) for key, port in self.spec.status.items()}
        counters = {key: [read(port) for port in ports] for key, ports in self.spec.counters.items()}
        return status, counters

    def accept_outputs(self) -> None:
        """Take every output word (for the idle check)."""

    async def idle_check(self, cycles: int = 16) -> list[str]:
        """After reset with no input: no output word, not busy, every counter zero."""
        clk = self.dut[self.spec.clock]
        self.accept_outputs()
        valid_seen = False
        for _ in range(cycles):
            await ReadOnly()
            if is_high(self.dut[self.spec.output.valid]):
                valid_seen = True
                break
            await RisingEdge(clk)
        return self.idle_errors(valid_seen, *self.read_status())


class StreamBench(CaseBench):
    """Drives and samples the streams from Python every cycle: a driver and a monitor (sim/streams.py)
    with seeded pause generators. Slow (each cycle costs Python), kept for debugging the harness."""

    def __init__(self, dut, spec: DutSpec, case: CaseConfig, case_dir: Path):
        super().__init__(dut, spec, case, case_dir)
        clock = dut[spec.clock]
        # One generator per stream side: the input's also draws the `first` noise, before any stall.
        input_rng = random.Random(f"{case.seed}:in")
        self._input_words = pack_frames(self.inputs, self.starts, spec.input.fields["value"],
                                        spec.input.fields["first"], input_rng if case.first_noise else None)
        self.driver = StreamDriver(clock, dut[spec.input.valid], dut[spec.input.ready], dut[spec.input.payload],
                                   random_pauses(case.stall_in, input_rng))
        self.monitor = StreamMonitor(clock, dut[spec.output.valid], dut[spec.output.ready],
                                     dut[spec.output.payload], self._on_word,
                                     random_pauses(case.stall_out, random.Random(f"{case.seed}:out")))
        self._frame_event = Event()
        self._reset_cycle = 0                 # set when reset is released; cycles are reported from there

    def hold_streams(self) -> None:
        self.driver.idle()
        self.monitor.idle()

    def accept_outputs(self) -> None:
        self.dut[self.spec.output.ready].value = 1

    async def reset(self, cycles: int = 3) -> None:
        await super().reset(cycles)
        self._reset_cycle = sim_cycle()

    def _cycle(self) -> int:
        return sim_cycle() - self._reset_cycle

    def _on_word(self, payload) -> None:
        self.word_cycle = self._cycle()
        if payload.is_resolvable:
            self.frames.add(int(payload))
        else:
            self.frames.add_unknown(str(payload))

    def _on_frame(self, index: int, words: np.ndarray) -> None:
        super()._on_frame(index, words)
        self.report_progress(self._cycle())
        self._frame_event.set()

    async def _send_frames(self) -> None:
        for words in self._input_words:
            for k, word in enumerate(words):
                await self.driver.send(word)
                if k == 0:
                    self.frame_start_cycles.append(self._cycle())
            self.frames_sent += 1
        self.driver.idle()

    async def _await_frames(self) -> None:
        """Every expected frame, or a timeout error after the watchdog's cycles without one."""
        watchdog = self.watchdog_cycles()
        while len(self.frames.frames) < len(self.expected):
            try:
                await with_timeout(self._frame_event.wait(), watchdog * CLOCK_PERIOD_NS, "ns")
            except SimTimeoutError:
                self.result.errors.append(self.timeout_error(watchdog))
                return
            self._frame_event.clear()

    async def _drain(self) -> None:
        """Watch for extra words after the last expected frame, then give the DUT time to go idle."""
        clk = self.dut[self.spec.clock]
        await ClockCycles(clk, self.case.drain_cycles)
        busy_port = self.dut[self.spec.status["busy"]]
        for _ in range(self.watchdog_cycles()):
            await ReadOnly()
            if not is_high(busy_port):
                break
            await RisingEdge(clk)

    async def run(self) -> CaseResult:
        """Stream every frame, wait for every output frame (watchdog per frame), drain, read the counters."""
        result = self.result
        self.start_progress()
        await self.reset()
        self.monitor.start()
        sender = cocotb.start_soon(self._send_frames())
        try:
            await self._await_frames()
            result.sim_cycles = self._cycle()
            if not result.errors:
                await self._drain()
            else:
                await ReadOnly()
            result.status, result.counters = self.read_status()
        finally:
            self.monitor.stop()
            sender.cancel()
            self.finish()
        return result


def _bench(dut, case_dir) -> CaseBench:
    case_dir = Path(case_dir)
    case = CaseConfig.read(case_dir)
    spec = DutSpec.load(case.sidecar)
    if case.harness == "python":
        return StreamBench(dut, spec, case, case_dir)
    from .harness_bench import HarnessBench

    return HarnessBench(dut, spec, case, case_dir)


async def run_case(dut, case_dir) -> CaseResult:
    """Run the case in `case_dir` on `dut` and fail the test on any mismatch or protocol error."""
    bench = _bench(dut, case_dir)
    result = await bench.run()
    dut._log.info("%d/%d frame(s), %d cycle(s), %s", result.frames_received, result.frames_expected,
                  result.sim_cycles, bench.checker.summary())
    bench.verdict()
    return result


async def run_idle_check(dut, case_dir) -> None:
    """Reset the DUT and check it stays idle with all counters at zero when given no input."""
    bench = _bench(dut, case_dir)
    await bench.reset()
    errors = await bench.idle_check()
    if errors:
        raise AssertionError("; ".join(errors))
