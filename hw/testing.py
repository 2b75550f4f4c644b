"""Stream source and sink for Amaranth-simulator testbenches (tests/, bench/).

Both are async testbench functions for `Simulator.add_testbench` bodies (`ctx` is the testbench context).
`stream_send` offers payloads on a stream, with random idle cycles between them if asked; `stream_receive`
takes words, with random stalls if asked, and checks the stream protocol on the way: a word offered but not
taken must stay offered, with the same payload, in the next cycle.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Received", "stream_send", "stream_receive", "busy_window"]


class Received(NamedTuple):
    """One word taken by `stream_receive`: its payload, the clock edge it was taken at (counted from the
    start of `stream_receive`, first edge = 1) and the values of the extra expressions sampled with it."""

    payload: object
    cycle: int
    sampled: tuple


def _chance(rng, probability: float) -> bool:
    return probability > 0 and rng.random() < probability


async def stream_send(ctx, port, payloads, *, rng=None, idle: float = 0.0, room=None) -> list[int]:
    """Offer each payload on `port` until it is taken; before each one, idle for a cycle with probability
    `idle` (drawn from `rng`, anything with `.random()`), repeatedly, and, if `room` is given (the registered
    room flag of an always-ready consumer, hw/pe.py), while it is low. `valid` is low at the end.

    Returns the clock edge (counted from the call, first edge = 1) at which each payload was taken."""
    if idle > 0 and rng is None:
        raise ValueError("stream_send: idle cycles need an rng")
    taken_at, cycle = [], 0
    for payload in payloads:
        while _chance(rng, idle) or (room is not None and not ctx.get(room)):
            await ctx.tick()
            cycle += 1
        ctx.set(port.payload, payload)
        ctx.set(port.valid, 1)
        while True:
            _, _, ready = await ctx.tick().sample(port.ready)
            cycle += 1
            if ready:
                break
        taken_at.append(cycle)
        ctx.set(port.valid, 0)
    return taken_at


async def stream_receive(ctx, port, count: int, *, rng=None, stall: float = 0.0, sample=(),
                         max_cycles: int | None = None) -> list[Received]:
    """Take `count` words from `port`, lowering `ready` in a cycle with probability `stall` (drawn from
    `rng`); `sample` are further expressions sampled at the edge each word is taken. `ready` is low at the
    end. Fails (AssertionError) when a word offered but not taken is withdrawn or changed, and when
    `max_cycles` edges pass before the last word."""
    if stall > 0 and rng is None:
        raise ValueError("stream_receive: stalls need an rng")
    received, held, cycle = [], None, 0
    while len(received) < count:
        ready = not _chance(rng, stall)
        ctx.set(port.ready, ready)
        _, _, valid, payload, *values = await ctx.tick().sample(port.valid, port.payload, *sample)
        cycle += 1
        if max_cycles is not None:
            assert cycle <= max_cycles, f"only {len(received)} of {count} words within {max_cycles} cycles"
        if held is not None:
            assert valid and payload == held, "a word was withdrawn or changed before it was taken"
        held = payload if valid and not ready else None
        if valid and ready:
            received.append(Received(payload, cycle, tuple(values)))
    ctx.set(port.ready, 0)
    return received


def busy_window(flags: list, lag: int) -> int:
    """`flags` sampled from the first cycle after a lone word arrived at an idle block: checks that the flag rose
    within `lag` cycles (what the scheduler's drains wait, hw/design.py BUSY_LAG) and, once fallen, stayed low.
    Returns the index of its fall."""
    up = flags.index(1) + 1
    assert up <= lag, f"the flag rose {up} cycles after the word, the scheduler waits {lag}"
    fall = flags.index(0, up - 1)
    assert not any(flags[fall:]), "the flag must stay low once the word's work is done"
    return fall
