"""`make bench`: the accelerator side by side with CPU baselines and figures from elsewhere, in one run.

    .venv/bin/python bench/report.py [-o build/bench] [--pes 4,8,16,32,64,128] [--repeats 5] [--threads 2]

Writes OUT/results.json (every figure, each with its source), OUT/report.md (docs/benchmarks.md explains
how to read it) and OUT/*.png (with matplotlib). --tiny runs a few-second configuration on tiny stand-in
models (for tests/test_bench_report.py). In order: the timed parts at normal priority (CPU baselines:
PyTorch, onnxruntime, golden model; encoder time), then at --nice: the cycle-model sweep over PE counts and
pruning variants with latency, throughput and efficiency at the stated clocks, per-PE loads, model size,
a few frames of the RTL in the Amaranth simulator, simulated cycles per second of the shipped model on Icarus
and Verilator (bench/sim_rates.py), and the ESE-size model on Verilator at --ese-rtl-pes (bench/ese_rtl.py).
`--routed DIR` (a bench/fmax.py or `sparselstm build` directory) adds latency at that build's routed Fmax.
About 4 minutes on 2 shared cores without the last two parts (the shipped model's Verilator build takes about 2
minutes); the ESE-size Verilator builds take about 2, 6 and 9 minutes of CPU at 32, 64 and 128 PEs
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import baselines
import elsewhere
import ese_rtl
import report_markdown
import routed
import sim_rates
from sparselstm.hw.params import HardwareParams
from sparselstm.spec.numerics import Numerics
from sparselstm.sw.fixedpoint import quantize_input
from sparselstm.sw.loaders import load_model
from sparselstm.sw.model import random_model
from sweep import (COUNTED, MODELLED, SIMULATED, Workload, dense_weights, lanes_sweep, model_size,
                   per_pe_nonzeros, rtl_measurement, streams_sweep, sweep)

ROOT = Path(__file__).resolve().parent.parent
CLOCKS_MHZ = {"ULX3S target": 125.0, "ESE's clock": 200.0}
TIMING_CLOSURE = ("The clocks are stated, for comparison; the routed builds named by --routed (bench/fmax.py, "
                  "`sparselstm build`) give latency at a place-and-route Fmax (section 'At a routed clock').")
NO_ROUTED_BUILD = ("No routed build was named (--routed DIR of bench/fmax.py or `sparselstm build`): the clocks are "
                   "stated assumptions, not place-and-route results.")
# Multipliers besides the one per PE, read off hw/elementwise.py: f*c, i*g, o*tanh(c) and 5 activation lanes
# (interpolation), plus p_i*c, p_f*c, p_o*c with peepholes.
ELEMENTWISE_MULTIPLIERS, PEEPHOLE_MULTIPLIERS = 8, 3
LANE_COUNTS = (1, 2, 4, 8)
STREAM_COUNTS = (1, 2)   # two frames are in flight at most: more streams add nothing (docs/architecture.md)
TARGETS = [  # (workload key, PEs, clock MHz, limit us per frame): issue #13
    ("ese", 128, 200.0, 41.0),
    ("shipped", 32, 125.0, 8.0),
]


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--pes", default="4,8,16,32,64,128", help="PE counts of the sweep")
    parser.add_argument("--frames", type=int, default=100, help="frames per timed CPU pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed CPU passes (the median is reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch / onnxruntime threads")
    parser.add_argument("--rtl-frames", type=int, default=4, help="frames through the RTL (0: skip)")
    parser.add_argument("--rtl-pes", type=int, default=16)
    parser.add_argument("--ese-rtl-pes", default=None, help="PE counts of the ESE-size model on Verilator "
                        f"(default {','.join(map(str, ese_rtl.PE_COUNTS))}, none with --tiny; '' skips it)")
    parser.add_argument("--ese-rtl-frames", type=int, default=4, help="frames of the ESE-size model on Verilator")
    for simulator in sim_rates.SIMULATORS:
        parser.add_argument(f"--{simulator}-frames", type=int, default=sim_rates.DEFAULT_FRAMES[simulator],
                            help=f"frames of the shipped model at --rtl-pes on {simulator}, for its simulated cycles "
                                 f"per second (0: leave it out; default {sim_rates.DEFAULT_FRAMES[simulator]})")
    parser.add_argument("--routed", type=Path, action="append", default=[], metavar="DIR",
                        help="a routed build: the output directory of bench/fmax.py or `sparselstm build` "
                             "(repeatable); the report gives microseconds per frame at its Fmax")
    parser.add_argument("--shipped-sparse", type=Path, default=ROOT / "models" / "words-lstmp-sparse.npz")
    parser.add_argument("--shipped-dense", type=Path, default=ROOT / "models" / "words-lstmp.npz")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the untimed heavy parts")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny random stand-ins for both models, PEs 2,4, 1 repeat (checks the script)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.pes, args.frames, args.repeats, args.rtl_frames, args.rtl_pes = "2,4", 8, 1, 3, 2
        args.icarus_frames, args.verilator_frames = 3, 0   # a Verilator build is too slow for the tiny test
    if args.ese_rtl_pes is None:    # a Verilator build is too slow for the tiny test of the script
        args.ese_rtl_pes = "" if args.tiny else ",".join(map(str, ese_rtl.PE_COUNTS))
    try:
        args.pe_counts = sorted({int(v) for v in args.pes.split(",") if v.strip()})
        args.ese_rtl_pe_counts = sorted({int(v) for v in args.ese_rtl_pes.split(",") if v.strip()})
    except ValueError:
        parser.error(f"--pes / --ese-rtl-pes: expected comma-separated integers, got {args.pes!r} / "
                     f"{args.ese_rtl_pes!r}")
    if not args.pe_counts or min(args.pe_counts) < 1 or min(args.ese_rtl_pe_counts, default=1) < 1:
        parser.error(f"--pes / --ese-rtl-pes: expected PE counts >= 1, got {args.pes!r} / {args.ese_rtl_pes!r}")
    if args.ese_rtl_frames < 3:
        parser.error("--ese-rtl-frames must be >= 3 (a sequence start, steady-state frames, a last frame)")
    for name in ("frames", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.rtl_frames not in range(3, 1000) and args.rtl_frames != 0:
        parser.error("--rtl-frames: 0 (skip) or >= 3 (a start, steady-state frames, an end)")
    if min(args.icarus_frames, args.verilator_frames) < 0:
        parser.error("--icarus-frames / --verilator-frames must be >= 0")
    try:
        args.routed_builds = [routed.load_routed(path) for path in args.routed]
    except ValueError as error:
        parser.error(f"--routed: {error}")
    return args


def workloads(args) -> dict[str, Workload]:
    """The shipped model as shipped, its dense parent pruned to 0.1, and the ESE-size model at 0.1."""
    # The shipped model is encoded as `make sim` encodes it (6-bit indices); the ESE-size one with ESE's 4.
    shipped_numerics, ese_numerics = Numerics(index_bits=6), Numerics(index_bits=4)
    if args.tiny:
        dense = random_model(12, 16, 8, num_layers=1, peephole=False, seed=1)
        shipped = Workload("shipped", "shipped", "tiny stand-in, pruned to 0.3 (balanced)", dense, 0.3,
                           shipped_numerics).compress(max(args.pe_counts)).pruned
        ese = random_model(10, 16, 8, num_layers=2, peephole=True, seed=2)
        names = ("tiny stand-in for the shipped model", "tiny stand-in for its dense parent",
                 "tiny stand-in for the ESE-size model")
    else:
        shipped, dense = load_model(args.shipped_sparse), load_model(args.shipped_dense)
        ese = random_model(153, 1024, 512, num_layers=2, peephole=True, seed=0)
        names = (f"{args.shipped_sparse.name} (pruned balanced for 16 PEs; its own zeros kept)",
                 f"{args.shipped_dense.name} pruned to density 0.1", "ESE-size, random weights, density 0.1")
    return {
        "shipped": Workload("shipped", "shipped", names[0], shipped, 1.0, shipped_numerics),
        "shipped-pruned": Workload("shipped-pruned", "shipped", names[1], dense, 0.1, shipped_numerics),
        "ese": Workload("ese", "ese", names[2], ese, 0.1, ese_numerics),
    }


def model_sizes(model) -> dict:
    layers = model.layers
    return {"input": layers[0].input_size, "cells": layers[0].cell_size, "proj": layers[0].proj_size,
            "layers": len(layers), "peephole": layers[0].has_peephole, "describe": model.describe(),
            "dense_macs_per_frame": dense_weights(model)}


def derived_figures(row: dict, workload: Workload) -> dict:
    """Latency, throughput and efficiency of one modelled row at every stated clock."""
    multipliers = row["n_pes"] + ELEMENTWISE_MULTIPLIERS + (
        PEEPHOLE_MULTIPLIERS if any(layer.has_peephole for layer in workload.model.layers) else 0)
    out = {}
    for name, mhz in CLOCKS_MHZ.items():
        frame_seconds = row["steady_cycles_per_frame"] / (mhz * 1e6)
        sparse = 2 * row["nonzeros"] / frame_seconds / 1e9
        out[f"{mhz:g}"] = {
            "clock": name, "clock_mhz": mhz, "us_per_frame": 1e6 * frame_seconds,
            "lone_frame_us": row["lone_frame_cycles"] / mhz, "gops_sparse": sparse,
            "gops_dense_equivalent": 2 * dense_weights(workload.model) / frame_seconds / 1e9,
            "multipliers": multipliers, "gops_sparse_per_multiplier": sparse / multipliers,
            "gops_sparse_per_mhz": sparse / mhz,
        }
    return out


def cpu_baselines(args, loaded: dict[str, Workload], log) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for family, workload in (("shipped", loaded["shipped"]), ("ese", loaded["ese"])):
        sizes = model_sizes(workload.model)
        log(f"  {family}: PyTorch, onnxruntime, golden model ({args.frames} frames, {args.repeats} repeats)")
        rows += baselines.torch_baselines(family, sizes, args.frames, args.repeats, args.threads)
        rows += baselines.onnx_baselines(family, sizes, args.frames, args.repeats, args.threads)
        qmodel = workload.compress(max(args.pe_counts)).qmodel
        x_q, _ = quantize_input(rng.normal(0.0, 1.0, (args.frames, sizes["input"])), workload.numerics)
        rows += baselines.golden_baseline(family, qmodel, x_q, args.repeats)
    return rows


def rtl_input(args, workload: Workload) -> np.ndarray:
    """Frames of a shipped test utterance (random frames for the tiny stand-in), as input words."""
    frames = args.rtl_frames
    if args.tiny:
        features = np.random.default_rng(3).normal(0.0, 1.0, (frames, workload.model.input_size))
    else:
        features = np.load(ROOT / "models" / "words-test.npz")["features"][0, :frames].astype(np.float64)
    return quantize_input(features, workload.numerics)[0]


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform()}


def encoder_time(workload: Workload, n_pes: int, repeats: int) -> dict:
    """Median wall time of compress_and_encode (prune + quantise + encode, in memory, no file written)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        workload.compress(n_pes)
        seconds.append(time.perf_counter() - start)
    return {"model": workload.key, "n_pes": n_pes, "repeats": repeats, "median_seconds": float(np.median(seconds)),
            "min_seconds": min(seconds), "what": "prune + quantise + encode in memory (compress_and_encode)",
            "source": baselines.MEASURED}


def run(args, log=print) -> dict:
    """Every section; the timed ones first at normal priority, then the heavy modelled and simulated ones
    at `args.nice` (their figures are cycles, which do not depend on the machine's load)."""
    started = time.perf_counter()
    params = HardwareParams()
    loaded = workloads(args)
    seconds = {}
    results = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv),
                        "tiny": args.tiny, "machine": machine(), "pe_counts": args.pe_counts,
                        "hardware_params": params.to_dict(), "clocks_mhz": CLOCKS_MHZ,
                        "timing_closure": TIMING_CLOSURE if args.routed_builds else NO_ROUTED_BUILD},
               "models": {key: {"label": w.label, "family": w.family, "density": w.density,
                                "index_bits": w.numerics.index_bits, **model_sizes(w.model)}
                          for key, w in loaded.items()}}

    log("CPU baselines")
    start = time.perf_counter()
    load_before = os.getloadavg()
    cpu_rows = cpu_baselines(args, loaded, log)
    results["cpu"] = {"source": baselines.MEASURED, "threads": args.threads,
                      "load_average_before": load_before, "load_average_after": os.getloadavg(),
                      "rows": cpu_rows}
    log("encoder time")
    results["encoder"] = encoder_time(loaded["ese"], min(32, max(args.pe_counts)), args.repeats)
    seconds["timed"] = time.perf_counter() - start
    results["elsewhere"] = {"source": elsewhere.ELSEWHERE, "latency": elsewhere.latency_rows(),
                            "ese_efficiency": elsewhere.ese_efficiency()}

    os.nice(args.nice)
    log("cycle model sweep")
    start = time.perf_counter()
    plan = [(loaded["shipped"], (True,)), (loaded["shipped-pruned"], (True, False)), (loaded["ese"], (True, False))]
    rows = sweep(plan, args.pe_counts, params, log)
    for row in rows:
        row["at_clock"] = derived_figures(row, loaded[row["model"]])
    results["accelerator"] = {"source": MODELLED, "rows": rows}
    results["targets"] = targets(rows)
    log("element-wise lanes")
    lane_pes = [n for n in args.pe_counts if n >= 16] or args.pe_counts[-1:]
    results["lanes"] = {"source": MODELLED, "rows": [
        row for key in ("shipped", "ese") for row in lanes_sweep(loaded[key], lane_pes, LANE_COUNTS, params, log)]}
    log("interleaved streams")
    results["streams"] = {"source": MODELLED, "rows": [
        row for key in ("shipped", "ese") for row in streams_sweep(loaded[key], lane_pes, STREAM_COUNTS, params, log)]}
    results["routed"] = routed.routed_section(args.routed_builds)
    ese_nonzeros = next(r["nonzeros"] for r in rows if r["model"] == "ese" and r["balanced"])
    results["elsewhere"]["ese_one_stream"] = elsewhere.ese_one_stream(ese_nonzeros)
    seconds["sweep"] = time.perf_counter() - start

    log("load balance per PE and model size")
    balance_pes = {"shipped-pruned": 16, "ese": 32}   # the shipped model's PE count; ESE's PEs per channel
    results["load_balance"] = [per_pe_nonzeros(loaded[key], min(n, max(args.pe_counts)), "L0.gates")
                               for key, n in balance_pes.items()]
    results["model_size"] = {"source": COUNTED, "rows": [model_size(loaded[key], min(n, max(args.pe_counts)))
                                                         for key, n in (("shipped", 32), ("ese", 128))]}

    log("RTL in the Amaranth simulator")
    start = time.perf_counter()
    if args.rtl_frames:
        shipped = loaded["shipped"]
        results["rtl"] = rtl_measurement(shipped, args.rtl_pes, rtl_input(args, shipped), params)
        log(f"  {results['rtl']['steady_cycles_per_frame']:.1f} cycles/frame simulated, "
            f"{results['rtl']['predicted_steady_cycles_per_frame']} predicted")
    else:
        results["rtl"] = {"skipped": "--rtl-frames 0", "source": SIMULATED}
    seconds["rtl"] = time.perf_counter() - start

    log("simulated cycles per second: Icarus, Verilator")
    start = time.perf_counter()
    frames = {simulator: getattr(args, f"{simulator}_frames") for simulator in sim_rates.SIMULATORS}
    features = None
    if args.tiny:
        features = np.random.default_rng(4).normal(0.0, 1.0, (max(frames.values()), loaded["shipped"].model.input_size))
    results["simulator_speed"] = sim_rates.measure(loaded["shipped"], args.rtl_pes, frames,
                                                   args.output / "sim-rates", features, params, log)
    seconds["simulator_speed"] = time.perf_counter() - start

    log("ESE-size model on Verilator")
    start = time.perf_counter()
    if args.ese_rtl_pe_counts:
        results["ese_rtl"] = ese_rtl.ese_rtl(args.ese_rtl_pe_counts, args.ese_rtl_frames, args.output / "ese-rtl",
                                             loaded["ese"], log)
    else:
        results["ese_rtl"] = {"skipped": "--tiny" if args.tiny else "--ese-rtl-pes ''", "source": ese_rtl.SIMULATED}
    seconds["ese_rtl"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - started
    results["meta"]["seconds"] = seconds
    return results


def targets(rows: list[dict]) -> list[dict]:
    """The issue's latency targets, checked where the sweep has the PE count (the tiny run has not)."""
    out = []
    for key, n_pes, mhz, limit in TARGETS:
        row = next((r for r in rows if r["model"] == key and r["n_pes"] == n_pes and r["balanced"]), None)
        value = None if row is None else row["at_clock"][f"{mhz:g}"]["us_per_frame"]
        out.append({"model": key, "n_pes": n_pes, "clock_mhz": mhz, "limit_us_per_frame": limit,
                    "us_per_frame": value, "met": None if value is None else value < limit,
                    "source": MODELLED})
    return out


def main(argv=None) -> int:
    args = parse_arguments(argv)
    results = run(args)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    try:
        import plots
        results["plots"] = plots.write_all(results, args.output)
    except ImportError as error:
        results["plots"] = {"skipped": f"matplotlib not installed ({error})"}
    (args.output / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.output / "report.md").write_text(report_markdown.render(results))
    print(f"wrote {args.output / 'results.json'}, {args.output / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
