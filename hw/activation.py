"""sigmoid_q and tanh_q of docs/numerics.md in hardware: table lookup with linear interpolation.

Two pieces, because the element-wise unit needs the datapath inside its own lock-step pipeline while
everything else wants a stream:

* `ActivationPipeline`: the datapath only. `lanes` independent inputs share one table ROM (one read port
  per lane, so a dual-port block RAM serves two lanes) and one clock enable `en`; `y[n]` is the function of
  the `x[n]` presented `LATENCY` enabled clock edges earlier. No valid bits: the owner tracks them.
* `ActivationUnit`: one lane wrapped as a stream component with valid/ready and a pass-through tag.

The integers of the tables come from the caller (an encoded model's `tables/*.hex`, or
`sw.fixedpoint.activation_tables`); nothing here recomputes them. Datapath, per lane:

    edge 1  a = |x|, k = a >> S, r = a & (2**S - 1); the ROM takes the address k
    edge 2  (T[k], D[k]) in the ROM's output register (hw/table_rom.py: a DP16KD's own on an ECP5; the
            array's output is slow, so nothing but that register follows it)
    edge 3  T[k] into a flip-flop, D[k] and r into the multiplier's operand registers (a DSP block's own)
    edge 4  p = D[k] * r;  B = base * 2**S + bias, base = T[k] mirrored for a negative x (ONE - T or -T)
    edge 5  p ^ -neg out of the DSP block into a fabric register, B beside it
    edge 6  y = (B + p) >> S  (x >= 0)   or   (B - p) >> S  (x < 0), one adder: (B' + (p ^ -neg)) >> S

docs/numerics.md's `base +- ((p + 2**(S-1)) >> S)` folded into one adder after the multiplier: base is an
integer, so `base + floor((p + h) / 2**S) = floor((base * 2**S + h + p) / 2**S)` with h = 2**(S-1), and
`base - floor((p + h) / 2**S) = floor((base * 2**S + (2**S - 1 - h) - p) / 2**S)`; the bias h or h - 1
fills the low S bits of base * 2**S, so B costs no adder.

The ROM holds entries 0 .. 2**table_log2 - 1 only (a power-of-two depth: 1024 x ~25 bits is two 1024 x 18
block RAMs side by side): the last entry k = 2**table_log2 is reached by exactly one input, the most
negative word, whose r is 0 (so D does not matter), and its T is supplied as a constant.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.numerics import Numerics, signed_bits_for
from .interfaces import activation_in_layout, activation_out_layout
from .multiplier import PipelinedMultiplier
from .table_rom import TableRom

__all__ = ["ActivationPipeline", "ActivationUnit", "FUNCTIONS"]

FUNCTIONS = ("sigmoid", "tanh")


def _check_function(function) -> str:
    if function not in FUNCTIONS:
        raise ValueError(f"function must be one of {FUNCTIONS}, got {function!r}")
    return function


def _check_numerics(numerics) -> Numerics:
    if not isinstance(numerics, Numerics):
        raise TypeError(f"numerics must be a sparselstm.spec.numerics.Numerics, got {type(numerics).__name__}")
    return numerics


def checked_table(tables, function: str, numerics: Numerics) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(T, D) of `function` as tuples of ints, after checking them against docs/numerics.md.

    The checks (length 2**table_log2 + 1, D[k] = T[k+1] - T[k], D[last] = 0, T inside the function's range
    [0, ONE] or [-ONE, ONE]) are what make every interpolated and mirrored value fit a unit word, so the
    hardware needs no saturation after the lookup.
    """
    entries = (1 << numerics.table_log2) + 1
    pair = []
    for suffix in ("T", "D"):
        key = f"{function}_{suffix}"
        if not hasattr(tables, "__getitem__"):
            raise TypeError(f"tables must be a mapping, got {type(tables).__name__}")
        if key not in tables:
            raise ValueError(f"tables: missing {key!r}")
        table = np.asarray(tables[key])
        if table.shape != (entries,) or table.dtype.kind not in "iu":
            raise ValueError(f"tables[{key!r}]: expected {entries} integers (table_log2 = {numerics.table_log2}),"
                             f" got shape {table.shape} dtype {table.dtype}")
        pair.append(tuple(int(v) for v in table))
    t, d = pair
    one = numerics.one
    low = 0 if function == "sigmoid" else -one
    if min(t) < low or max(t) > one:
        raise ValueError(f"tables[{function}_T]: values must lie in [{low}, {one}] (the function's range in "
                         f"unit words), got [{min(t)}, {max(t)}]")
    if any(d[k] != t[k + 1] - t[k] for k in range(entries - 1)) or d[-1] != 0:
        raise ValueError(f"tables[{function}_D]: must be the differences T[k+1] - T[k] with a final 0 "
                         f"(docs/numerics.md)")
    return t, d


class ActivationPipeline(wiring.Component):
    """sigmoid_q or tanh_q on `lanes` independent lanes, LATENCY = 6 enabled edges, one result per lane per
    enabled cycle. Lanes may be fed at different times: they only share the ROM and `en`.

    Parameters
    ----------
    function : "sigmoid" or "tanh"
    numerics : spec.numerics.Numerics
    tables : mapping
        `{function}_T` and `{function}_D` of docs/numerics.md (checked: ValueError).
    lanes : int
        Number of independent lanes (>= 1); they share one table ROM, one read port each.

    Attributes
    ----------
    en : In(1)
        Clock enable of every register, ROM reads included.
    x : In(data.ArrayLayout(signed(pre_bits), lanes))
        Pre-activation words.
    y : Out(data.ArrayLayout(signed(unit_bits), lanes))
        `y[n]` is the function of the `x[n]` presented LATENCY enabled edges earlier.
    """

    LATENCY = 6

    def __init__(self, function: str, numerics: Numerics, tables, *, lanes: int = 1):
        self.function = _check_function(function)
        self.numerics = _check_numerics(numerics)
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"lanes must be an integer, got {type(lanes).__name__}")
        if lanes < 1:
            raise ValueError(f"lanes must be an integer >= 1, got {lanes!r}")
        self.lanes = lanes
        self.table, self.diff = checked_table(tables, function, numerics)
        super().__init__({
            "en": In(1),
            "x": In(data.ArrayLayout(signed(numerics.pre_bits), lanes)),
            "y": Out(data.ArrayLayout(signed(numerics.unit_bits), lanes)),
        })

    @property
    def rom_layout(self) -> data.StructLayout:
        """One ROM word: T[k] and D[k], D only as wide as the table needs (it sets the multiplier width)."""
        return data.StructLayout({
            "t": signed(self.numerics.unit_bits),
            "d": signed(signed_bits_for(max(abs(v) for v in self.diff))),
        })

    def elaborate(self, platform):
        numerics = self.numerics
        interp_bits = numerics.interp_bits
        segments = 1 << numerics.table_log2
        one = numerics.one
        m = Module()

        layout = self.rom_layout
        m.submodules.rom = rom = TableRom(
            layout.size, [Const.cast(layout.const({"t": self.table[k], "d": self.diff[k]})).value
                          for k in range(segments)], ports=self.lanes)
        m.d.comb += rom.en.eq(self.en)

        def delayed(value, name, edges):
            """`value` after `edges` enabled edges, one register per edge ({edge: signal})."""
            stages = {}
            for edge in range(1, edges + 1):
                stages[edge] = Signal(value.shape(), name=f"{name}_{edge}", reset_less=True)
                with m.If(self.en):
                    m.d.sync += stages[edge].eq(value)
                value = stages[edge]
            return stages

        # The symmetry is applied to T before the interpolation step is added (or subtracted):
        # ONE - (T + q) = (ONE - T) - q, -(T + q) = -T - q.
        def mirrored(table):
            return (one - table) if self.function == "sigmoid" else -table

        for lane in range(self.lanes):
            x = self.x[lane]
            word_2 = data.View(layout, rom.data[lane])

            # Combinational, before edge 1: |x| split into segment k and position r. |most negative word|
            # = 2**(pre_bits-1) still fits pre_bits unsigned bits, and is the only input with k = segments.
            negative = Signal(name=f"negative_{lane}")
            magnitude = Signal(unsigned(numerics.pre_bits), name=f"magnitude_{lane}")
            segment = magnitude[interp_bits:]
            position = magnitude[:interp_bits]
            m.d.comb += [
                negative.eq(x < 0),
                magnitude.eq(Mux(negative, -x, x)),
                rom.addr[lane].eq(segment[:numerics.table_log2]),
            ]

            position_ = delayed(position, f"position_{lane}", 2)
            negative_ = delayed(negative, f"negative_{lane}", 4)
            last_segment_ = delayed(segment == segments, f"last_segment_{lane}", 3)
            # Loaded at edge 3: T out of the ROM's output register (D in the multiplier's operand register).
            table_3 = Signal(layout["t"].shape, name=f"table_3_{lane}", reset_less=True)
            # Loaded at edge 4: D * r in a DSP block's own registers on an ECP5 (hw/multiplier.py), not a
            # multiplier between fabric registers
            product_4 = Signal(signed(layout["d"].shape.width + interp_bits + 1), name=f"product_4_{lane}")
            if interp_bits > 0:
                m.submodules[f"interpolation_{lane}"] = multiplier = PipelinedMultiplier(
                    layout["d"].shape, unsigned(interp_bits), latency=2)
                m.d.comb += [multiplier.a.eq(word_2.d), multiplier.b.eq(position_[2]), multiplier.en.eq(self.en),
                             product_4.eq(multiplier.p)]
            biased_4 = Signal(signed(numerics.unit_bits + 1 + interp_bits), name=f"biased_4_{lane}",
                              reset_less=True)
            # Loaded at edge 5: the DSP block's output, its bits inverted for a negative x, in a fabric register
            # beside the base, so the adder starts from flip-flops placed with it (#10: the route out of the DSP
            # block and the carry chain in one cycle were routed late paths)
            biased_5 = Signal.like(biased_4, name=f"biased_5_{lane}")
            flipped_5 = Signal.like(product_4, name=f"flipped_5_{lane}", reset_less=True)
            # Loaded at edge 6 (a port of its own would carry a reset; data registers need none).
            y_6 = Signal(signed(numerics.unit_bits), name=f"y_6_{lane}", reset_less=True)

            base_3 = Mux(last_segment_[3], mirrored(self.table[segments]),
                         Mux(negative_[3], mirrored(table_3), table_3))
            m.d.comb += self.y[lane].eq(y_6)
            with m.If(self.en):
                m.d.sync += table_3.eq(word_2.t)
                if interp_bits > 0:
                    # B - p = (B + 1) + ~p, and B + 1 = base * 2**S + h for a negative x (its bias is h - 1):
                    # one adder behind the DSP block's output, p's bits inverted in front of it, no second
                    # adder and multiplexer (#10: the last edge was among the late paths)
                    half = 1 << (interp_bits - 1)
                    flip_4 = Signal.like(product_4, name=f"flip_4_{lane}")
                    m.d.comb += flip_4.eq(product_4 ^ Mux(negative_[4], -1, 0))
                    m.d.sync += [biased_4.eq((base_3 << interp_bits) | half),
                                 biased_5.eq(biased_4), flipped_5.eq(flip_4),
                                 y_6.eq((biased_5 + flipped_5) >> interp_bits)]
                else:
                    m.d.sync += [biased_4.eq(base_3), biased_5.eq(biased_4), y_6.eq(biased_5)]
        return m


class ActivationUnit(wiring.Component):
    """A stream of pre-activation words in, a stream of sigmoid_q / tanh_q unit words out.

    One word per cycle; latency ActivationPipeline.LATENCY = 6 cycles from the input handshake to `o.valid`.
    The pipeline stalls as a whole when the output is not taken (`i.ready = ~o.valid | o.ready`, a
    combinational path from `o.ready`); a bubble is squeezed out only at the output.

    Parameters
    ----------
    function : "sigmoid" or "tanh"
    numerics : spec.numerics.Numerics
    tables : mapping
        As for ActivationPipeline.
    tag_shape : shape-like
        Carried alongside each word unchanged, so a caller can keep context with it (default: no tag).

    Attributes
    ----------
    i : In(stream.Signature(activation_in_layout(numerics, tag_shape)))
        `x` and `tag`.
    o : Out(stream.Signature(activation_out_layout(numerics, tag_shape)))
        `y` and the `tag` that came in with its `x`.
    """

    def __init__(self, function: str, numerics: Numerics, tables, *, tag_shape=unsigned(0)):
        self.function = _check_function(function)
        self.numerics = _check_numerics(numerics)
        self.tables = tables
        checked_table(tables, function, numerics)   # fail at construction, not at elaboration
        self.tag_shape = tag_shape
        super().__init__({
            "i": In(stream.Signature(activation_in_layout(numerics, tag_shape))),
            "o": Out(stream.Signature(activation_out_layout(numerics, tag_shape))),
        })

    @classmethod
    def from_design(cls, design, function: str, *, tag_shape=unsigned(0)) -> "ActivationUnit":
        return cls(function, design.numerics, design.tables, tag_shape=tag_shape)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pipeline = pipeline = ActivationPipeline(self.function, self.numerics, self.tables)

        latency = ActivationPipeline.LATENCY
        valid = [Signal(name=f"valid_{n + 1}") for n in range(latency)]
        tags = [Signal(self.tag_shape, name=f"tag_{n + 1}", reset_less=True) for n in range(latency)]
        advance = Signal()

        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
            pipeline.en.eq(advance),
            pipeline.x[0].eq(self.i.p.x),
            self.o.valid.eq(valid[-1]),
            self.o.p.y.eq(pipeline.y[0]),
            self.o.p.tag.eq(tags[-1]),
        ]
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid), tags[0].eq(self.i.p.tag)]
            m.d.sync += [valid[n].eq(valid[n - 1]) for n in range(1, latency)]
            m.d.sync += [tags[n].eq(tags[n - 1]) for n in range(1, latency)]
        return m
