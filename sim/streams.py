"""A valid/ready stream driver and monitor for cocotb, with pause generators (in the manner of
cocotbext-axi's `set_pause_generator`). They move payload words and know nothing of frames or models.

A pause generator is any iterator of booleans, one drawn per decision: `random_pauses(p, rng)` for seeded
random stalls, `itertools.cycle([True, False, False])` for a fixed pattern, None for no stalls.

Timing discipline (the same on Icarus and Verilator): drive right after a rising edge, sample in the
ReadOnly phase of the same cycle (the settled values of both sides of the handshake), and count a
transfer at the next rising edge when `valid & ready` was seen. Values read right after RisingEdge differ
between simulators (Verilator shows post-edge values), so they never decide a handshake. Idle cycles (a
word refused, no word offered) are slept through on the other side's `ready`/`valid` edge, not polled:
that trigger is armed in the ReadOnly phase, before the next clock edge, the only time either can rise.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["random_pauses", "is_high", "StreamDriver", "StreamMonitor"]


def random_pauses(probability: float, rng: random.Random) -> Iterator[bool]:
    """Endless pauses, each True with `probability` (drawn from `rng`); no draws at all when it is 0."""
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"pause probability must be in [0, 1), got {probability}")
    if probability == 0.0:
        return itertools.repeat(False)
    return (rng.random() < probability for _ in itertools.count())


def is_high(handle) -> bool:
    """The signal reads 1 (not 0, X or Z)."""
    value = handle.value
    return value.is_resolvable and int(value) == 1


class StreamDriver:
    """Offers payload words on a valid/ready stream, one at a time.

    Before each word, `valid` is held low for one cycle per True drawn from the pause generator (until it
    yields False); then the word is offered until the DUT takes it.

    Parameters
    ----------
    clock, valid, ready, payload : cocotb handles
        The clock and the stream's ports (`ready` is the DUT's output).
    pauses : iterator of bool, optional
        The pause generator; None: no pauses.
    """

    def __init__(self, clock, valid, ready, payload, pauses: Iterator[bool] | None = None):
        self._valid, self._ready, self._payload = valid, ready, payload
        self._rising, self._read_only = RisingEdge(clock), ReadOnly()
        self._ready_rises = RisingEdge(ready)
        self.set_pause_generator(pauses)

    def set_pause_generator(self, pauses: Iterator[bool] | None = None) -> None:
        self._pauses = pauses if pauses is not None else itertools.repeat(False)

    def idle(self) -> None:
        """Offer nothing (and drive the payload to 0 rather than leave it undriven)."""
        self._valid.value = 0
        self._payload.value = 0

    async def send(self, word: int) -> None:
        """Offer `word`; return right after the rising edge that moves it (`valid` is left high)."""
        while next(self._pauses):
            self._valid.value = 0
            await self._rising
        self._payload.value = word
        self._valid.value = 1
        while True:
            await self._read_only
            if is_high(self._ready):
                await self._rising
                return
            await self._ready_rises


class StreamMonitor:
    """Takes the words a DUT sends on a valid/ready stream, driving its `ready`.

    In each cycle in which a word is offered (and at each wake-up after an idle spell) one pause is drawn:
    True holds `ready` low for that cycle. `ready` keeps its last value while nothing is offered. Each
    word moved on a rising edge with `valid & ready` is handed to `on_word` with its payload as sampled
    (a cocotb LogicArray, which may hold X or Z bits).

    Parameters
    ----------
    clock, valid, ready, payload : cocotb handles
        The clock and the stream's ports (`ready` is the DUT's input).
    on_word : callable
        Called as `on_word(payload_bits)` right after the edge that moves the word.
    pauses : iterator of bool, optional
        The pause generator; None: always ready.
    """

    def __init__(self, clock, valid, ready, payload, on_word, pauses: Iterator[bool] | None = None):
        self._valid, self._ready, self._payload = valid, ready, payload
        self._rising, self._read_only = RisingEdge(clock), ReadOnly()
        self._valid_rises = RisingEdge(valid)
        self._on_word = on_word
        self._task = None
        self.set_pause_generator(pauses)

    def set_pause_generator(self, pauses: Iterator[bool] | None = None) -> None:
        self._pauses = pauses if pauses is not None else itertools.repeat(False)

    def idle(self) -> None:
        """Hold `ready` low (before the monitor starts)."""
        self._ready.value = 0

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("StreamMonitor already started")
        self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        ready = None
        while True:
            want = 0 if next(self._pauses) else 1
            if want != ready:
                self._ready.value = ready = want
            await self._read_only
            if not is_high(self._valid):
                await self._valid_rises
                continue
            payload = self._payload.value if ready else None
            await self._rising
            if payload is not None:
                self._on_word(payload)
