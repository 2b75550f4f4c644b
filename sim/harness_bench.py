"""The cocotb side of the HDL harness (sim/harness.py): the harness drives and collects the streams inside
the simulator, so Python only configures it, starts the clock, and wakes up every few ten thousand cycles
(or when the harness raises `done`) to read the new output words from its event log into the frame
assembler and the checker, write progress and run the watchdog.
"""

from __future__ import annotations

from pathlib import Path

from cocotb.triggers import First, ReadOnly, RisingEdge, Timer

from .bench import CLOCK_PERIOD_NS, CaseBench
from .case import CaseConfig, CaseResult
from .dut import DutSpec
from .harness import HarnessEvents, HarnessPorts, stall_threshold, stream_seed
from .streams import is_high

__all__ = ["HarnessBench"]

_WAKE_CYCLES = 1 << 16          # the longest Python sleeps while the harness streams


class HarnessBench(CaseBench):
    """Runs one case through the HDL harness around the DUT (`dut` is the harness module).

    The harness takes its words from the case's hex file (written by the runner with `pack_frames`) and
    logs what it sees to the case's event file; both are named to it by plusargs (sim/runner.py). Its
    stalls come from seeded generators in the HDL, drawn per cycle like `streams.random_pauses`, with the
    case's probabilities; the cycles it stamps count from the first edge after reset, as `StreamBench`'s.
    """

    def __init__(self, dut, spec: DutSpec, case: CaseConfig, case_dir: Path):
        super().__init__(dut, spec, case, case_dir)
        self.events = HarnessEvents(case_dir / case.events)
        self.frame_start_cycles = self.events.frame_starts
        self._stream_after_reset = False
        settings = {HarnessPorts.enable: 0,
                    HarnessPorts.stall_in: stall_threshold(case.stall_in),
                    HarnessPorts.stall_out: stall_threshold(case.stall_out),
                    HarnessPorts.seed_in: stream_seed(case.seed, "in"),
                    HarnessPorts.seed_out: stream_seed(case.seed, "out"),
                    HarnessPorts.input_words: self.inputs.size,
                    HarnessPorts.output_words: self.expected.size,
                    HarnessPorts.drain_cycles: case.drain_cycles}
        for port, value in settings.items():
            dut[port].value = value

    def hold_streams(self) -> None:
        self.dut[HarnessPorts.enable].value = 0

    def release_streams(self) -> None:
        self.dut[HarnessPorts.enable].value = int(self._stream_after_reset)

    def _cycle(self) -> int:
        return int(self.dut[HarnessPorts.cycle].value)

    def _collect(self) -> int:
        """Take the output words logged since the last call; return the current cycle."""
        self.take_logged(self.events.read_outputs())
        self.frames_sent = int(self.dut[HarnessPorts.inputs_accepted].value) // self.spec.input_size
        now = self._cycle()
        self.report_progress(now)
        return now

    async def run(self) -> CaseResult:
        """Stream every frame; stop at `done`, or when no frame came for the watchdog's cycles (or, after
        the last frame, when `done` did not follow within the drain and the watchdog's cycles)."""
        result = self.result
        self.start_progress()
        self._stream_after_reset = True
        await self.reset()
        done = self.dut[HarnessPorts.done]
        watchdog = self.watchdog_cycles()
        wake = Timer(min(watchdog, _WAKE_CYCLES) * CLOCK_PERIOD_NS, "ns")
        received, since = 0, 0
        try:
            while not is_high(done):
                await First(RisingEdge(done), wake)
                now = self._collect()
                if len(self.frames.frames) > received:
                    received, since = len(self.frames.frames), self.frame_done_cycles[-1]
                complete = received >= len(self.expected)
                if now - since > watchdog + (self.case.drain_cycles if complete else 0) and not is_high(done):
                    if not complete:
                        result.errors.append(self.timeout_error(watchdog))
                    break
            await ReadOnly()
            now = self._collect()
            complete = len(self.frames.frames) >= len(self.expected)
            result.sim_cycles = self.frame_done_cycles[len(self.expected) - 1] if complete else now
            result.status, result.counters = self.read_status()
        finally:
            self.finish()
        return result
