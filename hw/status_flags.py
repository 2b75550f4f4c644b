"""Status flags that cross the chip: the drains' tests see every flag from flip-flops, some cycles late."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal

__all__ = ["delayed_any"]


def delayed_any(m: Module, flag, cycles: int, name: str):
    """The OR of `flag` over the `cycles` cycles before this one, from a chain of flip-flops (0 if `cycles` is 0)."""
    if cycles < 0:
        raise ValueError(f"cycles must be >= 0, got {cycles}")
    chain = [Signal(name=f"{name}_{k}") for k in range(1, cycles + 1)]
    m.d.sync += [stage.eq(source) for stage, source in zip(chain, [flag, *chain])]
    return Cat(chain).any()
