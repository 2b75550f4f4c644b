"""Simulation speed of `make sim`: the shipped 35-word model, its test utterances, on Verilator.

Builds the accelerator once per harness (build time reported apart), then runs the utterances --repeat
times on that build and prints, per harness, the build seconds and, for the best run (the machine is
shared: the least disturbed one), the simulation's wall and CPU seconds, cycles per second of each, and
whether every word matched the golden model. Target (issue #13): the 35 utterances in under 5 s of
simulation, >= 1 000 000 cycles per second. The load average is printed with each run: on a loaded
machine the wall time is the CPU time stretched by the other processes.

Harnesses (sim/runner.py): "native" is the HDL harness run by a Verilator C++ main (`make sim`'s),
"hdl" the same harness under cocotb. `--threads 1 2` builds the native main once per Verilator thread count
(`native.build_native`); the wall time is what counts for threads, their CPU seconds add up. `--jobs 1 2`
runs the one-thread native build as that many parallel jobs (sim/jobs.py): the wall time is the parallel
stream's, the CPU seconds those of all jobs. The CPU of this process (the checker following the event logs)
is printed apart.

    .venv/bin/python bench/sim_speed.py [--harness native hdl] [--threads 1 2] [--jobs 1 2] [--count 35]
        [--repeat 2] [-o build/sim-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


from sparselstm.commands._files_and_checks import quantize_frames
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.verilog import generate
from sparselstm.sim.reference import expected_words, load_reference_model
from sparselstm.sim.runner import SIDECAR_NAME, flatten_sequences, run_stream_sim
from sparselstm.sw.format import load_encoded
from sparselstm.sw.speech.utterances import UtteranceSample

TARGET_CYCLES_PER_SECOND = 1_000_000
TARGET_SECONDS = 5.0


def _stimulus(encoded_dir: Path, features: Path, head: Path, count: int):
    encoded = load_encoded(encoded_dir)
    lstm_size = (encoded.layers[0].input_size, encoded.layers[-1].recurrent_size)
    utterances = UtteranceSample.load(features, head, count, lstm_size)
    x_q, _ = quantize_frames(utterances.inputs, encoded.numerics, False, "sim", features)
    frames, starts, _ = flatten_sequences(x_q)
    return frames, starts, expected_words(load_reference_model(encoded_dir), frames, starts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoded", type=Path, default=Path("build/sim/encoded"),
                        help="encoded model (`make encode` writes the default)")
    parser.add_argument("--features", type=Path, default=Path("models/words-test.npz"))
    parser.add_argument("--head", type=Path, default=Path("models/words-lstmp-sparse.head.npz"))
    parser.add_argument("--count", type=int, default=35)
    parser.add_argument("--harness", nargs="+", default=["native"], choices=["native", "hdl"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="Verilator threads of the native main's model, one build each")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1],
                        help="parallel jobs of the native harness (one-thread build), each run on the same build")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="reuse the builds already in the output directory")
    parser.add_argument("-o", "--output", type=Path, default=Path("build/sim-speed"))
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.count < 1 or min(args.threads) < 1 or min(args.jobs) < 1:
        parser.error("--repeat, --count, --threads and --jobs must be >= 1")
    configurations = [(harness, threads) for harness in args.harness
                      for threads in (args.threads if harness == "native" else [1])]

    verilog_dir = args.output / "verilog"
    if not (args.reuse and (verilog_dir / SIDECAR_NAME).exists()):
        generate(load_encoded(args.encoded), HardwareParams(), verilog_dir, encoded_dir=args.encoded)
    frames, starts, expected = _stimulus(args.encoded, args.features, args.head, args.count)
    print(f"{args.count} utterance(s), {len(frames)} frame(s); {os.cpu_count()} CPU(s)")
    summary = {}
    for harness, threads in configurations:
        build_name = harness if threads == 1 else f"{harness}-threads{threads}"
        build_dir = args.output / build_name
        build = not (args.reuse and build_dir.exists())
        for jobs in (args.jobs if harness == "native" and threads == 1 else [1]):
            name = build_name if jobs == 1 else f"{build_name}-jobs{jobs}"
            runs = []
            for k in range(args.repeat):
                load = os.getloadavg()[0]
                checker_cpu = time.process_time()
                result = run_stream_sim(verilog_dir / SIDECAR_NAME, frames, starts, expected, simulator="verilator",
                                        build_dir=build_dir, harness=harness, build=build, threads=threads, jobs=jobs)
                checker_cpu = time.process_time() - checker_cpu
                if build:
                    print(f"{build_name}: build {result.build_seconds:.1f} s")
                    build = False
                cycles = result.sim_cycles
                runs.append({"passed": result.passed, "cycles": cycles, "mismatches": result.mismatches,
                             "wall_seconds": result.stream_seconds, "cpu_seconds": result.stream_cpu_seconds,
                             "run_seconds": result.run_seconds, "checker_cpu_seconds": checker_cpu,
                             "load_average": load, "jobs": result.jobs})
                print(f"{name}: {'PASS' if result.passed else 'FAIL'}, {cycles} cycles "
                      f"({cycles / len(frames):.1f} per frame), {result.mismatches} mismatching word(s); simulation "
                      f"{result.stream_seconds:.2f} s wall ({cycles / result.stream_seconds:,.0f} cycles/s), "
                      f"{result.stream_cpu_seconds:.2f} s CPU ({cycles / result.stream_cpu_seconds:,.0f} cycles/s); "
                      f"whole run {result.run_seconds:.1f} s; this process (checker) {checker_cpu:.2f} s CPU; "
                      f"load average {load:.1f}")
            best = min(runs, key=lambda run: run["wall_seconds"])
            summary[name] = {"best": best, "runs": runs}
            rate = best["cycles"] / best["wall_seconds"]
            met = best["wall_seconds"] < TARGET_SECONDS and rate >= TARGET_CYCLES_PER_SECOND
            print(f"{name}: best {best['wall_seconds']:.2f} s, {rate:,.0f} cycles/s of wall time "
                  f"(targets: < {TARGET_SECONDS:g} s, >= {TARGET_CYCLES_PER_SECOND:,} cycles/s: "
                  f"{'met' if met else 'not met'})")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "sim_speed.json").write_text(json.dumps({"frames": len(frames), "time": time.time(),
                                                            "harnesses": summary}, indent=2) + "\n")
    return 0 if all(run["passed"] for entry in summary.values() for run in entry["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
