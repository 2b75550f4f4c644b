"""Delta mode in the accelerator: accuracy against cycles per frame for a sweep of thresholds (issue #14).

The shipped compressed 35-word model (models/words-lstmp-sparse.npz) encoded as `make sim` encodes it (16
PEs, 6-bit indices), for each (x, y, m) threshold (real, in activation units): golden accuracy on the test
utterances, the share of columns skipped per side, the MACs per frame, and the cycles per frame of the
accelerator in delta mode as hw/cycle_model.py predicts them frame by frame from the columns each frame
sends (`delta_frame_cycles`: 35 test utterances evenly spaced; checked against the RTL by `make sim-delta` at one
point and by tests/test_hw_delta.py), next to the weight-sparse mode (its default lanes). `--lanes`: the
element-wise lanes of the delta-mode design (default: the design's default).

`--model` scores another shipped model (e.g. `words-lstmp-delta`, fine-tuned with thresholds) and `--sweep`
replaces the default settings (`x,y,m` triples separated by `;`).

    .venv/bin/python bench/delta_cycles.py [--pes 16] [--lanes L] [--model words-lstmp-sparse]
        [--sweep "0.3,0.3,0.1;0.35,0.35,0.1"] [--output build/delta_cycles.json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from sparselstm.commands._delta_sim import SIDE_PHASES, frames_sent
from sparselstm.hw.cycle_model import delta_frame_cycles, predict_cycles
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.sim.runner import flatten_sequences
from sparselstm.sw.compress.accuracy import head_task
from sparselstm.spec.numerics import Numerics
from sparselstm.sw.delta import skipped_fraction, thresholds_from_real
from sparselstm.sw.fixedpoint import dequantize_output, quantize_input
from sparselstm.sw.golden import golden_forward_encoded
from sparselstm.sw.loaders import load_model
from sparselstm.sw.pipeline import compress_and_encode
from sparselstm.sw.speech.task import ClassifierHead, FeatureSet

MODELS = Path(__file__).resolve().parent.parent / "models"
SWEEP = ((0.0, 0.0, 0.0), (0.05, 0.05, 0.02), (0.1, 0.1, 0.02), (0.2, 0.2, 0.02), (0.2, 0.2, 0.05),
         (0.3, 0.3, 0.02), (0.3, 0.3, 0.05), (0.3, 0.5, 0.05), (0.5, 0.5, 0.1))


def parse_sweep(text: str) -> tuple:
    try:
        settings = tuple(tuple(float(value) for value in item.split(",")) for item in text.split(";") if item.strip())
    except ValueError:
        settings = ()
    if not settings or any(len(setting) != 3 or min(setting) < 0 for setting in settings):
        raise argparse.ArgumentTypeError(f"expected 'x,y,m;x,y,m;...' with non-negative reals, got {text!r}")
    return settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pes", type=int, default=16)
    parser.add_argument("--index-bits", type=int, default=6)
    parser.add_argument("--lanes", type=int, default=None,
                        help="element-wise lanes in delta mode (default: the design's default)")
    parser.add_argument("--model", default="words-lstmp-sparse",
                        help="a shipped model's name in models/ (default words-lstmp-sparse), or the path of an "
                             "LSTM .npz with its .head.npz beside it (e.g. a compress run's pruned.npz)")
    parser.add_argument("--test-set", type=Path, default=MODELS / "words-test.npz",
                        help="feature set scored (default models/words-test.npz; e.g. a corpus's test.npz)")
    parser.add_argument("--sweep", type=parse_sweep, default=SWEEP,
                        help="threshold settings 'x,y,m;x,y,m;...' (default: a built-in sweep)")
    parser.add_argument("--output", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args()
    params = HardwareParams(lanes=args.lanes)
    started = time.time()
    model_path = Path(args.model) if args.model.endswith(".npz") else MODELS / f"{args.model}.npz"
    task = head_task(ClassifierHead.load(model_path.with_suffix(".head.npz")),
                     FeatureSet.load(args.test_set))
    plain = compress_and_encode(load_model(model_path), args.pes, 1.0,
                                numerics=Numerics(index_bits=args.index_bits)).encoded
    x_q, _ = quantize_input(task.lstm_inputs("test"), plain.numerics)
    weight_sparse = predict_cycles(AcceleratorDesign.from_encoded(plain)).steady_state
    off = golden_forward_encoded(plain, x_q, delta=None)
    rows = [{"thresholds": None, "accuracy": task.score_outputs(dequantize_output(off, plain.numerics), "test"),
             "cycles_per_frame": weight_sparse}]
    cycle_step = max(1, len(x_q) // 35)
    has_projection = [layer.proj_size is not None for layer in plain.layers]
    for x, y, m in args.sweep:
        words = thresholds_from_real([{"x": x, "y": y, "m": m}] * len(plain.layers), plain.numerics, has_projection)
        encoded = replace(plain, delta_thresholds=words)
        counts: list = []
        out = golden_forward_encoded(encoded, x_q, delta_counts=counts)
        design = AcceleratorDesign.from_encoded(encoded, params)
        frames, starts, _ = flatten_sequences(x_q[::cycle_step])      # golden's trace of every frame is slow
        cycles = delta_frame_cycles(design, frames_sent(encoded, frames, starts))
        macs = sum(layer[f"{side}_macs"] for layer in counts for side in SIDE_PHASES)
        dense = sum(layer[f"{side}_dense_macs"] for layer in counts for side in SIDE_PHASES)
        rows.append({"thresholds": {"x": x, "y": y, "m": m},
                     "accuracy": task.score_outputs(dequantize_output(out, plain.numerics), "test"),
                     "skipped": {side: skipped_fraction(counts[0], side) for side in SIDE_PHASES},
                     "mac_share": macs / dense, "lanes": design.lanes, "cycles_per_frame": round(cycles, 1)})
    print(f"{args.pes} PEs, {x_q.shape[0]} test utterances, delta mode with {design.lanes} element-wise lane(s), "
          f"{time.time() - started:.0f} s\n")
    print("| x, y, m | accuracy | skipped x / y / m | MACs | cycles/frame (cycle model) | vs weight-sparse |\n"
          "|---|---|---|---|---|---|")
    for row in rows:
        if row["thresholds"] is None:
            print(f"| weight-sparse | {row['accuracy']:.4f} | - | 100 % | {weight_sparse} | 1.00x |")
            continue
        t, s = row["thresholds"], row["skipped"]
        print(f"| {t['x']:g}, {t['y']:g}, {t['m']:g} | {row['accuracy']:.4f} | "
              f"{s['x']:.1%} / {s['y']:.1%} / {s['m']:.1%} | {row['mac_share']:.1%} | {row['cycles_per_frame']} | "
              f"{weight_sparse / row['cycles_per_frame']:.2f}x |")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"pes": args.pes, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
