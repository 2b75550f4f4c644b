"""sparselstm's own model file: a NumPy .npz of named float arrays (docs/model-files.md, ".npz").

Keys: `format` = "sparselstm-model-v1", `num_layers`, and per layer k `L{k}.w_input` (4H, I),
`L{k}.w_recurrent` (4H, R), `L{k}.bias` (4H,), optionally `L{k}.peephole` (3, H) and `L{k}.w_proj` (P, H).
Gates are stacked i, f, g, o; peepholes i, f, o.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ...spec.errors import LoadError
from ..model import LSTMPLayer, LSTMPModel
from .common import checked_array, gate_rows, reject_extra_keys

__all__ = ["NPZ_FORMAT", "load_npz", "save_npz"]

NPZ_FORMAT = "sparselstm-model-v1"
NPZ_LAYER_KEYS = ("w_input", "w_recurrent", "bias", "peephole", "w_proj")
NPZ_REQUIRED_LAYER_KEYS = ("w_input", "w_recurrent", "bias")


def save_npz(model: LSTMPModel, path) -> None:
    """Write `model` as sparselstm's .npz (docs/model-files.md). The file is replaced atomically."""
    if not isinstance(model, LSTMPModel):
        raise TypeError(f"save_npz: expected an LSTMPModel, got {type(model).__name__}")
    path = Path(path)
    arrays: dict[str, np.ndarray] = {"format": np.array(NPZ_FORMAT), "num_layers": np.array(len(model.layers))}
    for k, layer in enumerate(model.layers):
        arrays[f"L{k}.w_input"] = layer.w_input
        arrays[f"L{k}.w_recurrent"] = layer.w_recurrent
        arrays[f"L{k}.bias"] = layer.bias
        if layer.peephole is not None:
            arrays[f"L{k}.peephole"] = layer.peephole
        if layer.w_proj is not None:
            arrays[f"L{k}.w_proj"] = layer.w_proj
    # np.savez appends ".npz" to a name without it; writing through a file object keeps the name as given.
    handle, temp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(stream, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_name, 0o666 & ~umask)       # mkstemp creates 0600; a saved model is an ordinary file
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise



def load_npz(path: Path, allow_extra_keys: bool = False) -> LSTMPModel:
    """Read sparselstm's own .npz; `allow_extra_keys` ignores keys other than those of docs/model-files.md."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise LoadError(f"{path}: not a readable NumPy .npz archive ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise LoadError(f"{path}: expected a .npz archive of named arrays, got a single .npy array")
    with archive:
        try:
            arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise LoadError(f"{path}: corrupted .npz archive ({error})") from None

    if "format" not in arrays:
        hint = ""
        if any(re.search(r"weight_ih_l\d+$", key) for key in arrays):
            hint = " (its keys look like a PyTorch state_dict: save it with torch.save as .pt)"
        raise LoadError(f"{path}: missing key 'format' (expected {NPZ_FORMAT!r}); not a sparselstm model "
                        f"file{hint}")
    fmt = arrays["format"]
    if fmt.shape != () or fmt.dtype.kind != "U" or str(fmt) != NPZ_FORMAT:
        raise LoadError(f"{path}: format: expected {NPZ_FORMAT!r}, got {fmt!r}")
    count = arrays.get("num_layers")
    if count is None:
        raise LoadError(f"{path}: missing key 'num_layers'")
    if count.shape != () or count.dtype.kind not in "iu" or int(count) < 1:
        raise LoadError(f"{path}: num_layers: expected an integer >= 1, got {count!r}")
    num_layers = int(count)

    expected = {"format", "num_layers"}
    expected |= {f"L{k}.{name}" for k in range(num_layers) for name in NPZ_LAYER_KEYS}
    reject_extra_keys(path, set(arrays) - expected, "key(s)", allow_extra_keys,
                      f" (num_layers is {num_layers}; per layer only {', '.join(NPZ_LAYER_KEYS)})")

    layers = []
    input_size = None
    for k in range(num_layers):
        missing = [f"L{k}.{name}" for name in NPZ_REQUIRED_LAYER_KEYS if f"L{k}.{name}" not in arrays]
        if missing:
            raise LoadError(f"{path}: missing key(s) {', '.join(missing)}")
        w_input = checked_array(path, f"L{k}.w_input", arrays[f"L{k}.w_input"])
        cells = gate_rows(path, f"L{k}.w_input", w_input)
        if input_size is not None and w_input.shape[1] != input_size:
            raise LoadError(f"{path}: L{k}.w_input: expected {input_size} columns (layer {k - 1}'s output "
                            f"size), got shape {w_input.shape}")
        w_proj = None
        if f"L{k}.w_proj" in arrays:
            w_proj = checked_array(path, f"L{k}.w_proj", arrays[f"L{k}.w_proj"])
            if w_proj.ndim != 2 or w_proj.shape[1] != cells or not 0 < w_proj.shape[0] < cells:
                raise LoadError(f"{path}: L{k}.w_proj: expected shape (P, {cells}) with 1 <= P < {cells}, "
                                f"got {w_proj.shape}")
        recurrent = cells if w_proj is None else w_proj.shape[0]
        w_recurrent = checked_array(path, f"L{k}.w_recurrent", arrays[f"L{k}.w_recurrent"],
                                     (4 * cells, recurrent))
        bias = checked_array(path, f"L{k}.bias", arrays[f"L{k}.bias"], (4 * cells,))
        peephole = None
        if f"L{k}.peephole" in arrays:
            peephole = checked_array(path, f"L{k}.peephole", arrays[f"L{k}.peephole"], (3, cells))
        layers.append(LSTMPLayer(w_input, w_recurrent, bias, peephole, w_proj, name=f"L{k}"))
        input_size = recurrent
    return LSTMPModel(tuple(layers))
