"""The model of the checker: the expected output words, from sw's bit-exact golden model.

This is the only module of sim/ that imports sw: sim checks the generated Verilog against sw's golden
model and depends on nothing else of sw (see sim/__init__.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..sw.format import load_encoded
from ..sw.golden import golden_forward_encoded

__all__ = ["load_reference_model", "expected_words"]


def load_reference_model(encoded_dir: Path):
    """The encoded model in `encoded_dir` (the golden model's input)."""
    return load_encoded(encoded_dir)


def expected_words(encoded, frames: np.ndarray, sequence_starts: np.ndarray) -> np.ndarray:
    """The golden model's output words (frames, output_size) for input words (frames, input_size)."""
    return golden_forward_encoded(encoded, frames, sequence_starts=sequence_starts)
