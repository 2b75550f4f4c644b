"""The accelerator's figures for `make bench`: cycles per frame over PE counts (modelled) and a few frames in
the Amaranth simulator (simulated), per workload.

Modelled figures come from hw/cycle_model.py (`predict_cycles`), validated against the Amaranth simulation
(tests/test_hw_design.py); simulated figures come from the RTL itself, streamed frame after frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import dataclasses

from sparselstm.hw.cycle_model import default_lanes, predict_cycles
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.spec.numerics import Numerics
from sparselstm.sw.golden import golden_forward_encoded
from sparselstm.sw.model import LSTMPModel
from sparselstm.sw.pipeline import compress_and_encode, compression_report
from sparselstm.sw.pruning import load_imbalance

from cycles import measure

MODELLED = "modelled (hw/cycle_model.py, predict_cycles)"
SIMULATED = "simulated (Amaranth RTL simulator, hw/accelerator.py)"
COUNTED = "counted from the pruned and encoded model (sw/pipeline.py; no timing involved)"


@dataclass(frozen=True)
class Workload:
    """One model and how it is pruned for every PE count of the sweep.

    key:      short name in results.json ("shipped", "shipped-pruned", "ese")
    family:   the model size it stands for ("shipped", "ese"), to pair it with the CPU baselines
    label:    what the report calls it
    model:    the float model; `density` 1.0 keeps its own zeros
    numerics: the number formats of the encoding (the index width sets the padding entries)
    """

    key: str
    family: str
    label: str
    model: LSTMPModel
    density: float
    numerics: Numerics = Numerics()

    def __post_init__(self):
        if not isinstance(self.model, LSTMPModel):
            raise TypeError(f"Workload.model: expected an LSTMPModel, got {type(self.model).__name__}")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"Workload.density must be in (0, 1], got {self.density!r}")
        if not isinstance(self.numerics, Numerics):
            raise TypeError(f"Workload.numerics: expected a Numerics, got {type(self.numerics).__name__}")

    def compress(self, n_pes: int, balanced: bool = True):
        """compress_and_encode for `n_pes` PEs: the CompressedModel."""
        return compress_and_encode(self.model, n_pes, density=self.density, balanced=balanced,
                                   numerics=self.numerics)


def dense_weights(model: LSTMPModel) -> int:
    """Weights of the matrices (biases and peepholes excluded): the MACs of one dense frame."""
    return sum(w.size for w in model.matrices().values())


def accelerator_point(workload: Workload, n_pes: int, balanced: bool, params: HardwareParams) -> dict:
    """Compress + encode for `n_pes` PEs and predict the cycles: one row of the sweep."""
    result = workload.compress(n_pes, balanced)
    design = AcceleratorDesign.from_encoded(result.encoded, params)     # params.lanes None: the default
    prediction = predict_cycles(design)
    loads = load_imbalance(result.qmodel, n_pes)
    nonzeros = sum(load.total for load in loads.hardware.values())
    entries = int(sum(prediction.mac_cycles))
    mean_entries = entries / n_pes
    steady = prediction.steady_state
    row = {
        "model": workload.key, "family": workload.family, "n_pes": n_pes, "lanes": design.lanes,
        "balanced": bool(balanced),
        "pruning": "as shipped" if workload.density == 1.0 else ("balanced" if balanced else "unbalanced"),
        "density": workload.density, "index_bits": workload.numerics.index_bits, "nonzeros": nonzeros,
        "entries": entries, "busiest_pe_entries": int(prediction.ideal), "mean_entries_per_pe": mean_entries,
        "steady_cycles_per_frame": steady, "lone_frame_cycles": prediction.first_frame,
        # busy = processing an entry (non-zero or padding), as bench/cycles.py counts it in the RTL
        "pe_busy_fraction": mean_entries / steady,
        "mac_utilisation": nonzeros / (n_pes * steady),   # useful MACs only: padding entries excluded
        # no schedule can beat the busiest PE: this is the best busy fraction of this split of the work
        "busy_bound": mean_entries / prediction.ideal if prediction.ideal else 1.0,
        "cycles_over_bound": steady / prediction.ideal if prediction.ideal else float("nan"),
        "max_over_mean_nonzeros": {name: load.imbalance for name, load in loads.hardware.items()},
        "source": MODELLED,
    }
    return row


def sweep(workloads: list[tuple[Workload, tuple[bool, ...]]], pe_counts, params: HardwareParams,
          log=print) -> list[dict]:
    """`accelerator_point` for every workload, pruning variant and PE count."""
    rows = []
    for workload, variants in workloads:
        for balanced in variants:
            for n_pes in pe_counts:
                row = accelerator_point(workload, n_pes, balanced, params)
                rows.append(row)
                log(f"  {workload.key:<15} {row['pruning']:<10} {n_pes:>4} PEs, {row['lanes']} lane(s): "
                    f"{row['steady_cycles_per_frame']:>8} cycles/frame (bound {row['busiest_pe_entries']})")
    return rows


def lanes_sweep(workload: Workload, pe_counts, lane_counts, params: HardwareParams, log=print) -> list[dict]:
    """Cycles per frame for each element-wise lane count (dividing the PE count) at each PE count, balanced
    pruning; `default` marks the count the design picks (hw/cycle_model.py, default_lanes)."""
    rows = []
    for n_pes in pe_counts:
        single = AcceleratorDesign.from_encoded(workload.compress(n_pes).encoded,
                                                dataclasses.replace(params, lanes=1))
        chosen = default_lanes(single)
        for lanes in lane_counts:
            if lanes > n_pes or n_pes % lanes:
                continue
            prediction = predict_cycles(dataclasses.replace(single, lanes=lanes))
            steady = prediction.steady_state
            rows.append({"model": workload.key, "n_pes": n_pes, "lanes": lanes, "default": lanes == chosen,
                         "steady_cycles_per_frame": steady, "busiest_pe_entries": int(prediction.ideal),
                         "pe_busy_fraction": sum(prediction.mac_cycles) / n_pes / steady, "source": MODELLED})
            log(f"  {workload.key:<15} {n_pes:>4} PEs, {lanes} lane(s): {steady:>8} cycles/frame"
                + (" (default)" if lanes == chosen else ""))
    return rows


def streams_sweep(workload: Workload, pe_counts, stream_counts, params: HardwareParams, log=print) -> list[dict]:
    """Interleaved streams (docs/architecture.md, Streams) at each PE count, balanced pruning, the design's
    default lanes: the frame period of the interleaved frames (throughput) and the latency of one frame on
    its own (what one stream waits; streams do not shorten it)."""
    rows = []
    for n_pes in pe_counts:
        encoded = workload.compress(n_pes).encoded
        for streams in stream_counts:
            design = AcceleratorDesign.from_encoded(encoded, dataclasses.replace(params, streams=streams))
            prediction = predict_cycles(design)
            steady = prediction.steady_state
            rows.append({"model": workload.key, "n_pes": n_pes, "streams": streams, "lanes": design.lanes,
                         "steady_cycles_per_frame": steady, "first_frame_cycles": prediction.first_frame,
                         "busiest_pe_entries": int(prediction.ideal),
                         "pe_busy_fraction": sum(prediction.mac_cycles) / n_pes / steady, "source": MODELLED})
            log(f"  {workload.key:<15} {n_pes:>4} PEs, {streams} stream(s): {steady:>8} cycles/frame")
    return rows


def per_pe_nonzeros(workload: Workload, n_pes: int, matrix: str) -> dict:
    """Non-zeros per PE of one hardware matrix ("L0.gates"), balanced and unbalanced pruning."""
    out = {}
    for balanced in (True, False):
        result = workload.compress(n_pes, balanced)
        load = load_imbalance(result.qmodel, n_pes).hardware[matrix]
        out["balanced" if balanced else "unbalanced"] = {"nonzeros_per_pe": [int(v) for v in load.nonzeros],
                                                         "max": load.max, "mean": load.mean,
                                                         "max_over_mean": load.imbalance}
    return {"model": workload.key, "n_pes": n_pes, "matrix": matrix, "density": workload.density, **out,
            "source": COUNTED}


def model_size(workload: Workload, n_pes: int) -> dict:
    """Dense float32 weights against the encoded entries + pointers (compression_report's totals)."""
    totals = compression_report(workload.compress(n_pes))["totals"]
    keys = ("dense_weights", "nonzeros", "density", "padding", "entries", "dense_float32_bits",
            "entry_memory_bits", "pointer_memory_bits", "compressed_bits", "compression")
    return {"model": workload.key, "n_pes": n_pes, **{k: totals[k] for k in keys}, "source": COUNTED}


def rtl_measurement(workload: Workload, n_pes: int, x_q: np.ndarray, params: HardwareParams) -> dict:
    """Stream x_q (frames >= 3) through the RTL; steady-state cycles per frame from the frames that have a
    frame before and after them, against the cycle model's prediction, and bit-exactness against the golden
    model."""
    if x_q.shape[0] < 3:
        raise ValueError(f"rtl_measurement: need >= 3 frames (start, steady state, end), got {x_q.shape[0]}")
    encoded = workload.compress(n_pes).encoded
    design = AcceleratorDesign.from_encoded(encoded, params)
    prediction = predict_cycles(design)
    start = time.perf_counter()
    streamed = measure(design, x_q)    # bench/cycles.py: frames back to back, counters at each last word
    seconds = time.perf_counter() - start
    outputs = streamed["outputs"]
    cycles_at = [int(cycles) for cycles, _, _ in streamed["marks"]]
    work_at = [int(sum(mac) + sum(pad)) for _, mac, pad in streamed["marks"]]
    steady = [cycles_at[t] - cycles_at[t - 1] for t in range(1, len(cycles_at) - 1)]
    busy = [(work_at[t] - work_at[t - 1]) / n_pes / (cycles_at[t] - cycles_at[t - 1])
            for t in range(1, len(cycles_at) - 1)]
    measured = float(np.mean(steady))
    return {
        "model": workload.key, "n_pes": n_pes, "lanes": design.lanes, "frames": int(x_q.shape[0]),
        "steady_cycles_per_frame": measured, "pe_busy_fraction": float(np.mean(busy)),
        "predicted_steady_cycles_per_frame": prediction.steady_state,
        "prediction_error": (prediction.steady_state - measured) / measured,
        "bit_exact_vs_golden": bool(np.array_equal(outputs, golden_forward_encoded(encoded, x_q))),
        "simulated_cycles": int(cycles_at[-1]), "wall_seconds": seconds,
        "simulated_cycles_per_second": cycles_at[-1] / seconds,
        "source": SIMULATED,
    }
