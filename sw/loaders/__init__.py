"""Reading trained LSTM/LSTMP models into an `LSTMPModel`, and writing sparselstm's own `.npz`.

One reader per framework (docs/model-files.md), chosen by `load_model` from the suffix or the content:

- `npz`        sparselstm's own format (`save_npz`), key `format` = "sparselstm-model-v1";
- `pytorch`    `.pt` / `.pth` / `.ckpt` PyTorch `nn.LSTM` checkpoints, read with `torch.load(weights_only=True)`;
- `onnx_lstm`  `.onnx` graphs made of forward `LSTM` nodes (one per layer, chained).

Every error is a `LoadError` that names the file, the key (or ONNX node) and what was expected. Keys, inputs
and attributes a reader does not use are an error unless `allow_extra_keys=True`. torch and onnx are
optional dependencies, imported only when such a file is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...spec.errors import LoadError, ModelError
from ..model import LSTMPModel
from .common import preview, zip_names
from .npz import NPZ_FORMAT, load_npz, save_npz
from .onnx_lstm import load_onnx
from .pytorch import TORCH_SUFFIXES, load_torch

__all__ = ["load_model", "save_npz", "NPZ_FORMAT"]


def load_model(path, prefix: str | None = None, *, allow_extra_keys: bool = False) -> LSTMPModel:
    """Read a model file (see the module docstring) as an `LSTMPModel`.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    prefix : str, optional
        For PyTorch checkpoints holding several LSTMs, the module path of the one to read (e.g.
        "encoder.lstm"); not allowed for other formats.
    allow_extra_keys : bool
        Ignore keys (npz, PyTorch) or LSTM-node inputs and attributes (ONNX) that the reader does not use,
        instead of refusing the file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_model: expected a path, got {type(path).__name__}")
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"load_model: prefix must be a string, got {type(prefix).__name__}")
    if not isinstance(allow_extra_keys, bool):
        raise TypeError(f"load_model: allow_extra_keys must be True or False, got {allow_extra_keys!r}")
    path = Path(path)
    if not path.exists():
        raise LoadError(f"{path}: file not found")
    if not path.is_file():
        raise LoadError(f"{path}: expected a model file, got a directory or special file")
    kind = _file_kind(path)
    if prefix is not None and kind != "torch":
        raise LoadError(f"{path}: a prefix ({prefix!r}) only selects an LSTM inside a PyTorch checkpoint; "
                        f"this is a {kind} file")
    try:
        if kind == "npz":
            return load_npz(path, allow_extra_keys)
        if kind == "torch":
            return load_torch(path, prefix, allow_extra_keys)
        return load_onnx(path, allow_extra_keys)
    except ModelError as error:
        # The readers check shapes and values with the file's own key names before building the layers;
        # should LSTMPLayer still object, the message must at least say which file it came from.
        raise LoadError(f"{path}: {error}") from None


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    if suffix == ".onnx":
        return "onnx"
    with open(path, "rb") as stream:
        head = stream.read(8)
    if head.startswith(b"PK\x03\x04"):
        names = zip_names(path)
        if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return "torch"
        if names and all(name.endswith(".npy") for name in names):
            return "npz"
        raise LoadError(f"{path}: a zip archive that is neither a NumPy .npz (only .npy members) nor a "
                        f"PyTorch checkpoint (a data.pkl member); members: {preview(names)}")
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch"  # a bare pickle: PyTorch's legacy (pre-1.6) serialisation
    if head[:1] == b"\x08":
        return "onnx"  # protobuf field 1 (ir_version), varint: how every ONNX ModelProto starts
    raise LoadError(f"{path}: unknown model format (suffix {suffix or 'none'!r}, first bytes {head[:4]!r}); "
                    f"expected a sparselstm .npz, a PyTorch checkpoint (.pt/.pth) or an ONNX model (.onnx)")
