"""One simulation case: the files the runner writes into a build directory for the cocotb test to read,
and what the test writes back. Plain Python, no cocotb: both processes import it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["CASE_FILE", "CASE_DIR_VARIABLE", "HARNESSES", "CaseConfig", "CaseResult", "case_dir_from_environment"]

CASE_FILE = "case.json"
CASE_DIR_VARIABLE = "SPARSELSTM_SIM_CASE"   # the runner passes the case directory to the simulator in it
HARNESSES = ("hdl", "python")


@dataclass
class CaseConfig:
    """One simulation case, stored as `case.json` in the case directory (the build directory).

    Parameters
    ----------
    sidecar : str
        Absolute path of the DUT's sidecar JSON.
    inputs, sequence_starts, expected : str
        Files (relative to the case directory) of the int64 (frames, input_size) input words, the bool
        (frames,) sequence-start markers and the int64 (frames, output_size) expected words.
    outputs, result, progress : str
        Files the test writes: the received words, the `CaseResult` JSON, and progress lines (JSONL)
        appended while it runs.
    harness : str
        "hdl": the HDL harness of sim/harness.py moves the words inside the simulator (fast); "python":
        cocotb drives and samples the streams every cycle (sim/streams.py; slow, for debugging).
    input_words, events : str
        With the HDL harness: the payload words it sends (hex, one a line, written by the runner) and the
        event log it writes.
    stall_in : float
        Probability of holding input `valid` low for a cycle before a word.
    stall_out : float
        Probability of holding output `ready` low in a cycle in which a word is offered.
    first_noise : bool
        Set `first` at random on words where the protocol says it is ignored.
    seed : int
        Seeds both stall patterns and the `first` noise.
    drain_cycles : int
        Cycles watched after the last frame for extra words.
    first_frame : int
        The index in the whole run of this case's frame 0 (a parallel job's share, sim/jobs.py): mismatches
        are named by it.
    """

    sidecar: str
    inputs: str = "inputs.npy"
    sequence_starts: str = "sequence_starts.npy"
    expected: str = "expected.npy"
    outputs: str = "outputs.npy"
    result: str = "result.json"
    progress: str = "progress.jsonl"
    harness: str = "hdl"
    input_words: str = "inputs.hex"
    events: str = "events.log"
    stall_in: float = 0.0
    stall_out: float = 0.0
    first_noise: bool = False
    seed: int = 0
    drain_cycles: int = 64
    first_frame: int = 0

    def write(self, directory) -> Path:
        path = Path(directory) / CASE_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, directory) -> "CaseConfig":
        return cls(**json.loads((Path(directory) / CASE_FILE).read_text()))


@dataclass
class CaseResult:
    """What the cocotb test writes to `result.json` (the runner reads it back).

    Cycles count from the release of reset: `sim_cycles` up to the last output word, the frame lists
    at the acceptance of each frame's first input word and at the transfer of its last output word.
    `status` and `counters` are the DUT's own registers as read at the end. `wall_seconds` and `cpu_seconds`
    time the streaming test (wall clock, and the CPU the simulator process used).
    """

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
    sim_cycles: int = 0
    frame_start_cycles: list[int] = field(default_factory=list)
    frame_done_cycles: list[int] = field(default_factory=list)
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0             # CPU time of the simulator process meanwhile (less than wall when loaded)
    started_at: float | None = None      # the stream's start on time.monotonic()'s clock (native main only)


def case_dir_from_environment() -> Path:
    """The case directory the runner named in $SPARSELSTM_SIM_CASE (inside the simulator's Python)."""
    case_dir = os.environ.get(CASE_DIR_VARIABLE)
    if not case_dir:
        raise RuntimeError(f"${CASE_DIR_VARIABLE} is not set: run the cocotb tests through sim/runner.py")
    return Path(case_dir)
