"""PyTorch `nn.LSTM` checkpoints (docs/model-files.md, "PyTorch").

A state_dict, a dict holding one under "state_dict"/"model_state_dict", or a saved nn.LSTM / nn.Sequential,
always read with `torch.load(weights_only=True)`. A zip checkpoint (PyTorch >= 1.6) is verified member by
member (CRC-32) before torch reads it, because torch seeks into its members and never checks them. Legacy
(pre-1.6, bare pickle) checkpoints carry no checksum: they are read as torch reads them, and damage is only
found where it breaks the parse.

Peephole LSTMs (our own module, sw/train.py) add `peephole_l{k}` keys: shape (3, H), order i, f, o. Every key
of the chosen LSTM's module must be one the reader uses; keys of other modules (a classifier head, a second
LSTM) are left alone.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...spec.errors import LoadError
from ..model import LSTMPLayer, LSTMPModel
from .common import checked_array, gate_rows, is_zip, preview, reject_extra_keys, verify_zip

__all__ = ["TORCH_SUFFIXES", "load_torch"]

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
# Module classes a whole saved model may contain and still be read with weights_only=True. Reading them
# runs no code of the file's: torch rebuilds them from their state. Anything else (e.g. the user's own
# nn.Module subclass) needs real unpickling, which we refuse.
TORCH_SAFE_MODULES = ("rnn.LSTM", "container.Sequential", "container.ModuleList", "container.ModuleDict",
                      "linear.Linear", "linear.Identity", "dropout.Dropout", "activation.ReLU",
                      "activation.Tanh", "activation.Sigmoid", "activation.Softmax", "activation.LogSoftmax",
                      "normalization.LayerNorm", "batchnorm.BatchNorm1d")


def _import_torch(path: Path):
    try:
        import torch
    except ImportError:
        raise LoadError(f"reading {path} needs PyTorch: pip install 'sparselstm[torch]'") from None
    return torch


def _torch_load(torch, path: Path):
    """torch.load with weights_only=True; whole saved modules only if every class in them is a known-safe one."""
    safe_classes = []
    for name in TORCH_SAFE_MODULES:
        module_name, class_name = name.split(".")
        safe_classes.append(getattr(getattr(torch.nn.modules, module_name), class_name))
    try:
        with torch.serialization.safe_globals(safe_classes):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as refused:
        raise LoadError(f"{path}: reading this checkpoint would need unsafe unpickling of "
                        f"{_refused_globals(torch, path, refused)}, which could run code from the file; sparselstm "
                        f"only reads with torch.load(weights_only=True). Save the weights instead: "
                        f"torch.save(model.state_dict(), '{path.stem}.pt')") from None
    except Exception as error:  # noqa: BLE001 - torch reports damaged files with all sorts of exceptions
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LoadError(f"{path}: not a readable PyTorch checkpoint ({first_line})") from None


def _refused_globals(torch, path: Path, refused: Exception) -> str:
    """The names of the classes/functions torch's weights-only unpickler refused, as well as we can tell."""
    allowed = {f"torch.nn.modules.{name}" for name in TORCH_SAFE_MODULES}
    try:
        names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if n not in allowed]
    except Exception:  # noqa: BLE001 - legacy (non-zip) checkpoints cannot be listed
        names = re.findall(r"GLOBAL ([\w.]+)", str(refused))
    if names:
        return ", ".join(sorted(set(names)))
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(refused))
    return "objects that weights_only=True refuses" + (f" ({detail.group(1).strip()})" if detail else "")


def _torch_state_dict(torch, path: Path, loaded) -> dict:
    if isinstance(loaded, torch.nn.Module):
        return dict(loaded.state_dict())
    if not isinstance(loaded, Mapping):
        raise LoadError(f"{path}: expected a state_dict (a dict of tensors), a dict holding one under "
                        f"'state_dict' or 'model_state_dict', or a saved nn.LSTM; got {type(loaded).__name__}")
    for key in ("state_dict", "model_state_dict"):
        if key in loaded:
            inner = loaded[key]
            if isinstance(inner, torch.nn.Module):
                return dict(inner.state_dict())
            if not isinstance(inner, Mapping):
                raise LoadError(f"{path}: {key}: expected a dict of tensors, got {type(inner).__name__}")
            return {str(k): v for k, v in inner.items()}
    return {str(k): v for k, v in loaded.items()}


# weight_ih_l0, bias_hh_l3_reverse, peephole_l1, weight_hr_l0_orig (torch.nn.utils.prune), ...
_TORCH_PARAM = re.compile(r"^(?:(?P<prefix>.*)\.)?(?P<param>weight_ih|weight_hh|weight_hr|bias_ih|bias_hh|peephole)"
                          r"_l(?P<layer>\d+)(?P<reverse>_reverse)?(?P<pruned>_orig|_mask)?$")


def load_torch(path: Path, prefix: str | None = None, allow_extra_keys: bool = False) -> LSTMPModel:
    """Read the LSTM at `prefix` (its module path; None: the only one) of a PyTorch checkpoint."""
    torch = _import_torch(path)
    if is_zip(path, "PyTorch checkpoint"):
        verify_zip(path, "PyTorch checkpoint")
    state = _torch_state_dict(torch, path, _torch_load(torch, path))

    params: dict[str, dict[tuple[str, int, str], object]] = {}
    for key, value in state.items():
        match = _TORCH_PARAM.match(key)
        if match is None:
            continue
        group = params.setdefault(match["prefix"] or "", {})
        group[(match["param"], int(match["layer"]), (match["reverse"] or "") + (match["pruned"] or ""))] = key
    # An LSTM is where its weight_ih keys are; LSTM-like keys anywhere else (say a peephole_l0 saved beside
    # the LSTM rather than with it) would silently be dropped, so they are an error.
    for group in params.values():
        if not any(param == "weight_ih" for (param, _, _) in group):
            raise LoadError(f"{path}: {min(group.values())}: an LSTM parameter with no weight_ih_l* key under the "
                            f"same prefix (expected every key of one LSTM side by side)")
    if not params:
        raise LoadError(f"{path}: no nn.LSTM weights found (expected keys such as 'weight_ih_l0' or "
                        f"'lstm.weight_ih_l0'); keys present: {preview(state)}")
    found = preview((_shown_prefix(p) for p in params), quote=False)
    if prefix is not None:
        prefix = prefix.rstrip(".")
        if prefix not in params:
            raise LoadError(f"{path}: prefix {prefix!r}: no LSTM there; LSTMs found at {found}")
    elif len(params) > 1:
        raise LoadError(f"{path}: {len(params)} LSTMs found, at {found}; choose one with prefix= (load_model) "
                        f"or --prefix (command line)")
    else:
        prefix = next(iter(params))
    keys = params[prefix]
    dotted = f"{prefix}." if prefix else ""

    reverse = sorted(key for (_, _, variant), key in keys.items() if variant.startswith("_reverse"))
    if reverse:
        raise LoadError(f"{path}: {reverse[0]}: bidirectional LSTMs are not supported (one direction per "
                        f"layer in the accelerator)")

    used = set()

    def tensor(param: str, k: int):
        """The float64 array of `{param}_l{k}`, or None; a pruned (torch.nn.utils.prune) weight is orig*mask."""
        plain = keys.get((param, k, ""))
        orig, mask = keys.get((param, k, "_orig")), keys.get((param, k, "_mask"))
        if plain is None and orig is not None:
            used.update((orig, mask))
            if mask is None:
                raise LoadError(f"{path}: {orig}: found without its pruning mask {dotted}{param}_l{k}_mask")
            weight = _torch_array(torch, path, orig, state[orig])
            mask_array = _torch_array(torch, path, mask, state[mask], weight.shape)
            return weight * mask_array, orig
        if plain is None:
            return None, f"{dotted}{param}_l{k}"
        used.add(plain)
        return _torch_array(torch, path, plain, state[plain]), plain

    indices = sorted({k for (_, k, _) in keys})
    num_layers = indices[-1] + 1
    layers = []
    input_size = None
    for k in range(num_layers):
        w_input, key_ih = tensor("weight_ih", k)
        w_recurrent, key_hh = tensor("weight_hh", k)
        for array, key in ((w_input, key_ih), (w_recurrent, key_hh)):
            if array is None:
                raise LoadError(f"{path}: missing key {key} (the LSTM has layers up to {num_layers - 1})")
        cells = gate_rows(path, key_ih, w_input)
        if input_size is not None and w_input.shape[1] != input_size:
            raise LoadError(f"{path}: {key_ih}: expected {input_size} columns (layer {k - 1}'s output size), "
                            f"got shape {w_input.shape}")
        w_proj, key_hr = tensor("weight_hr", k)
        if w_proj is not None and (w_proj.ndim != 2 or w_proj.shape[1] != cells or not 0 < w_proj.shape[0] < cells):
            raise LoadError(f"{path}: {key_hr}: expected shape (P, {cells}) with 1 <= P < {cells}, "
                            f"got {w_proj.shape}")
        recurrent = cells if w_proj is None else w_proj.shape[0]
        if w_recurrent.shape != (4 * cells, recurrent):
            raise LoadError(f"{path}: {key_hh}: expected shape {(4 * cells, recurrent)}, got {w_recurrent.shape}")
        bias_ih, key_bih = tensor("bias_ih", k)
        bias_hh, key_bhh = tensor("bias_hh", k)
        if (bias_ih is None) != (bias_hh is None):
            missing = key_bih if bias_ih is None else key_bhh
            raise LoadError(f"{path}: missing key {missing} (an nn.LSTM has both biases or, with bias=False, "
                            f"neither)")
        bias = np.zeros(4 * cells)
        for array, key in ((bias_ih, key_bih), (bias_hh, key_bhh)):
            if array is not None:
                if array.shape != (4 * cells,):
                    raise LoadError(f"{path}: {key}: expected shape {(4 * cells,)}, got {array.shape}")
                bias = bias + array
        peephole, key_peep = tensor("peephole", k)
        if peephole is not None and peephole.shape != (3, cells):
            raise LoadError(f"{path}: {key_peep}: expected shape (3, {cells}) (peepholes i, f, o), "
                            f"got {peephole.shape}")
        layers.append(LSTMPLayer(w_input, w_recurrent, bias, peephole, w_proj, name=f"{dotted}l{k}"))
        input_size = recurrent
    # Keys of the LSTM's own module that were not read: a misspelt peephole_l0 would otherwise vanish.
    unused = {key for key in state if key.rpartition(".")[0] == prefix} - used
    reject_extra_keys(path, unused, f"key(s) in the LSTM at {_shown_prefix(prefix)}", allow_extra_keys,
                      " (expected only weight_ih/weight_hh/weight_hr/bias_ih/bias_hh/peephole_l<k>)")
    return LSTMPModel(tuple(layers))


def _shown_prefix(prefix: str) -> str:
    return repr(prefix) if prefix else "'' (top level)"


def _torch_array(torch, path: Path, key: str, value, shape=None) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise LoadError(f"{path}: {key}: expected a tensor, got {type(value).__name__}")
    if not (value.is_floating_point() or value.dtype == torch.bool):
        raise LoadError(f"{path}: {key}: expected a floating-point tensor, got {value.dtype}")
    array = value.detach().to(device="cpu", dtype=torch.float64).numpy()
    return checked_array(path, key, array, shape)
