"""The checking half of one case, plain Python (no cocotb): the frames the output stream carries
(sim/frames.py), the expected words of the model and the checker (sim/checker.py), the watchdog's budget,
progress lines and the report. The cocotb benches (sim/bench.py) and the Verilator C++ main
(sim/native.py) both check through it, so a case is judged the same way whatever moved its words.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .case import CaseConfig, CaseResult
from .checker import FrameChecker
from .dut import DutSpec
from .frames import FrameAssembler

__all__ = ["CaseCheck"]

_PROGRESS_SECONDS = 0.5


def _words(texts) -> np.ndarray:
    """Logged payload words as integers; an empty array if any has X/Z bits."""
    try:
        return np.array([int(text, 16) for text in texts], dtype=np.int64)
    except ValueError:
        return np.zeros(0, dtype=np.int64)


class CaseCheck:
    """Check and report one case: assemble the output words into frames, compare them with the expected
    ones, and write the result.

    Parameters
    ----------
    spec : DutSpec
        The DUT's sidecar.
    case : CaseConfig
        The case, whose files are read from `case_dir` (and its results written there).
    case_dir : Path

    Attributes
    ----------
    checker : FrameChecker
    frames : FrameAssembler
        Takes each output word; whoever moves the words sets `word_cycle` (cycles since reset) before
        handing it one.
    result : CaseResult
        Filled as the case runs, also written to the case's result file by `finish`.
    """

    def __init__(self, spec: DutSpec, case: CaseConfig, case_dir: Path):
        self.spec, self.case, self.case_dir = spec, case, case_dir
        self.inputs = np.load(case_dir / case.inputs)
        self.starts = np.load(case_dir / case.sequence_starts).astype(bool)
        self.expected = np.load(case_dir / case.expected)
        self._check_shapes()
        self.checker = FrameChecker(self.expected, first_frame=case.first_frame)
        self.frames = FrameAssembler(spec.output.fields["value"], spec.output.fields["last"], spec.output_size,
                                     self._on_frame)
        self.word_cycle = 0
        self.frames_sent = 0
        self.frame_start_cycles: list[int] = []
        self.frame_done_cycles: list[int] = []
        self.result = CaseResult(frames_expected=len(self.expected))
        self._progress_file = case_dir / case.progress
        self._last_progress = 0.0
        self._started = time.monotonic()
        self._started_cpu = time.process_time()

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
        self.frame_done_cycles.append(self.word_cycle)
        self.checker.check(index, words)

    def report_progress(self, cycles: int) -> None:
        """Append a progress line, at most every half second of wall time, and always for the last frame."""
        now = time.monotonic()
        done = len(self.frames.frames)
        if now - self._last_progress >= _PROGRESS_SECONDS or done == len(self.expected):
            self._last_progress = now
            line = {"frames": done, "total": len(self.expected), "cycles": cycles,
                    "mismatches": self.checker.mismatches, "wall": round(now - self._started, 3)}
            with open(self._progress_file, "a") as handle:
                handle.write(json.dumps(line) + "\n")

    def timeout_error(self, watchdog: int) -> str:
        return (f"timeout: no output frame for {watchdog} cycles after {len(self.frames.frames)} of "
                f"{len(self.expected)} frame(s) (inputs accepted: {self.frames_sent} frame(s); "
                f"{self.frames.partial_words} word(s) of a partial frame)")

    def start_progress(self) -> None:
        """Empty the progress file: a run starts."""
        self._progress_file.write_text("")

    def take_logged(self, logged: list[tuple[int, str]]) -> None:
        """Take output words as the HDL harness logs them: (cycle, payload hex, X/Z bits as x/z)."""
        size, k = self.spec.output_size, 0
        while k < len(logged):
            # Whole well-formed frames at once (most of them); anything else word by word.
            frame = logged[k:k + size]
            if len(frame) == size:
                self.word_cycle = frame[-1][0]
                if self.frames.add_frame(_words(text for _, text in frame)):
                    k += size
                    continue
            self.word_cycle, text = logged[k]
            try:
                word = int(text, 16)
            except ValueError:
                self.frames.add_unknown(text)
            else:
                self.frames.add(word)
            k += 1

    @staticmethod
    def idle_errors(output_valid_seen: bool, status: dict, counters: dict) -> list[str]:
        """The idle check's verdict: after reset with no input, no output word, and every status register
        and counter at zero."""
        errors = ["output valid without any input"] if output_valid_seen else []
        readings = dict(status)
        readings.update({f"{name}[{pe}]": value for name, values in counters.items()
                         for pe, value in enumerate(values)})
        for key, value in readings.items():
            if value != 0:
                errors.append(f"{key} = {value} after reset without input (expected 0)")
        return errors

    def finish(self, seconds: tuple[float, float] | None = None) -> None:
        """Fill the result from what was seen and write it with the received words to the case files.
        `seconds`: the (wall, CPU) time of the streaming if measured elsewhere, else this object's."""
        result, spec, frames = self.result, self.spec, self.frames
        result.frames_sent = self.frames_sent
        result.frames_received = len(frames.frames)
        result.words_received = frames.words
        result.mismatches = self.checker.mismatches
        result.mismatching_frames = self.checker.mismatching_frames
        result.first_mismatch = asdict(self.checker.first_mismatch) if self.checker.first_mismatch else None
        result.frame_start_cycles = list(self.frame_start_cycles)
        result.frame_done_cycles = list(self.frame_done_cycles)
        result.errors = frames.errors + result.errors
        if self.checker.unexpected_frames or frames.partial_words:
            result.errors.append(f"{self.checker.unexpected_frames} unexpected extra frame(s) and "
                                 f"{frames.partial_words} stray word(s) after the last expected frame")
        frames_done = result.status.get("frames_done")
        width = spec.status_widths.get("frames_done", 32)
        if isinstance(frames_done, int) and frames_done != result.frames_received % (1 << width):
            result.errors.append(f"frames_done counter = {frames_done}, but {result.frames_received} frame(s) "
                                 "were received")
        if result.status.get("busy") not in (0, None):
            result.errors.append(f"busy = {result.status.get('busy')} after the last frame was sent")
        result.wall_seconds, result.cpu_seconds = seconds or (time.monotonic() - self._started,
                                                              time.process_time() - self._started_cpu)
        outputs = np.array(frames.frames, dtype=np.int64).reshape(-1, spec.output_size)
        np.save(self.case_dir / self.case.outputs, outputs)
        (self.case_dir / self.case.result).write_text(json.dumps(asdict(result)) + "\n")

    def verdict(self) -> None:
        """Raise AssertionError (failing a cocotb test) with the first problem, if there is any."""
        problems = []
        if self.checker.mismatches:
            problems.append(self.checker.summary())
        problems += self.result.errors
        if problems:
            raise AssertionError("; ".join(problems))

