"""The cycle model against the generated Verilog on Verilator: steady-state cycles per frame of the RTL and as
hw/cycle_model.py predicts them given the frames' zero activations, per configuration MODEL:PES:LANES.

Each configuration is encoded, generated, built on Verilator and run by bench/ese_rtl.py's
`measure_configuration` (the native harness; F frames of random non-zero input words, one sequence, every output
word checked against the golden model; the steady state between the last output words of frames 0 and F-2).
Models: `shipped` (models/words-lstmp-sparse.npz, 6-bit indices, its own zeros kept), `two-layers`
(random_model(64, 256, 128, num_layers=2, seed=5) pruned balanced to density 0.1) and `ese` (the ESE-size model
of bench/ese_rtl.py). A build takes 20 s to 2 minutes; the default list about 20 minutes in all.

    nice -n 10 .venv/bin/python bench/model_vs_verilator.py [shipped:64:2 two-layers:64:4 ...] [--frames 6]
        [-o build/model-vs-verilator] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ese_rtl import ese_input, ese_workload, measure_configuration
from sparselstm.hw.params import HardwareParams
from sparselstm.sw.fixedpoint import Numerics
from sparselstm.sw.loaders import load_model
from sparselstm.sw.model import random_model
from sweep import Workload

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIGURATIONS = ("shipped:16:2", "shipped:32:2", "shipped:32:4", "shipped:64:2", "shipped:64:4",
                          "shipped:128:4", "two-layers:16:4", "two-layers:32:2", "two-layers:32:4",
                          "two-layers:64:2", "two-layers:64:4", "two-layers:128:2", "two-layers:128:4",
                          "ese:64:2", "ese:128:2", "ese:128:4")


def workloads() -> dict:
    return {
        "shipped": Workload("shipped", "shipped", "models/words-lstmp-sparse.npz",
                            load_model(ROOT / "models" / "words-lstmp-sparse.npz"), 1.0, Numerics(index_bits=6)),
        "two-layers": Workload("two-layers", "two-layers", "random 64 -> 256 cells -> 128, 2 layers, density 0.1",
                               random_model(64, 256, 128, num_layers=2, seed=5), 0.1, Numerics(index_bits=4)),
        "ese": ese_workload(),
    }


def configuration(text: str, known) -> tuple[str, int, int]:
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in known or not all(p.isdigit() for p in parts[1:]):
        raise argparse.ArgumentTypeError(f"expected MODEL:PES:LANES with MODEL one of {', '.join(known)}, "
                                         f"got {text!r}")
    return parts[0], int(parts[1]), int(parts[2])


def main(argv=None) -> int:
    known = workloads()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configurations", nargs="*", type=lambda text: configuration(text, known),
                        help=f"MODEL:PES:LANES (default: {' '.join(DEFAULT_CONFIGURATIONS)})")
    parser.add_argument("--frames", type=int, default=6, help="frames of the sequence (>= 3)")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "build" / "model-vs-verilator")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.frames < 3:
        parser.error("--frames must be >= 3")
    configurations = args.configurations or [configuration(text, known) for text in DEFAULT_CONFIGURATIONS]
    rows = []
    print("| model | PEs | lanes | RTL cycles/frame | cycle model | difference | bit-exact |")
    print("|---|---|---|---|---|---|---|")
    for name, n_pes, lanes in configurations:
        workload = known[name]
        row = measure_configuration(workload, n_pes, ese_input(workload, args.frames),
                                    args.output / f"{name}-{n_pes}-{lanes}", HardwareParams(lanes=lanes),
                                    log=lambda *_: None)
        rows.append(row)
        error = row["prediction_error"]
        print(f"| {name} | {n_pes} | {lanes} | {row['rtl_steady_cycles_per_frame']} | "
              f"{row['predicted_steady_cycles_per_frame']} | "
              f"{'-' if error is None else f'{100 * error:+.2f} %'} | {'yes' if row['passed'] else 'NO'} |",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    worst = max((abs(r["prediction_error"]) for r in rows if r["prediction_error"] is not None), default=0.0)
    print(f"worst difference {100 * worst:.2f} %; every configuration bit-exact: {all(r['passed'] for r in rows)}")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
