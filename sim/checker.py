"""The checker: received output frames against the model's expected words, in order. Plain Python."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Mismatch", "FrameChecker"]


@dataclass
class Mismatch:
    """One output word that differs from the expected one: its frame and position in the frame."""

    frame: int
    element: int
    expected: int
    got: int

    def __str__(self) -> str:
        return f"frame {self.frame}, element {self.element}: expected {self.expected}, got {self.got}"


@dataclass
class FrameChecker:
    """Compares received frames in order against the expected words; keeps the first mismatch, counts all.

    Parameters
    ----------
    expected : numpy.ndarray
        The expected words, (frames, words per frame).
    first_frame : int
        The index in the whole run of expected frame 0: mismatches are named by it.

    Attributes
    ----------
    mismatches, mismatching_frames, frames_checked : int
        Mismatching words, frames with at least one, frames compared.
    first_mismatch : Mismatch or None
    unexpected_frames : int
        Frames received beyond the expected ones (not compared).
    """

    expected: np.ndarray
    first_frame: int = 0
    mismatches: int = 0
    mismatching_frames: int = 0
    first_mismatch: Mismatch | None = None
    frames_checked: int = 0
    unexpected_frames: int = 0

    def check(self, frame_index: int, words: np.ndarray) -> int:
        """Check one received frame; return its number of mismatching words."""
        if frame_index >= len(self.expected):
            self.unexpected_frames += 1
            return 0
        expected = self.expected[frame_index]
        differs = np.flatnonzero(np.asarray(words, dtype=np.int64) != expected)
        self.frames_checked += 1
        if differs.size:
            self.mismatches += int(differs.size)
            self.mismatching_frames += 1
            if self.first_mismatch is None:
                k = int(differs[0])
                self.first_mismatch = Mismatch(self.first_frame + frame_index, k, int(expected[k]), int(words[k]))
        return int(differs.size)

    def summary(self) -> str:
        if self.first_mismatch is None:
            return f"{self.frames_checked} frame(s) match"
        return (f"first mismatch at {self.first_mismatch}; {self.mismatches} mismatching word(s) in "
                f"{self.mismatching_frames} of {self.frames_checked} frame(s)")
