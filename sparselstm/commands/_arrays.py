"""Reading the .npy files the commands take (inputs, sequence starts), with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..spec.errors import ParameterError


def load_npy(path: Path, what: str) -> np.ndarray:
    """One array from a .npy file; `what` names it in errors ("input", "sequence starts")."""
    if not path.is_file():
        raise ParameterError(f"{path}: {what} file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ParameterError(f"{path}: not a readable .npy array ({error})") from None
    if not isinstance(array, np.ndarray):
        raise ParameterError(f"{path}: expected a single .npy array, got an .npz archive")
    return array


def load_numeric_npy(path: Path, what: str) -> np.ndarray:
    """load_npy, and the array must hold real numbers (float or integer)."""
    array = load_npy(path, what)
    if array.dtype.kind not in "fiu":
        raise ParameterError(f"{path}: expected a real-valued numeric array, got dtype {array.dtype}")
    return array
