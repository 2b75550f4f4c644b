"""The quantised model: integer words and their fractional bits, exactly as docs/numerics.md defines them.

This is what the encoder encodes, what the decoder gives back, and what the golden model runs. The
numerics parameters themselves (`Numerics`) live in `sparselstm.spec.numerics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..spec.errors import ModelError
from ..spec.numerics import GateAlignment


def _int_array(name: str, value, shape) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise ModelError(f"{name}: expected an integer array, got dtype {array.dtype}")
    if array.shape != tuple(shape):
        raise ModelError(f"{name}: expected shape {tuple(shape)}, got {array.shape}")
    array = array.astype(np.int64, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class QuantizedLayer(GateAlignment):
    """One layer in integers (docs/numerics.md, 'One layer, one frame').

    w_gates:  (4H, I+R) gate-major rows (r = k*H + j, gates i, f, g, o); columns: x (I of them), then yprev (R)
    bias:     (4H,) at `facc` fractional bits
    peephole: (3, H) (i, f, o) at `fp` fractional bits, or None
    w_proj:   (P, H) at `fw_p` fractional bits, or None
    """

    input_size: int
    cell_size: int
    recurrent_size: int
    w_gates: np.ndarray
    fw_x: int
    fw_r: int
    facc: int
    bias: np.ndarray
    peephole: np.ndarray | None = None
    fp: int | None = None
    w_proj: np.ndarray | None = None
    fw_p: int | None = None

    def __post_init__(self):
        h, i, r = self.cell_size, self.input_size, self.recurrent_size
        if min(h, i, r) < 1:
            raise ModelError(f"layer sizes must be >= 1, got input {i}, cells {h}, recurrent {r}")
        set_ = object.__setattr__
        set_(self, "w_gates", _int_array("w_gates", self.w_gates, (4 * h, i + r)))
        set_(self, "bias", _int_array("bias", self.bias, (4 * h,)))
        if (self.peephole is None) != (self.fp is None):
            raise ModelError("peephole and fp must both be given or both be None")
        if self.peephole is not None:
            set_(self, "peephole", _int_array("peephole", self.peephole, (3, h)))
        if (self.w_proj is None) != (self.fw_p is None):
            raise ModelError("w_proj and fw_p must both be given or both be None")
        if self.w_proj is not None:
            set_(self, "w_proj", _int_array("w_proj", self.w_proj, (r, h)))
            if r >= h:
                raise ModelError(f"projection size {r} must be smaller than the cell count {h}")
        elif r != h:
            raise ModelError(f"without a projection the recurrent size must equal the cell count ({r} != {h})")

    @property
    def proj_size(self) -> int | None:
        return None if self.w_proj is None else self.w_proj.shape[0]

    @property
    def has_peephole(self) -> bool:
        return self.peephole is not None

    @property
    def has_projection(self) -> bool:
        return self.w_proj is not None

    @property
    def w_input(self) -> np.ndarray:
        return self.w_gates[:, :self.input_size]

    @property
    def w_recurrent(self) -> np.ndarray:
        return self.w_gates[:, self.input_size:]


@dataclass(frozen=True, eq=False)
class QuantizedModel:
    """A stack of quantised layers plus the numerics they were quantised with (a `fixedpoint.Numerics`)."""

    numerics: object
    layers: tuple[QuantizedLayer, ...]

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise ModelError("a model needs at least one layer")
        for k in range(1, len(layers)):
            if layers[k].input_size != layers[k - 1].recurrent_size:
                raise ModelError(f"layer {k}: input size {layers[k].input_size} does not match layer {k - 1}'s "
                                 f"output size {layers[k - 1].recurrent_size}")
        object.__setattr__(self, "layers", layers)

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def output_size(self) -> int:
        return self.layers[-1].recurrent_size
