"""Instructions per simulated cycle of a native Verilator build, counted by valgrind (callgrind): a figure of
the simulation's cost that the load of a shared machine does not move, unlike its CPU seconds.

Runs the build's `native_sim` on the first F frames of its case (the words `run_stream_sim` left in the
build directory, no stalls) under callgrind for two values of F and prints the instructions per cycle
from the difference, so that the start-up (`$readmemh`, the idle check) cancels out. A build of
`bench/sim_speed.py` serves (`build/sim-speed/native`), or the `sim_verilator` directory of
`sparselstm sim --build-dir DIR` (after parallel jobs, whose cases are in job0, job1, ...: job0's words).
Needs valgrind; about a minute per 10 000 cycles.

    .venv/bin/python bench/sim_instructions.py build/sim-speed/native [--frames 10 40] [--modules 12]

`--modules N` also prints the N design modules that cost the most instructions per simulated cycle (all their
instances together: the 16 PEs are one line), from `callgrind_annotate`'s functions: Verilator names each
function after its module, so a module's share is where a leaner design would gain.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import tempfile
from pathlib import Path

from sparselstm.sim.case import CASE_FILE, CaseConfig
from sparselstm.sim.dut import DutSpec
from sparselstm.sim.native import BINARY


# Verilator's function names: Vtop_<module, '.' written __02e, a parameter variant __Iz7 or __pi3__0>___<what>
FUNCTION = re.compile(r"^\s*([\d,]+)\s.*?:Vtop_(sparselstm_top\w*?)___\w+?\(")
OUTSIDE = "(outside the modules: Verilator's scheduler and runtime, $readmemh, the C++ main)"


def design_module(mangled: str) -> str:
    """`sparselstm_top__02epe__Iz7` -> `sparselstm_top.pe`: the module, whatever its parameter variant."""
    return re.sub(r"__(Iz|pi)\d+(__\d+)?", "", mangled).replace("__02e", ".")


def by_module(annotated: str) -> collections.Counter:
    """Instructions per design module in `callgrind_annotate` output; the rest under OUTSIDE."""
    modules = collections.Counter()
    for line in annotated.splitlines():
        cost = re.match(r"^\s*([\d,]+) \(", line)
        if cost is None or "PROGRAM TOTALS" in line:
            continue
        function = FUNCTION.match(line)
        modules[design_module(function.group(2)) if function else OUTSIDE] += int(cost.group(1).replace(",", ""))
    return modules


def count(build_dir: Path, frames: int, spec: DutSpec, case: CaseConfig,
          case_dir: Path) -> tuple[int, int, collections.Counter]:
    """(instructions, simulated cycles of the stream, instructions per design module) of the build's main on
    the first `frames` frames of the case in `case_dir`."""
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
        annotated = subprocess.run(["callgrind_annotate", "--threshold=100", str(scratch / "callgrind.out")],
                                   check=True, capture_output=True, text=True).stdout
        return int(totals.group(1)), int(stream["cycle"]), by_module(annotated)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", type=Path, help="a native build directory holding native_sim and its case")
    parser.add_argument("--frames", type=int, nargs=2, default=[10, 40], metavar=("F1", "F2"))
    parser.add_argument("--modules", type=int, default=0, metavar="N",
                        help="also print the N costliest design modules per simulated cycle")
    args = parser.parse_args(argv)
    build_dir = args.build_dir.resolve()
    # A run with parallel jobs leaves its cases in job0, job1, ... and the binary in the build directory.
    case_dir = build_dir if (build_dir / CASE_FILE).exists() else build_dir / "job0"
    case = CaseConfig.read(case_dir)
    spec = DutSpec.load(case.sidecar)
    low, high = sorted(args.frames)
    if low < 1 or low == high:
        parser.error("--frames: two different counts >= 1")
    (ir_low, cycles_low, modules_low), (ir_high, cycles_high, modules_high) = (
        count(build_dir, n, spec, case, case_dir) for n in (low, high))
    per_cycle = (ir_high - ir_low) / (cycles_high - cycles_low)
    print(f"{build_dir}: {ir_low:,} instructions for {cycles_low} cycles ({low} frames), {ir_high:,} for "
          f"{cycles_high} ({high} frames): {per_cycle:,.0f} instructions per simulated cycle")
    if args.modules:
        modules_high.subtract(modules_low)
        print("instructions per simulated cycle by module (all its instances), the same difference:")
        for module, instructions in modules_high.most_common(args.modules):
            share = instructions / (cycles_high - cycles_low)
            print(f"  {share:8,.0f}  {100 * share / per_cycle:5.1f} %  {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
