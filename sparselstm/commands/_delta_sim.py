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


def delta_report(encoded, x_q: np.ndarray, starts, params) -> dict | None:
    """Print and return the delta-mode figures of the run (None when the model has no thresholds)."""
    from ..hw.cycle_model import predict_cycles
    from ..hw.design import AcceleratorDesign
    from ..sim.runner import flatten_sequences
    from ..sw.delta import skipped_fraction
    from ..sw.golden import golden_forward_encoded

    if encoded.delta_thresholds is None:
        return None
    counts: list = []
    frames, frame_starts, _ = flatten_sequences(x_q, starts)     # as the simulation ran them
    golden_forward_encoded(encoded, frames, sequence_starts=frame_starts, delta_counts=counts)
    delta_model = predict_cycles(AcceleratorDesign.from_encoded(encoded, params), column_share=column_share(counts))
    plain_model = predict_cycles(AcceleratorDesign.from_encoded(replace(encoded, delta_thresholds=None), params))
    print(f"  delta mode (thresholds in words: {format_thresholds(encoded.delta_thresholds)}); columns sent "
          "as counted by the golden model:")
    for line in format_delta_counts(counts):
        print(f"    {line}")
    print(f"  cycle model: {delta_model.steady_state} cycles per frame in delta mode, "
          f"{plain_model.steady_state} in the weight-sparse mode of the same model")
    return {
        "thresholds": [t.to_dict() for t in encoded.delta_thresholds],
        "skipped": [{side: skipped_fraction(layer, side) for side in SIDE_PHASES} for layer in counts],
        "macs": sum(layer[f"{side}_macs"] for layer in counts for side in SIDE_PHASES),
        "dense_macs": sum(layer[f"{side}_dense_macs"] for layer in counts for side in SIDE_PHASES),
        "cycle_model_delta": delta_model.steady_state,
        "cycle_model_weight_sparse": plain_model.steady_state,
    }
