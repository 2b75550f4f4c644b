"""The in-memory description of a stacked LSTMP, in float.

Gate blocks are stacked in the order **i, f, g, o** (PyTorch's order) everywhere in sparselstm.
Peepholes are stored as one (3, H) array in the order **i, f, o**.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..spec.errors import ModelError

GATES = ("i", "f", "g", "o")
PEEPHOLE_GATES = ("i", "f", "o")


def _as_float_array(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ModelError(f"{name}: expected shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ModelError(f"{name}: {bad} non-finite value(s) (NaN or Inf)")
    array = array.copy()
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class LSTMPLayer:
    """One LSTMP layer.

    w_input:     (4H, I)  gate weights applied to the layer input x_t
    w_recurrent: (4H, R)  gate weights applied to the recurrent input y_{t-1} (R = P, or H without projection)
    bias:        (4H,)    gate biases (any input and recurrent biases already added together)
    peephole:    (3, H) or None   diagonal peepholes for i, f (on c_{t-1}) and o (on c_t)
    w_proj:      (P, H) or None   projection y_t = w_proj @ m_t
    """

    w_input: np.ndarray
    w_recurrent: np.ndarray
    bias: np.ndarray
    peephole: np.ndarray | None = None
    w_proj: np.ndarray | None = None
    name: str = field(default="layer")

    def __post_init__(self):
        w_input = np.asarray(self.w_input)
        if w_input.ndim != 2 or w_input.shape[0] % 4 != 0 or w_input.shape[0] == 0 or w_input.shape[1] == 0:
            raise ModelError(f"{self.name}.w_input: expected shape (4*H, I) with H, I >= 1, got {w_input.shape}")
        four_h, input_size = w_input.shape
        cells = four_h // 4
        proj = None
        if self.w_proj is not None:
            w_proj = np.asarray(self.w_proj)
            if w_proj.ndim != 2 or w_proj.shape[1] != cells or w_proj.shape[0] == 0:
                raise ModelError(f"{self.name}.w_proj: expected shape (P, {cells}), got {w_proj.shape}")
            proj = w_proj.shape[0]
            if proj >= cells:
                raise ModelError(f"{self.name}.w_proj: projection size {proj} must be smaller than the cell count "
                                 f"{cells}")
        recurrent = proj if proj is not None else cells
        set_ = object.__setattr__
        set_(self, "w_input", _as_float_array(f"{self.name}.w_input", self.w_input, (four_h, input_size)))
        set_(self, "w_recurrent", _as_float_array(f"{self.name}.w_recurrent", self.w_recurrent, (four_h, recurrent)))
        set_(self, "bias", _as_float_array(f"{self.name}.bias", self.bias, (four_h,)))
        if self.peephole is not None:
            set_(self, "peephole", _as_float_array(f"{self.name}.peephole", self.peephole, (3, cells)))
        if self.w_proj is not None:
            set_(self, "w_proj", _as_float_array(f"{self.name}.w_proj", self.w_proj, (proj, cells)))

    @property
    def input_size(self) -> int:
        return self.w_input.shape[1]

    @property
    def cell_size(self) -> int:
        return self.w_input.shape[0] // 4

    @property
    def proj_size(self) -> int | None:
        return None if self.w_proj is None else self.w_proj.shape[0]

    @property
    def recurrent_size(self) -> int:
        return self.w_recurrent.shape[1]

    @property
    def output_size(self) -> int:
        return self.recurrent_size

    @property
    def has_peephole(self) -> bool:
        return self.peephole is not None

    @property
    def has_projection(self) -> bool:
        return self.w_proj is not None

    def gate_block(self, matrix: str, gate: str) -> np.ndarray:
        """The (H, columns) block of one gate of `w_input` ("input") or `w_recurrent` ("recurrent")."""
        k = GATES.index(gate)
        full = {"input": self.w_input, "recurrent": self.w_recurrent}[matrix]
        return full[k * self.cell_size:(k + 1) * self.cell_size]

    def matrices(self) -> dict[str, np.ndarray]:
        """The prunable weight matrices of this layer by name: `input.i` ... `recurrent.o`, `proj`."""
        out = {f"{side}.{gate}": self.gate_block(side, gate) for side in ("input", "recurrent") for gate in GATES}
        if self.w_proj is not None:
            out["proj"] = self.w_proj
        return out

    def replace(self, **changes) -> "LSTMPLayer":
        fields = dict(w_input=self.w_input, w_recurrent=self.w_recurrent, bias=self.bias,
                      peephole=self.peephole, w_proj=self.w_proj, name=self.name)
        fields.update(changes)
        return LSTMPLayer(**fields)

    def with_matrices(self, matrices: dict[str, np.ndarray]) -> "LSTMPLayer":
        """A copy with some of the named matrices of `matrices()` replaced (e.g. after pruning)."""
        unknown = set(matrices) - set(self.matrices())
        if unknown:
            raise ModelError(f"{self.name}: unknown matrix name(s) {sorted(unknown)}")
        w_input = np.array(self.w_input)
        w_recurrent = np.array(self.w_recurrent)
        h = self.cell_size
        current = self.matrices()
        for name, value in matrices.items():
            if name == "proj":
                continue  # the constructor checks the projection's shape
            value = np.asarray(value)
            if value.shape != current[name].shape:
                raise ModelError(f"{self.name}: matrix {name!r} must keep its shape {current[name].shape}, "
                                 f"got {value.shape}")
            side, gate = name.split(".")
            k = GATES.index(gate)
            target = w_input if side == "input" else w_recurrent
            target[k * h:(k + 1) * h] = value
        return self.replace(w_input=w_input, w_recurrent=w_recurrent,
                            w_proj=matrices.get("proj", self.w_proj))


@dataclass(frozen=True, eq=False)
class LSTMPModel:
    """A stack of LSTMP layers; layer k > 0 takes layer k-1's output y_t as its input."""

    layers: tuple[LSTMPLayer, ...]

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise ModelError("a model needs at least one layer")
        for k, layer in enumerate(layers):
            if not isinstance(layer, LSTMPLayer):
                raise TypeError(f"layer {k}: expected an LSTMPLayer, got {type(layer).__name__}")
            if k > 0 and layer.input_size != layers[k - 1].output_size:
                raise ModelError(f"layer {k}: input size {layer.input_size} does not match layer {k - 1}'s "
                                 f"output size {layers[k - 1].output_size}")
        object.__setattr__(self, "layers", layers)

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    def describe(self) -> str:
        parts = []
        for k, layer in enumerate(self.layers):
            proj = f", projection {layer.proj_size}" if layer.has_projection else ""
            peep = ", peepholes" if layer.has_peephole else ""
            parts.append(f"layer {k}: input {layer.input_size}, {layer.cell_size} cells{proj}{peep}")
        return "; ".join(parts)

    def matrices(self) -> dict[str, np.ndarray]:
        """Every prunable matrix by its full name `L{k}.input.i` ... `L{k}.proj`."""
        return {f"L{k}.{name}": m for k, layer in enumerate(self.layers) for name, m in layer.matrices().items()}

    def with_matrices(self, matrices: dict[str, np.ndarray]) -> "LSTMPModel":
        per_layer: dict[int, dict[str, np.ndarray]] = {}
        for full_name, value in matrices.items():
            head, _, name = full_name.partition(".")
            if not head.startswith("L") or not head[1:].isdigit() or int(head[1:]) >= len(self.layers):
                raise ModelError(f"unknown matrix name {full_name!r}")
            layer = self.layers[int(head[1:])]
            expected = layer.matrices().get(name)
            if expected is None:
                raise ModelError(f"unknown matrix name {full_name!r}")
            if name != "proj" and np.shape(value) != expected.shape:
                raise ModelError(f"{full_name}: expected shape {expected.shape}, got {np.shape(value)}")
            per_layer.setdefault(int(head[1:]), {})[name] = value
        return LSTMPModel(tuple(layer.with_matrices(per_layer.get(k, {})) for k, layer in enumerate(self.layers)))


def random_model(input_size: int, cell_size: int, proj_size: int | None = None, num_layers: int = 1,
                 peephole: bool = True, seed: int = 0, scale: float | None = None) -> LSTMPModel:
    """A random model with PyTorch-like initialisation (U(-1/sqrt(H), 1/sqrt(H))), for tests and demos."""
    rng = np.random.default_rng(seed)
    bound = scale if scale is not None else 1.0 / np.sqrt(cell_size)
    layers = []
    size_in = input_size
    for k in range(num_layers):
        recurrent = proj_size if proj_size is not None else cell_size
        layers.append(LSTMPLayer(
            w_input=rng.uniform(-bound, bound, (4 * cell_size, size_in)),
            w_recurrent=rng.uniform(-bound, bound, (4 * cell_size, recurrent)),
            bias=rng.uniform(-bound, bound, 4 * cell_size),
            peephole=rng.uniform(-bound, bound, (3, cell_size)) if peephole else None,
            w_proj=rng.uniform(-bound, bound, (proj_size, cell_size)) if proj_size is not None else None,
            name=f"layer{k}",
        ))
        size_in = recurrent
    return LSTMPModel(tuple(layers))
