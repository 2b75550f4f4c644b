"""Training (and masked fine-tuning) of LSTMP keyword classifiers with PyTorch.

The classifier is: raw log-mel features -> per-feature normalisation (training-split statistics, saved
with the model) -> LSTMP stack -> mean of the last layer's outputs over time -> linear layer -> logits.

Mean pooling rather than the last frame's output: words sit anywhere in the 1 s window, so the last frame
is often silence after the word and the model would have to carry the decision across it; averaging
trains faster and is more robust. On the hardware it costs nothing: the accelerator streams y_t and the
host averages them before the small linear head (ClassifierHead in sw/speech/task.py).

Two LSTM flavours, with the same state-dict keys so that sw/loaders/ reads both:
- `nn.LSTM(proj_size=P)`: weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k};
- `PeepholeLSTMP` (sw/torch_lstm.py), our own module: the same keys plus peephole_l{k} (3, H) in the order i, f, o
  (i and f look at c_{t-1}, o at c_t; gate order i, f, g, o as PyTorch), so the peephole path of the
  accelerator is exercised by a trained model too.

For the compression method: `train(model, task, epochs, masks=...)` holds pruned weights at zero
(masked gradients, and weights re-masked after every optimiser step, since Adam's momentum would
otherwise revive them); `parameter_masks(model, matrix_masks)` turns the per-matrix masks of
sw/pruning.py ("L0.input.i" ...) into parameter masks; `to_lstmp_model` / `set_lstmp_model` convert to
and from the LSTMPModel the rest of sparselstm works on.

Delta mode (issue #14): `model.set_delta(thresholds)` makes the classifier's forward pass (training and
evaluation) run the LSTM with the thresholds, straight-through (sw/torch_lstm.py); None turns it off.
The thresholds travel with the checkpoint.

PyTorch is only imported by this module and sw/torch_lstm.py (and the commands that use them), never by the
rest of sw/.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from ..spec.errors import SparseLSTMError

try:
    import torch
    from torch import nn
except ImportError as _error:  # pragma: no cover - exercised only without the extra
    raise SparseLSTMError("training needs PyTorch: pip install 'sparselstm[torch]'") from _error

from .delta import real_thresholds
from .model import GATES, LSTMPLayer, LSTMPModel
from .torch_lstm import PeepholeLSTMP, delta_lstm_forward
from .speech.features import FeatureConfig, normalisation_stats
from .speech.task import ClassifierHead, Task

CHECKPOINT_FORMAT = "sparselstm-classifier-1"

# Informational: PyTorch falls back to its own (correct) kernel for LSTMs with projections.
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")


class TrainError(SparseLSTMError):
    """Bad training options, or a checkpoint that is not a sparselstm classifier."""


class Normalise(nn.Module):
    """(x - mean) / std with the training split's per-feature statistics, stored as buffers."""

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))

    def forward(self, x):
        return (x - self.mean) / self.std


class SpeechClassifier(nn.Module):
    """normalise -> LSTMP -> mean over time -> linear. forward takes raw features (B, T, F).

    `delta`: None, or the real delta-mode thresholds per layer ({"x", "y", "m"}, set with set_delta) the
    LSTM runs with."""

    def __init__(self, input_size: int, vocabulary, cells: int = 256, proj: int = 128, layers: int = 1,
                 peephole: bool = False, feature_config: FeatureConfig | None = None):
        super().__init__()
        if cells < 1 or layers < 1 or proj < 0:
            raise TrainError(f"need cells >= 1, layers >= 1, proj >= 0; got {cells}, {layers}, {proj}")
        if proj >= cells:
            raise TrainError(f"the projection ({proj}) must be smaller than the cell count ({cells}); 0 = none")
        self.vocabulary = tuple(vocabulary)
        self.feature_config = feature_config or FeatureConfig()
        self.config = dict(input_size=input_size, cells=cells, proj=proj, layers=layers, peephole=peephole,
                           num_classes=len(self.vocabulary), pooling="mean")
        self.normalise = Normalise(input_size)
        if peephole:
            self.lstm = PeepholeLSTMP(input_size, cells, layers, proj)
        else:
            self.lstm = nn.LSTM(input_size, cells, layers, batch_first=True, proj_size=proj)
        self.head = nn.Linear(proj or cells, len(self.vocabulary))
        self.delta = None

    def set_delta(self, thresholds) -> None:
        """Run (and train) the LSTM in delta mode: one real threshold for every layer and side, or one
        {"x", "y", "m"} per layer (sw/delta.py: real_thresholds); None: off."""
        self.delta = None if thresholds is None else real_thresholds(
            thresholds, [self.config["proj"] > 0] * self.config["layers"])

    def lstm_outputs(self, features: torch.Tensor) -> torch.Tensor:
        if self.delta is not None:
            return delta_lstm_forward(self.lstm, self.normalise(features), self.delta)
        return self.lstm(self.normalise(features))[0]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm_outputs(features).mean(dim=1))

    def set_normalisation(self, mean, std) -> None:
        self.normalise.mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.normalise.std.copy_(torch.as_tensor(np.asarray(std), dtype=torch.float32))

    def predict_fn(self):
        """A Task.score predict_fn: numpy raw features -> numpy logits (eval mode, no gradients)."""
        def predict(features: np.ndarray) -> np.ndarray:
            self.eval()
            with torch.no_grad():
                return self(torch.as_tensor(np.asarray(features, dtype=np.float32))).numpy()
        return predict

    def head_numpy(self) -> ClassifierHead:
        return ClassifierHead(self.normalise.mean.double().numpy(), self.normalise.std.double().numpy(),
                              self.head.weight.detach().double().numpy(), self.head.bias.detach().double().numpy(),
                              self.vocabulary, self.feature_config)

    def set_head_numpy(self, head: ClassifierHead) -> None:
        """Load normalisation and linear head from a ClassifierHead (e.g. a pruned model's .head.npz)."""
        if tuple(head.vocabulary) != self.vocabulary or head.weight.shape != tuple(self.head.weight.shape):
            raise TrainError(f"the head ({len(head.vocabulary)} words, weight {head.weight.shape}) does not fit "
                             f"the classifier ({len(self.vocabulary)} words, weight {tuple(self.head.weight.shape)})")
        self.set_normalisation(head.mean, head.std)
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(head.weight, dtype=torch.float32))
            self.head.bias.copy_(torch.as_tensor(head.bias, dtype=torch.float32))


def build_classifier(task: Task, cells: int = 256, proj: int = 128, layers: int = 1, peephole: bool = False,
                     seed: int = 0) -> SpeechClassifier:
    """A fresh classifier for the task, with normalisation statistics from its training split."""
    torch.manual_seed(seed)
    model = SpeechClassifier(task.input_size, task.vocabulary, cells, proj, layers, peephole, task.feature_config)
    model.set_normalisation(*normalisation_stats(task.split("train").features))
    return model


# ------------------------------------------------------------------------------------------- masks

def _layer_param(name: str) -> tuple[str, int]:
    param, _, layer = name.rpartition("_l")
    return param, int(layer)


def parameter_masks(model: SpeechClassifier, matrix_masks: dict) -> dict[str, torch.Tensor]:
    """Per-matrix boolean masks named as LSTMPModel.matrices() ("L0.input.i", ..., "L0.proj"; True = keep)
    -> masks over the classifier's parameters ("lstm.weight_ih_l0", ...), for train(masks=...)."""
    out: dict[str, torch.Tensor] = {}
    params = dict(model.named_parameters())
    for full_name, mask in matrix_masks.items():
        layer_part, _, matrix = full_name.partition(".")
        if not (layer_part.startswith("L") and layer_part[1:].isdigit()):
            raise TrainError(f"mask {full_name!r}: expected a name such as 'L0.input.i' or 'L0.proj'")
        k = int(layer_part[1:])
        mask = torch.as_tensor(np.asarray(mask, dtype=bool))
        if matrix == "proj":
            key, rows = f"lstm.weight_hr_l{k}", None
        else:
            side, _, gate = matrix.partition(".")
            if side not in ("input", "recurrent") or gate not in GATES:
                raise TrainError(f"mask {full_name!r}: unknown matrix")
            key = f"lstm.weight_ih_l{k}" if side == "input" else f"lstm.weight_hh_l{k}"
            h = model.config["cells"]
            rows = slice(GATES.index(gate) * h, (GATES.index(gate) + 1) * h)
        if key not in params:
            raise TrainError(f"mask {full_name!r}: the model has no parameter {key}")
        target = out.setdefault(key, torch.ones_like(params[key], dtype=torch.bool))
        view = target if rows is None else target[rows]
        if view.shape != mask.shape:
            raise TrainError(f"mask {full_name!r}: shape {tuple(mask.shape)}, the matrix is {tuple(view.shape)}")
        view.copy_(mask)
    return out


def _checked_masks(model: nn.Module, masks: dict | None) -> dict[str, torch.Tensor]:
    if not masks:
        return {}
    params = dict(model.named_parameters())
    checked = {}
    for name, mask in masks.items():
        if name not in params:
            raise TrainError(f"mask for {name!r}: no such parameter (parameters: {', '.join(params)})")
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).bool()
        if mask.shape != params[name].shape:
            raise TrainError(f"mask for {name!r}: shape {tuple(mask.shape)}, parameter {tuple(params[name].shape)}")
        checked[name] = mask
    return checked


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)


# ---------------------------------------------------------------------------------------- training

def evaluate(model: SpeechClassifier, task: Task, split: str = "test") -> float:
    return task.score(model.predict_fn(), split=split)


def train(model: SpeechClassifier, task: Task, epochs: int, masks: dict | None = None, lr: float = 3e-3,
          batch_size: int = 128, seed: int = 0, weight_decay: float = 0.0, clip_norm: float = 5.0,
          select_best: bool = True, progress: bool = True, log=print, teacher: nn.Module | None = None,
          distill: float = 0.0, temperature: float = 2.0) -> list[dict]:
    """Train in place with Adam and a one-cycle learning-rate schedule; returns the per-epoch history.

    masks: {parameter name: bool tensor (True = keep)} - masked weights are zeroed before training, get
    zero gradients, and are re-zeroed after every optimiser step. select_best: at the end, restore the
    weights of the epoch with the best validation accuracy (when the task has a "val" split).
    teacher, distill, temperature: knowledge distillation (Hinton et al. 2015) from a frozen teacher (the
    dense model, when fine-tuning a pruned one): loss = (1 - distill) * cross-entropy(labels) + distill *
    T^2 * KL(teacher_T || student_T), with both logits divided by T. The teacher's soft targets carry
    what it learnt about similar words, which a pruned student recovers from faster than from labels.
    """
    from tqdm import tqdm

    if epochs < 1:
        raise TrainError("epochs must be at least 1")
    if not 0.0 <= distill <= 1.0:
        raise TrainError(f"distill must lie in [0, 1], got {distill}")
    if distill and teacher is None:
        raise TrainError("distill > 0 needs a teacher model")
    if not temperature > 0:
        raise TrainError(f"temperature must be > 0, got {temperature}")
    if teacher is not None:
        teacher.eval()
    masks = _checked_masks(model, masks)
    apply_masks(model, masks)
    data = task.split("train")
    features = torch.as_tensor(data.features)
    labels = torch.as_tensor(data.labels)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(labels) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                   pct_start=min(0.3, 1.0 / epochs))
    params = dict(model.named_parameters())
    history, best = [], (-1.0, None)
    has_val = "val" in task.splits
    for epoch in range(1, epochs + 1):
        model.train()
        started, total_loss, correct = time.time(), 0.0, 0
        order = torch.randperm(len(labels), generator=generator)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", unit="batch", disable=not progress,
                   leave=False)
        for step in bar:
            rows = order[step * batch_size:(step + 1) * batch_size]
            logits = model(features[rows])
            loss = nn.functional.cross_entropy(logits, labels[rows])
            if distill:
                with torch.no_grad():
                    soft_targets = nn.functional.log_softmax(teacher(features[rows]) / temperature, dim=1)
                soft_loss = nn.functional.kl_div(nn.functional.log_softmax(logits / temperature, dim=1),
                                                 soft_targets, reduction="batchmean", log_target=True)
                loss = (1.0 - distill) * loss + distill * temperature ** 2 * soft_loss
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            for name, mask in masks.items():
                params[name].grad.mul_(mask)
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimiser.step()
            schedule.step()
            apply_masks(model, masks)
            total_loss += float(loss.detach()) * len(rows)
            correct += int((logits.argmax(1) == labels[rows]).sum())
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        record = dict(epoch=epoch, loss=total_loss / len(labels), train_accuracy=correct / len(labels),
                      seconds=round(time.time() - started, 1))
        if has_val:
            record["val_accuracy"] = evaluate(model, task, "val")
            if record["val_accuracy"] > best[0]:
                best = (record["val_accuracy"], copy.deepcopy(model.state_dict()))
        history.append(record)
        if log:
            val = f", val {record['val_accuracy']:.4f}" if has_val else ""
            log(f"epoch {epoch}/{epochs}: loss {record['loss']:.4f}, train {record['train_accuracy']:.4f}{val} "
                f"({record['seconds']} s)")
    if select_best and best[1] is not None:
        model.load_state_dict(best[1])
        apply_masks(model, masks)
    return history


# ------------------------------------------------------------------------------ LSTMPModel bridge

def to_lstmp_model(model: SpeechClassifier) -> LSTMPModel:
    """The LSTM part as an LSTMPModel (biases added together), for pruning, quantisation and hardware."""
    state = {k: v.detach().double().numpy() for k, v in model.lstm.state_dict().items()}
    layers = []
    for k in range(model.config["layers"]):
        layers.append(LSTMPLayer(
            w_input=state[f"weight_ih_l{k}"], w_recurrent=state[f"weight_hh_l{k}"],
            bias=state[f"bias_ih_l{k}"] + state[f"bias_hh_l{k}"], peephole=state.get(f"peephole_l{k}"),
            w_proj=state.get(f"weight_hr_l{k}"), name=f"L{k}"))
    return LSTMPModel(tuple(layers))


def set_lstmp_model(model: SpeechClassifier, lstmp: LSTMPModel) -> None:
    """Load an LSTMPModel's weights (e.g. pruned) into the classifier's LSTM (bias_hh set to zero)."""
    if len(lstmp.layers) != model.config["layers"]:
        raise TrainError(f"the LSTMPModel has {len(lstmp.layers)} layer(s), the classifier {model.config['layers']}")
    params = dict(model.lstm.named_parameters())
    with torch.no_grad():
        for k, layer in enumerate(lstmp.layers):
            values = {f"weight_ih_l{k}": layer.w_input, f"weight_hh_l{k}": layer.w_recurrent,
                      f"bias_ih_l{k}": layer.bias, f"bias_hh_l{k}": np.zeros_like(layer.bias)}
            if layer.w_proj is not None:
                values[f"weight_hr_l{k}"] = layer.w_proj
            if layer.peephole is not None:
                values[f"peephole_l{k}"] = layer.peephole
            elif f"peephole_l{k}" in params:
                raise TrainError(f"layer {k}: the classifier has peepholes, the LSTMPModel none")
            for name, value in values.items():
                if name not in params or tuple(params[name].shape) != value.shape:
                    raise TrainError(f"{name}: the LSTMPModel's shape {value.shape} does not fit the classifier")
                params[name].copy_(torch.tensor(np.array(value), dtype=torch.float32))


# ------------------------------------------------------------------------------------ checkpoints

def save_checkpoint(model: SpeechClassifier, path, **metadata) -> dict[str, Path]:
    """Save a trained classifier as three files (returned by role):

    - "checkpoint": PATH, a dict readable with torch.load(weights_only=True): tensors under lstm., head.
      and normalise., plus plain metadata (format, vocabulary, config, feature_config, metadata);
    - "lstm": PATH.npz (suffix replaced), the LSTM alone in sparselstm's own format (sw.loaders.save_npz),
      which every sparselstm command reads without PyTorch;
    - "head": PATH.head.npz, normalisation statistics + linear head (ClassifierHead), no PyTorch needed.
    """
    from .loaders import save_npz

    path = Path(path)
    checkpoint = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    checkpoint.update(format=CHECKPOINT_FORMAT, vocabulary=list(model.vocabulary), config=dict(model.config),
                      feature_config=model.feature_config.to_dict(), delta_thresholds=model.delta,
                      # Through JSON: only plain types, which torch.load(weights_only=True) accepts.
                      metadata=json.loads(json.dumps(metadata, default=str)))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    paths = dict(checkpoint=path, lstm=exported_paths(path)["lstm"], head=exported_paths(path)["head"])
    save_npz(to_lstmp_model(model), paths["lstm"])
    model.head_numpy().save(paths["head"])
    return paths


def exported_paths(checkpoint_path) -> dict[str, Path]:
    """Where save_checkpoint puts the NumPy exports of a checkpoint: NAME.npz (LSTM) and NAME.head.npz."""
    path = Path(checkpoint_path)
    stem = path.name.removesuffix(path.suffix)
    return dict(lstm=path.with_name(stem + ".npz"), head=path.with_name(stem + ".head.npz"))


def load_checkpoint(path) -> tuple[SpeechClassifier, dict]:
    """The classifier and the metadata saved with it."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainError(f"{path}: no such checkpoint") from None
    except Exception as error:  # noqa: BLE001 - torch reports bad files with many exception types
        raise TrainError(f"{path}: not a readable checkpoint ({str(error).splitlines()[0]})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path}: not a sparselstm classifier checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    config = checkpoint["config"]
    features = FeatureConfig.from_dict(checkpoint["feature_config"])
    model = SpeechClassifier(config["input_size"], checkpoint["vocabulary"], config["cells"], config["proj"],
                             config["layers"], config["peephole"], features)
    model.load_state_dict({k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)})
    model.set_delta(checkpoint.get("delta_thresholds"))
    model.eval()
    return model, checkpoint.get("metadata", {})
