"""A first-in first-out queue for a writer that counts its own room (credits) and never writes into a full
queue: no `w_rdy` and no level count. `r_rdy` is a flip-flop, bit 0 of a thermometer code of the words held
(bit j: more than j words) that moves one place per push or pop, so the reader's pop decision is one gate of
flip-flops and nothing adds or compares in the loop. The CellReader's SyncFIFO counted a level with an adder
behind both enables, and that loop through the consumer's `ready` was the routed worst path of the 16-PE
design (#10, session 19: 8.75 ns, 7.26 routing).

A wide queue is kept in slices of at most ADDRESS_COPY_BITS bits, each a memory with its own copy of the read
and write addresses: the CellReader's queue (over 300 bits at 32 PEs, some 80 LUT-RAM slices) read through one
address register fanning out to all of them had its data out 7 ns after the clock (#10: into the cell slice,
8.49 ns, the 32-PE design's late paths).

With `counted_after=2` the thermometer counts a word a cycle after its write, from a flip-flop of `w_en` beside
it (the CellReader's queue): the writer's `w_en` also enables every slice's write port and address, a net
spread over the whole queue, and as the thermometer's enable it was the 32-PE design's worst routed path (#10:
`gathered_valid` and the cell slice's ready into the thermometer, 9.26 ns, 8.50 of it routing). The word is in
the memory from the cycle after its write all the same. The element-wise lanes' output queue and a PE's job
queue count at once (`counted_after=1`, as the SyncFIFOs they replace: the same cycles).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .design import bram_slices

__all__ = ["CreditQueue", "ADDRESS_COPY_BITS"]

ADDRESS_COPY_BITS = 32


class CreditQueue(wiring.Component):
    """`depth` words of `width` bits in LUT-RAM, read asynchronously at the head.

    Attributes
    ----------
    w_data : In(width)
    w_en : In(1)
        Writes `w_data` at the tail. The writer must hold a credit: a write into a full queue (depth words
        written and not popped, counted from the write, not from `r_rdy`) overwrites the head.
    r_data : Out(width)
        The head word while `r_rdy`.
    r_rdy : Out(1)
        Registered: the queue holds a word. A word written in cycle t is readable from t + `counted_after`.
    r_en : In(1)
        Pops the head when `r_rdy`.
    """

    def __init__(self, width: int, depth: int, counted_after: int = 1):
        if counted_after not in (1, 2) or isinstance(counted_after, bool):
            raise ValueError(f"CreditQueue counted_after must be 1 or 2 (cycles), got {counted_after!r}")
        for name, value in (("width", width), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"CreditQueue {name} must be an integer, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"CreditQueue {name} must be at least 1, got {value}")
        self._width, self._depth, self._counted_after = width, depth, counted_after
        super().__init__({
            "w_data": In(width), "w_en": In(1),
            "r_data": Out(width), "r_rdy": Out(1), "r_en": In(1),
        })

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        depth = self._depth
        m = Module()
        held_above = Signal(depth)           # bit j: more than j words held (counted from `written`)
        pop = Signal()
        m.d.comb += [pop.eq(self.r_en & held_above[0]), self.r_rdy.eq(held_above[0])]
        if self._counted_after == 2:
            written = Signal()               # a word was written in the cycle before
            m.d.sync += written.eq(self.w_en)
        else:
            written = self.w_en

        def following(at):
            return Mux(at == depth - 1, 0, at + 1)

        # `keep`: the copies load the same values, and synthesis would merge them back into one
        for k, (low, width) in enumerate(bram_slices(self._width, ADDRESS_COPY_BITS)):
            m.submodules[f"storage{k}"] = storage = Memory(shape=width, depth=depth, init=[])
            write_port = storage.write_port()
            read_port = storage.read_port(domain="comb")
            write_at = Signal(range(depth), name=f"write_at{k}", attrs={"keep": 1})
            read_at = Signal(range(depth), name=f"read_at{k}", attrs={"keep": 1})
            m.d.comb += [
                write_port.addr.eq(write_at), write_port.data.eq(self.w_data[low:low + width]),
                write_port.en.eq(self.w_en),
                read_port.addr.eq(read_at), self.r_data[low:low + width].eq(read_port.data),
            ]
            with m.If(self.w_en):
                m.d.sync += write_at.eq(following(write_at))
            with m.If(pop):
                m.d.sync += read_at.eq(following(read_at))
        with m.If(written & ~pop):
            m.d.sync += held_above.eq(Cat(1, held_above[:-1]))
        with m.Elif(pop & ~written):
            m.d.sync += held_above.eq(held_above[1:])
        return m
