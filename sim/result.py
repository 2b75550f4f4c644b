"""The outcome of one simulation run, as the runner returns it. Plain Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["SimResult"]


@dataclass
class SimResult:
    """One simulation: pass/fail, the received words and the DUT's counters.

    `passed` is judged by the runner from the raw words (outputs == expected, complete), the bench's
    errors and the cocotb test outcomes. Frame indices are in the flattened order (sequence after
    sequence); cycles count from the release of reset. The properties derive the performance figures
    (cycles per frame, first-frame latency, PE utilisation, frames per second) and `to_dict` the JSON
    report.
    """

    passed: bool
    simulator: str
    outputs: np.ndarray                 # received words, (frames_received, output_size)
    expected: np.ndarray                # (frames, output_size)
    frames: int
    frames_received: int
    mismatches: int
    first_mismatch: dict | None         # {"frame", "element", "expected", "got"} or None
    errors: list[str]
    tests: dict[str, str]               # cocotb test -> "pass" or its failure message
    status: dict                        # busy, frames_done, cycles (the DUT's own counters)
    counters: dict                      # e.g. mac_cycles, pad_cycles: one value per PE
    sim_cycles: int                     # reset release to the last output word
    frame_start_cycles: list[int] = field(default_factory=list)
    frame_done_cycles: list[int] = field(default_factory=list)
    build_seconds: float = 0.0
    run_seconds: float = 0.0            # wall time of the simulator process
    stream_seconds: float = 0.0         # wall time of the streaming test inside it
    stream_cpu_seconds: float = 0.0     # CPU time the simulator used meanwhile (the wall time on an idle core)
    stream_started_at: float | None = None  # the stream's start on time.monotonic()'s clock (native main)
    jobs: list[dict] = field(default_factory=list)   # parallel jobs (sim/jobs.py): one summary each, else empty
    build_dir: Path | None = None
    waves: Path | None = None

    @property
    def log_file(self) -> Path | None:
        return None if self.build_dir is None else self.build_dir / "sim.log"

    @property
    def cycles_per_frame(self) -> float | None:
        """Busy cycles per frame as counted by the DUT (throughput when the input keeps it busy)."""
        cycles, done = self.status.get("cycles"), self.status.get("frames_done")
        if isinstance(cycles, int) and isinstance(done, int) and done:
            return cycles / done
        return None

    @property
    def first_frame_latency(self) -> int | None:
        """Cycles from accepting frame 0's first input word to sending its last output word."""
        if self.frame_start_cycles and self.frame_done_cycles:
            return self.frame_done_cycles[0] - self.frame_start_cycles[0]
        return None

    @property
    def pe_utilisation(self) -> list[float]:
        """Per PE: cycles with a real MAC / busy cycles."""
        cycles = self.status.get("cycles")
        macs = self.counters.get("mac_cycles") or []
        if not isinstance(cycles, int) or not cycles:
            return []
        return [m / cycles for m in macs if isinstance(m, int)]

    @property
    def cycles_per_second(self) -> float | None:
        """Simulated cycles per second of wall time (streaming only)."""
        return self.sim_cycles / self.stream_seconds if self.stream_seconds > 0 else None

    @property
    def cycles_per_cpu_second(self) -> float | None:
        """Simulated cycles per second of the simulator's CPU time: the speed on an otherwise idle core."""
        return self.sim_cycles / self.stream_cpu_seconds if self.stream_cpu_seconds > 0 else None

    @property
    def frames_per_second(self) -> float | None:
        """Simulated frames per second of wall time (streaming only: build and start-up excluded)."""
        return self.frames_received / self.stream_seconds if self.stream_seconds > 0 else None

    def failure_summary(self) -> str:
        """One paragraph: why this run failed (empty if it passed)."""
        if self.passed:
            return ""
        parts = []
        if self.first_mismatch:
            m = self.first_mismatch
            parts.append(f"first mismatch at frame {m['frame']}, element {m['element']}: expected "
                         f"{m['expected']}, got {m['got']} ({self.mismatches} mismatching word(s))")
        parts += self.errors
        parts += [f"cocotb test {name}: {outcome}" for name, outcome in self.tests.items()
                  if outcome not in ("pass", "skipped") and outcome not in " ".join(parts)]
        if self.log_file is not None:
            parts.append(f"log: {self.log_file}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        """The JSON report (no arrays but the small per-PE lists)."""
        return {
            "passed": self.passed, "simulator": self.simulator, "frames": self.frames,
            "frames_received": self.frames_received, "mismatches": self.mismatches,
            "first_mismatch": self.first_mismatch, "errors": self.errors, "tests": self.tests,
            "status": self.status, "counters": self.counters, "sim_cycles": self.sim_cycles,
            "cycles_per_frame": self.cycles_per_frame, "first_frame_latency": self.first_frame_latency,
            "pe_utilisation": self.pe_utilisation, "frames_per_second": self.frames_per_second,
            "build_seconds": round(self.build_seconds, 3), "run_seconds": round(self.run_seconds, 3),
            "stream_seconds": round(self.stream_seconds, 3),
            "stream_cpu_seconds": round(self.stream_cpu_seconds, 3), "cycles_per_second": self.cycles_per_second,
            "cycles_per_cpu_second": self.cycles_per_cpu_second,
            "jobs": self.jobs,
            "build_dir": None if self.build_dir is None else str(self.build_dir),
            "waves": None if self.waves is None else str(self.waves),
        }
