"""Delta mode on the 35-word task: accuracy against work per frame (docs/compression.md, "Delta mode").

1. Pruning for delta mode: the dense words model (models/words-lstmp.npz) pruned in one shot to densities
   0.1, 0.25 and 0.5 for N PEs, row-balanced (ESE) and column-balanced, no fine-tuning; golden accuracy of
   each (delta mode off), and how unequal the PEs' entries per column are (what delta mode's lock-step
   cost depends on).
2. A threshold sweep: the same real threshold T for every side (x, y, m), through the bit-exact golden
   model, on the shipped compressed model (models/words-lstmp-sparse.npz, pruned with fine-tuning,
   row-balanced) and on the column-balanced one-shot model of step 1 at the first density: accuracy on the
   test utterances (models/words-test.npz), the share of columns skipped per side, the MACs per frame
   (non-zeros of the sent columns), and the cycles per frame of a PE array that steps through the sent
   columns in lock-step (per sent column the busiest PE's entries of that column, padding included).
3. Per-side thresholds on the shipped model (PER_SIDE): which side tolerates which threshold.

    .venv/bin/python bench/delta_sweep.py [--pes 16] [--densities 0.1 0.25 0.5] [--thresholds 0 0.05 ...]
        [--output build/delta_sweep.json]            (about 3 minutes on one core)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sparselstm.sw.compress.accuracy import head_task
from sparselstm.sw.compress.delta import column_entries, lockstep_cycles
from sparselstm.sw.delta import skipped_fraction, thresholds_from_real
from sparselstm.sw.fixedpoint import dequantize_output, quantize_input
from sparselstm.sw.format import decode
from sparselstm.sw.golden import golden_forward
from sparselstm.sw.loaders import load_model
from sparselstm.sw.pipeline import compress_and_encode
from sparselstm.sw.speech.task import ClassifierHead, FeatureSet

MODELS = Path(__file__).resolve().parent.parent / "models"
THRESHOLDS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
# Per-side thresholds (x, y, m) for the shipped model: one side alone, then the projection's input kept finer.
PER_SIDE = ((0.2, 0.0, 0.0), (0.0, 0.2, 0.0), (0.0, 0.0, 0.2), (0.2, 0.2, 0.02), (0.2, 0.2, 0.05),
            (0.3, 0.3, 0.05), (0.3, 0.5, 0.05))
SIDES = ("x", "y", "m")


def evaluate(encoded, task, inputs: np.ndarray, threshold) -> dict:
    """Golden accuracy and work of `encoded`; `threshold`: None (delta mode off), or real thresholds as
    sparselstm.sw.delta.real_thresholds takes them."""
    qmodel = decode(encoded, hardware_order=True)
    numerics = qmodel.numerics
    x_q, _ = quantize_input(inputs, numerics)
    delta = None if threshold is None else thresholds_from_real(
        threshold, numerics, (layer.w_proj is not None for layer in qmodel.layers))
    counts = None if delta is None else []
    y_q = golden_forward(qmodel, x_q, tables=encoded.tables, delta=delta, delta_counts=counts)
    result = {"threshold": threshold, "accuracy": task.score_outputs(dequantize_output(y_q, numerics), "test")}
    stream_frames = x_q.shape[0] * x_q.shape[1]
    result["lockstep_cycles_per_frame"] = lockstep_cycles(encoded, counts, stream_frames)
    if counts is None:
        return result
    result["thresholds_words"] = [t.to_dict() for t in delta]
    result["skipped"] = {side: skipped_fraction(counts[0], side) for side in SIDES}
    macs = sum(c[f"{side}_macs"] for c in counts for side in SIDES)
    dense = sum(c[f"{side}_dense_macs"] for c in counts for side in SIDES)
    result.update(macs_per_frame=macs / stream_frames, dense_macs_per_frame=dense / stream_frames,
                  ideal_cycles_per_frame=macs / stream_frames / encoded.n_pes)
    return result


def column_spread(encoded, padding: bool) -> float:
    """Sum over columns of the busiest PE's entries, over the sum of the mean PE's: 1.0 = every column
    balanced."""
    busiest = mean = 0.0
    for k in range(len(encoded.layers)):
        for entries in column_entries(encoded, k, padding).values():
            busiest += entries.max(axis=0).sum()
            mean += entries.mean(axis=0).sum()
    return busiest / mean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pes", type=int, default=16)
    parser.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.25, 0.5],
                        help="one-shot densities of the row- vs column-balanced comparison; the first is swept")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--output", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args()
    started = time.time()
    test_set = FeatureSet.load(MODELS / "words-test.npz")
    dense = load_model(MODELS / "words-lstmp.npz")
    dense_task = head_task(ClassifierHead.load(MODELS / "words-lstmp.head.npz"), test_set)
    shipped = load_model(MODELS / "words-lstmp-sparse.npz")
    shipped_task = head_task(ClassifierHead.load(MODELS / "words-lstmp-sparse.head.npz"), test_set)

    encoded, swept = {}, []
    for d, density in enumerate(args.densities):
        for balance, columns in (("row", False), ("column", True)):
            name = f"{balance}-balanced one-shot {density:g}"
            encoded[name] = compress_and_encode(dense, args.pes, density, columns=columns).encoded
            if d == 0 and columns:
                swept.append(name)
    shipped_name = "shipped (row-balanced, fine-tuned)"
    encoded[shipped_name] = compress_and_encode(shipped, args.pes, 1.0).encoded
    swept.append(shipped_name)
    tasks = {name: shipped_task if name.startswith("shipped") else dense_task for name in encoded}
    report = {"pes": args.pes, "utterances": len(test_set), "models": {}}
    for name, model in encoded.items():
        inputs = tasks[name].lstm_inputs("test")
        entry = {"nonzero_column_spread": column_spread(model, False),
                 "entry_column_spread": column_spread(model, True),
                 "off": evaluate(model, tasks[name], inputs, None)}
        if name in swept:
            entry["sweep"] = [evaluate(model, tasks[name], inputs, t) for t in args.thresholds]
        report["models"][name] = entry
    per_side = [[{"x": x, "y": y, "m": m}] for x, y, m in PER_SIDE]
    report["per_side"] = [evaluate(encoded[shipped_name], shipped_task, shipped_task.lstm_inputs("test"), t)
                          for t in per_side]
    report["seconds"] = round(time.time() - started, 1)

    print(f"{args.pes} PEs; {len(test_set)} test utterances; {report['seconds']} s")
    print("\n| model | golden accuracy (delta off) | busiest-PE / mean non-zeros (entries) per column | "
          "lock-step cycles per frame |\n|---|---|---|---|")
    for name, entry in report["models"].items():
        print(f"| {name} | {entry['off']['accuracy']:.4f} | {entry['nonzero_column_spread']:.3f} "
              f"({entry['entry_column_spread']:.3f}) | {entry['off']['lockstep_cycles_per_frame']:.0f} |")
    for name, entry in report["models"].items():
        if "sweep" not in entry:
            continue
        print(f"\n{name}:\n\n| T | x, y / m words | accuracy | skipped x | skipped y | skipped m | MACs/frame | "
              f"lock-step cycles/frame | ideal cycles/frame |\n|---|---|---|---|---|---|---|---|---|")
        for row in entry["sweep"]:
            words = row["thresholds_words"][0]
            print(f"| {row['threshold']:g} | {words['x']} / {words['m']} | {row['accuracy']:.4f} | "
                  + " | ".join(f"{row['skipped'][side]:.1%}" for side in SIDES)
                  + f" | {row['macs_per_frame']:.0f} of {row['dense_macs_per_frame']:.0f} | "
                    f"{row['lockstep_cycles_per_frame']:.0f} | {row['ideal_cycles_per_frame']:.0f} |")
    print(f"\n{shipped_name}, per-side thresholds:\n\n| T x, y, m | accuracy | skipped x | skipped y | skipped m "
          f"| MACs/frame | lock-step cycles/frame |\n|---|---|---|---|---|---|---|")
    for row in report["per_side"]:
        sides = ", ".join(f"{row['threshold'][0][side]:g}" for side in SIDES)
        print(f"| {sides} | {row['accuracy']:.4f} | " + " | ".join(f"{row['skipped'][side]:.1%}" for side in SIDES)
              + f" | {row['macs_per_frame']:.0f} | {row['lockstep_cycles_per_frame']:.0f} |")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
