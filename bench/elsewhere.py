"""Figures from elsewhere, quoted beside this run's numbers and never mixed with them.

GPU and development-machine rows: measured on 2026-11-27 outside this repository (batch 1, float32, PyTorch
2.13; the project's reference notes). They cannot be rerun here: no GPU. ESE: Han et al., "ESE: Efficient
Speech Recognition Engine with Sparse LSTM on FPGA", FPGA 2017 (XCKU060 at 200 MHz).
"""

from __future__ import annotations

ELSEWHERE = "from elsewhere (quoted, not measured in this run)"
GPU_SOURCE = "measured elsewhere on 2026-11-27 (batch 1, float32, PyTorch 2.13)"
ESE_SOURCE = "Han et al., ESE, FPGA 2017"

# us per frame: (family, device, implementation, streaming, inside a 100-frame sequence); None = not given
_LATENCIES = [
    ("ese", "NVIDIA H100", "nn.LSTM(proj_size)", 151.5, 43.2),
    ("ese", "NVIDIA H100", "one frame's step in a CUDA graph", 51.2, None),
    ("ese", "NVIDIA H100", "torch.sparse CSR at density 0.1", 446.0, None),
    ("ese", "2-core CPU of the development machines", "nn.LSTM(proj_size)", 5026.0, 1452.0),
    ("shipped", "NVIDIA H100", "nn.LSTM(proj_size)", 166.3, 25.5),
    ("shipped", "NVIDIA H100", "one frame's step in a CUDA graph", 23.2, None),
    ("shipped", "2-core CPU of the development machines", "nn.LSTM(proj_size)", 561.0, 222.0),
]

ESE = {
    "device": "Xilinx XCKU060", "clock_mhz": 200.0, "us_per_frame": 82.7, "gops_sparse": 282.0,
    "gops_dense_equivalent": 2520.0, "dsps": 1504, "watts": 41.0, "pes_per_channel": 32,
    "model": "2 layers LSTMP, 1024 cells, projection 512 (the ESE-size model here)",
}


def latency_rows() -> list[dict]:
    """One row per (figure, mode), in the shape of the measured CPU rows."""
    rows = []
    for family, device, implementation, streaming, sequence in _LATENCIES:
        for mode, value in (("streaming", streaming), ("sequence", sequence)):
            if value is not None:
                rows.append({"family": family, "implementation": f"{device}: {implementation}", "mode": mode,
                             "us_per_frame": value, "origin": GPU_SOURCE, "source": ELSEWHERE})
    rows.append({"family": "ese", "implementation": f"ESE on {ESE['device']} at {ESE['clock_mhz']:.0f} MHz",
                 "mode": "streaming", "us_per_frame": ESE["us_per_frame"], "origin": ESE_SOURCE,
                 "source": ELSEWHERE})
    return rows


def ese_efficiency() -> dict:
    """ESE's throughput in the units of the accelerator's efficiency table."""
    return {"implementation": f"ESE on {ESE['device']}", "clock_mhz": ESE["clock_mhz"],
            "gops_sparse": ESE["gops_sparse"], "gops_dense_equivalent": ESE["gops_dense_equivalent"],
            "multipliers": ESE["dsps"], "multiplier_kind": "DSP48E2 slices used",
            "gops_sparse_per_multiplier": ESE["gops_sparse"] / ESE["dsps"],
            "gops_sparse_per_mhz": ESE["gops_sparse"] / ESE["clock_mhz"],
            "origin": ESE_SOURCE, "source": ELSEWHERE}


def ese_one_stream(nonzeros: int) -> dict:
    """What ESE's 82.7 us latency means in GOPS for a model with `nonzeros` (this run's ESE-size model). Its
    282 GOPS x 82.7 us is 23 M ops, far more than one frame's, so that figure counts several frames in flight;
    one stream's rate is this one. Derived here from a quoted figure, not quoted."""
    sparse = 2 * nonzeros / (ESE["us_per_frame"] * 1e-6) / 1e9
    return {"implementation": f"ESE, one stream: {nonzeros:,} non-zeros per {ESE['us_per_frame']} us frame",
            "clock_mhz": ESE["clock_mhz"], "gops_sparse": sparse, "gops_sparse_per_mhz": sparse / ESE["clock_mhz"],
            "origin": ESE_SOURCE, "source": f"{ELSEWHERE}, derived here from ESE's latency"}
