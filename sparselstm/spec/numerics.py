"""The number formats of docs/numerics.md: every width and fractional-bit count of the datapath.

The one definition of the formats: the quantiser, the encoder, the golden model and the hardware generator
all take their widths from a `Numerics`. The arithmetic on these formats (rounding, saturation, the
sigmoid/tanh tables) is implemented once, in `sparselstm.sw.fixedpoint`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError

__all__ = ["Numerics", "GateAlignment", "signed_bits_for", "TABLE_NAMES", "FRAC_MIN", "FRAC_MAX",
           "INT64_SAFE_BITS"]

# int64 values handled by the primitives stay strictly inside +-2**62, so adding a rounding constant or
# another such value can never wrap.
INT64_SAFE_BITS = 62

# Power-of-two scales are clamped to this range of fractional bits (docs/numerics.md).
FRAC_MIN, FRAC_MAX = -16, 40

TABLE_NAMES = ("sigmoid_T", "sigmoid_D", "tanh_T", "tanh_D")


@dataclass(frozen=True)
class Numerics:
    """Every width and fractional-bit count of the datapath (docs/numerics.md, 'Parameters')."""

    weight_bits: int = 12
    index_bits: int = 4
    act_bits: int = 16
    act_frac: int = 11
    unit_bits: int = 16
    unit_frac: int = 14
    cell_bits: int = 20
    cell_frac: int = 14
    pre_bits: int = 16
    pre_frac: int = 11
    peephole_bits: int = 16
    table_log2: int = 10

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ParameterError(f"Numerics.{field.name}: expected an integer, got {value!r}")
            object.__setattr__(self, field.name, int(value))
        for name in ("weight_bits", "act_bits", "unit_bits", "cell_bits", "pre_bits", "peephole_bits"):
            self._check_range(name, 2, 32, "a word width")
        self._check_range("index_bits", 1, 16, "the relative row index width")
        self._check_range("act_frac", 0, self.act_bits - 1, "act_bits - 1")
        # 1.0 (a gate fully open) must be representable: ONE = 2**unit_frac <= 2**(unit_bits-1) - 1.
        self._check_range("unit_frac", 0, self.unit_bits - 2, "unit_bits - 2, so that 1.0 is representable")
        self._check_range("cell_frac", 0, self.cell_bits - 1, "cell_bits - 1")
        self._check_range("pre_frac", 0, self.pre_bits - 1, "pre_bits - 1")
        # S = pre_bits - 1 - table_log2 >= 0 interpolation bits; 2**16 + 1 entries is the largest sane ROM.
        self._check_range("table_log2", 1, min(self.pre_bits - 1, 16), "min(pre_bits - 1, 16)")
        cell_sum = self.cell_sum_bound()
        if cell_sum >= 1 << INT64_SAFE_BITS:
            raise ParameterError(
                f"Numerics: the cell update's intermediate sum needs {cell_sum.bit_length() + 1} bits with "
                f"unit_bits={self.unit_bits}, unit_frac={self.unit_frac}, cell_bits={self.cell_bits}, "
                f"cell_frac={self.cell_frac}; at most {INT64_SAFE_BITS + 1} are supported "
                f"(narrow the cell word or bring unit_frac and cell_frac closer)")

    def _check_range(self, name: str, low: int, high: int, why: str) -> None:
        value = getattr(self, name)
        if not low <= value <= high:
            raise ParameterError(f"Numerics.{name} = {value}: must be in [{low}, {high}] ({why})")

    @property
    def one(self) -> int:
        """The unit word of 1.0 (gate fully open): 2**unit_frac."""
        return 1 << self.unit_frac

    @property
    def interp_bits(self) -> int:
        """S: the low bits of |pre-activation| that the tables interpolate over."""
        return self.pre_bits - 1 - self.table_log2

    @property
    def cell_sum_frac(self) -> int:
        """FS = max(unit_frac + cell_frac, 2*unit_frac): fractional bits of the cell update's sum."""
        return max(self.unit_frac + self.cell_frac, 2 * self.unit_frac)

    def cell_sum_bound(self) -> int:
        """The largest |s| of the cell update (gates are within [-ONE, ONE], |cprev| <= 2**(cell_bits-1))."""
        fs = self.cell_sum_frac
        one = self.one
        return (one << (self.cell_bits - 1) << (fs - self.unit_frac - self.cell_frac)) + \
            (one * one << (fs - 2 * self.unit_frac))

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d) -> "Numerics":
        """The inverse of to_dict; every field must be present and no other key (a manifest is exact)."""
        if not isinstance(d, dict):
            raise ParameterError(f"numerics: expected a mapping of field names to integers, got {type(d).__name__}")
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        missing = [name for name in names if name not in d]
        if unknown:
            raise ParameterError(f"numerics: unknown key(s) {unknown}; expected exactly {names}")
        if missing:
            raise ParameterError(f"numerics: missing key(s) {missing}; expected exactly {names}")
        return cls(**d)


def signed_bits_for(bound: int) -> int:
    """The width of the smallest two's-complement word that holds every integer in [-bound, bound]."""
    bound = int(bound)
    if bound < 0:
        raise ValueError("bound must be >= 0")
    return max(2, bound.bit_length() + 1)


class GateAlignment:
    """The product alignment of a layer's gate matrix (docs/numerics.md, step 1), from its `fw_x`, `fw_r`."""

    fw_x: int
    fw_r: int

    @property
    def fw(self) -> int:
        """FW = max(fw_x, fw_r): the gate products are aligned to this many weight fractional bits."""
        return max(self.fw_x, self.fw_r)

    @property
    def shift_x(self) -> int:
        """Left shift applied to every input-side product (FW - fw_x)."""
        return self.fw - self.fw_x

    @property
    def shift_r(self) -> int:
        """Left shift applied to every recurrent-side product (FW - fw_r)."""
        return self.fw - self.fw_r
