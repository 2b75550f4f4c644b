"""A block-RAM FIFO whose handshake comes from flip-flops only: `w.ready`, `r.valid` and `empty` are registers
(or an OR of three), and no flag is worked out from a level in the same cycle.

Amaranth's SyncFIFOBuffered computes its flags from its level combinationally: at 32 PEs the host link's receive
buffer, placed apart, had its worst path from the level through four LUTs into the read pointer (#10: 10.65 ns,
9.16 of it routing). Here each flag is a flip-flop loaded from the previous cycle's count, and the rules that
make a one-cycle-old count safe are:

- a write needs the count a cycle ago to be at most depth - 2: one write since then leaves room for it;
- a fetch (block RAM -> read data) needs the count a cycle ago to be at least 2, or at least 1 or a write
  since then with no fetch since then.

So the memory holds at most `depth` words (a write never meets a full ring), and the read data one more. Words
are written at the full rate until the memory is nearly full, and read at the full rate while it holds two or
more, every other cycle when it holds one. A word written in one cycle can be fetched in the next and is offered
in the one after, as from SyncFIFOBuffered (the host link's exact timeouts count on it).
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import NO_COLLISIONS

__all__ = ["RegisteredFifo"]


class RegisteredFifo(wiring.Component):
    """`w` -> `r`, words in order, `depth` of them at most, kept in one memory (a block RAM).

    Ports:
      w      In(stream of `payload_shape`); `w.ready` is a flip-flop
      r      Out(stream of `payload_shape`); `r.valid` is a flip-flop, `r.payload` the memory's read data
      empty  Out(1): nothing is stored or offered; from flip-flops (an OR of three), so it may stay low for a
             cycle or two after the last word left, never high while a word is inside.
    """

    def __init__(self, payload_shape, depth: int):
        if not isinstance(payload_shape, (data.Layout, Shape, int)):
            raise TypeError(f"RegisteredFifo needs a shape or a data layout, got {payload_shape!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 4 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two >= 4, got {depth!r}")
        self._payload_shape = payload_shape
        self.depth = depth
        super().__init__({
            "w": In(stream.Signature(payload_shape)),
            "r": Out(stream.Signature(payload_shape)),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # a read never meets a write of its address (the ring is never written full), so Yosys needs no
        # collision logic behind the block RAM, which would keep its output register in the fabric
        m.submodules.memory = memory = Memory(shape=self._payload_shape, depth=self.depth, init=[],
                                              attrs=NO_COLLISIONS)
        write_port = memory.write_port()
        read_port = memory.read_port()

        produce = Signal(range(self.depth))
        consume = Signal(range(self.depth))
        stored = Signal(range(self.depth + 1))  # words in the memory, not yet fetched
        room = Signal(init=1)                  # stored <= depth - 2 a cycle ago
        had_one = Signal()                     # stored >= 1 a cycle ago
        had_two = Signal()                     # stored >= 2 a cycle ago
        fetched = Signal()                     # a fetch in the previous cycle
        wrote = Signal()                       # a write in the previous cycle
        offered = Signal()                     # the read port's data hold a word not yet taken
        written = self.w.valid & room
        fetch = (had_two | ((had_one | wrote) & ~fetched)) & (~offered | self.r.ready)

        m.d.comb += [
            self.w.ready.eq(room),
            write_port.addr.eq(produce), write_port.data.eq(self.w.payload), write_port.en.eq(written),
            read_port.addr.eq(consume), read_port.en.eq(fetch),
            self.r.valid.eq(offered), self.r.payload.eq(read_port.data),
            # stored is nonzero now only if it was a cycle ago or a word came in since
            self.empty.eq(~(offered | had_one | wrote)),
        ]
        with m.If(written):
            m.d.sync += produce.eq(produce + 1)
        with m.If(fetch):
            m.d.sync += consume.eq(consume + 1)
        with m.If(written & ~fetch):
            m.d.sync += stored.eq(stored + 1)
        with m.Elif(fetch & ~written):
            m.d.sync += stored.eq(stored - 1)
        with m.If(fetch):
            m.d.sync += offered.eq(1)
        with m.Elif(self.r.ready):
            m.d.sync += offered.eq(0)
        m.d.sync += [
            room.eq(stored <= self.depth - 2),
            had_one.eq(stored != 0),
            had_two.eq(stored >= 2),
            fetched.eq(fetch),
            wrote.eq(written),
        ]
        return m
