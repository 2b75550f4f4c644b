"""The pluggable part of compression: how a model is scored and fine-tuned (docs/compression.md).

The compression method (sensitivity analysis, density choice, iterative pruning with fine-tuning, the
'proper use of the mask' variant, the fixed-point evaluation) only ever talks to a `CompressionTask`:

- `score(model, split)`: the task's metric of a float LSTMPModel on a split, **higher is better**
  (accuracy; for an error rate such as WER return its negative or 1 - WER).
- `score_golden(qmodel_or_encoded, split)`: the same metric through the bit-exact fixed-point golden model
  (sw/golden.py), i.e. what the accelerator would compute.
- `finetune(model, masks, epochs)`: retrain and return the new LSTMPModel; `masks` ({matrix name: bool
  array, True = may be non-zero}, names as LSTMPModel.matrices()) must hold the pruned weights at zero;
  `masks=None` is dense retraining (used by the mask variant).

A task needs only two methods for the scoring half: `lstm_inputs(split)` (the float (B, T, I) sequences the
LSTM reads) and `score_outputs(outputs, split)` (the metric of the LSTM's float (B, T, out) outputs). From
those the base class runs the float reference (sw/reference.py) and the golden model, so the float and the
fixed-point scores are computed by the same metric on the same data. `CallableTask` builds a task from
plain callables; `SpeechCompressionTask` adapts sparselstm's own keyword task (sw/train.py).

A task whose `finetune` trains parameters outside the LSTM (e.g. a classifier head) is stateful: it must
implement `snapshot()` / `restore(state)` so that a rejected compression step can be undone.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from abc import ABC
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ...spec.errors import ParameterError, SparseLSTMError
from ...spec.encoded import EncodedModel
from ..format import decode
from ..fixedpoint import dequantize_output, quantize_input
from ..golden import golden_forward
from ..model import LSTMPModel
from ..quantized import QuantizedModel
from ..reference import reference_forward

# Sequences per golden/reference call: bounds memory (B x 4H int64 per frame) without slowing BLAS down.
FORWARD_BATCH = 256


class TaskError(SparseLSTMError):
    """A compression task is missing, malformed, or cannot do what was asked (e.g. fine-tune)."""


def _forward_in_batches(forward: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, progress: bool,
                        desc: str) -> np.ndarray:
    from tqdm import tqdm

    starts = range(0, len(inputs), FORWARD_BATCH)
    parts = [forward(inputs[s:s + FORWARD_BATCH]) for s in tqdm(starts, desc=desc, unit="batch",
                                                                 disable=not progress, leave=False)]
    return np.concatenate(parts, axis=0)


def golden_lstm_outputs(qmodel, inputs: np.ndarray, progress: bool = False, delta=None,
                        delta_counts: list | None = None) -> tuple[np.ndarray, int]:
    """Float (B, T, out) outputs of the fixed-point golden model on float (B, T, I) inputs, and how many
    input words saturated. `qmodel`: a QuantizedModel, or an EncodedModel (run with its own tables, exactly
    as the hardware reads it; delta mode only as `delta` asks). `delta`: one DeltaThresholds (words) per
    layer, or None; `delta_counts`: an empty list, filled with the per-layer counts of every batch added up."""
    from .delta import add_delta_counts

    if isinstance(qmodel, QuantizedModel):
        words_model, tables = qmodel, None
    elif isinstance(qmodel, EncodedModel):
        words_model, tables = decode(qmodel, hardware_order=True), qmodel.tables
    else:
        raise ParameterError(f"expected a QuantizedModel or an EncodedModel, got {type(qmodel).__name__}")
    numerics = words_model.numerics
    saturated = 0

    def forward(batch: np.ndarray) -> np.ndarray:
        nonlocal saturated
        x_q, count = quantize_input(batch, numerics)
        saturated += count
        counts = None if delta_counts is None else []
        y_q = golden_forward(words_model, x_q, tables=tables, delta=delta, delta_counts=counts)
        if counts is not None:
            if not delta_counts:
                delta_counts.extend(counts)
            else:
                delta_counts[:] = [add_delta_counts(total, part) for total, part in zip(delta_counts, counts)]
        return dequantize_output(y_q, numerics)

    return _forward_in_batches(forward, np.asarray(inputs), progress, "golden model"), saturated


class CompressionTask(ABC):
    """What compression needs from a task; see the module docstring. Subclass and implement either
    `lstm_inputs` + `score_outputs` (and optionally override `score` with a faster float evaluation), plus
    `finetune` if the task can retrain."""

    name: str = "task"
    metric: str = "score"          # shown in reports; higher is better
    progress: bool = False
    delta = None                   # real delta-mode thresholds per layer of the float scores (set_delta)

    # ---- scoring ------------------------------------------------------------------------------------------
    def lstm_inputs(self, split: str) -> np.ndarray:
        """Float (B, T, I) input sequences of a split, as the LSTM reads them (already normalised)."""
        raise TaskError(f"task {self.name!r} does not provide lstm_inputs(split), needed for the fixed-point "
                        f"evaluation; implement lstm_inputs and score_outputs")

    def score_outputs(self, outputs: np.ndarray, split: str) -> float:
        """The metric (higher is better) of the LSTM's float (B, T, out) outputs on a split."""
        raise TaskError(f"task {self.name!r} does not provide score_outputs(outputs, split)")

    def score(self, model: LSTMPModel, split: str = "val") -> float:
        """The metric of a float model (default: the float64 reference forward pass, in delta mode with the
        thresholds of set_delta)."""
        outputs = _forward_in_batches(lambda x: reference_forward(model, x, delta=self.delta),
                                      self.lstm_inputs(split), self.progress, f"float {split}")
        return float(self.score_outputs(outputs, split))

    def score_golden(self, qmodel, split: str = "val", delta=None, delta_counts: list | None = None) -> float:
        """The metric through the bit-exact golden model (QuantizedModel or EncodedModel); `delta` (words,
        one DeltaThresholds per layer) and `delta_counts` as golden_lstm_outputs takes them."""
        outputs, _ = golden_lstm_outputs(qmodel, self.lstm_inputs(split), self.progress, delta, delta_counts)
        return float(self.score_outputs(outputs, split))

    def set_delta(self, thresholds) -> None:
        """Score in float, and fine-tune if the task can (can_finetune_delta), in delta mode: real thresholds
        as sw/delta.py's real_thresholds takes them (one number, or one {"x", "y", "m"} per layer); None: off."""
        self.delta = thresholds

    # ---- training -----------------------------------------------------------------------------------------
    @property
    def can_finetune(self) -> bool:
        return type(self).finetune is not CompressionTask.finetune

    @property
    def can_finetune_delta(self) -> bool:
        """Whether finetune trains with the thresholds of set_delta in the forward pass."""
        return False

    def finetune(self, model: LSTMPModel, masks: Mapping[str, np.ndarray] | None, epochs: int) -> LSTMPModel:
        """Retrain `model` for `epochs` epochs (masks: held at zero where False; None: dense)."""
        raise TaskError(f"task {self.name!r} cannot fine-tune (it has no finetune method); use --epochs 0, "
                        f"or give a task that can retrain")

    def snapshot(self):
        """Task-side trainable state outside the LSTM (none by default)."""
        return None

    def restore(self, state) -> None:
        """Undo fine-tuning of task-side state back to a snapshot()."""

    # ---- files --------------------------------------------------------------------------------------------
    def load_model(self, checkpoint) -> LSTMPModel:
        """The dense model to compress (default: any file sw.loaders reads)."""
        from ..loaders import load_model

        return load_model(checkpoint)

    def start_from(self, path) -> LSTMPModel:
        """An earlier (pruned) model to continue compressing from, with any task-side state that belongs to
        it loaded (default: any file sw.loaders reads, no task-side state)."""
        from ..loaders import load_model

        return load_model(path)

    def save_model(self, model: LSTMPModel, path, **metadata) -> list[Path]:
        """Write a (pruned) model; returns the files written (default: sparselstm .npz)."""
        from ..loaders import save_npz

        path = Path(path).with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz(model, path)
        return [path]


class CallableTask(CompressionTask):
    """A task from plain callables, for models trained elsewhere:

        inputs:   {split: float (B, T, I) array} or a function split -> array (your data loader)
        metric:   function (outputs (B, T, out), split) -> float, higher is better (your scoring)
        finetune: optional function (model, masks or None, epochs) -> LSTMPModel

    Scoring runs sparselstm's float reference and golden model on the inputs, so the float and the
    fixed-point scores come from the same metric."""

    def __init__(self, inputs, metric: Callable[[np.ndarray, str], float],
                 finetune: Callable | None = None, name: str = "custom", metric_name: str = "score",
                 progress: bool = False):
        if not callable(metric):
            raise TaskError("CallableTask: metric must be a function (outputs, split) -> float")
        if finetune is not None and not callable(finetune):
            raise TaskError("CallableTask: finetune must be a function (model, masks, epochs) -> LSTMPModel")
        self._inputs, self._metric, self._finetune = inputs, metric, finetune
        self.name, self.metric, self.progress = name, metric_name, progress

    @property
    def can_finetune(self) -> bool:
        return self._finetune is not None

    def lstm_inputs(self, split: str) -> np.ndarray:
        if callable(self._inputs):
            data = self._inputs(split)
        elif split in self._inputs:
            data = self._inputs[split]
        else:
            raise TaskError(f"task {self.name!r} has no {split!r} split (it has {', '.join(self._inputs)})")
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 3:
            raise TaskError(f"task {self.name!r}: inputs of {split!r} must be (B, T, I), got shape {data.shape}")
        return data

    def score_outputs(self, outputs: np.ndarray, split: str) -> float:
        return float(self._metric(outputs, split))

    def finetune(self, model, masks, epochs):
        if self._finetune is None:
            return super().finetune(model, masks, epochs)
        result = self._finetune(model, masks, epochs)
        if not isinstance(result, LSTMPModel):
            raise TaskError(f"task {self.name!r}: finetune returned {type(result).__name__}, expected an LSTMPModel")
        return result


class SpeechCompressionTask(CompressionTask):
    """sparselstm's keyword task (sw/speech, sw/train.py) as a CompressionTask; metric: accuracy.

    The task holds the PyTorch classifier (normalisation -> LSTMP -> mean over time -> linear head).
    Float scores run the classifier in PyTorch (fast; float32); fixed-point scores run the golden model on
    the normalised features and the classifier's head in NumPy. Fine-tuning trains the LSTM and the head
    (masked weights held at zero, see sw/train.py: train) and keeps the epoch with the best validation
    accuracy. `val_limit`: score at most this many utterances per word of the "val" split, which steers
    compression (a seeded balanced subset; None = all): sensitivity analysis scores hundreds of models.
    `train_limit`: fine-tune on at most this many utterances per word. The "test" split is never cut.
    `distill` (0..1) and `temperature`: fine-tune with knowledge distillation from the dense classifier as
    it was when the task was made (sw/train.py: train); 0 = labels only.
    """

    metric = "accuracy"

    def __init__(self, classifier, data, finetune_lr: float = 1e-3, batch_size: int = 128,
                 val_limit: int | None = None, train_limit: int | None = None, seed: int = 0,
                 progress: bool = True, distill: float = 0.0, temperature: float = 2.0):
        from ..speech.task import Task

        if tuple(classifier.vocabulary) != tuple(data.vocabulary):
            raise TaskError(f"the classifier was trained on another vocabulary ({len(classifier.vocabulary)} "
                            f"words) than task {data.name!r} ({data.num_classes} words)")
        limits = {"val": val_limit, "train": train_limit}
        for name, limit in limits.items():
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
                raise ParameterError(f"{name} limit: expected a whole number of utterances per word >= 1, "
                                     f"got {limit!r}")
        if any(limits[name] is not None and name in data.splits for name in limits):
            splits = {name: fs if limits.get(name) is None else fs.balanced_subset(limits[name], seed)
                      for name, fs in data.splits.items()}
            data = Task(data.name, data.vocabulary, splits, data.manifest)
        self.classifier, self.data = classifier, data
        self.name = data.name
        self.finetune_lr, self.batch_size, self.seed, self.progress = finetune_lr, batch_size, seed, progress
        self.set_distillation(distill, temperature)
        self.log = None   # a callable taking one line per fine-tuning epoch (the compress command sets it)
        self._finetune_calls = 0

    def set_distillation(self, distill: float, temperature: float = 2.0) -> None:
        """Fine-tune with soft targets from the classifier as it is now (the dense model); 0 = off."""
        if not 0.0 <= distill <= 1.0:
            raise ParameterError(f"distillation weight must lie in [0, 1], got {distill}")
        if not temperature > 0:
            raise ParameterError(f"distillation temperature must be > 0, got {temperature}")
        self.distill, self.temperature = float(distill), float(temperature)
        self._teacher = copy.deepcopy(self.classifier) if distill else None

    @classmethod
    def from_checkpoint(cls, checkpoint, data, **options) -> "SpeechCompressionTask":
        """From a classifier checkpoint (sparselstm train) and a corpus directory or feature set .npz."""
        from .. import train as training
        from ..speech.task import Task

        classifier, _ = training.load_checkpoint(checkpoint)
        return cls(classifier, data if not isinstance(data, (str, Path)) else Task.load(data), **options)

    def require_splits(self, *names: str) -> None:
        missing = [name for name in names if name not in self.data.splits]
        if missing:
            raise TaskError(f"task {self.name!r} has no {', '.join(missing)} split (it has "
                            f"{', '.join(self.data.splits)}); compression needs a corpus directory with "
                            f"train.npz and val.npz (sparselstm data)")

    def _load(self, model: LSTMPModel) -> None:
        from .. import train as training

        training.set_lstmp_model(self.classifier, model)

    def lstm_inputs(self, split: str) -> np.ndarray:
        return self.classifier.head_numpy().normalise(self.data.split(split).features)

    def score_outputs(self, outputs: np.ndarray, split: str) -> float:
        labels = self.data.split(split).labels
        scores = self.classifier.head_numpy().scores(outputs)
        return float(np.mean(scores.argmax(axis=-1) == labels))

    def score(self, model: LSTMPModel, split: str = "val") -> float:
        from .. import train as training

        self._load(model)
        return training.evaluate(self.classifier, self.data, split)

    @property
    def can_finetune(self) -> bool:
        return "train" in self.data.splits

    @property
    def can_finetune_delta(self) -> bool:
        return self.can_finetune

    def set_delta(self, thresholds) -> None:
        """Float scores and fine-tuning in delta mode (straight-through training, sw/torch_lstm.py)."""
        self.classifier.set_delta(thresholds)
        self.delta = thresholds

    def finetune(self, model, masks, epochs):
        from .. import train as training

        self.require_splits("train")
        self._load(model)
        parameter_masks = None if masks is None else training.parameter_masks(self.classifier, masks)
        self._finetune_calls += 1  # a new shuffle per call, reproducible from the seed
        training.train(self.classifier, self.data, epochs, masks=parameter_masks, lr=self.finetune_lr,
                       batch_size=self.batch_size, seed=self.seed + self._finetune_calls,
                       progress=self.progress, log=self.log, teacher=self._teacher, distill=self.distill,
                       temperature=self.temperature)
        return training.to_lstmp_model(self.classifier)

    def restart_shuffles(self) -> None:
        """Fine-tune from here on with the shuffles a freshly made task would use: each independent
        compression run starts so, whichever process or machine runs it (sw/compress/executor.py)."""
        self._finetune_calls = 0

    def snapshot(self):
        return copy.deepcopy(self.classifier.state_dict())

    def restore(self, state) -> None:
        self.classifier.load_state_dict(state)

    def load_model(self, checkpoint=None) -> LSTMPModel:
        from .. import train as training

        return training.to_lstmp_model(self.classifier)

    def start_from(self, path) -> LSTMPModel:
        """Continue from an earlier compressed classifier: a checkpoint (.pt, e.g. compress's pruned.pt), or an
        LSTM .npz with its normalisation and head in PATH.head.npz beside it (as models/ ships them)."""
        from .. import train as training
        from ..loaders import load_model
        from ..speech.task import ClassifierHead

        path = Path(path)
        if path.suffix == ".pt":
            other, _ = training.load_checkpoint(path)
            if other.config != self.classifier.config or tuple(other.vocabulary) != tuple(self.classifier.vocabulary):
                raise TaskError(f"{path}: a classifier of another shape or vocabulary ({other.config}) than the "
                                f"checkpoint being compressed ({self.classifier.config})")
            self.classifier.load_state_dict(other.state_dict())
            return training.to_lstmp_model(self.classifier)
        head_path = training.exported_paths(path)["head"]
        if not head_path.exists():
            raise TaskError(f"{path}: the classifier's normalisation and head belong beside it as {head_path} "
                            f"(not found); or give the .pt checkpoint")
        model = load_model(path)
        self._load(model)
        self.classifier.set_head_numpy(ClassifierHead.load(head_path))
        return model

    def save_model(self, model, path, **metadata) -> list[Path]:
        """A full classifier checkpoint PATH (.pt) plus its exports PATH.npz and PATH.head.npz."""
        from .. import train as training

        self._load(model)
        paths = training.save_checkpoint(self.classifier, Path(path).with_suffix(".pt"), **metadata)
        return [paths["checkpoint"], paths["lstm"], paths["head"]]


# ----------------------------------------------------------------------------------------------------------
# Finding the task the CLI was given

TASK_FACTORY = "make_task"
# A task file's module exists only in the process that loaded it: executor.py ships such code by value.
USER_TASK_MODULE_PREFIX = "sparselstm_user_task_"


def load_task(spec: str, checkpoint, **speech_options) -> CompressionTask:
    """The task named on the command line:

    - a corpus directory or feature set .npz: the built-in speech task around the classifier CHECKPOINT;
    - `FILE.py` or `FILE.py:FUNCTION`: a task of your own; FUNCTION (default `make_task`) is called with
      the checkpoint path and must return a CompressionTask.
    """
    text = str(spec)
    path_text, _, function = text.partition(".py:") if ".py:" in text else (text, "", "")
    if function or text.endswith(".py"):
        path = Path(path_text + ".py" if function else text)
        return _task_from_file(path, function or TASK_FACTORY, checkpoint)
    if not Path(text).exists():
        raise TaskError(f"{text}: no such corpus directory, feature set or task file")
    return SpeechCompressionTask.from_checkpoint(checkpoint, text, **speech_options)


def _task_from_file(path: Path, function: str, checkpoint) -> CompressionTask:
    if not path.is_file():
        raise TaskError(f"{path}: task file not found")
    module_name = f"{USER_TASK_MODULE_PREFIX}{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SparseLSTMError:
        raise
    except Exception as error:  # noqa: BLE001 - a user's file may fail in any way; report it on one line
        raise TaskError(f"{path}: the task file failed to load ({type(error).__name__}: {error})") from None
    factory = getattr(module, function, None)
    if not callable(factory):
        raise TaskError(f"{path}: no function {function!r} (it must take the checkpoint path and return a "
                        f"CompressionTask)")
    task = factory(Path(checkpoint))
    if not isinstance(task, CompressionTask):
        raise TaskError(f"{path}:{function} returned {type(task).__name__}, expected a CompressionTask")
    return task
