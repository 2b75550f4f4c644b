"""The element-wise pipeline: one LSTM cell per cycle, steps 2-7 of docs/numerics.md.

In: a cell's four gate accumulators (bias included, the layer's FACC fractional bits) and its three
peephole words. Out: the cell output m. The unit keeps the cell state c of every cell of every layer.

Stage k holds an item k enabled clock edges after its input handshake (every register shares one enable):

     0  input accepted; read of c_prev issued (address: the layer's cell base + cell)
     1  the cell-state word out of its memory
     2  c_prev in a register (0 on a first frame)
     3  products p_i * c_prev, p_f * c_prev
     4  i and f peephole terms aligned to FACC, added to acc_i, acc_f
     5  narrowed to pre-activation words
     5  sigmoid(pre_i), sigmoid(pre_f), tanh(pre_g) enter the activation pipelines (4 stages)
     9  i, f, g
    10  products f * c_prev, i * g
    11  the cell sum at FS fractional bits
    12  narrowed once: c_t, written to the cell state as it leaves
    13  product p_o * c_t; tanh input narrowed from c_t
    14  acc_o + the aligned o peephole term
    15  narrowed to pre_o
    15  sigmoid(pre_o), tanh(narrowed c_t) enter the activation pipelines
    19  o, tc
    20  product o * tc
    21  narrowed: m (o.valid)

Every block-RAM read and every multiplier feeds a register of its own, with nothing in between
(docs/architecture.md, *Timing*).

Flow control: the whole pipeline advances when its output register is empty or taken
(`advance = ~o.valid | o.ready`); bubbles are squeezed out only at the output. An input is refused while the
same (layer, cell) is in stages 1-12 (its new c is not yet written) unless it starts a sequence (it reads
nothing; writes stay in order), so any order of cells is correct and a cell that comes back at least
MIN_REVISIT_DISTANCE = 13 items later never waits: a layer of >= 13 cells streams frame after frame at full
rate, a 3-cell layer waits 10 cycles per frame. In the accelerator the recurrence (frame t+1 needs all of
y_t) keeps visits far apart anyway.

Combinational paths: `o.ready -> i.ready` and `i.payload.{layer, cell, first_frame} -> i.ready` (the
interlock compare); `o.valid` and `o.payload` come straight from registers. Where `o.ready` arrives late,
put a register slice in front of the unit's consumer rather than inside it.

Not checked in hardware (the caller's contract): `layer < len(layers)` and `cell < cell_size` of that
layer. Reset clears the valid bits only, not the cell state: start every sequence with `first_frame`.

The sigmoid ROM (i, f, o: 3 read ports) and the tanh ROM (g, tanh c: 2 read ports) are shared by their
lanes (ActivationPipeline); docs/architecture.md lists the unit's resources. More element-wise lanes are more
ElementwiseUnits in lock step, each with its own cells (hw/lanes.py, LaneElementwise).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import reduce
from typing import Sequence

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..spec.numerics import Numerics
from .activation import ActivationPipeline, checked_table
from .fixed import round_shift, saturate
from .interfaces import elementwise_in_layout, elementwise_out_layout

__all__ = ["ElementwiseLayer", "ElementwiseUnit"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ElementwiseLayer:
    """The per-layer constants of the element-wise step.

    cell_size: H, the layer's number of cells.
    facc:      fractional bits of the gate accumulators (FACC of docs/numerics.md; may be negative).
    fp:        fractional bits of the peephole words, or None when the layer has no peepholes.
    """

    cell_size: int
    facc: int
    fp: int | None = None

    def __post_init__(self):
        if not _is_int(self.cell_size):
            raise TypeError(f"ElementwiseLayer.cell_size must be an integer, got {self.cell_size!r}")
        if self.cell_size < 1:
            raise ValueError(f"ElementwiseLayer.cell_size must be >= 1, got {self.cell_size!r}")
        if not _is_int(self.facc):
            raise TypeError(f"ElementwiseLayer.facc must be an integer, got {self.facc!r}")
        if self.fp is not None and not _is_int(self.fp):
            raise TypeError(f"ElementwiseLayer.fp must be an integer or None, got {self.fp!r}")

    @property
    def peephole(self) -> bool:
        return self.fp is not None


class ElementwiseUnit(wiring.Component):
    """Steps 2-7 of docs/numerics.md for one cell per cycle, with the cell state of every layer inside.

    Cell j of layer l keeps its c at address sum(cell sizes of layers < l) + j of a cell_bits-wide memory.
    Inputs must name an existing layer and cell; peephole words of a layer without peepholes are ignored.
    LATENCY cycles from the input handshake to o.valid, one cell per cycle, outputs in input order.

    Parameters
    ----------
    numerics : spec.numerics.Numerics
    tables : mapping
        sigmoid_T, sigmoid_D, tanh_T, tanh_D (checked as in ActivationPipeline).
    layers : sequence of ElementwiseLayer
        Per layer: cell_size, facc, fp (None without peepholes).
    acc_bits : int
        Width of the gate accumulators on `i`.
    layer_bits, cell_index_bits : int or None
        Widths of the `layer` and `cell` fields (None: the narrowest that fits).
    streams : int
        Independent sequences with a cell state each (stream s at `s * cell_depth`).
    `ElementwiseUnit.from_design(design)` takes all of these from an AcceleratorDesign.

    Attributes
    ----------
    i : In(stream.Signature(elementwise_in_layout(acc_bits, peephole_bits, layer_bits, cell_index_bits)))
        One cell: its gate accumulators (bias included, at the layer's FACC), its peephole words and
        `first_frame` (the frame starts a sequence: c_prev = 0).
    o : Out(stream.Signature(elementwise_out_layout(unit_bits, layer_bits, cell_index_bits)))
        `layer`, `cell` as given, `m` (unit_bits, unit_frac).
    stream : In(range(streams))
        With more than one stream only: whose cell state the items on `i` use. It may change only while no
        item is in the unit (the scheduler changes it between frames).
    """

    LATENCY = 21
    # c_t is written when its item leaves this stage; an input waits while its (layer, cell) is in stages
    # 1 .. WRITE_STAGE (unless it starts a sequence).
    WRITE_STAGE = 12
    # So a cell whose previous visit was accepted at least this many cycles (= items at full rate) earlier
    # never waits: a layer of >= MIN_REVISIT_DISTANCE cells streams one cell per cycle frame after frame.
    MIN_REVISIT_DISTANCE = WRITE_STAGE + 1

    def __init__(self, numerics: Numerics, tables, layers: Sequence[ElementwiseLayer], *, acc_bits: int,
                 layer_bits: int | None = None, cell_index_bits: int | None = None, streams: int = 1):
        if not isinstance(numerics, Numerics):
            raise TypeError(f"numerics must be a sparselstm.spec.numerics.Numerics, got {type(numerics).__name__}")
        layers = tuple(layers)
        if not all(isinstance(layer, ElementwiseLayer) for layer in layers):
            raise TypeError("layers must be a sequence of ElementwiseLayer")
        if not layers:
            raise ValueError("layers must not be empty")
        if not _is_int(acc_bits):
            raise TypeError(f"acc_bits must be an integer, got {acc_bits!r}")
        if acc_bits < 2:
            raise ValueError(f"acc_bits must be an integer >= 2, got {acc_bits!r}")
        needed_layer_bits = max(1, (len(layers) - 1).bit_length())
        needed_cell_bits = max(1, (max(layer.cell_size for layer in layers) - 1).bit_length())
        layer_bits = needed_layer_bits if layer_bits is None else layer_bits
        cell_index_bits = needed_cell_bits if cell_index_bits is None else cell_index_bits
        for name, value in (("layer_bits", layer_bits), ("cell_index_bits", cell_index_bits)):
            if not _is_int(value):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if layer_bits < needed_layer_bits:
            raise ValueError(f"layer_bits must be an integer >= {needed_layer_bits} for {len(layers)} layers, "
                             f"got {layer_bits!r}")
        if cell_index_bits < needed_cell_bits:
            raise ValueError(f"cell_index_bits must be an integer >= {needed_cell_bits} for "
                             f"{max(layer.cell_size for layer in layers)} cells, got {cell_index_bits!r}")
        if not _is_int(streams):
            raise TypeError(f"streams must be an integer, got {streams!r}")
        if streams < 1:
            raise ValueError(f"streams must be an integer >= 1, got {streams!r}")
        for function in ("sigmoid", "tanh"):
            checked_table(tables, function, numerics)   # fail here, not at elaboration

        self.numerics = numerics
        self.tables = tables
        self.layers = layers
        self.acc_bits = acc_bits
        self.layer_bits = layer_bits
        self.cell_index_bits = cell_index_bits
        self.streams = streams
        super().__init__({
            "i": In(stream.Signature(elementwise_in_layout(acc_bits, numerics.peephole_bits, layer_bits,
                                                           cell_index_bits))),
            "o": Out(stream.Signature(elementwise_out_layout(numerics.unit_bits, layer_bits, cell_index_bits))),
            **({"stream": In(range(streams))} if streams > 1 else {}),
        })

    @classmethod
    def from_design(cls, design) -> "ElementwiseUnit":
        """The unit of an AcceleratorDesign (hw/design.py)."""
        layers = tuple(ElementwiseLayer(cell_size=int(info.cell_size), facc=int(info.facc),
                                        fp=int(info.fp) if info.peephole else None) for info in design.layers)
        return cls(design.numerics, design.tables, layers, acc_bits=design.acc_bits,
                   layer_bits=design.layer_bits, cell_index_bits=design.cell_index_bits, streams=design.streams)

    @property
    def cell_bases(self) -> tuple[int, ...]:
        """Cell-state address of cell 0 of each layer."""
        bases, total = [], 0
        for layer in self.layers:
            bases.append(total)
            total += layer.cell_size
        return tuple(bases)

    @property
    def cell_depth(self) -> int:
        return sum(layer.cell_size for layer in self.layers)

    def elaborate(self, platform):
        n = self.numerics
        last = self.LATENCY
        any_peephole = any(layer.peephole for layer in self.layers)
        # The stage numbers below assume it: gates enter the activation pipelines at 5 and 15, leave at 9, 19.
        assert ActivationPipeline.LATENCY == 4
        m = Module()

        # ---- submodules: the activation datapaths (lanes share a ROM) and the cell state ----------------
        m.submodules.sigmoid = sigmoid = ActivationPipeline("sigmoid", n, self.tables, lanes=3)   # i, f, o
        m.submodules.tanh = tanh = ActivationPipeline("tanh", n, self.tables, lanes=2)            # g, tc
        m.submodules.cell_state = cell_state = Memory(shape=signed(n.cell_bits), depth=self.streams * self.cell_depth,
                                                    init=[])
        c_read = cell_state.read_port()
        c_write = cell_state.write_port()

        advance = Signal()
        registers = []       # every pipeline register; all load together when `advance`

        def register(value, name, shape=None, reset_less=True):
            """A pipeline register; only valid bits need a reset, data registers go without (cheaper, and
            lets long delay chains map to shift-register LUTs)."""
            reg = Signal(value.shape() if shape is None else shape, name=name, reset_less=reset_less)
            registers.append(reg.eq(value))
            return reg

        def carry(value, name, first: int, until: int, reset_less=True) -> dict[int, Signal]:
            """`value` (valid at stage `first`) at every stage first .. until, one register per stage."""
            stages = {first: value}
            for stage in range(first + 1, until + 1):
                stages[stage] = register(stages[stage - 1], f"{name}_{stage}", reset_less=reset_less)
            return stages

        def per_layer(layer, make):
            """make(l, info) selected by the `layer` signal (layer 0's value for an out-of-range index)."""
            value = make(0, self.layers[0])
            for index in range(1, len(self.layers)):
                value = Mux(layer == index, make(index, self.layers[index]), value)
            return value

        def peephole_term(product, layer):
            """align(p * c, fp + cell_frac, FACC) of the stage's layer; 0 for a layer without peepholes."""
            return per_layer(layer, lambda _, info: 0 if not info.peephole else
                             round_shift(product, info.fp + n.cell_frac - info.facc))

        def to_pre(total, layer, name):
            """sat(align(total, FACC, pre_frac), pre_bits) of the stage's layer, registered."""
            aligned = per_layer(layer, lambda _, info: round_shift(total, info.facc - n.pre_frac))
            return register(saturate(aligned, n.pre_bits), name, signed(n.pre_bits))

        # ---- stage 0: input, hazard check, cell-state read --------------------------------------------
        payload = self.i.p
        accepted = Signal()
        hazard = Signal()
        address_0 = Signal(c_read.addr.shape(), name="address_0")
        valid = carry(accepted, "valid", 0, last, reset_less=False)
        layer = carry(payload.layer, "layer", 0, last)
        cell = carry(payload.cell, "cell", 0, last)
        address = carry(address_0, "address", 0, self.WRITE_STAGE)
        first_frame = carry(payload.first_frame, "first_frame", 0, 1)
        acc_i = carry(payload.acc_i, "acc_i", 0, 3)
        acc_f = carry(payload.acc_f, "acc_f", 0, 3)
        acc_g = carry(payload.acc_g, "acc_g", 0, 3)
        acc_o = carry(payload.acc_o, "acc_o", 0, 13)

        # ---- stages 1-5: c_prev, the i and f peephole terms, pre-activations ----------------------------
        # the memory's output goes straight into a register: zeroing it is the register's synchronous reset
        c_prev_2 = register(Mux(first_frame[1], 0, c_read.data), "c_prev_2", signed(n.cell_bits))
        c_prev = carry(c_prev_2, "c_prev", 2, 9)
        if any_peephole:
            peep_i = carry(payload.peep_i, "peep_i", 0, 2)
            peep_f = carry(payload.peep_f, "peep_f", 0, 2)
            peep_o = carry(payload.peep_o, "peep_o", 0, 12)
            peep_product_i_3 = register(peep_i[2] * c_prev_2, "peep_product_i_3")
            peep_product_f_3 = register(peep_f[2] * c_prev_2, "peep_product_f_3")
            sum_i_4 = register(acc_i[3] + peephole_term(peep_product_i_3, layer[3]), "sum_i_4")
            sum_f_4 = register(acc_f[3] + peephole_term(peep_product_f_3, layer[3]), "sum_f_4")
        else:
            sum_i_4 = register(acc_i[3], "sum_i_4")
            sum_f_4 = register(acc_f[3], "sum_f_4")
        sum_g_4 = register(acc_g[3], "sum_g_4")
        pre_i_5 = to_pre(sum_i_4, layer[4], "pre_i_5")
        pre_f_5 = to_pre(sum_f_4, layer[4], "pre_f_5")
        pre_g_5 = to_pre(sum_g_4, layer[4], "pre_g_5")
        gate_i_9, gate_f_9, gate_g_9 = sigmoid.y[0], sigmoid.y[1], tanh.y[0]

        # ---- stages 9-12: the cell update with one rounding -----------------------------------------------
        fs = n.cell_sum_frac
        forget_product_10 = register(gate_f_9 * c_prev[9], "forget_product_10")
        input_product_10 = register(gate_i_9 * gate_g_9, "input_product_10")
        cell_sum_11 = register((forget_product_10 << (fs - n.unit_frac - n.cell_frac)) +
                               (input_product_10 << (fs - 2 * n.unit_frac)), "cell_sum_11")
        c_12 = register(saturate(round_shift(cell_sum_11, fs - n.cell_frac), n.cell_bits), "c_12",
                        signed(n.cell_bits))

        # ---- stages 12-19: o (peeping at c_t) and tanh(c_t) ------------------------------------------------
        if any_peephole:
            peep_product_o_13 = register(peep_o[12] * c_12, "peep_product_o_13")
            sum_o_14 = register(acc_o[13] + peephole_term(peep_product_o_13, layer[13]), "sum_o_14")
        else:
            sum_o_14 = register(acc_o[13], "sum_o_14")
        pre_o_15 = to_pre(sum_o_14, layer[14], "pre_o_15")
        c_narrow_13 = register(saturate(round_shift(c_12, n.cell_frac - n.pre_frac), n.pre_bits), "c_narrow_13",
                               signed(n.pre_bits))
        c_narrow = carry(c_narrow_13, "c_narrow", 13, 15)
        gate_o_19, tanh_c_19 = sigmoid.y[2], tanh.y[1]

        # ---- stages 19-21: m -----------------------------------------------------------------------------
        # With tables that pass checked_table, |o * tc| <= ONE**2 and the saturation never fires; it stays
        # because it is the formula of docs/numerics.md and costs two comparators.
        output_product_20 = register(gate_o_19 * tanh_c_19, "output_product_20")
        m_21 = register(saturate(round_shift(output_product_20, n.unit_frac), n.unit_bits), "m_21",
                        signed(n.unit_bits))

        # ---- connections ---------------------------------------------------------------------------------
        m.d.comb += [
            sigmoid.en.eq(advance),
            tanh.en.eq(advance),
            sigmoid.x[0].eq(pre_i_5),
            sigmoid.x[1].eq(pre_f_5),
            sigmoid.x[2].eq(pre_o_15),
            tanh.x[0].eq(pre_g_5),
            tanh.x[1].eq(c_narrow[15]),
        ]

        # ---- combinational ----------------------------------------------------------------------------------
        stream_base = self.stream * self.cell_depth if self.streams > 1 else None
        in_flight = [valid[s] & (layer[s] == payload.layer) & (cell[s] == payload.cell)
                     for s in range(1, self.WRITE_STAGE + 1)]
        m.d.comb += [
            advance.eq(~valid[last] | self.o.ready),
            # A first frame does not read c_prev, and writes stay in order: it never has to wait.
            hazard.eq(~payload.first_frame & reduce(operator.or_, in_flight)),
            self.i.ready.eq(advance & ~hazard),
            accepted.eq(self.i.valid & ~hazard),
            address_0.eq(stream_base + per_layer(payload.layer, lambda index, _: self.cell_bases[index])
                         + payload.cell if self.streams > 1 else
                         per_layer(payload.layer, lambda index, _: self.cell_bases[index]) + payload.cell),
            c_read.addr.eq(address_0),
            c_read.en.eq(advance),
            c_write.addr.eq(address[self.WRITE_STAGE]),
            c_write.data.eq(c_12),
            c_write.en.eq(valid[self.WRITE_STAGE] & advance),
            self.o.valid.eq(valid[last]),
            self.o.p.layer.eq(layer[last]),
            self.o.p.cell.eq(cell[last]),
            self.o.p.m.eq(m_21),
        ]

        # ---- synchronous: the pipeline registers ---------------------------------------------------------
        with m.If(advance):
            m.d.sync += registers
        return m

