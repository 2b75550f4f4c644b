"""Delta mode in `sparselstm sim`: the columns skipped (golden's counts) and the cycles per frame of the cycle
model in delta mode next to the weight-sparse mode of the same model (docs/architecture.md, "Delta mode")."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ._delta import format_delta_counts, format_thresholds

SIDE_PHASES = {"x": 0, "y": 1, "m": 2}   # hw.design's PHASE_X, PHASE_R, PHASE_PROJ


def column_share(counts: list[dict]) -> dict:
    """{(layer, phase kind): the share of frames each column was sent} from golden's delta counts."""
    share = {}
    for layer, layer_counts in enumerate(counts):
        for side, kind in SIDE_PHASES.items():
            sends = layer_counts[f"{side}_sends"]
            if sends.size:
                frames = layer_counts[f"{side}_columns"] // sends.size
                share[(layer, kind)] = sends / max(frames, 1)
    return share


def frames_sent(encoded, x_q: np.ndarray, sequence_starts=None) -> list[dict]:
    """Per frame of one run x_q (T, I) of the encoded model in delta mode: {(layer, phase kind): boolean
    array (columns,)}, the columns whose word leaves the hardware's delta filter (hw/delta_filter.py): those
    whose last value sent changed, which at a sequence start includes the old values taken back. From
    golden's trace (the last values after every frame), in the hardware's column order."""
    from ..sw.format import decode
    from ..sw.golden import golden_trace

    if encoded.delta_thresholds is None:
        raise ValueError("frames_sent: the encoded model has no delta thresholds")
    x_q = np.asarray(x_q)
    starts = np.zeros(len(x_q), dtype=bool) if sequence_starts is None else np.array(sequence_starts, dtype=bool)
    starts[0] = True        # a copy: the caller's flags stay as they are
    model = decode(encoded, hardware_order=True)
    previous: dict = {}
    out = []
    bounds = [*np.flatnonzero(starts), len(x_q)]
    for begin, end in zip(bounds[:-1], bounds[1:]):    # a sequence at a time: the trace of a long run is large
        for frame in golden_trace(model, x_q[begin:end], tables=encoded.tables, delta=encoded.delta_thresholds):
            sent = {}
            for layer, record in enumerate(frame):
                for side, kind in SIDE_PHASES.items():
                    last = record[f"last_{side}"]
                    if last is None:
                        continue
                    before = previous.get((layer, kind), np.zeros_like(last))
                    sent[(layer, kind)] = last != before
                    previous[(layer, kind)] = last
            out.append(sent)
    return out


def delta_report(encoded, x_q: np.ndarray, starts, params) -> dict | None:
    """Print and return the delta-mode figures of the run (None when the model has no thresholds)."""
    from ..hw.cycle_model import delta_frame_cycles, predict_cycles
    from ..hw.design import AcceleratorDesign
    from ..sim.runner import flatten_sequences
    from ..sw.delta import skipped_fraction
    from ..sw.golden import golden_forward_encoded

    if encoded.delta_thresholds is None:
        return None
    counts: list = []
    frames, frame_starts, _ = flatten_sequences(x_q, starts)     # as the simulation ran them
    golden_forward_encoded(encoded, frames, sequence_starts=frame_starts, delta_counts=counts)
    design = AcceleratorDesign.from_encoded(encoded, params)
    # each frame with the columns it sends (the busiest PE of every frame counts), and the shares alone
    delta_frames = delta_frame_cycles(design, frames_sent(encoded, frames, frame_starts))
    delta_model = predict_cycles(design, column_share=column_share(counts))
    plain_model = predict_cycles(AcceleratorDesign.from_encoded(replace(encoded, delta_thresholds=None), params))
    print(f"  delta mode (thresholds in words: {format_thresholds(encoded.delta_thresholds)}); columns sent "
          "as counted by the golden model:")
    for line in format_delta_counts(counts):
        print(f"    {line}")
    print(f"  cycle model ({design.lanes} lane{'s' if design.lanes > 1 else ''}): {delta_frames:.1f} cycles per "
          f"frame in delta mode (frame by frame; {delta_model.steady_state} from the share of frames each column "
          f"is sent), {plain_model.steady_state} in the weight-sparse mode of the same model")
    return {
        "thresholds": [t.to_dict() for t in encoded.delta_thresholds],
        "skipped": [{side: skipped_fraction(layer, side) for side in SIDE_PHASES} for layer in counts],
        "macs": sum(layer[f"{side}_macs"] for layer in counts for side in SIDE_PHASES),
        "dense_macs": sum(layer[f"{side}_dense_macs"] for layer in counts for side in SIDE_PHASES),
        "lanes": design.lanes,
        "cycle_model_delta": round(delta_frames, 1),
        "cycle_model_delta_shares": delta_model.steady_state,
        "cycle_model_weight_sparse": plain_model.steady_state,
    }
