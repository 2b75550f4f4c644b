"""Fixed-point primitives, number formats and the sigmoid/tanh tables of docs/numerics.md.

The formats themselves (`Numerics`) are defined in `sparselstm.spec.numerics`; this module is the single
implementation of the arithmetic on them (rounding, saturation, the tables) that the quantiser, the encoder
and the golden model use.

Integers are exact everywhere: the primitives accept Python ints, NumPy integer arrays (computed in int64,
with a cheap check that nothing can overflow) and NumPy object arrays of Python ints (arbitrary width, used
by the golden model for layers whose accumulators do not fit int64).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..spec.errors import ParameterError
from ..spec.numerics import FRAC_MAX, FRAC_MIN, INT64_SAFE_BITS as _INT64_SAFE_BITS, TABLE_NAMES, Numerics

# ----------------------------------------------------------------------------------------------------------
# Primitives: round_shift, align, sat (and narrow = sat(align(...)) without intermediate overflow)


def _kind(v) -> str:
    """'int' for a Python/NumPy integer scalar, 'int64' for an integer array, 'object' for Python-int arrays."""
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            return "object"
        if v.dtype.kind in "iu":
            return "int64"
        raise TypeError(f"expected an integer array, got dtype {v.dtype}")
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return "int"
    raise TypeError(f"expected an integer or an integer array, got {type(v).__name__}")


def _as_int64(v: np.ndarray) -> np.ndarray:
    if v.dtype == np.uint64 and v.size and int(v.max()) >= 1 << 63:
        raise OverflowError("uint64 value does not fit int64")
    return v.astype(np.int64, copy=False)


def _check_int64_magnitude(v: np.ndarray, bits: int) -> None:
    """Raise OverflowError unless every |v| < 2**bits (a bug: the caller chose int64 for too wide a value)."""
    if v.size and (int(v.max()) >= 1 << bits or int(v.min()) <= -(1 << bits)):
        raise OverflowError(f"int64 value beyond +-2**{bits}: use an object array of Python ints for this width")


def round_shift(v, k: int):
    """Drop k low bits with round half up (k > 0), or shift left exactly by -k (k < 0). docs/numerics.md.

    Works on ints, integer arrays (result int64) and object arrays of Python ints.
    """
    k = int(k)
    kind = _kind(v)
    if kind == "int64":
        v = _as_int64(v)
        _check_int64_magnitude(v, _INT64_SAFE_BITS)
        if k == 0:
            return v.copy()
        if k > 0:
            if k > _INT64_SAFE_BITS:
                # |v| < 2**62 <= 2**(k-1): every value rounds to 0.
                return np.zeros_like(v)
            return (v + (1 << (k - 1))) >> k
        _check_int64_magnitude(v, max(_INT64_SAFE_BITS + k, 0))
        return v << -k if -k < 64 else np.zeros_like(v)   # only zeros pass the check for shifts >= 62
    if kind == "int":
        v = int(v)
    if k > 0:
        return (v + (1 << (k - 1))) >> k
    if k < 0:
        return v << -k
    return v.copy() if kind == "object" else v


def align(v, from_frac: int, to_frac: int):
    """Move v from from_frac to to_frac fractional bits: round_shift(v, from_frac - to_frac)."""
    return round_shift(v, int(from_frac) - int(to_frac))


def _word_limits(bits: int) -> tuple[int, int]:
    bits = int(bits)
    if bits < 1:
        raise ValueError(f"a signed word needs at least 1 bit, got {bits}")
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def sat(v, bits: int):
    """Saturate v to a signed `bits`-bit word."""
    low, high = _word_limits(bits)
    kind = _kind(v)
    if kind == "int":
        return min(max(int(v), low), high)
    if kind == "int64":
        v = _as_int64(v)
        if bits >= 64:
            return v.copy()
        return np.clip(v, low, high)
    return np.array([min(max(item, low), high) for item in v.flat], dtype=object).reshape(v.shape)


def narrow(v, from_frac: int, to_frac: int, bits: int):
    """sat(align(v, from_frac, to_frac), bits), the one narrowing step of docs/numerics.md.

    Equal to the composition for every input, but never forms a left-shifted value wider than the target
    word: a value that would saturate after the shift is saturated before it. Returns int64 arrays for
    integer-array input, object arrays for object input, ints for ints.
    """
    shift = int(to_frac) - int(from_frac)          # > 0: left shift
    low, high = _word_limits(bits)
    if shift <= 0:
        return sat(align(v, from_frac, to_frac), bits)
    kind = _kind(v)
    if kind == "int64":
        v = _as_int64(v)
        if bits > _INT64_SAFE_BITS:
            raise OverflowError(f"narrow to {bits} bits with a left shift: use Python ints for such widths")
    if shift >= bits - 1:
        # Any non-zero value saturates: |v| * 2**shift >= 2**(bits-1).
        if kind == "int":
            return high if v > 0 else low if v < 0 else 0
        out = np.where(v > 0, high, np.where(v < 0, low, 0))
        return out.astype(np.int64) if kind == "int64" else out.astype(object)
    # |v| >= 2**(bits-1-shift) saturates after the shift, and so does that clipped value: clip first.
    limit = 1 << (bits - 1 - shift)
    if kind == "int":
        return sat(min(max(int(v), -limit), limit) << shift, bits)
    clipped = np.clip(v, -limit, limit)
    return sat(clipped << shift, bits)


def word_range(bits: int) -> tuple[int, int]:
    """(lowest, highest) value of a signed `bits`-bit word."""
    return _word_limits(bits)


# ----------------------------------------------------------------------------------------------------------
# Quantising float tensors (software only)


def tensor_frac(t, bits: int) -> int:
    """Fractional bits of the power-of-two scale for tensor t in a `bits`-bit word (docs/numerics.md).

    The largest f with max|t| * 2**f < 2**(bits-1) - 0.5 (strictly: a value of exactly 2**(bits-1) - 0.5
    would round half up out of the word), clamped to [FRAC_MIN, FRAC_MAX]; bits - 1 for an all-zero tensor.
    """
    array = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ParameterError("tensor_frac: tensor has non-finite values")
    bits = int(bits)
    if bits < 2:
        raise ParameterError(f"tensor_frac: bits must be >= 2, got {bits}")
    peak = float(np.max(np.abs(array))) if array.size else 0.0
    if peak == 0.0:
        return bits - 1
    limit = 2.0 ** (bits - 1) - 0.5
    ratio = limit / peak
    if not math.isfinite(ratio):            # a subnormal peak: any scale we allow fits
        return FRAC_MAX
    frac = math.ceil(math.log2(ratio)) - 1
    # log2 in float may be off by one near exact powers of two; settle it with exact power-of-two products.
    while math.ldexp(peak, frac) >= limit:
        frac -= 1
    while math.ldexp(peak, frac + 1) < limit:
        frac += 1
    return min(max(frac, FRAC_MIN), FRAC_MAX)


def quantize_tensor(t, frac: int, bits: int, name: str = "tensor") -> np.ndarray:
    """q = floor(t * 2**frac + 0.5) as int64; ParameterError if any value does not fit `bits` (never saturates)."""
    array = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"{name}: non-finite value(s)")
    scaled = np.floor(np.ldexp(array, int(frac)) + 0.5)
    low, high = _word_limits(bits)
    outside = (scaled < low) | (scaled > high)
    if np.any(outside):
        raise ParameterError(f"{name}: {int(np.count_nonzero(outside))} value(s) do not fit a {bits}-bit word at "
                             f"{frac} fractional bits (largest |value| {float(np.max(np.abs(array))):.6g})")
    return scaled.astype(np.int64)


def quantize_input(x, numerics: Numerics) -> tuple[np.ndarray, int]:
    """Host-side input quantisation: x_q = sat(floor(x * 2**act_frac + 0.5), act_bits), and how many saturated."""
    array = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ParameterError(f"input: {bad} non-finite value(s) (NaN or Inf)")
    scaled = np.floor(np.ldexp(array, numerics.act_frac) + 0.5)
    low, high = _word_limits(numerics.act_bits)
    saturated = int(np.count_nonzero((scaled < low) | (scaled > high)))
    return np.clip(scaled, low, high).astype(np.int64), saturated


def dequantize_output(y_q, numerics: Numerics) -> np.ndarray:
    """y = y_q / 2**act_frac as float64 (exact: act words have at most 32 bits)."""
    return np.ldexp(np.asarray(y_q, dtype=np.float64), -numerics.act_frac)


# ----------------------------------------------------------------------------------------------------------
# sigmoid_q / tanh_q


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_FUNCTIONS = {"sigmoid": _sigmoid, "tanh": np.tanh}


@functools.lru_cache(maxsize=16)
def _tables_cached(numerics: Numerics) -> tuple[np.ndarray, ...]:
    segments = 1 << numerics.table_log2
    knots = np.ldexp(np.arange(segments + 1, dtype=np.float64), numerics.interp_bits - numerics.pre_frac)
    out = []
    for fn in ("sigmoid", "tanh"):
        table = np.floor(_FUNCTIONS[fn](knots) * numerics.one + 0.5).astype(np.int64)
        diff = np.zeros_like(table)
        diff[:-1] = table[1:] - table[:-1]
        table.flags.writeable = False
        diff.flags.writeable = False
        out += [table, diff]
    return tuple(out)


def activation_tables(numerics: Numerics) -> dict[str, np.ndarray]:
    """The tables T and D of sigmoid and tanh: read-only int64 arrays of 2**table_log2 + 1 entries."""
    if not isinstance(numerics, Numerics):
        raise TypeError(f"numerics: expected a Numerics, got {type(numerics).__name__}")
    return dict(zip(TABLE_NAMES, _tables_cached(numerics)))


def _table_lookup(fn: str, x, tables, numerics: Numerics):
    entries = (1 << numerics.table_log2) + 1
    pair = []
    for suffix in ("T", "D"):
        key = f"{fn}_{suffix}"
        if key not in tables:
            raise ParameterError(f"tables: missing {key!r}")
        table = np.asarray(tables[key])
        if table.shape != (entries,) or table.dtype.kind not in "iu":
            raise ParameterError(f"tables[{key!r}]: expected {entries} integers (table_log2 = "
                                 f"{numerics.table_log2}), got shape {table.shape} dtype {table.dtype}")
        pair.append(table.astype(np.int64, copy=False))
    table, diff = pair
    scalar = _kind(x) == "int"
    words = np.asarray(x)
    low, high = _word_limits(numerics.pre_bits)
    if words.size and (int(words.min()) < low or int(words.max()) > high):
        raise ValueError(f"{fn}_q: pre-activation outside the {numerics.pre_bits}-bit word")
    words = words.astype(np.int64)
    s = numerics.interp_bits
    magnitude = np.abs(words)
    k = magnitude >> s
    r = magnitude & ((1 << s) - 1)
    value = table[k] + ((diff[k] * r + ((1 << (s - 1)) if s > 0 else 0)) >> s)
    if fn == "sigmoid":
        value = np.where(words >= 0, value, numerics.one - value)
    else:
        value = np.where(words >= 0, value, -value)
    return int(value) if scalar else value


def sigmoid_q(x, tables, numerics: Numerics):
    """Fixed-point sigmoid of pre-activation words x (pre format) to unit words (docs/numerics.md)."""
    return _table_lookup("sigmoid", x, tables, numerics)


def tanh_q(x, tables, numerics: Numerics):
    """Fixed-point tanh of pre-activation words x (pre format) to unit words (docs/numerics.md)."""
    return _table_lookup("tanh", x, tables, numerics)


def table_error(numerics: Numerics, tables=None) -> dict[str, float]:
    """Max |sigmoid_q - sigmoid| and |tanh_q - tanh| in real units over every pre-activation word.

    Exhaustive over all 2**pre_bits input codes (in chunks), so it costs O(2**pre_bits).
    """
    tables = activation_tables(numerics) if tables is None else tables
    low, high = _word_limits(numerics.pre_bits)
    worst = {"sigmoid": 0.0, "tanh": 0.0}
    chunk = 1 << 20
    for start in range(low, high + 1, chunk):
        codes = np.arange(start, min(start + chunk, high + 1), dtype=np.int64)
        real = np.ldexp(codes.astype(np.float64), -numerics.pre_frac)
        for fn, lookup in (("sigmoid", sigmoid_q), ("tanh", tanh_q)):
            got = np.ldexp(lookup(codes, tables, numerics).astype(np.float64), -numerics.unit_frac)
            worst[fn] = max(worst[fn], float(np.max(np.abs(got - _FUNCTIONS[fn](real)))))
    return worst
