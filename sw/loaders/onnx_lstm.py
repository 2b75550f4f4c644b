"""ONNX graphs made of forward `LSTM` nodes, one per layer, chained (docs/model-files.md, "ONNX").

Weights must be constants (initializers or Constant nodes). The LSTM operator has the inputs X, W, R, B,
sequence_lens, initial_h, initial_c, P and the attributes of ONNX_LSTM_ATTRIBUTES; anything else on an LSTM
node is an error unless ignored on purpose (allow_extra_keys), as a peephole tensor in a slot the operator
does not define would otherwise be dropped silently. ONNX files carry no checksum: damage is found only where
it breaks the protobuf parse or a check below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...spec.errors import LoadError
from ..model import LSTMPLayer, LSTMPModel
from .common import checked_array, reject_extra_keys

__all__ = ["load_onnx"]

# The inputs of the ONNX LSTM operator, by slot.
ONNX_LSTM_INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
ONNX_LSTM_ATTRIBUTES = ("activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
                        "input_forget", "layout")


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


def load_onnx(path: Path, allow_extra_keys: bool = False) -> LSTMPModel:
    """Read the chain of LSTM nodes of an ONNX graph; `allow_extra_keys` ignores inputs and attributes of an
    LSTM node that the operator does not define."""
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
        extra_inputs = [f"{name!r} (slot {slot})" for slot, name in enumerate(node.input)
                        if slot >= len(ONNX_LSTM_INPUTS) and name]
        reject_extra_keys(path, extra_inputs, f"input(s) of node {graph.name(node)}", allow_extra_keys,
                          f" (the LSTM operator has {len(ONNX_LSTM_INPUTS)} inputs: "
                          f"{', '.join(ONNX_LSTM_INPUTS)})", quote=False)
        reject_extra_keys(path, set(attributes) - set(ONNX_LSTM_ATTRIBUTES), f"attribute(s) of node "
                          f"{graph.name(node)}", allow_extra_keys, " (not attributes of the LSTM operator)")
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
    w = checked_array(path, f"node {graph.name(node)} W", w)
    r = checked_array(path, f"node {graph.name(node)} R", r, (1, 4 * cells, cells), f"[1, {4 * cells}, {cells}]")
    bias = np.zeros(4 * cells)
    if _onnx_input(node, 3):
        b = checked_array(path, f"node {graph.name(node)} B", graph.constant(node, "B", node.input[3]),
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
        p = checked_array(path, f"node {graph.name(node)} P", graph.constant(node, "P", node.input[7]),
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
