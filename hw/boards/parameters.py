"""Checks of the board components' integer parameters, with the errors the constructors raise."""

from __future__ import annotations

__all__ = ["check_int"]


def check_int(name, value, low, high=None):
    """TypeError unless `value` is an int (not a bool), ValueError unless low <= value <= high (None: no bound)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high if high is not None else 'inf'}], got {value}")
