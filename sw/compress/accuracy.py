"""Accuracy of the shipped models (models/models.json) on their shipped test features, without PyTorch.

For every shipped dense classifier, the float accuracy (float64 reference forward pass of its .npz export +
its .head.npz) and the accuracy of its compressed version through the bit-exact golden model of the encoded
model. The compressed version is, in order of preference:

1. pruned *with fine-tuning* by `sparselstm compress`: the entry's "compressed" key, else
   `models/<stem>-compressed/` (its whole OUTDIR: pruned.npz, pruned.head.npz, encoded/), else
   `models/<stem>-sparse.npz` + `<stem>-sparse.head.npz` (OUTDIR/pruned.npz and .head.npz alone; encoded
   here for `n_pes` PEs, keeping exactly its zeros);
2. otherwise the dense model pruned in one shot (load-balanced, `fallback_density`, no fine-tuning: test
   features alone cannot retrain) and encoded here; the entry says so ("method": "one-shot"), and its
   accuracy is then a lower bound of what compression achieves, not the method's result.

An entry with "delta_thresholds" (a JSON file in models/, as `sparselstm encode --delta-threshold` takes it)
is a model fine-tuned for delta mode: its golden accuracy is the delta mode's with those thresholds, and
the weight-sparse mode's is given beside it ("weight_sparse_golden_accuracy").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ...spec.errors import SparseLSTMError
from ..delta import load_real_thresholds, thresholds_from_real
from ..format import load_encoded
from ..loaders import load_model
from ..pipeline import compress_and_encode, compression_report
from .density import overall_density
from .iterative import prune_at_most
from .task import CallableTask, golden_lstm_outputs

INDEX = "models.json"


class ShippedModelError(SparseLSTMError):
    """models/ is missing, or an entry of models.json names files that are not there."""


def head_task(head, feature_set, name: str = "test set") -> CallableTask:
    """A CompressionTask scoring accuracy on one feature set ("test") with a ClassifierHead."""
    inputs = head.normalise(feature_set.features)

    def accuracy(outputs: np.ndarray, split: str) -> float:
        return float(np.mean(head.scores(outputs).argmax(axis=-1) == feature_set.labels))

    return CallableTask({"test": inputs}, accuracy, name=name, metric_name="accuracy")


def _entries(models_dir: Path) -> list[dict]:
    index = models_dir / INDEX
    if not index.is_file():
        raise ShippedModelError(f"{index}: not found (no shipped models; see models/README.md)")
    try:
        entries = json.loads(index.read_text())["models"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ShippedModelError(f"{index}: expected {{\"models\": [...]}} ({error})") from None
    if not entries:
        raise ShippedModelError(f"{index}: lists no models")
    return entries


def _exports(models_dir: Path, checkpoint: str) -> tuple[Path, Path]:
    path = models_dir / checkpoint
    stem = path.name.removesuffix(path.suffix)
    return path.with_name(stem + ".npz"), path.with_name(stem + ".head.npz")


def compressed_location(models_dir: Path, entry: dict) -> Path | None:
    """The shipped compressed version of a model, if any: the entry's "compressed" (a directory or a
    pruned .npz), else `<stem>-compressed/` (a `sparselstm compress` OUTDIR), else `<stem>-sparse.npz`
    (a pruned LSTM export, with `<stem>-sparse.head.npz`)."""
    if entry.get("compressed"):
        location = models_dir / entry["compressed"]
        if not location.exists():
            raise ShippedModelError(f"{models_dir / INDEX}: compressed model {location} not found")
        return location
    checkpoint = Path(entry["checkpoint"])
    stem = checkpoint.name.removesuffix(checkpoint.suffix)
    for candidate in (models_dir / f"{stem}-compressed", models_dir / f"{stem}-sparse.npz"):
        if candidate.exists():
            return candidate
    return None


def _compressed_files(location: Path) -> tuple[Path, Path, Path | None]:
    """(pruned LSTM .npz, its head .npz, encoded directory or None) of a compressed location."""
    if location.is_dir():
        files = (location / "pruned.npz", location / "pruned.head.npz", location / "encoded")
        hint = f"write it with `sparselstm compress -o {location}`"
    else:
        files = (location, location.with_name(location.name.removesuffix(".npz") + ".head.npz"), None)
        hint = "ship the pruned model's .head.npz next to it"
    for path in files:
        if path is not None and not path.exists():
            raise ShippedModelError(f"{path}: missing ({hint})")
    return files


def _delta_thresholds(models_dir: Path, entry: dict, encoded):
    """The entry's delta thresholds in words for `encoded`, or None (no "delta_thresholds" key)."""
    if not entry.get("delta_thresholds"):
        return None
    path = models_dir / entry["delta_thresholds"]
    if not path.is_file():
        raise ShippedModelError(f"{models_dir / INDEX}: delta thresholds {path} not found")
    try:
        real = load_real_thresholds(path)
    except SparseLSTMError as error:       # the message names the file
        raise ShippedModelError(str(error)) from None
    has_projection = [layer.proj_size is not None for layer in encoded.layers]
    try:
        return thresholds_from_real(real, encoded.numerics, has_projection)
    except (SparseLSTMError, TypeError) as error:
        raise ShippedModelError(f"{path}: {error}") from None


def evaluate_entry(models_dir: Path, entry: dict, n_pes: int = 16, fallback_density: float = 0.1,
                   progress: bool = False) -> dict:
    from ..speech.task import ClassifierHead, FeatureSet

    started = time.time()
    for key in ("checkpoint", "test_set"):
        if key not in entry:
            raise ShippedModelError(f"{models_dir / INDEX}: an entry has no {key!r}")
    lstm_path, head_path = _exports(models_dir, entry["checkpoint"])
    for path in (lstm_path, head_path, models_dir / entry["test_set"]):
        if not path.is_file():
            raise ShippedModelError(f"{path}: listed in {models_dir / INDEX} but not found")
    test_set = FeatureSet.load(models_dir / entry["test_set"])
    dense_head = ClassifierHead.load(head_path)
    dense = load_model(lstm_path)
    dense_task = head_task(dense_head, test_set)
    dense_task.progress = progress
    out = {"checkpoint": entry["checkpoint"], "test_set": entry["test_set"], "utterances": len(test_set),
           "architecture": dense.describe(), "dense_float_accuracy": dense_task.score(dense, "test")}

    location = compressed_location(models_dir, entry)
    if location is not None:
        pruned_path, head_path, encoded_dir = _compressed_files(location)
        pruned = load_model(pruned_path)
        task = head_task(ClassifierHead.load(head_path), test_set)
        task.progress = progress
        if encoded_dir is not None:   # the encoded model as shipped: exactly what the hardware loads
            encoded = load_encoded(encoded_dir)
            size_path = encoded_dir / "report.json"
            size = json.loads(size_path.read_text())["totals"] if size_path.is_file() else None
        else:                         # a pruned LSTM alone: encode it here, keeping exactly its zeros
            result = compress_and_encode(pruned, n_pes, 1.0, balanced=True)
            encoded, size = result.encoded, compression_report(result)["totals"]
        method = "sparselstm compress (pruned with fine-tuning)"
        report_path = location / "report.json" if location.is_dir() else None
        if report_path is not None and report_path.is_file():
            primary = json.loads(report_path.read_text()).get("runs", {}).get("primary", {})
            method = f"{primary.get('method', 'compress')} (pruned with fine-tuning), see {report_path}"
        out.update(compressed=str(location), method=method)
    else:
        pruned, _, _ = prune_at_most(dense, fallback_density, fallback_density, n_pes, balanced=True)
        result = compress_and_encode(pruned, n_pes, 1.0, balanced=True)   # 1.0: keep exactly its zeros
        encoded, task = result.encoded, dense_task
        size = compression_report(result)["totals"]
        out.update(compressed=None, method=f"one-shot load-balanced pruning to {fallback_density} without "
                                            f"fine-tuning (no compressed model shipped)")
    delta = _delta_thresholds(models_dir, entry, encoded)
    if delta is not None:
        weight_sparse, _ = golden_lstm_outputs(encoded, task.lstm_inputs("test"), progress)
        out.update(delta_thresholds=entry["delta_thresholds"],
                   weight_sparse_golden_accuracy=task.score_outputs(weight_sparse, "test"))
    outputs, saturated = golden_lstm_outputs(encoded, task.lstm_inputs("test"), progress, delta=delta)
    out.update(
        compressed_float_accuracy=task.score(pruned, "test"),
        compressed_golden_accuracy=task.score_outputs(outputs, "test"),
        golden_saturated_inputs=saturated,
        overall_density=overall_density(pruned), n_pes=encoded.n_pes,
        weight_bits=encoded.numerics.weight_bits,
        compression=None if size is None else size["compression"],
        seconds=round(time.time() - started, 1))
    return out


def evaluate_shipped(models_dir, n_pes: int = 16, fallback_density: float = 0.1, progress: bool = False) -> dict:
    """{"models": [one evaluate_entry per shipped model], plus the first model's dense_float_accuracy,
    compressed_golden_accuracy and overall_density at the top level}."""
    models_dir = Path(models_dir)
    results = [evaluate_entry(models_dir, entry, n_pes, fallback_density, progress)
               for entry in _entries(models_dir)]
    first = results[0]
    return {key: first[key] for key in ("dense_float_accuracy", "compressed_golden_accuracy", "overall_density",
                                        "compressed_float_accuracy", "method", "checkpoint")} | {"models": results}
