"""The pluggable task: a vocabulary, train/val/test feature sets, and `score(predict_fn)` = accuracy.

Everything downstream (training, sensitivity analysis, pruning with fine-tuning, the fixed-point golden
model, the hardware simulation) talks to a speech task only through this module:

    task = Task.load("data/corpus/digits-full")         # or a single .npz, e.g. models/digits-test.npz
    accuracy = task.score(lambda x: my_logits(x), split="test")

`predict_fn` receives raw (unnormalised) features, float32 (B, T, F), and returns class scores (B, C)
or labels (B,). Normalisation belongs to the model: see ClassifierHead, the torch-free part of a trained
classifier (feature normalisation + pooling + linear head), which lets any LSTM implementation (float
reference, golden fixed point, accelerator) be scored on the task:

    head = ClassifierHead.load("models/digits-lstmp.head.npz")
    model = load_model("models/digits-lstmp.pt")
    task.score(head.predict_fn(lambda x: reference_forward(model, x)))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ...spec.errors import SparseLSTMError
from .features import FeatureConfig


class TaskError(SparseLSTMError):
    """A task or feature set file is missing or malformed."""


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Utterances of one split: raw log-mel features (N, T, F) float32, labels (N,), and per-utterance
    metadata (voice, augmentation parameters) when the corpus recorded them."""

    features: np.ndarray
    labels: np.ndarray
    vocabulary: tuple[str, ...]
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.features.ndim != 3 or self.labels.shape != (self.features.shape[0],):
            raise TaskError(f"expected features (N, T, F) and labels (N,), got {self.features.shape} and "
                            f"{self.labels.shape}")
        if len(self.labels) and not 0 <= self.labels.min() <= self.labels.max() < len(self.vocabulary):
            raise TaskError(f"labels must lie in [0, {len(self.vocabulary)}), got "
                            f"{self.labels.min()}..{self.labels.max()}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_size(self) -> int:
        return self.features.shape[2]

    @classmethod
    def load(cls, path) -> "FeatureSet":
        path = Path(path)
        if not path.is_file():
            raise TaskError(f"{path}: no such feature set file")
        try:
            with np.load(path, allow_pickle=False) as data:
                features = data["features"].astype(np.float32)
                labels = data["labels"].astype(np.int64)
                vocabulary = tuple(str(w) for w in data["vocabulary"])
                config = FeatureConfig.from_dict(json.loads(str(data["feature_config"])))
                metadata = {k[len("meta_"):]: data[k] for k in data.files if k.startswith("meta_")}
        except (KeyError, ValueError, OSError) as error:
            raise TaskError(f"{path}: not a sparselstm feature set ({error})") from None
        return cls(features, labels, vocabulary, config, metadata)

    def save(self, path, compressed: bool = False) -> None:
        from .corpus import save_feature_set

        save_feature_set(path, self.features, self.labels, self.vocabulary, self.feature_config, compressed,
                         **self.metadata)

    def subset(self, indices) -> "FeatureSet":
        indices = np.asarray(indices)
        return FeatureSet(self.features[indices], self.labels[indices], self.vocabulary, self.feature_config,
                          {k: v[indices] for k, v in self.metadata.items()})

    def balanced_subset(self, per_class: int, seed: int = 0) -> "FeatureSet":
        """`per_class` utterances of every word, drawn without replacement (for small shipped test sets)."""
        rng = np.random.default_rng(seed)
        chosen = []
        for label in range(len(self.vocabulary)):
            rows = np.flatnonzero(self.labels == label)
            chosen.extend(rng.choice(rows, size=min(per_class, len(rows)), replace=False))
        return self.subset(np.sort(np.array(chosen, dtype=np.int64)))


def predictions(predict_fn: Callable[[np.ndarray], np.ndarray], features: np.ndarray, batch_size: int = 512,
                progress: bool = False, desc: str = "scoring") -> np.ndarray:
    """Predicted labels (N,) by calling predict_fn on batches; accepts scores (B, C) or labels (B,)."""
    from tqdm import tqdm

    out = []
    for start in tqdm(range(0, len(features), batch_size), desc=desc, unit="batch", disable=not progress):
        result = np.asarray(predict_fn(features[start:start + batch_size]))
        out.append(result.argmax(axis=-1) if result.ndim == 2 else result.astype(np.int64))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Task:
    """A classification task over feature sets; the interface training and compression plug into."""

    name: str
    vocabulary: tuple[str, ...]
    splits: dict[str, FeatureSet]
    manifest: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path) -> "Task":
        """A corpus directory (train/val/test.npz from `sparselstm data`) or one feature set .npz (which
        becomes the task's only split, "test")."""
        path = Path(path)
        if path.is_dir():
            splits = {s: FeatureSet.load(path / f"{s}.npz") for s in ("train", "val", "test")
                      if (path / f"{s}.npz").exists()}
            if not splits:
                raise TaskError(f"{path}: no train.npz/val.npz/test.npz; build a corpus with `sparselstm data`")
            manifest_path = path / "manifest.json"
            manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
            name = manifest.get("task", path.name)
        elif path.is_file():
            splits, manifest, name = {"test": FeatureSet.load(path)}, {}, path.stem
        else:
            raise TaskError(f"{path}: no such corpus directory or feature set")
        vocabularies = {fs.vocabulary for fs in splits.values()}
        if len(vocabularies) != 1:
            raise TaskError(f"{path}: the splits disagree on the vocabulary")
        return cls(name, vocabularies.pop(), splits, manifest)

    @property
    def num_classes(self) -> int:
        return len(self.vocabulary)

    @property
    def input_size(self) -> int:
        return next(iter(self.splits.values())).input_size

    @property
    def feature_config(self) -> FeatureConfig:
        return next(iter(self.splits.values())).feature_config

    def split(self, name: str) -> FeatureSet:
        if name not in self.splits:
            raise TaskError(f"task {self.name!r} has no {name!r} split (it has {', '.join(self.splits)})")
        return self.splits[name]

    def score(self, predict_fn: Callable[[np.ndarray], np.ndarray], split: str = "test", batch_size: int = 512,
              progress: bool = False) -> float:
        """Accuracy of predict_fn (raw features (B, T, F) -> scores (B, C) or labels (B,)) on a split."""
        data = self.split(split)
        predicted = predictions(predict_fn, data.features, batch_size, progress, desc=f"scoring {split}")
        return float(np.mean(predicted == data.labels)) if len(data) else float("nan")

    def confusion(self, predict_fn, split: str = "test", batch_size: int = 512) -> np.ndarray:
        """(C, C) counts: row = true word, column = predicted word."""
        data = self.split(split)
        matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        np.add.at(matrix, (data.labels, predictions(predict_fn, data.features, batch_size)), 1)
        return matrix


@dataclass(frozen=True, eq=False)
class ClassifierHead:
    """The parts of a trained classifier around the LSTM, in NumPy: raw features -> normalised LSTM input;
    LSTM outputs (B, T, P) -> mean over time -> linear layer -> class scores."""

    mean: np.ndarray          # (F,)
    std: np.ndarray           # (F,)
    weight: np.ndarray        # (C, P)
    bias: np.ndarray          # (C,)
    vocabulary: tuple[str, ...]
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, dtype=np.float64) - self.mean) / self.std)

    def scores(self, lstm_outputs: np.ndarray) -> np.ndarray:
        """(B, T, P) or (T, P) LSTM outputs -> (B, C) or (C,) class scores (logits)."""
        pooled = np.asarray(lstm_outputs, dtype=np.float64).mean(axis=-2)
        return pooled @ self.weight.T + self.bias

    def predict_fn(self, lstm_forward: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        """A Task.score predict_fn from any LSTM implementation taking normalised (B, T, F) inputs."""
        return lambda features: self.scores(lstm_forward(self.normalise(features)))

    def save(self, path) -> None:
        np.savez(path, mean=self.mean, std=self.std, weight=self.weight, bias=self.bias,
                 vocabulary=np.asarray(list(self.vocabulary)), pooling=np.asarray("mean"),
                 feature_config=np.asarray(json.dumps(self.feature_config.to_dict())))

    @classmethod
    def load(cls, path) -> "ClassifierHead":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["pooling"]) != "mean":
                    raise TaskError(f"{path}: unsupported pooling {str(data['pooling'])!r}")
                return cls(data["mean"].astype(np.float64), data["std"].astype(np.float64),
                           data["weight"].astype(np.float64), data["bias"].astype(np.float64),
                           tuple(str(w) for w in data["vocabulary"]),
                           FeatureConfig.from_dict(json.loads(str(data["feature_config"]))))
        except (KeyError, ValueError, OSError) as error:
            raise TaskError(f"{path}: not a sparselstm classifier head ({error})") from None


def synthetic_task(num_classes: int = 4, per_class: int = 64, steps: int = 12, width: int = 8,
                   noise: float = 0.5, seed: int = 0) -> Task:
    """A tiny task for tests: each class is a different feature (one of `width`) rising over time,
    buried in Gaussian noise; learnable in a few epochs, impossible to guess without training."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split_number, split in enumerate(("train", "val", "test")):
        n = per_class * num_classes if split == "train" else max(8, per_class // 4) * num_classes
        labels = np.arange(n) % num_classes
        features = rng.normal(0.0, noise, (n, steps, width)).astype(np.float32)
        ramp = np.linspace(0.0, 2.0, steps, dtype=np.float32)
        features[np.arange(n), :, labels % width] += ramp
        splits[split] = FeatureSet(features, labels.astype(np.int64), tuple(f"class{k}" for k in range(num_classes)))
    return Task("synthetic", splits["train"].vocabulary, splits)
