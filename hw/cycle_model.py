"""Analytic cycle model of the accelerator: cycles per frame predicted from the design alone.

It replays the schedule of hw/scheduler.py at the granularity that matters for throughput: per PE, the
activation FIFO, the job register and the entry walker (one entry per cycle, empty columns free), with the
broadcaster sending one column per cycle to all PEs only when every FIFO has room. Fixed latencies (FIFO,
pointer fetch, MAC pipeline, element-wise pipeline, state changes) are constants below, calibrated against
the Amaranth simulation (tests/test_hw_design.py compares both).

Assumptions: every activation is non-zero (zero-skipping only makes frames faster), the input stream is
always valid and the output stream always ready. `steady_state` is a frame that continues a sequence (its
recurrent columns are broadcast); `first_frame` starts one (they are skipped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .design import AcceleratorDesign, PHASE_PROJ, PHASE_R, PHASE_X, phase_index

__all__ = ["CyclePrediction", "predict_cycles", "column_work"]

FIFO_LATENCY = 2          # broadcast edge -> the word can be popped (SyncFIFOBuffered)
FETCH_LATENCY = 1         # pop -> pointers available in the job register
MAC_DRAIN = 3             # last entry issued -> written (M and A stages) and `busy` low
STATE_OVERHEAD = 2        # cycles spent in setup / drain / layer-end states per phase change
READER_LATENCY = 1        # y memory / accumulator read latency of the readers
ELEMENTWISE_LATENCY = 18  # ElementwiseUnit.LATENCY


@dataclass(frozen=True)
class CyclePrediction:
    steady_state: int          # cycles of a frame continuing a sequence
    first_frame: int           # cycles of a frame starting a sequence
    mac_cycles: tuple[int, ...]  # entries (non-zeros + padding) each PE processes in a steady-state frame
    phases: dict               # steady-state cycles per layer and phase, for reports

    @property
    def ideal(self) -> float:
        """Entries of the busiest PE: no schedule can be faster."""
        return float(max(self.mac_cycles))


def column_work(design: AcceleratorDesign, layer: int, kind: int) -> np.ndarray:
    """Entries per (PE, column) of one phase, from the pointer memories: shape (n_pes, columns)."""
    info = design.layers[layer]
    columns = {PHASE_X: info.input_size, PHASE_R: info.recurrent_size, PHASE_PROJ: info.cell_size}[kind]
    work = np.zeros((design.n_pes, columns), dtype=np.int64)
    for p, pe in enumerate(design.pes):
        phase = pe.phases[phase_index(layer, kind)]
        if not phase.used:
            continue
        pointers = np.asarray(pe.pointers[phase.ptr_offset:phase.ptr_offset + columns + 1], dtype=np.int64)
        work[p] = np.diff(pointers)
    return work


def _broadcast(work: np.ndarray, fifo_depth: int, available: np.ndarray | None = None) -> tuple[int, int]:
    """(cycles until every PE has processed its entries, cycles until the last column was sent), counted
    from the first column offered to the broadcaster.

    work: (n_pes, columns) entries; available: earliest cycle each column can be offered (default: all
    at once, i.e. one per cycle)."""
    n_pes, columns = work.shape
    if columns == 0:
        return 0, 0
    last_sent = 0
    queues = [[] for _ in range(n_pes)]   # (entries, visible_at) of words in a PE's FIFO
    job = [None] * n_pes                  # entries of the column in the job register (visible next cycle)
    remaining = [0] * n_pes               # entries left in the walker
    sent = 0
    cycle = 0
    while True:
        # broadcaster: one column per cycle when every FIFO has room
        if sent < columns and (available is None or available[sent] <= cycle) \
                and all(len(q) < fifo_depth for q in queues):
            for p in range(n_pes):
                queues[p].append((int(work[p, sent]), cycle + FIFO_LATENCY))
            sent += 1
            last_sent = cycle + 1
        idle = sent == columns
        for p in range(n_pes):
            if remaining[p] > 0:
                remaining[p] -= 1
            taken = False
            if remaining[p] == 0 and job[p] is not None and job[p] > 0:
                remaining[p], taken = job[p], True
            if job[p] is None or job[p] == 0 or taken:
                if queues[p] and queues[p][0][1] <= cycle:
                    job[p] = queues[p].pop(0)[0]
                else:
                    job[p] = None
            idle = idle and not queues[p] and (job[p] is None or job[p] == 0) and remaining[p] == 0
        cycle += 1
        if idle:
            return cycle + MAC_DRAIN, last_sent


def predict_cycles(design: AcceleratorDesign, params=None) -> CyclePrediction:
    """Predict cycles per frame (see the module docstring). `params` is accepted for symmetry and ignored:
    the FIFO depth comes from the design."""
    if not isinstance(design, AcceleratorDesign):
        # allow an EncodedModel for convenience (the Verilog sidecar)
        design = AcceleratorDesign.from_encoded(design, params)
    depth = design.params.fifo_depth
    phases, first_total, steady_total = {}, 0, 0
    mac = np.zeros(design.n_pes, dtype=np.int64)
    last = design.n_layers - 1
    readout_last = 0
    x_time_layer0 = 0
    for l, info in enumerate(design.layers):
        x_work = column_work(design, l, PHASE_X)
        r_work = column_work(design, l, PHASE_R)
        gates_steady = _broadcast(np.concatenate([x_work, r_work], axis=1), depth)[0] + READER_LATENCY
        gates_first = _broadcast(x_work, depth)[0] + READER_LATENCY
        if l == 0:
            # while layer 0's x columns stream in, the previous frame's last readout may still run
            x_time_layer0 = _broadcast(x_work, depth)[1]
        ew = info.cell_size + ELEMENTWISE_LATENCY + READER_LATENCY
        if info.proj_size is not None:
            arrival = ELEMENTWISE_LATENCY + READER_LATENCY + np.arange(info.cell_size)
            ew = _broadcast(column_work(design, l, PHASE_PROJ), depth, arrival)[0]
            readout = info.proj_size + READER_LATENCY + 1
        else:
            readout = 0
        if l == last:
            readout_last, readout = readout, 0
        layer_steady = gates_steady + ew + readout + 4 * STATE_OVERHEAD
        layer_first = gates_first + ew + readout + 4 * STATE_OVERHEAD
        phases[f"layer{l}"] = {"gates": gates_steady, "elementwise_proj": ew, "readout": readout}
        steady_total += layer_steady
        first_total += layer_first
        mac += x_work.sum(axis=1) + r_work.sum(axis=1)
        if info.proj_size is not None:
            mac += column_work(design, l, PHASE_PROJ).sum(axis=1)
    # the last layer's readout overlaps the next frame's layer-0 input phase; only the excess shows
    hidden = min(readout_last, x_time_layer0)
    steady_total += readout_last - hidden
    first_total += readout_last - hidden
    phases["last_readout_exposed"] = readout_last - hidden
    return CyclePrediction(steady_state=int(steady_total), first_frame=int(first_total),
                           mac_cycles=tuple(int(v) for v in mac), phases=phases)
