"""The cycle model against the RTL on the shipped model (issue #12: within 2 %): steady-state cycles per
frame in the Amaranth simulator and as hw/cycle_model.py predicts them, for each PE count, stream count and
lane count asked for.

The shipped words model (models/words-lstmp-sparse.npz) is re-encoded for each PE count as `make bench`
encodes it (6-bit indices, the encoder's cell order). Frames of random non-zero input (the model assumes no
zero is skipped), streamed back to back, the first S frames sequence starts (frame k belongs to stream
k mod S); the steady-state frames are those with a frame of every stream before them and one after them.
Every output word is checked against the golden model run on each stream's frames alone.

    nice -n 10 .venv/bin/python bench/model_vs_rtl.py --pes 64 --streams 1,2 --lanes 2,4 [--frames 6] [--json out.json]

With 64 PEs one configuration takes about three minutes of simulation.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from sparselstm.hw.cycle_model import predict_cycles
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.spec.numerics import Numerics
from sparselstm.sw.fixedpoint import quantize_input
from sparselstm.sw.golden import golden_forward_encoded
from sparselstm.sw.loaders import load_model
from sparselstm.sw.pipeline import compress_and_encode

from cycles import measure

SHIPPED_MODEL = "models/words-lstmp-sparse.npz"


def integers(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--{name}: expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise SystemExit(f"--{name}: expected integers >= 1, got {text!r}")
    return values


def compare(encoded, streams: int, lanes: int, frames: int) -> dict:
    """One configuration: RTL and cycle model, steady-state cycles per frame."""
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(streams=streams, lanes=lanes))
    predicted = predict_cycles(design)
    rng = np.random.default_rng(1)
    size = encoded.layers[0].input_size
    x_q, _ = quantize_input(rng.uniform(0.5, 2.0, (frames, size)) * rng.choice([-1, 1], (frames, size)),
                            encoded.numerics)
    start = time.perf_counter()
    streamed = measure(design, x_q, starts=streams)
    cycles_at = [int(cycles) for cycles, _, _ in streamed["marks"]]
    steady = (cycles_at[frames - 2] - cycles_at[streams - 1]) / (frames - 1 - streams)
    exact = all(np.array_equal(streamed["outputs"][s::streams], golden_forward_encoded(encoded, x_q[s::streams]))
                for s in range(streams))
    mean_entries = sum(predicted.mac_cycles) / design.n_pes
    return {"n_pes": design.n_pes, "streams": streams, "lanes": design.lanes, "frames": frames,
            "rtl_cycles_per_frame": steady, "model_cycles_per_frame": predicted.steady_state,
            "model_error": (predicted.steady_state - steady) / steady,
            "busiest_pe_entries": int(predicted.ideal), "mean_pe_entries": mean_entries,
            "rtl_pe_busy": mean_entries / steady, "model_pe_busy": mean_entries / predicted.steady_state,
            "frame_ends": cycles_at, "bit_exact": bool(exact), "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pes", default="64")
    parser.add_argument("--streams", default="1,2")
    parser.add_argument("--lanes", default="2,4")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    pes, stream_counts, lane_counts = (integers(getattr(args, n), n) for n in ("pes", "streams", "lanes"))
    if args.frames < max(stream_counts) + 2:
        parser.error("--frames: need a start per stream, a steady-state frame and a last frame")
    shipped = load_model(SHIPPED_MODEL)
    rows = []
    for n_pes in pes:
        encoded = compress_and_encode(shipped, n_pes, density=1.0, numerics=Numerics(index_bits=6)).encoded
        for streams in stream_counts:
            for lanes in lane_counts:
                if n_pes % lanes:
                    continue
                row = compare(encoded, streams, lanes, args.frames)
                rows.append(row)
                print(f"{n_pes:3d} PEs, S = {streams}, {lanes} lane(s): RTL {row['rtl_cycles_per_frame']:.1f}, "
                      f"model {row['model_cycles_per_frame']} ({100 * row['model_error']:+.1f} %), "
                      f"busiest / mean PE {row['busiest_pe_entries']} / {row['mean_pe_entries']:.1f}, "
                      f"PE busy RTL {100 * row['rtl_pe_busy']:.1f} % (model {100 * row['model_pe_busy']:.1f} %), "
                      f"bit-exact {row['bit_exact']}, {row['seconds']:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0 if all(row["bit_exact"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
