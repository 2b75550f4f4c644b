"""Instructions per simulated cycle of a native Verilator build, counted by valgrind (callgrind): a figure of
the simulation's cost that the load of a shared machine does not move, unlike its CPU seconds.

Runs the build's `native_sim` on the first F frames of its case (the words `run_stream_sim` left in the
build directory, no stalls) under callgrind for two values of F and prints the instructions per cycle
from the difference, so that the start-up (`$readmemh`, the idle check) cancels out. A build of
`bench/sim_speed.py` serves (`build/sim-speed/native`), or the `sim_verilator` directory of
`sparselstm sim --build-dir DIR` (after parallel jobs, whose cases are in job0, job1, ...: job0's words).
Needs valgrind; about a minute per 10 000 cycles.

    .venv/bin/python bench/sim_instructions.py build/sim-speed/native [--frames 10 40]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

from sparselstm.sim.case import CASE_FILE, CaseConfig
from sparselstm.sim.dut import DutSpec
from sparselstm.sim.native import BINARY


def count(build_dir: Path, frames: int, spec: DutSpec, case: CaseConfig, case_dir: Path) -> tuple[int, int]:
    """(instructions, simulated cycles of the stream) of the build's main on the first `frames` frames of
    the case in `case_dir`."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        settings = {"stall_in": 0, "stall_out": 0, "seed_in": 1, "seed_out": 2, "drain_cycles": case.drain_cycles,
                    "input_words": frames * spec.input_size, "output_words": frames * spec.output_size,
                    "watchdog": 1 << 40}
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch / 'callgrind.out'}",
                   str(build_dir / BINARY), f"+sparselstm_inputs={case_dir / case.input_words}",
                   f"+sparselstm_events={scratch / 'events.log'}", f"+sparselstm_result={scratch / 'native.json'}",
                   *(f"+sparselstm_{name}={value}" for name, value in settings.items())]
        subprocess.run(command, cwd=build_dir, check=True, capture_output=True)
        totals = re.search(r"^totals:\s+(\d+)", (scratch / "callgrind.out").read_text(), re.MULTILINE)
        stream = json.loads((scratch / "native.json").read_text())["stream"]
        if not stream["done"] or totals is None:
            raise SystemExit(f"{build_dir}: the run on {frames} frame(s) did not complete")
        return int(totals.group(1)), int(stream["cycle"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", type=Path, help="a native build directory holding native_sim and its case")
    parser.add_argument("--frames", type=int, nargs=2, default=[10, 40], metavar=("F1", "F2"))
    args = parser.parse_args(argv)
    build_dir = args.build_dir.resolve()
    # A run with parallel jobs leaves its cases in job0, job1, ... and the binary in the build directory.
    case_dir = build_dir if (build_dir / CASE_FILE).exists() else build_dir / "job0"
    case = CaseConfig.read(case_dir)
    spec = DutSpec.load(case.sidecar)
    low, high = sorted(args.frames)
    if low < 1 or low == high:
        parser.error("--frames: two different counts >= 1")
    (ir_low, cycles_low), (ir_high, cycles_high) = (count(build_dir, n, spec, case, case_dir) for n in (low, high))
    per_cycle = (ir_high - ir_low) / (cycles_high - cycles_low)
    print(f"{build_dir}: {ir_low:,} instructions for {cycles_low} cycles ({low} frames), {ir_high:,} for "
          f"{cycles_high} ({high} frames): {per_cycle:,.0f} instructions per simulated cycle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
