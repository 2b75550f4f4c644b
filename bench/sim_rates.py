"""Simulated cycles per second of the generated Verilog on Icarus Verilog and Verilator, the way `sparselstm sim`
runs it (sim/runner.py `run_stream_sim`, its default harness per simulator: the HDL harness under cocotb on
Icarus, the native C++ main on Verilator), every output word checked against the golden model.

The input is one sequence of shipped test-utterance frames (random frames for a stand-in model), --frames per
simulator: Icarus is some hundred times slower, so it gets fewer. Wall and CPU seconds of the simulation
(the stream, not the build, which is reported apart) and the cycles simulated. One job each: `make sim`'s
parallel jobs multiply the wall-time rate by up to the number of idle cores (docs/verification.md, Speed).

    .venv/bin/python bench/sim_rates.py [--pes 16] [--icarus-frames 6] [--verilator-frames 400] [-o build/sim-rates]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from sparselstm.hw.params import HardwareParams
from sparselstm.hw.verilog import generate
from sparselstm.sim.runner import SIDECAR_NAME, SimulationError, run_stream_sim
from sparselstm.sim.tools import available_simulators
from sparselstm.spec.numerics import Numerics
from sparselstm.sw.fixedpoint import quantize_input
from sparselstm.sw.golden import golden_forward_encoded
from sparselstm.sw.loaders import load_model
from sweep import Workload

ROOT = Path(__file__).resolve().parent.parent
SIMULATED = ("simulated (generated Verilog, `sparselstm sim`'s harness per simulator); wall and CPU seconds "
             "measured here")
SIMULATORS = ("icarus", "verilator")
DEFAULT_FRAMES = {"icarus": 6, "verilator": 400}
HARNESS = {"icarus": "hdl", "verilator": "native"}     # `sparselstm sim`'s choice without waveforms


def utterance_frames(input_size: int, frames: int) -> np.ndarray:
    """`frames` frames of the shipped test utterances, one after another (features, not yet words)."""
    features = np.load(ROOT / "models" / "words-test.npz")["features"]
    if features.shape[-1] != input_size:
        raise ValueError(f"models/words-test.npz: features of {features.shape[-1]} values, the model takes "
                         f"{input_size}")
    return features.reshape(-1, input_size)[:frames].astype(np.float64)


def measure(workload: Workload, n_pes: int, frames_per_simulator: dict[str, int], workdir: Path,
            features: np.ndarray | None = None, params: HardwareParams = HardwareParams(), log=print) -> dict:
    """One row per simulator in `frames_per_simulator` (0 frames: left out). `features` (F, input) are the
    frames to quantise and send (default: the shipped test utterances); each simulator takes its first F'."""
    encoded = workload.compress(n_pes).encoded
    verilog_dir = workdir / "verilog"
    shutil.rmtree(workdir, ignore_errors=True)
    generate(encoded, params, verilog_dir)
    most = max(frames_per_simulator.values(), default=0)
    if features is None:
        features = utterance_frames(encoded.layers[0].input_size, most)
    x_q = quantize_input(features, workload.numerics)[0]
    rows, installed = [], available_simulators()
    for simulator, frames in frames_per_simulator.items():
        if frames <= 0:
            continue
        row = {"simulator": simulator, "model": workload.key, "n_pes": n_pes, "source": SIMULATED}
        if simulator not in installed:
            rows.append({**row, "error": f"{simulator} not installed", "passed": False})
            log(f"  {simulator}: not installed")
            continue
        x = x_q[:frames]
        if x.shape[0] < frames:
            raise ValueError(f"{frames} frames asked for {simulator}, only {x.shape[0]} available")
        starts = np.zeros(frames, dtype=bool)
        starts[0] = True
        expected = golden_forward_encoded(encoded, x, sequence_starts=starts)
        load = os.getloadavg()[0]
        try:
            result = run_stream_sim(verilog_dir / SIDECAR_NAME, x, starts, expected, simulator=simulator,
                                    build_dir=workdir / simulator, harness=HARNESS[simulator])
        except SimulationError as error:
            rows.append({**row, "frames": frames, "error": str(error), "passed": False})
            log(f"  {simulator}: {error}")
            continue
        cycles, cpu = result.sim_cycles, result.stream_cpu_seconds or None
        rows.append({**row, "frames": frames, "harness": HARNESS[simulator], "cycles": cycles,
                     "passed": result.passed, "mismatches": result.mismatches,
                     "build_seconds": result.build_seconds, "simulation_seconds": result.stream_seconds,
                     "simulation_cpu_seconds": cpu,
                     "cycles_per_second": cycles / result.stream_seconds,
                     "cycles_per_cpu_second": cycles / cpu if cpu else None, "load_average": load})
        log(f"  {simulator} ({HARNESS[simulator]} harness): {'bit-exact' if result.passed else 'FAILED'}, "
            f"{frames} frames, {cycles:,} cycles in {result.stream_seconds:.2f} s of wall time "
            f"({cycles / result.stream_seconds:,.0f} cycles/s), build {result.build_seconds:.0f} s, "
            f"load average {load:.1f}")
    return {"source": SIMULATED, "model": workload.label, "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "words-lstmp-sparse.npz")
    parser.add_argument("--pes", type=int, default=16)
    for simulator in SIMULATORS:
        parser.add_argument(f"--{simulator}-frames", type=int, default=DEFAULT_FRAMES[simulator],
                            help=f"frames on {simulator} (0: leave it out; default {DEFAULT_FRAMES[simulator]})")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "build" / "sim-rates")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)
    frames = {simulator: getattr(args, f"{simulator}_frames") for simulator in SIMULATORS}
    if args.pes < 1 or min(frames.values()) < 0:
        parser.error("--pes must be >= 1 and the frame counts >= 0")
    workload = Workload("shipped", "shipped", args.model.name, load_model(args.model), 1.0, Numerics(index_bits=6))
    started = time.perf_counter()
    section = measure(workload, args.pes, frames, args.output)
    print(f"done in {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(section, indent=1) + "\n")
    return 0 if all(row["passed"] for row in section["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
