"""quantize_model's scale choices and accumulator_bits' bounds."""

import numpy as np
import pytest

from sparselstm.spec.errors import ParameterError
from sparselstm.sw.fixedpoint import Numerics, tensor_frac
from sparselstm.sw.golden import golden_trace
from sparselstm.sw.model import LSTMPModel, random_model
from sparselstm.sw.quantize import accumulator_bits, accumulator_bounds, quantize_model
from sparselstm.sw.quantized import QuantizedLayer, QuantizedModel


def _fits(q: np.ndarray, bits: int) -> bool:
    return q.min() >= -2 ** (bits - 1) and q.max() <= 2 ** (bits - 1) - 1


def _one_more_bit_overflows(t: np.ndarray, frac: int, bits: int) -> bool:
    return np.max(np.floor(np.abs(t) * 2.0 ** (frac + 1) + 0.5)) > 2 ** (bits - 1) - 1


@pytest.mark.parametrize("weight_bits", [12, 8, 4])
def test_scales_are_per_hardware_matrix_and_never_saturate(weight_bits):
    rng = np.random.default_rng(weight_bits)
    n = Numerics(weight_bits=weight_bits)
    for seed in range(6):
        scale = 10.0 ** rng.uniform(-3, 1)
        model = random_model(5, 7, 3 if seed % 2 else None, num_layers=2, peephole=seed % 3 != 0, seed=seed,
                             scale=scale)
        qmodel = quantize_model(model, n)
        assert qmodel.numerics is n
        for layer, q in zip(model.layers, qmodel.layers):
            for float_matrix, words, frac, bits in [
                (layer.w_input, q.w_input, q.fw_x, weight_bits),
                (layer.w_recurrent, q.w_recurrent, q.fw_r, weight_bits),
                (layer.w_proj, q.w_proj, q.fw_p, weight_bits),
                (layer.peephole, q.peephole, q.fp, n.peephole_bits),
            ]:
                if float_matrix is None:
                    assert words is None and frac is None
                    continue
                assert frac == tensor_frac(float_matrix, bits)
                assert _fits(words, bits)
                assert _one_more_bit_overflows(float_matrix, frac, bits)       # the finest scale that fits
                # Round half up: every word is within half an LSB of the float value.
                assert np.max(np.abs(words * 2.0 ** -frac - float_matrix)) <= 2.0 ** (-frac - 1)
            assert q.facc == n.act_frac + max(q.fw_x, q.fw_r)
            assert np.array_equal(q.bias, np.floor(layer.bias * 2.0 ** q.facc + 0.5))


def test_all_zero_matrix_gets_bits_minus_one_and_stays_zero():
    model = random_model(4, 6, seed=2)
    layer = model.layers[0]
    zeroed = LSTMPModel((layer.replace(w_recurrent=np.zeros_like(layer.w_recurrent)),))
    q = quantize_model(zeroed).layers[0]
    assert q.fw_r == 11 and not np.any(q.w_recurrent)
    assert q.fw_x == tensor_frac(layer.w_input, 12)
    assert q.facc == 11 + max(q.fw_x, 11)


def test_quantize_model_rejects_bad_arguments_and_unrepresentable_values():
    model = random_model(3, 4, seed=0)
    with pytest.raises(TypeError, match="LSTMPModel"):
        quantize_model("model.npz")
    with pytest.raises(TypeError, match="Numerics"):
        quantize_model(model, {"weight_bits": 8})
    layer = model.layers[0]
    huge_bias = LSTMPModel((layer.replace(bias=np.full_like(layer.bias, 1e20)),))
    with pytest.raises(ParameterError, match="layer 0 bias"):
        quantize_model(huge_bias)
    huge_weight = LSTMPModel((layer.replace(w_input=np.full_like(layer.w_input, 1e12)),))
    with pytest.raises(ParameterError, match="layer 0 input weights"):
        quantize_model(huge_weight)


# ---------------------------------------------------------------------------------------------------------
# Accumulator bounds


def _exact_gate_extremes(q: QuantizedLayer, n: Numerics) -> int:
    """max over rows and over every input/recurrent/cell word of |acc + peep| (independent, plain ints)."""
    lo, hi = -2 ** (n.act_bits - 1), 2 ** (n.act_bits - 1) - 1
    c_lo, c_hi = -2 ** (n.cell_bits - 1), 2 ** (n.cell_bits - 1) - 1
    h = q.cell_size
    worst = 0
    for r in range(4 * h):
        top = bottom = int(q.bias[r])
        for col, w in enumerate(q.w_gates[r].tolist()):
            shift = q.shift_x if col < q.input_size else q.shift_r
            top += max(w * lo, w * hi) * 2 ** shift
            bottom += min(w * lo, w * hi) * 2 ** shift
        gate, j = divmod(r, h)
        if q.peephole is not None and gate != 2:
            p = int(q.peephole[{0: 0, 1: 1, 3: 2}[gate]][j])
            k = q.fp + n.cell_frac - q.facc
            terms = [(p * c + 2 ** (k - 1)) // 2 ** k if k > 0 else p * c * 2 ** -k for c in (c_lo, c_hi)]
            top += max(terms)
            bottom += min(terms)
        worst = max(worst, abs(top), abs(bottom))
    return worst


@pytest.mark.parametrize("proj, peephole", [(None, False), (3, True), (None, True)])
def test_gate_bound_covers_the_exact_worst_case(proj, peephole):
    n = Numerics()
    for seed in range(4):
        q = quantize_model(random_model(6, 5, proj, peephole=peephole, seed=seed, scale=0.7), n).layers[0]
        bound, proj_bound = accumulator_bounds(q, n)
        exact = _exact_gate_extremes(q, n)
        rounding = 2 ** (q.facc - n.pre_frac - 1)
        assert exact + rounding <= bound
        # Tight: the bound only takes 2**(act_bits-1) where the positive extreme is one less, and rounds peepholes up.
        slack = int(np.abs(q.w_gates).sum(axis=1).max()) * 2 ** max(q.shift_x, q.shift_r) + 2
        assert bound - exact - rounding <= slack
        gate_bits, proj_bits = accumulator_bits(q, n)
        assert bound < 2 ** (gate_bits - 1) and (gate_bits == 2 or bound >= 2 ** (gate_bits - 2))
        assert (proj_bits is None) == (proj is None)
        if proj is not None:
            assert proj_bound == int(np.abs(q.w_proj).sum(axis=1).max()) * 2 ** 15 + \
                (2 ** (q.fw_p + n.unit_frac - n.act_frac - 1) if q.fw_p + n.unit_frac > n.act_frac else 0)
            assert proj_bound < 2 ** (proj_bits - 1)


def test_the_golden_accumulator_reaches_the_bound_on_worst_case_inputs():
    # One row's worst case, run through the golden model: the accumulator it reports equals the independent
    # extreme and stays within the bound.
    n = Numerics()
    q = quantize_model(random_model(8, 4, peephole=False, seed=5, scale=0.9), n).layers[0]
    q = QuantizedLayer(input_size=8, cell_size=4, recurrent_size=4, w_gates=np.concatenate(
        [q.w_input, np.zeros_like(q.w_recurrent)], axis=1), fw_x=q.fw_x, fw_r=q.fw_r, facc=q.facc, bias=q.bias)
    bound, _ = accumulator_bounds(q, n)
    row = int(np.argmax(np.abs(q.w_input).sum(axis=1)))
    x = np.where(q.w_input[row] < 0, -2 ** 15, 2 ** 15 - 1)[np.newaxis]
    acc = int(golden_trace(QuantizedModel(n, (q,)), x)[0][0]["acc"][row])
    expected = sum(int(w) * int(v) * 2 ** q.shift_x for w, v in zip(q.w_input[row], x[0])) + int(q.bias[row])
    assert acc == expected
    assert abs(acc) <= bound and abs(acc) > bound // 2


def test_peephole_term_is_in_the_bound():
    n = Numerics()
    peephole = np.zeros((3, 2), dtype=np.int64)
    peephole[1, 1] = -2 ** 15
    q = QuantizedLayer(input_size=1, cell_size=2, recurrent_size=2, w_gates=np.zeros((8, 3), dtype=np.int64),
                       fw_x=12, fw_r=12, facc=23, bias=np.zeros(8, dtype=np.int64), peephole=peephole, fp=15)
    bound, _ = accumulator_bounds(q, n)
    # |p * c| <= 2**15 * 2**19 at fp + cell_frac = 29 fractional bits, aligned to FACC = 23: 2**28; plus the
    # rounding constant of the narrowing from 23 to pre_frac 11: 2**11.
    assert bound == 2 ** 28 + 2 ** 11
    assert accumulator_bits(q, n) == (30, None)
