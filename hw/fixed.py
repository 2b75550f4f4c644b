"""docs/numerics.md's rounding and saturation as Amaranth expressions, for constant shifts.

The one hardware form of `round_shift` and `sat`; the software form is sw/fixedpoint.py. Both are checked
against each other through the units that use them (tests/test_hw_elementwise.py, tests/test_hw_accelerator.py).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed

__all__ = ["round_shift", "saturate", "round_shift_saturate", "round_shift_saturate_parts",
           "saturated"]


def round_shift(value, k: int):
    """round_shift of docs/numerics.md: round half up and drop k bits (k > 0), or shift left (k < 0).

    Exact: the result is as wide as it needs to be (>> of a signed value is arithmetic, and the rounding
    constant's addition widens the value by one bit)."""
    if k > 0:
        return (value + (1 << (k - 1))) >> k
    if k < 0:
        return value << -k
    return value


def saturate(value, bits: int):
    """sat(value, bits): clamp a signed value into a `bits`-wide word (assign it to a signed(bits) signal)."""
    shape = value.shape()
    if shape.signed and shape.width <= bits:
        return value
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(value > high, high, Mux(value < low, low, value))


def round_shift_saturate_parts(value, shift: int, bits: int):
    """(rounded, over, under) of `sat(round_shift(value, shift), bits)`: the result is `high` if over, `low` if
    under, else `rounded` (its low `bits` bits), for a caller that registers the parts before choosing. The
    tests compare the unrounded value, as round_shift_saturate's, so they work beside the rounding adder."""
    value = value.as_signed()
    rounded = round_shift(value, shift)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if shift <= 0:
        return rounded, rounded > high, rounded < low
    half = 1 << (shift - 1)
    return rounded, value >= ((high + 1) << shift) - half, value < (low << shift) - half


def saturated(rounded, over, under, bits: int):
    """The result of round_shift_saturate_parts' parts: `high` if over, `low` if under, else `rounded`."""
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(over, high, Mux(under, low, rounded))


def round_shift_saturate(m: Module, value, shift: int, bits: int) -> Signal:
    """`sat(round_shift(value, shift), bits)` of a Value for a constant `shift`, as a signed(bits) Signal
    driven in `m`'s comb domain (numerics.md's `sat(align(...))`).

    For a right shift the limits are compared with the unrounded value (`round_shift(v, k) > high` exactly
    when `v >= ((high + 1) << k) - h`, `< low` when `v < (low << k) - h`, h the rounding constant), so the
    comparators work beside the rounding adder instead of after it: one carry chain deep, not two."""
    rounded, over, under = round_shift_saturate_parts(value, shift, bits)
    result = Signal(signed(bits))
    if shift <= 0 or rounded.shape().width <= bits:
        m.d.comb += result.eq(saturate(rounded, bits))
    else:
        m.d.comb += result.eq(saturated(rounded, over, under, bits))
    return result
