"""Delta mode (docs/numerics.md, "Delta mode"): which columns a matrix-vector product sends, and counting them.

`DeltaColumns` is the per-matrix state of the golden model (integer words) and of the float reference
(real values): the last value sent per stream and column, the rule `sent iff |new - last| > threshold`,
and the counts of columns sent and of the multiply-accumulates they cost. `thresholds_from_real` turns real
thresholds (in the units of the activations) into the words of `DeltaThresholds`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..spec.encoded import DELTA_SIDES, DeltaThresholds, check_delta_thresholds
from ..spec.errors import ParameterError
from .fixedpoint import Numerics

__all__ = ["DeltaColumns", "real_thresholds", "thresholds_from_real", "new_delta_counts", "skipped_fraction",
           "DELTA_SIDES"]


class DeltaColumns:
    """The columns of one matrix in delta mode, for a batch of streams.

    Parameters: `batch` streams, `column_nonzeros` (C,) the non-zero weights of each column (what a sent
    column costs), `threshold` (words for int64 values, real for float64), `dtype` of the values.
    `deltas(new)` returns the (B, C) deltas to multiply (0 in the columns not sent) and makes the sent
    values the last sent; `reset(starting)` clears the streams where `starting` (B,) is True.
    `sent`, `total` (column-frames), `macs`, `stream_frames` and `sends` (C,: per column) count over every
    call of `deltas`.
    """

    def __init__(self, batch: int, column_nonzeros: np.ndarray, threshold, dtype=np.int64):
        self.last_sent = np.zeros((batch, len(column_nonzeros)), dtype=dtype)
        self.column_nonzeros = np.asarray(column_nonzeros, dtype=np.int64)
        self.threshold = threshold
        self.sent = self.total = self.macs = self.stream_frames = 0
        self.sends = np.zeros(len(column_nonzeros), dtype=np.int64)

    def reset(self, starting: np.ndarray) -> None:
        self.last_sent[starting] = 0

    def deltas(self, new: np.ndarray) -> np.ndarray:
        delta = new - self.last_sent
        send = np.abs(delta) > self.threshold
        self.last_sent = np.where(send, new, self.last_sent)
        self.sends += np.count_nonzero(send, axis=0)
        self.sent += int(np.count_nonzero(send))
        self.total += send.size
        self.macs += int((send @ self.column_nonzeros).sum())
        self.stream_frames += send.shape[0]
        return np.where(send, delta, 0)

    def add_counts(self, counts: dict, side: str) -> None:
        counts[f"{side}_sent"] += self.sent
        counts[f"{side}_columns"] += self.total
        counts[f"{side}_macs"] += self.macs
        counts[f"{side}_dense_macs"] += int(self.column_nonzeros.sum()) * self.stream_frames
        previous = counts[f"{side}_sends"]
        counts[f"{side}_sends"] = self.sends.copy() if previous.size == 0 else previous + self.sends


def new_delta_counts() -> dict:
    """Per side x, y, m: columns sent, column-frames in all, MACs of the sent columns, MACs of all columns
    (ints), and "<side>_sends": how often each column was sent (an int64 array; empty if no frame ran).
    The sends give the cost of any other per-column work model, e.g. the busiest PE's entries per column."""
    counts: dict = {f"{side}_{key}": 0 for side in DELTA_SIDES for key in ("sent", "columns", "macs", "dense_macs")}
    counts.update({f"{side}_sends": np.zeros(0, dtype=np.int64) for side in DELTA_SIDES})
    return counts


def skipped_fraction(counts: dict, side: str) -> float:
    """The fraction of column-frames of `side` not sent (0.0 when the side has no columns)."""
    total = counts[f"{side}_columns"]
    return 1.0 - counts[f"{side}_sent"] / total if total else 0.0


def _real(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: expected a number >= 0, got {value!r}")
    if not (np.isfinite(value) and value >= 0):
        raise ParameterError(f"{where}: expected a finite number >= 0, got {value}")
    return float(value)


def real_thresholds(real, has_projection) -> list[dict]:
    """Real thresholds per layer {"x", "y", "m"} from one number for every layer and side, or from a list
    with one mapping {"x": .., "y": .., "m": ..} per layer (a missing side is 0; "m" only with a projection)."""
    has_projection = list(has_projection)
    if not isinstance(real, (list, tuple)):
        value = _real(real, "delta threshold")
        return [{"x": value, "y": value, "m": value if projection else 0.0} for projection in has_projection]
    if len(real) != len(has_projection):
        raise ParameterError(f"delta thresholds: expected {len(has_projection)} (one per layer), got {len(real)}")
    layers = []
    for k, (entry, projection) in enumerate(zip(real, has_projection)):
        if not isinstance(entry, Mapping):
            raise TypeError(f"delta thresholds[{k}]: expected an object with keys {list(DELTA_SIDES)}, "
                            f"got {type(entry).__name__}")
        unknown = sorted(set(entry) - set(DELTA_SIDES))
        if unknown:
            raise ParameterError(f"delta thresholds[{k}]: unknown key(s) {unknown}; expected {list(DELTA_SIDES)}")
        layer = {side: _real(entry.get(side, 0.0), f"delta thresholds[{k}].{side}") for side in DELTA_SIDES}
        if layer["m"] and not projection:
            raise ParameterError(f"delta thresholds[{k}].m: the layer has no projection (no m side); give 0")
        layers.append(layer)
    return layers


def load_real_thresholds(path) -> list:
    """A thresholds file as `real_thresholds` takes it: a JSON list with one {"x", "y", "m"} per layer (real
    units). The one reader of such files (`--delta-threshold FILE.json`, models.json's "delta_thresholds");
    errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{path}: delta thresholds file not found")
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ParameterError(f'{path}: expected JSON thresholds, one {{"x", "y", "m"}} per layer ({error})') from None
    if not isinstance(content, list):
        raise ParameterError(f"{path}: expected a JSON list with one object per layer, got {type(content).__name__}")
    return content


def thresholds_from_real(real, numerics: Numerics, has_projection) -> tuple[DeltaThresholds, ...]:
    """Word thresholds from real ones (as `real_thresholds` takes them): x and y become
    floor(T * 2**act_frac + 0.5) act words, m floor(T * 2**unit_frac + 0.5) unit words (docs/numerics.md)."""
    has_projection = list(has_projection)
    frac = {"x": numerics.act_frac, "y": numerics.act_frac, "m": numerics.unit_frac}
    words = [DeltaThresholds(**{side: int(np.floor(layer[side] * 2.0 ** frac[side] + 0.5)) for side in DELTA_SIDES})
             for layer in real_thresholds(real, has_projection)]
    return check_delta_thresholds(words, numerics, has_projection)
