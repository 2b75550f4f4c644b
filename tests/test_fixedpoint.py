"""Fixed-point primitives and the sigmoid/tanh tables against docs/numerics.md, written out independently."""

import math

import numpy as np
import pytest

from sparselstm.spec.errors import ParameterError
from sparselstm.sw.fixedpoint import (
    Numerics, activation_tables, align, dequantize_output, narrow, quantize_input, quantize_tensor,
    round_shift, sat, sigmoid_q, table_error, tanh_q, tensor_frac,
)

# ---------------------------------------------------------------------------------------------------------
# Independent scalar definitions (plain Python ints, exact rational arithmetic for the rounding).


def spec_round_shift(v: int, k: int) -> int:
    if k > 0:
        return math.floor((v + 2 ** (k - 1)) / 2 ** k) if abs(v) < 2 ** 50 else (v + 2 ** (k - 1)) // 2 ** k
    return v * 2 ** (-k)


def spec_sat(v: int, bits: int) -> int:
    return min(max(v, -2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def spec_tables(fn: str, n: Numerics) -> tuple[list[int], list[int]]:
    """T and D by the text of docs/numerics.md: float64 math.exp / math.tanh, round half up."""
    s = n.pre_bits - 1 - n.table_log2
    if fn == "sigmoid":
        f = lambda z: 1.0 / (1.0 + math.exp(-z))  # noqa: E731 (z >= 0 here)
    else:
        f = math.tanh
    table = [math.floor(f(k * 2 ** s / 2 ** n.pre_frac) * 2 ** n.unit_frac + 0.5) for k in range(2 ** n.table_log2 + 1)]
    diff = [table[k + 1] - table[k] for k in range(2 ** n.table_log2)] + [0]
    return table, diff


def spec_activation(fn: str, x: int, n: Numerics, tables=None) -> int:
    """sigmoid_q / tanh_q of one pre-activation word, straight from the text of docs/numerics.md."""
    table, diff = tables or spec_tables(fn, n)
    s = n.pre_bits - 1 - n.table_log2
    one = 2 ** n.unit_frac
    a = abs(x)
    k, r = a // 2 ** s, a % 2 ** s
    v = table[k] + (diff[k] * r + (2 ** (s - 1) if s > 0 else 0)) // 2 ** s
    if x >= 0:
        return v
    return one - v if fn == "sigmoid" else -v


# ---------------------------------------------------------------------------------------------------------
# Primitives


def test_round_shift_rounds_half_up_on_both_signs():
    assert round_shift(5, 1) == 3       # 2.5 -> 3
    assert round_shift(-5, 1) == -2     # -2.5 -> -2 (towards +inf, not away from zero)
    assert round_shift(3, 2) == 1       # 0.75 -> 1
    assert round_shift(-3, 2) == -1
    assert round_shift(-2, 2) == 0      # -0.5 -> 0
    assert round_shift(2, 2) == 1       # 0.5 -> 1
    assert round_shift(-6, 2) == -1     # -1.5 -> -1
    assert round_shift(7, 0) == 7
    assert round_shift(-7, -3) == -56
    assert align(100, 4, 6) == 400
    assert align(100, 6, 4) == 25


def test_round_shift_vectorised_matches_scalar_and_object_arrays():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.integers(-2 ** 40, 2 ** 40, 4000), np.arange(-70, 70)])
    for k in [-12, -1, 0, 1, 2, 3, 7, 20, 45, 62, 63, 80]:
        if k < 0:
            source = values >> 20    # keep the left-shifted values inside int64's safe range
        else:
            source = values
        expected = [spec_round_shift(int(v), k) for v in source]
        assert round_shift(source, k).tolist() == expected, k
        assert round_shift(source.astype(object), k).tolist() == expected, k
        assert [round_shift(int(v), k) for v in source[:50]] == expected[:50]


def test_round_shift_refuses_to_overflow_int64():
    with pytest.raises(OverflowError):
        round_shift(np.array([1 << 40]), -30)
    with pytest.raises(OverflowError):
        round_shift(np.array([1 << 62]), 3)
    # Python ints and object arrays have no width limit.
    assert round_shift(1 << 40, -30) == 1 << 70
    assert round_shift(np.array([1 << 40], dtype=object), -30)[0] == 1 << 70


def test_sat_limits_and_vectorised():
    assert sat(32767, 16) == 32767
    assert sat(32768, 16) == 32767
    assert sat(-32768, 16) == -32768
    assert sat(-32769, 16) == -32768
    values = np.arange(-300, 300)
    assert sat(values, 8).tolist() == [spec_sat(int(v), 8) for v in values]
    assert sat(values.astype(object), 8).tolist() == [spec_sat(int(v), 8) for v in values]


def test_narrow_equals_sat_of_align_even_for_huge_left_shifts():
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.integers(-2 ** 45, 2 ** 45, 500), np.arange(-20, 20)])
    for from_frac, to_frac, bits in [(20, 11, 16), (11, 20, 16), (0, 40, 16), (3, 70, 20), (5, 5, 8), (0, 15, 16)]:
        expected = [spec_sat(spec_round_shift(int(v), from_frac - to_frac), bits) for v in values]
        assert narrow(values, from_frac, to_frac, bits).tolist() == expected
        assert narrow(values.astype(object), from_frac, to_frac, bits).tolist() == expected
        assert [narrow(int(v), from_frac, to_frac, bits) for v in values[:30]] == expected[:30]


# ---------------------------------------------------------------------------------------------------------
# Numerics


def test_numerics_defaults_and_round_trip():
    n = Numerics()
    assert (n.weight_bits, n.act_bits, n.act_frac, n.unit_frac, n.cell_bits, n.table_log2) == (12, 16, 11, 14, 20, 10)
    assert n.interp_bits == 5 and n.one == 16384
    assert Numerics.from_dict(n.to_dict()) == n
    other = Numerics(weight_bits=8, pre_frac=10)
    assert Numerics.from_dict(other.to_dict()) == other


@pytest.mark.parametrize("changes, field", [
    (dict(weight_bits=1), "weight_bits"),
    (dict(act_bits=33), "act_bits"),
    (dict(unit_frac=15), "unit_frac"),          # 1.0 not representable in 16 bits
    (dict(act_frac=-1), "act_frac"),
    (dict(act_frac=16), "act_frac"),
    (dict(cell_frac=20), "cell_frac"),
    (dict(pre_frac=16), "pre_frac"),
    (dict(table_log2=16), "table_log2"),       # > pre_bits - 1
    (dict(table_log2=0), "table_log2"),
    (dict(index_bits=0), "index_bits"),
    (dict(peephole_bits=40), "peephole_bits"),
    (dict(weight_bits=12.0), "weight_bits"),
    (dict(weight_bits=True), "weight_bits"),
])
def test_numerics_rejects_bad_fields_naming_them(changes, field):
    with pytest.raises(ParameterError, match=field):
        Numerics(**changes)


def test_numerics_rejects_a_cell_update_wider_than_int64():
    with pytest.raises(ParameterError, match="cell update"):
        Numerics(unit_bits=32, unit_frac=30, cell_bits=32, cell_frac=0)


def test_numerics_from_dict_rejects_unknown_and_missing_keys():
    d = Numerics().to_dict()
    with pytest.raises(ParameterError, match="unknown key.*colour"):
        Numerics.from_dict({**d, "colour": 3})
    del d["cell_frac"]
    with pytest.raises(ParameterError, match="missing key.*cell_frac"):
        Numerics.from_dict(d)
    with pytest.raises(ParameterError, match="mapping"):
        Numerics.from_dict([1, 2])


# ---------------------------------------------------------------------------------------------------------
# Quantising tensors and inputs


def test_tensor_frac_is_the_largest_scale_that_never_saturates():
    rng = np.random.default_rng(3)
    for bits in (4, 8, 12, 16):
        for _ in range(50):
            t = rng.normal(0, 10.0 ** rng.uniform(-4, 3), (7, 5))
            frac = tensor_frac(t, bits)
            q = quantize_tensor(t, frac, bits)            # raises if anything does not fit
            assert np.max(np.abs(q)) <= 2 ** (bits - 1) - 1
            if frac < 40:
                with pytest.raises(ParameterError):      # one more fractional bit would not fit
                    quantize_tensor(np.array([np.max(np.abs(t))]), frac + 1, bits)


def test_tensor_frac_edges():
    assert tensor_frac(np.zeros((3, 3)), 12) == 11
    # max|t| exactly (2**11 - 0.5) * 2**-5 would round up to 2**11 at frac 5: it gets frac 4. Just below, 5.
    t = np.array([(2 ** 11 - 0.5) / 32, -1e-3])
    assert tensor_frac(t, 12) == 4
    assert quantize_tensor(t, 4, 12)[0] == 1024
    below = np.array([np.nextafter((2 ** 11 - 0.5) / 32, 0)])
    assert tensor_frac(below, 12) == 5
    assert quantize_tensor(below, 5, 12)[0] == 2047
    assert tensor_frac(np.array([-(2 ** 11 - 0.5) / 32]), 12) == 4   # symmetric in sign
    assert tensor_frac(np.array([1e-30]), 12) == 40      # clamped
    assert tensor_frac(np.array([5e-324]), 12) == 40     # subnormal: no overflow in the log
    assert tensor_frac(np.array([1e30]), 12) == -16      # clamped; such a tensor then does not fit
    with pytest.raises(ParameterError, match="w_huge.*do not fit"):
        quantize_tensor(np.array([1e30]), -16, 12, name="w_huge")


def test_quantize_input_rounds_and_counts_saturated_words():
    n = Numerics()
    lsb = 2.0 ** -11
    x = np.array([[0.5 * lsb, -0.5 * lsb, 1.5 * lsb, 16.0, -16.0, 100.0, -100.0, 15.9995]])
    x_q, saturated = quantize_input(x, n)
    assert x_q.dtype == np.int64
    assert x_q.tolist() == [[1, 0, 2, 32767, -32768, 32767, -32768, 32767]]
    assert saturated == 3                                  # 16.0, 100.0, -100.0; -16.0 is the lowest word
    assert np.array_equal(dequantize_output(np.array([2048, -1]), n), [1.0, -lsb])
    with pytest.raises(ParameterError, match="non-finite"):
        quantize_input(np.array([np.nan]), n)


# ---------------------------------------------------------------------------------------------------------
# sigmoid_q / tanh_q

TABLE_SETTINGS = [
    Numerics(),                                   # S = 5
    Numerics(table_log2=6, pre_frac=9),           # S = 9, coarse table, wider pre-activation range
    Numerics(pre_bits=12, pre_frac=8, table_log2=11, unit_bits=12, unit_frac=10),  # S = 0: no interpolation
]


@pytest.mark.parametrize("n", TABLE_SETTINGS, ids=["default", "coarse", "no-interp"])
def test_activations_exhaustively_equal_the_spec(n):
    tables = activation_tables(n)
    codes = np.arange(-2 ** (n.pre_bits - 1), 2 ** (n.pre_bits - 1), dtype=np.int64)
    for fn, lookup in (("sigmoid", sigmoid_q), ("tanh", tanh_q)):
        got = lookup(codes, tables, n)
        expected = _spec_all_codes(fn, n)
        assert got.dtype == np.int64
        assert np.array_equal(got, expected), fn


def _spec_all_codes(fn: str, n: Numerics) -> np.ndarray:
    tables = spec_tables(fn, n)
    return np.array([spec_activation(fn, x, n, tables) for x in range(-2 ** (n.pre_bits - 1), 2 ** (n.pre_bits - 1))])


def test_scalar_spec_agrees_with_its_vectorised_form():
    n = Numerics()
    tables = activation_tables(n)
    for x in (-32768, -32767, -1000, -33, -32, -31, -1, 0, 1, 31, 32, 33, 5000, 32767):
        assert sigmoid_q(x, tables, n) == spec_activation("sigmoid", x, n)
        assert tanh_q(x, tables, n) == spec_activation("tanh", x, n)
        assert isinstance(sigmoid_q(x, tables, n), int)


@pytest.mark.parametrize("n", TABLE_SETTINGS, ids=["default", "coarse", "no-interp"])
def test_activation_symmetry_monotonicity_and_range(n):
    tables = activation_tables(n)
    one = n.one
    codes = np.arange(-2 ** (n.pre_bits - 1) + 1, 2 ** (n.pre_bits - 1), dtype=np.int64)
    sig, sig_neg = sigmoid_q(codes, tables, n), sigmoid_q(-codes, tables, n)
    th, th_neg = tanh_q(codes, tables, n), tanh_q(-codes, tables, n)
    assert np.array_equal(sig + sig_neg, np.full_like(sig, one))
    assert np.array_equal(th, -th_neg)
    assert np.all(np.diff(sig) >= 0) and np.all(np.diff(th) >= 0)
    assert sig.min() >= 0 and sig.max() <= one and th.min() >= -one and th.max() <= one
    assert sigmoid_q(0, tables, n) == one // 2 and tanh_q(0, tables, n) == 0
    lowest = -2 ** (n.pre_bits - 1)       # |x| = 2**(pre_bits-1) reads the extra last table entry
    assert sigmoid_q(lowest, tables, n) == one - tables["sigmoid_T"][-1]
    assert tanh_q(lowest, tables, n) == -tables["tanh_T"][-1]


def test_activation_error_against_float_is_about_one_lsb():
    # Measured (numpy 2, default Numerics): sigmoid 6.0933e-05, tanh 6.9748e-05; one unit LSB is 6.1035e-05.
    # Rounding the table (1/2 LSB) plus rounding the interpolation (1/2 LSB) dominates; the interpolation
    # error itself is (1/64)**2 / 8 * max|f''| <= 2e-6 (sigmoid) and 2.4e-5 (tanh).
    error = table_error(Numerics())
    assert error["sigmoid"] <= 6.2e-5
    assert error["tanh"] <= 7.1e-5
    # A coarse table (64 segments of width 1.0 over [0, 64)) is much worse, tanh (larger curvature) most.
    # Measured: sigmoid 1.1658e-02, tanh 8.1759e-02.
    coarse = table_error(Numerics(table_log2=6, pre_frac=9))
    assert 5e-3 < coarse["sigmoid"] <= 1.2e-2
    assert 5e-2 < coarse["tanh"] <= 8.2e-2
    # Without interpolation (S = 0) every code is a table entry: the error is exactly the table's rounding,
    # at most half an LSB (2**-11 here). Measured: 4.8804e-04 and 4.8780e-04.
    exact = table_error(Numerics(pre_bits=12, pre_frac=8, table_log2=11, unit_bits=12, unit_frac=10))
    assert exact["sigmoid"] <= 2.0 ** -11 and exact["tanh"] <= 2.0 ** -11


def test_activation_rejects_words_outside_the_pre_format_and_bad_tables():
    n = Numerics()
    tables = activation_tables(n)
    with pytest.raises(ValueError, match="outside"):
        sigmoid_q(np.array([32768]), tables, n)
    with pytest.raises(ParameterError, match="tanh_D"):
        tanh_q(np.array([0]), {k: v for k, v in tables.items() if k != "tanh_D"}, n)
    with pytest.raises(ParameterError, match="1025"):
        sigmoid_q(np.array([0]), {**tables, "sigmoid_T": tables["sigmoid_T"][:-1]}, n)


def test_tables_are_read_only_and_fit_unit_words():
    n = Numerics()
    tables = activation_tables(n)
    for name, table in tables.items():
        assert table.shape == (1025,) and table.dtype == np.int64
        assert not table.flags.writeable
        assert table.min() >= -2 ** 15 and table.max() < 2 ** 15, name
    assert tables["sigmoid_D"][-1] == 0 and tables["tanh_D"][-1] == 0
    assert np.array_equal(np.diff(tables["tanh_T"]), tables["tanh_D"][:-1])


# ---------------------------------------------------------------------------------------------------------
# The `sparselstm tables` command


def test_tables_command_reports_sizes_and_errors(capsys):
    from sparselstm.cli import main

    assert main(["tables", "--check"]) == 0
    out = capsys.readouterr().out
    assert "1025 signed 16-bit words" in out and "5 interpolation bits" in out
    error = table_error(Numerics())
    assert f"max |sigmoid_q - sigmoid| over all 65536 input words: {error['sigmoid']:.4e}" in out
    assert f"max |tanh_q - tanh| over all 65536 input words: {error['tanh']:.4e}" in out

    assert main(["tables", "--table-log2", "6", "--pre-frac", "9"]) == 0
    out = capsys.readouterr().out
    assert "65 signed 16-bit words" in out and "max |" not in out

    assert main(["tables", "--unit-frac", "15"]) == 1
    assert "unit_frac" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Properties over arbitrary integers (exact rationals as the oracle)

from fractions import Fraction  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(v=st.integers(-2 ** 61, 2 ** 61), from_frac=st.integers(-20, 70), to_frac=st.integers(-20, 70),
       bits=st.integers(2, 40))
def test_narrow_is_round_half_up_then_saturate(v, from_frac, to_frac, bits):
    exact = Fraction(v) * Fraction(2) ** (to_frac - from_frac)
    rounded = math.floor(exact + Fraction(1, 2))
    expected = min(max(rounded, -2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert narrow(v, from_frac, to_frac, bits) == expected
    assert narrow(np.array([v]), from_frac, to_frac, bits).tolist() == [expected]
    assert narrow(np.array([v], dtype=object), from_frac, to_frac, bits).tolist() == [expected]
    if from_frac >= to_frac:        # a right shift never overflows int64, so align itself is exact too
        assert align(np.array([v]), from_frac, to_frac).tolist() == [rounded]
