"""Frames on the DUT's streams (docs/verification.md, protocol): input frames packed into payload words
with `first` marking a sequence start, output words assembled into frames closed by `last`. Plain Python;
the stream driver and monitor of sim/streams.py move the words.
"""

from __future__ import annotations

import random

import numpy as np

from .dut import PayloadField

__all__ = ["pack_frames", "FrameAssembler", "interleave_order"]

_MAX_ERRORS = 20                          # keep the report readable when every frame is wrong


def interleave_order(leading: tuple, streams: int) -> np.ndarray:
    """The order in which a design with `streams` interleaved streams takes the frames of sequences laid
    out back to back with shape `leading` ((B, T), B a multiple of `streams`): sequences b = g * streams + s
    (s = 0 .. streams-1) run together, frame t of each in turn. Returns the flat frame indices in input
    order; `outputs[order] = received` puts the received frames back."""
    if len(leading) != 2 or leading[0] % streams:
        raise ValueError(f"{streams} interleaved streams need (B, T, I) input with B a multiple of {streams}, "
                         f"got frames of shape {tuple(leading)}")
    sequences, length = leading
    index = np.arange(sequences * length).reshape(sequences // streams, streams, length)
    return index.transpose(0, 2, 1).reshape(-1)


def pack_frames(frames: np.ndarray, starts: np.ndarray, value: PayloadField, first: PayloadField,
                noise: random.Random | None = None) -> list[list[int]]:
    """The payload words of each input frame: `value` per word, `first` on the first word of a frame that
    starts a sequence. With `noise`, `first` is also set at random (probability 1/2, drawn from `noise`)
    on the other words of every frame, where the protocol says it is ignored."""
    packed = []
    for t, frame in enumerate(frames):
        words = [value.encode(v) for v in frame]
        if starts[t]:
            words[0] |= first.encode(1)
        if noise is not None:
            for k in range(1, len(words)):
                if noise.random() < 0.5:
                    words[k] |= first.encode(1)
        packed.append(words)
    return packed


class FrameAssembler:
    """Collects output words into frames of `frame_size` words closed by `last`, reporting protocol errors.

    A frame ends at the word with `last` set or at its `frame_size`-th word, whichever comes first; a
    frame whose `last` comes early or late is an error naming the frame and the word, and is padded with
    zeros (or cut) to `frame_size` words for the checker.

    Parameters
    ----------
    value, last : PayloadField
        The output payload's fields.
    frame_size : int
        Words per output frame, >= 1.
    on_frame : callable
        Called as `on_frame(frame_index, words)` with each completed frame (int64 array).

    Attributes
    ----------
    frames : list of numpy.ndarray
        The completed frames, in order.
    words : int
        Every word taken so far.
    errors : list of str
        Protocol errors (the first 20).
    """

    def __init__(self, value: PayloadField, last: PayloadField, frame_size: int, on_frame):
        if frame_size < 1:
            raise ValueError(f"frame_size must be >= 1, got {frame_size}")
        self._value, self._last, self._size = value, last, frame_size
        self._on_frame = on_frame
        self._current: list[int] = []
        self.frames: list[np.ndarray] = []
        self.words = 0
        self.errors: list[str] = []

    @property
    def partial_words(self) -> int:
        """Words of a frame not yet closed."""
        return len(self._current)

    def error(self, message: str) -> None:
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(message)

    def add_unknown(self, bits: str) -> None:
        """Take a word whose payload has X or Z bits (`bits` as the simulator shows it): an error, read as 0."""
        self.error(f"frame {len(self.frames)}, element {len(self._current)}: output payload has "
                   f"X/Z bits ({bits}) while valid")
        self.add(0)

    def add_frame(self, words: np.ndarray) -> bool:
        """Take `frame_size` payload words at once if they are exactly one well-formed frame (no partial
        frame pending, `last` on the final word only): what `add` per word would do, faster. Returns False,
        taking nothing, otherwise."""
        words = np.asarray(words, dtype=np.int64)
        if self._current or len(words) != self._size:
            return False
        last = (words >> self._last.offset) & ((1 << self._last.width) - 1)
        if last[-1] != 1 or last[:-1].any():
            return False
        values = (words >> self._value.offset) & ((1 << self._value.width) - 1)
        if self._value.signed:
            values = np.where(values >> (self._value.width - 1), values - (1 << self._value.width), values)
        self.words += self._size
        frame_index = len(self.frames)
        self.frames.append(values)
        self._on_frame(frame_index, values)
        return True

    def add(self, word: int) -> None:
        """Take one payload word."""
        self.words += 1
        self._current.append(self._value.decode(word))
        last = self._last.decode(word) == 1
        if not last and len(self._current) < self._size:
            return
        frame_index = len(self.frames)
        if not last:
            self.error(f"frame {frame_index}: `last` not set on word {self._size - 1} "
                       f"(output_size {self._size})")
        elif len(self._current) != self._size:
            self.error(f"frame {frame_index}: `last` set on word {len(self._current) - 1}, expected on word "
                       f"{self._size - 1} (output_size {self._size})")
        words = np.zeros(self._size, dtype=np.int64)
        received = self._current[:self._size]
        words[:len(received)] = received
        self._current = []
        self.frames.append(words)
        self._on_frame(frame_index, words)
