"""Reading trained LSTM/LSTMP models into an `LSTMPModel`, and writing our own `.npz`.

Supported files (docs/model-files.md):

- `.npz`  sparselstm's own format (`save_npz`), key `format` = "sparselstm-model-v1";
- `.pt` / `.pth` / `.ckpt`  PyTorch `nn.LSTM` checkpoints (a state_dict, a dict holding one under
  "state_dict"/"model_state_dict", or a saved nn.LSTM / nn.Sequential), always read with
  `torch.load(weights_only=True)`;
- `.onnx`  ONNX graphs made of forward `LSTM` nodes (one per layer, chained).

Files with another suffix are recognised by their content. Every error is a `LoadError` that names the file,
the key (or ONNX node) and what was expected. torch and onnx are optional dependencies, imported lazily.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..spec.errors import LoadError, ModelError
from .model import LSTMPLayer, LSTMPModel

NPZ_FORMAT = "sparselstm-model-v1"
NPZ_LAYER_KEYS = ("w_input", "w_recurrent", "bias", "peephole", "w_proj")
NPZ_REQUIRED_LAYER_KEYS = ("w_input", "w_recurrent", "bias")

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
# Module classes a whole saved model may contain and still be read with weights_only=True. Reading them
# runs no code of the file's: torch rebuilds them from their state. Anything else (e.g. the user's own
# nn.Module subclass) needs real unpickling, which we refuse.
TORCH_SAFE_MODULES = ("rnn.LSTM", "container.Sequential", "container.ModuleList", "container.ModuleDict",
                      "linear.Linear", "linear.Identity", "dropout.Dropout", "activation.ReLU",
                      "activation.Tanh", "activation.Sigmoid", "activation.Softmax", "activation.LogSoftmax",
                      "normalization.LayerNorm", "batchnorm.BatchNorm1d")


def load_model(path, prefix: str | None = None) -> LSTMPModel:
    """Read a model file (see the module docstring) as an `LSTMPModel`.

    prefix: for PyTorch checkpoints holding several LSTMs, the module path of the one to read
        (e.g. "encoder.lstm"); not allowed for other formats.
    """
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
            return _load_npz(path)
        if kind == "torch":
            return _load_torch(path, prefix)
        return _load_onnx(path)
    except ModelError as error:
        # The readers check shapes and values with the file's own key names before building the layers;
        # should LSTMPLayer still object, the message must at least say which file it came from.
        raise LoadError(f"{path}: {error}") from None


def save_npz(model: LSTMPModel, path) -> None:
    """Write `model` as sparselstm's .npz (docs/model-files.md). The file is replaced atomically."""
    if not isinstance(model, LSTMPModel):
        raise ModelError(f"save_npz: expected an LSTMPModel, got {type(model).__name__}")
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


# ---------------------------------------------------------------------------------------------------------
# Recognising the file


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
        names = _zip_names(path)
        if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return "torch"
        if names and all(name.endswith(".npy") for name in names):
            return "npz"
        raise LoadError(f"{path}: a zip archive that is neither a NumPy .npz (only .npy members) nor a "
                        f"PyTorch checkpoint (a data.pkl member); members: {_preview(names)}")
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch"  # a bare pickle: PyTorch's legacy (pre-1.6) serialisation
    if head[:1] == b"\x08":
        return "onnx"  # protobuf field 1 (ir_version), varint: how every ONNX ModelProto starts
    raise LoadError(f"{path}: unknown model format (suffix {suffix or 'none'!r}, first bytes {head[:4]!r}); "
                    f"expected a sparselstm .npz, a PyTorch checkpoint (.pt/.pth) or an ONNX model (.onnx)")


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise LoadError(f"{path}: corrupted zip archive ({error})") from None


def _preview(names, limit: int = 8, quote: bool = True) -> str:
    names = sorted(names)
    shown = ", ".join(repr(n) if quote else n for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _checked_array(path: Path, key: str, value, shape: tuple[int, ...] | None = None,
                   expected: str | None = None) -> np.ndarray:
    """`value` as a finite float64 array of `shape`; errors name the file and the key."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise LoadError(f"{path}: {key}: expected a real-valued numeric array, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if shape is not None and array.shape != tuple(shape):
        raise LoadError(f"{path}: {key}: expected shape {expected or tuple(shape)}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise LoadError(f"{path}: {key}: {bad} non-finite value(s) (NaN or Inf)")
    return array


def _gate_rows(path: Path, key: str, array: np.ndarray) -> int:
    """The cell count H of a (4H, columns) gate matrix."""
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[0] % 4 or array.shape[1] == 0:
        raise LoadError(f"{path}: {key}: expected a (4*H, columns) matrix with H, columns >= 1, "
                        f"got shape {array.shape}")
    return array.shape[0] // 4


# ---------------------------------------------------------------------------------------------------------
# sparselstm .npz


def _load_npz(path: Path) -> LSTMPModel:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise LoadError(f"{path}: not a readable NumPy .npz archive ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise LoadError(f"{path}: expected a .npz archive of named arrays, got a single .npy array")
    with archive:
        try:
            arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
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
    unexpected = set(arrays) - expected
    if unexpected:
        raise LoadError(f"{path}: unexpected key(s) {_preview(unexpected)} (num_layers is {num_layers}; "
                        f"per layer only {', '.join(NPZ_LAYER_KEYS)})")

    layers = []
    input_size = None
    for k in range(num_layers):
        missing = [f"L{k}.{name}" for name in NPZ_REQUIRED_LAYER_KEYS if f"L{k}.{name}" not in arrays]
        if missing:
            raise LoadError(f"{path}: missing key(s) {', '.join(missing)}")
        w_input = _checked_array(path, f"L{k}.w_input", arrays[f"L{k}.w_input"])
        cells = _gate_rows(path, f"L{k}.w_input", w_input)
        if input_size is not None and w_input.shape[1] != input_size:
            raise LoadError(f"{path}: L{k}.w_input: expected {input_size} columns (layer {k - 1}'s output "
                            f"size), got shape {w_input.shape}")
        w_proj = None
        if f"L{k}.w_proj" in arrays:
            w_proj = _checked_array(path, f"L{k}.w_proj", arrays[f"L{k}.w_proj"])
            if w_proj.ndim != 2 or w_proj.shape[1] != cells or not 0 < w_proj.shape[0] < cells:
                raise LoadError(f"{path}: L{k}.w_proj: expected shape (P, {cells}) with 1 <= P < {cells}, "
                                f"got {w_proj.shape}")
        recurrent = cells if w_proj is None else w_proj.shape[0]
        w_recurrent = _checked_array(path, f"L{k}.w_recurrent", arrays[f"L{k}.w_recurrent"],
                                     (4 * cells, recurrent))
        bias = _checked_array(path, f"L{k}.bias", arrays[f"L{k}.bias"], (4 * cells,))
        peephole = None
        if f"L{k}.peephole" in arrays:
            peephole = _checked_array(path, f"L{k}.peephole", arrays[f"L{k}.peephole"], (3, cells))
        layers.append(LSTMPLayer(w_input, w_recurrent, bias, peephole, w_proj, name=f"L{k}"))
        input_size = recurrent
    return LSTMPModel(tuple(layers))


# ---------------------------------------------------------------------------------------------------------
# PyTorch


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


def _load_torch(path: Path, prefix: str | None) -> LSTMPModel:
    torch = _import_torch(path)
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
                        f"'lstm.weight_ih_l0'); keys present: {_preview(state)}")
    found = _preview((_shown_prefix(p) for p in params), quote=False)
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

    def tensor(param: str, k: int):
        """The float64 array of `{param}_l{k}`, or None; a pruned (torch.nn.utils.prune) weight is orig*mask."""
        plain = keys.get((param, k, ""))
        orig, mask = keys.get((param, k, "_orig")), keys.get((param, k, "_mask"))
        if plain is None and orig is not None:
            if mask is None:
                raise LoadError(f"{path}: {orig}: found without its pruning mask {dotted}{param}_l{k}_mask")
            weight = _torch_array(torch, path, orig, state[orig])
            mask_array = _torch_array(torch, path, mask, state[mask], weight.shape)
            return weight * mask_array, orig
        if plain is None:
            return None, f"{dotted}{param}_l{k}"
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
        cells = _gate_rows(path, key_ih, w_input)
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
    return LSTMPModel(tuple(layers))


def _shown_prefix(prefix: str) -> str:
    return repr(prefix) if prefix else "'' (top level)"


def _torch_array(torch, path: Path, key: str, value, shape=None) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise LoadError(f"{path}: {key}: expected a tensor, got {type(value).__name__}")
    if not (value.is_floating_point() or value.dtype == torch.bool):
        raise LoadError(f"{path}: {key}: expected a floating-point tensor, got {value.dtype}")
    array = value.detach().to(device="cpu", dtype=torch.float64).numpy()
    return _checked_array(path, key, array, shape)


# ---------------------------------------------------------------------------------------------------------
# ONNX


def _import_onnx(path: Path):
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise LoadError(f"reading {path} needs ONNX: pip install 'sparselstm[onnx]'") from None
    return onnx, numpy_helper


ONNX_DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")
# ONNX stacks the gates i, o, f, c; ours are i, f, g(=c), o.
ONNX_GATE_ORDER = (0, 2, 3, 1)
# ONNX peepholes are i, o, f; ours i, f, o.
ONNX_PEEPHOLE_ORDER = (0, 2, 1)
# Nodes that may sit between one LSTM's Y and the next LSTM's X (they only drop the direction axis).
ONNX_PASS_THROUGH = ("Squeeze", "Reshape", "Identity")
# Operators that only move, copy or select elements of their first input: all zeros in, all zeros out.
ONNX_SHAPE_ONLY = ("Slice", "Expand", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Gather", "Tile", "Cast",
                   "Transpose")


class _OnnxGraph:
    """Constants, producers and consumers of a graph, for following values by name."""

    def __init__(self, onnx, numpy_helper, path: Path, model):
        self.path = path
        self.graph = model.graph
        self.numpy_helper = numpy_helper
        self.constants: dict[str, np.ndarray] = {}
        for init in self.graph.initializer:
            self.constants[init.name] = numpy_helper.to_array(init)
        self.producer = {}
        for node in self.graph.node:
            for output in node.output:
                if output:
                    self.producer[output] = node
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.constants[node.output[0]] = self._constant_value(onnx, numpy_helper, node)

    def _constant_value(self, onnx, numpy_helper, node) -> np.ndarray:
        for attr in node.attribute:
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
            if attr.name in ("value_float", "value_int"):
                return np.array(onnx.helper.get_attribute_value(attr))
            if attr.name in ("value_floats", "value_ints"):
                return np.array(list(onnx.helper.get_attribute_value(attr)))
        raise LoadError(f"{self.path}: node {self.name(node)}: Constant without a numeric value attribute")

    def is_zero(self, value_name: str, depth: int = 0) -> bool:
        """True if the value is all zeros by construction: a zero constant, a ConstantOfShape of 0, or a
        shape-only operator applied to one (how torch.onnx.export builds an LSTM's initial state)."""
        if value_name in self.constants:
            return not np.any(self.constants[value_name])
        node = self.producer.get(value_name)
        if node is None or depth > 32:
            return False
        if node.op_type == "ConstantOfShape":
            fill = [attr.t for attr in node.attribute if attr.name == "value"]
            return not fill or not np.any(self.numpy_helper.to_array(fill[0]))
        if node.op_type in ONNX_SHAPE_ONLY and node.input:
            return self.is_zero(node.input[0], depth + 1)
        if node.op_type == "Concat":
            return all(self.is_zero(name, depth + 1) for name in node.input)
        return False

    @staticmethod
    def name(node) -> str:
        return repr(node.name) if node.name else f"({node.op_type} producing {node.output[0]!r})"

    def constant(self, node, role: str, value_name: str) -> np.ndarray:
        if value_name not in self.constants:
            raise LoadError(f"{self.path}: node {self.name(node)}: input {role} ({value_name!r}) must be a "
                            f"constant (an initializer or a Constant node)")
        return self.constants[value_name]


def _load_onnx(path: Path) -> LSTMPModel:
    onnx, numpy_helper = _import_onnx(path)
    try:
        model = onnx.load(str(path))
    except Exception as error:  # noqa: BLE001 - protobuf raises its own DecodeError and friends
        raise LoadError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None
    graph = _OnnxGraph(onnx, numpy_helper, path, model)
    lstm_nodes = [node for node in model.graph.node if node.op_type == "LSTM" and node.domain in ("", "ai.onnx")]
    if not lstm_nodes:
        ops = sorted({node.op_type for node in model.graph.node})
        raise LoadError(f"{path}: no LSTM node in the graph (operators present: {', '.join(ops) or 'none'})")

    layers = []
    layout = None
    for k, node in enumerate(lstm_nodes):
        attributes = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
        node_layout = _check_onnx_attributes(path, graph, node, attributes)
        if layout is not None and node_layout != layout:
            raise LoadError(f"{path}: node {graph.name(node)}: layout {node_layout} differs from the previous "
                            f"LSTM's layout {layout}; a chain must use one layout")
        layout = node_layout
        if k > 0:
            _check_onnx_link(path, graph, lstm_nodes[k - 1], node, layout, layers[-1].cell_size)
        layers.append(_onnx_layer(path, graph, node, attributes, k,
                                  None if k == 0 else layers[-1].cell_size))
    return LSTMPModel(tuple(layers))


def _check_onnx_attributes(path: Path, graph: _OnnxGraph, node, attributes: dict) -> int:
    where = f"{path}: node {graph.name(node)}"

    def text(value):
        return value.decode() if isinstance(value, bytes) else str(value)

    direction = text(attributes.get("direction", "forward"))
    if direction != "forward":
        raise LoadError(f"{where}: direction {direction!r} is not supported (expected 'forward'; the "
                        f"accelerator runs one direction per layer)")
    activations = tuple(text(a).lower() for a in attributes.get("activations", ONNX_DEFAULT_ACTIVATIONS))
    if activations != ONNX_DEFAULT_ACTIVATIONS:
        raise LoadError(f"{where}: activations {list(activations)} are not supported (expected the default "
                        f"Sigmoid, Tanh, Tanh)")
    for name in ("activation_alpha", "activation_beta", "clip"):
        if name in attributes:
            raise LoadError(f"{where}: attribute {name!r} is not supported (expected it absent)")
    if int(attributes.get("input_forget", 0)) != 0:
        raise LoadError(f"{where}: input_forget=1 (coupled input and forget gates) is not supported")
    layout = int(attributes.get("layout", 0))
    if layout not in (0, 1):
        raise LoadError(f"{where}: layout {layout}: expected 0 or 1")
    return layout


def _onnx_input(node, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


def _onnx_layer(path: Path, graph: _OnnxGraph, node, attributes: dict, k: int,
                input_size: int | None) -> LSTMPLayer:
    where = f"{path}: node {graph.name(node)}"
    w = graph.constant(node, "W", _onnx_input(node, 1))
    r = graph.constant(node, "R", _onnx_input(node, 2))
    if w.ndim != 3 or w.shape[0] != 1 or w.shape[1] == 0 or w.shape[1] % 4 or w.shape[2] == 0:
        raise LoadError(f"{where}: W: expected shape [1, 4*hidden_size, input_size], got {list(w.shape)}")
    cells = w.shape[1] // 4
    if "hidden_size" in attributes and int(attributes["hidden_size"]) != cells:
        raise LoadError(f"{where}: hidden_size is {attributes['hidden_size']} but W has {4 * cells} rows "
                        f"(4*{cells})")
    if input_size is not None and w.shape[2] != input_size:
        raise LoadError(f"{where}: W: expected input_size {input_size} (the previous LSTM's hidden size), got "
                        f"shape {list(w.shape)}")
    w = _checked_array(path, f"node {graph.name(node)} W", w)
    r = _checked_array(path, f"node {graph.name(node)} R", r, (1, 4 * cells, cells), f"[1, {4 * cells}, {cells}]")
    bias = np.zeros(4 * cells)
    if _onnx_input(node, 3):
        b = _checked_array(path, f"node {graph.name(node)} B", graph.constant(node, "B", node.input[3]),
                           (1, 8 * cells), f"[1, {8 * cells}]")
        bias = b[0, :4 * cells] + b[0, 4 * cells:]
    if _onnx_input(node, 4):
        _check_full_lengths(path, graph, node)
    for index, role in ((5, "initial_h"), (6, "initial_c")):
        if _onnx_input(node, index):
            if not graph.is_zero(node.input[index]):
                raise LoadError(f"{where}: input {role} ({node.input[index]!r}) must be absent or constant zero "
                                f"(every sequence starts from a zero state)")
    peephole = None
    if _onnx_input(node, 7):
        p = _checked_array(path, f"node {graph.name(node)} P", graph.constant(node, "P", node.input[7]),
                           (1, 3 * cells), f"[1, {3 * cells}]")
        peephole = p[0].reshape(3, cells)[list(ONNX_PEEPHOLE_ORDER)]

    def reorder(matrix: np.ndarray) -> np.ndarray:
        blocks = matrix.reshape(4, cells, *matrix.shape[1:])
        return blocks[list(ONNX_GATE_ORDER)].reshape(matrix.shape)

    return LSTMPLayer(reorder(w[0]), reorder(r[0]), reorder(bias), peephole, None,
                      name=f"node {graph.name(node)}")


def _check_full_lengths(path: Path, graph: _OnnxGraph, node) -> None:
    """A sequence_lens input is only harmless if it is constant and equal to the (static) sequence length."""
    where = f"{path}: node {graph.name(node)}"
    lengths = graph.constants.get(node.input[4])
    if lengths is None:
        raise LoadError(f"{where}: input sequence_lens ({node.input[4]!r}) must be absent or constant and "
                        f"equal to the full sequence length (padding inside a batch is not supported)")
    layout = next((int(a.i) for a in node.attribute if a.name == "layout"), 0)
    frames = None
    source = node.input[0]
    for value in list(graph.graph.input) + list(graph.graph.value_info):
        if value.name == source and value.type.tensor_type.HasField("shape"):
            dims = value.type.tensor_type.shape.dim
            if len(dims) == 3 and dims[1 if layout else 0].HasField("dim_value"):
                frames = dims[1 if layout else 0].dim_value
    if frames is None or np.any(lengths != frames):
        raise LoadError(f"{where}: input sequence_lens ({node.input[4]!r}) = {lengths.tolist()} must equal the "
                        f"full, static sequence length of X ({frames if frames is not None else 'unknown'})")


def _check_onnx_link(path: Path, graph: _OnnxGraph, previous, node, layout: int, hidden: int) -> None:
    """`node`'s X must be `previous`'s Y with only the direction axis dropped."""
    where = f"{path}: node {graph.name(node)}"
    target = previous.output[0] if previous.output else ""
    if not target:
        raise LoadError(f"{where}: the previous LSTM {graph.name(previous)} has no output Y to feed this layer")
    value = _onnx_input(node, 0)
    direction_axis = 2 if layout else 1
    while value != target:
        producer = graph.producer.get(value)
        if producer is None or producer.op_type not in ONNX_PASS_THROUGH:
            found = "a graph input" if producer is None else f"a {producer.op_type} node ({graph.name(producer)})"
            raise LoadError(f"{where}: input X ({node.input[0]!r}) must come from the previous LSTM "
                            f"{graph.name(previous)}'s output Y (through Squeeze/Reshape only), but it comes from "
                            f"{found}; only a single chain of LSTM layers is supported")
        if producer.op_type == "Squeeze":
            axes = _squeeze_axes(graph, producer)
            if axes is None or [a % 4 for a in axes] != [direction_axis]:
                raise LoadError(f"{where}: Squeeze {graph.name(producer)} between the LSTMs must drop only the "
                                f"direction axis {direction_axis}, got axes {axes}")
        elif producer.op_type == "Reshape":
            shape = graph.constants.get(_onnx_input(producer, 1))
            allowed = shape is not None and shape.shape == (3,) and shape[0] == 0 and shape[2] == hidden and (
                shape[1] == -1 or (layout == 1 and shape[1] == 0))
            if not allowed:
                raise LoadError(f"{where}: Reshape {graph.name(producer)} between the LSTMs must drop only the "
                                f"direction axis (constant shape [0, -1, {hidden}]), got "
                                f"{None if shape is None else shape.tolist()}")
        value = producer.input[0]


def _squeeze_axes(graph: _OnnxGraph, node) -> list[int] | None:
    for attr in node.attribute:
        if attr.name == "axes":  # opset < 13
            return list(attr.ints)
    if len(node.input) > 1 and node.input[1]:
        axes = graph.constants.get(node.input[1])
        return None if axes is None else [int(a) for a in np.ravel(axes)]
    return None  # no axes: squeezes every size-1 axis, which would also drop a batch of 1
