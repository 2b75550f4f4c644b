"""Cycles per frame and PE utilisation of the accelerator, measured in the Amaranth simulator.

Default workload (the design target): 1 layer LSTMP, 40 inputs, 256 cells, projection 128, peepholes,
density 0.1, load-balanced pruning, 16 PEs. Frames are streamed back to back (input always valid, output
always ready); the first frame starts the sequence, the rest continue it (steady state).

Targets: PEs busy (processing an entry: non-zero or padding) >= 85 % of a steady-state frame's cycles, and
cycles/frame <= 1.15 x (total entries incl. padding / N). Also prints hw/cycle_model.py's prediction.

    nice -n 19 .venv/bin/python bench/cycles.py [--frames 5] [--pes 16] [--lanes L] [--layers 1] [--cells 256]
        [--json out.json]

The simulator runs at a few thousand cycles per second with 16 PEs: the default takes about a minute or two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from amaranth.sim import Simulator

from sparselstm.hw.accelerator import Accelerator
from sparselstm.hw.cycle_model import predict_cycles
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.testing import stream_receive, stream_send
from sparselstm.sw.fixedpoint import quantize_input
from sparselstm.sw.golden import golden_forward_encoded
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode

BUSY_TARGET = 0.85
CYCLES_TARGET = 1.15


def measure(design: AcceleratorDesign, x_q: np.ndarray, starts: int = 1) -> dict:
    """Stream the frames, the first `starts` of them sequence starts (one per interleaved stream); return the
    outputs and, per frame, the cycle counter and the PE counters at the moment its last output word left."""
    dut = Accelerator(design)
    frames, inputs = x_q.shape
    n_pes = design.n_pes
    outputs, marks = [], []

    async def sender(ctx):
        await stream_send(ctx, dut.i, [{"value": int(x_q[t, c]), "first": int(t < starts and c == 0)}
                                       for t in range(frames) for c in range(inputs)])

    async def receiver(ctx):
        counters = [getattr(dut.mac_cycles, f"pe{p}") for p in range(n_pes)] \
            + [getattr(dut.pad_cycles, f"pe{p}") for p in range(n_pes)]
        for word in await stream_receive(ctx, dut.o, frames * design.output_size, sample=(dut.cycles, *counters)):
            outputs.append(word.payload.value)
            if word.payload.last:
                cycles, *counts = word.sampled
                marks.append((cycles, counts[:n_pes], counts[n_pes:]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(sender, background=True)
    sim.add_testbench(receiver)
    sim.run()
    return {"outputs": np.array(outputs, dtype=np.int64).reshape(frames, -1), "marks": marks}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--pes", type=int, default=16)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--inputs", type=int, default=40)
    parser.add_argument("--cells", type=int, default=256)
    parser.add_argument("--proj", type=int, default=128)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--fifo-depth", type=int, default=8)
    parser.add_argument("--lanes", type=int, default=None, help="element-wise lanes (default: the design's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.frames < 3:
        parser.error("--frames must be >= 3 (a sequence start, steady-state frames, a last frame)")

    model = random_model(args.inputs, args.cells, args.proj, num_layers=args.layers, peephole=True,
                         seed=args.seed)
    encoded = compress_and_encode(model, args.pes, args.density).encoded
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(fifo_depth=args.fifo_depth,
                                                                           lanes=args.lanes))
    prediction = predict_cycles(design)

    rng = np.random.default_rng(args.seed)
    x_q, _ = quantize_input(rng.normal(0.0, 1.0, (args.frames, args.inputs)), encoded.numerics)
    start = time.perf_counter()
    result = measure(design, x_q)
    alone = measure(design, x_q[:1])      # latency of one frame with nothing to overlap
    seconds = time.perf_counter() - start
    expected = golden_forward_encoded(encoded, x_q)
    exact = bool(np.array_equal(result["outputs"], expected)
                 and np.array_equal(alone["outputs"], expected[:1]))

    marks = result["marks"]
    # Steady-state windows: from one frame's last output word to the next one's, for frames 1 .. T-2.
    # The last frame is left out: no next frame's input overlaps it, so it is not a steady-state frame.
    windows = range(1, len(marks) - 1)
    steady = [marks[t][0] - marks[t - 1][0] for t in windows]
    busy = []
    for t in windows:
        cycles = marks[t][0] - marks[t - 1][0]
        work = [(marks[t][1][p] - marks[t - 1][1][p]) + (marks[t][2][p] - marks[t - 1][2][p])
                for p in range(design.n_pes)]
        busy.append(float(np.mean(work)) / cycles)
    entries_per_pe = design.total_entries / design.n_pes
    cycles_per_frame = float(np.mean(steady))
    report = {
        "workload": vars(args),
        "bit_exact_vs_golden": exact,
        "lanes": design.lanes,
        "total_entries": design.total_entries,
        "entries_per_pe_mean": entries_per_pe,
        "entries_busiest_pe": max(prediction.mac_cycles),
        "lone_frame_latency_cycles": int(alone["marks"][0][0]),
        "steady_cycles_per_frame": cycles_per_frame,
        "ratio_to_entries_per_pe": cycles_per_frame / entries_per_pe,
        "pe_busy_fraction": float(np.mean(busy)),
        "predicted_steady_cycles": prediction.steady_state,
        "predicted_lone_frame_latency": prediction.first_frame,
        "prediction_error": (prediction.steady_state - cycles_per_frame) / cycles_per_frame,
        "predicted_phases": prediction.phases,
        "simulation_seconds": round(seconds, 1),
        "targets": {"pe_busy_fraction": BUSY_TARGET, "ratio_to_entries_per_pe": CYCLES_TARGET},
    }
    report["meets_targets"] = (report["pe_busy_fraction"] >= BUSY_TARGET
                               and report["ratio_to_entries_per_pe"] <= CYCLES_TARGET)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
