"""Float model -> quantised model (docs/numerics.md, 'Quantising a tensor' and 'Accumulators').

Scales are powers of two chosen per matrix as the hardware multiplies it, per layer: W_x (all four gates),
W_r (all four gates), W_p, and the three peephole vectors together. Biases are quantised at the gate
accumulator's own precision FACC, so adding them is exact.
"""

from __future__ import annotations

import numpy as np

from .fixedpoint import Numerics, quantize_tensor, round_shift, tensor_frac
from .model import LSTMPLayer, LSTMPModel
from ..spec.numerics import signed_bits_for
from .quantized import QuantizedLayer, QuantizedModel

# Biases have no word of their own (they live in the accumulator); refuse ones no sane accumulator holds.
_BIAS_LIMIT_BITS = 63


def quantize_model(model: LSTMPModel, numerics: Numerics = Numerics()) -> QuantizedModel:
    """Quantise every layer of `model` with `numerics`; the result is what the encoder encodes."""
    if not isinstance(model, LSTMPModel):
        raise TypeError(f"model: expected an LSTMPModel, got {type(model).__name__}")
    if not isinstance(numerics, Numerics):
        raise TypeError(f"numerics: expected a Numerics, got {type(numerics).__name__}")
    return QuantizedModel(numerics, tuple(_quantize_layer(layer, k, numerics)
                                          for k, layer in enumerate(model.layers)))


def _quantize_layer(layer: LSTMPLayer, index: int, n: Numerics) -> QuantizedLayer:
    name = f"layer {index}"
    fw_x = tensor_frac(layer.w_input, n.weight_bits)
    fw_r = tensor_frac(layer.w_recurrent, n.weight_bits)
    facc = n.act_frac + max(fw_x, fw_r)
    w_gates = np.concatenate([
        quantize_tensor(layer.w_input, fw_x, n.weight_bits, name=f"{name} input weights"),
        quantize_tensor(layer.w_recurrent, fw_r, n.weight_bits, name=f"{name} recurrent weights"),
    ], axis=1)
    bias = quantize_tensor(layer.bias, facc, _BIAS_LIMIT_BITS, name=f"{name} bias (at {facc} fractional bits)")
    peephole = fp = None
    if layer.peephole is not None:
        fp = tensor_frac(layer.peephole, n.peephole_bits)
        peephole = quantize_tensor(layer.peephole, fp, n.peephole_bits, name=f"{name} peepholes")
    w_proj = fw_p = None
    if layer.w_proj is not None:
        fw_p = tensor_frac(layer.w_proj, n.weight_bits)
        w_proj = quantize_tensor(layer.w_proj, fw_p, n.weight_bits, name=f"{name} projection")
    return QuantizedLayer(
        input_size=layer.input_size, cell_size=layer.cell_size, recurrent_size=layer.recurrent_size,
        w_gates=w_gates, fw_x=fw_x, fw_r=fw_r, facc=facc, bias=bias,
        peephole=peephole, fp=fp, w_proj=w_proj, fw_p=fw_p,
    )


def _abs_row_sums(matrix: np.ndarray) -> list[int]:
    # |w| <= 2**31 and at most a few million columns: the int64 row sums cannot overflow.
    return [int(v) for v in np.abs(matrix.astype(np.int64)).sum(axis=1)]


def accumulator_bounds(qlayer: QuantizedLayer, numerics: Numerics) -> tuple[int, int | None]:
    """(gate bound, projection bound or None): the largest |value| each accumulator can ever hold, as ints.

    Gate row r: sum_c |Wx_q| 2**(FW-fw_x) + sum_c |Wr_q| 2**(FW-fw_r), times the largest |activation|
    2**(act_bits-1), plus |b_q[r]|, plus the largest |peephole term| of that row (gates i, f, o), plus the
    rounding constant 2**(k-1) of the narrowing to pre_frac when it drops k > 0 bits, so that a hardware
    accumulator may add that constant too. Projection row: sum_j |Wp_q| * 2**(unit_bits-1) plus its
    narrowing's rounding constant. Exact Python ints: the bound may exceed int64 for extreme scales.
    """
    n = numerics
    h = qlayer.cell_size
    largest_act = 1 << (n.act_bits - 1)
    sums_x = _abs_row_sums(qlayer.w_input)
    sums_r = _abs_row_sums(qlayer.w_recurrent)
    bias = [abs(int(b)) for b in qlayer.bias]
    peep_rows = [0] * (4 * h)
    if qlayer.peephole is not None:
        shift = qlayer.fp + n.cell_frac - qlayer.facc
        largest_cell = 1 << (n.cell_bits - 1)
        # Peephole row k' (i, f, o) feeds gate rows i, f, o (gate indices 0, 1, 3).
        for peep_row, gate in zip(range(3), (0, 1, 3)):
            for j, p in enumerate(qlayer.peephole[peep_row]):
                # |round_shift(v, k)| <= round_shift(|v|, k) for every v, so the largest |v| bounds it.
                peep_rows[gate * h + j] = round_shift(abs(int(p)) * largest_cell, shift)
    pre_drop = qlayer.facc - n.pre_frac
    gate_rounding = (1 << (pre_drop - 1)) if pre_drop > 0 else 0
    gate_bound = max(((sx << qlayer.shift_x) + (sr << qlayer.shift_r)) * largest_act + b + p
                     for sx, sr, b, p in zip(sums_x, sums_r, bias, peep_rows)) + gate_rounding
    proj_bound = None
    if qlayer.w_proj is not None:
        proj_drop = qlayer.fw_p + n.unit_frac - n.act_frac
        proj_rounding = (1 << (proj_drop - 1)) if proj_drop > 0 else 0
        proj_bound = max(_abs_row_sums(qlayer.w_proj)) * (1 << (n.unit_bits - 1)) + proj_rounding
    return gate_bound, proj_bound


def accumulator_bits(qlayer: QuantizedLayer, numerics: Numerics) -> tuple[int, int | None]:
    """(gate_acc_bits, proj_acc_bits or None): signed widths that hold accumulator_bounds (docs/numerics.md)."""
    gate_bound, proj_bound = accumulator_bounds(qlayer, numerics)
    return signed_bits_for(gate_bound), (None if proj_bound is None else signed_bits_for(proj_bound))
