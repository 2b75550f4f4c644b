"""The element-wise pipeline: one LSTM cell per cycle, steps 2-7 of docs/numerics.md.

In: a cell's four gate accumulators (bias included, the layer's FACC fractional bits) and its three
peephole words. Out: the cell output m. The unit keeps the cell state c of every cell of every layer.

Stage 0 is a two-slot input buffer: its head waits there for the interlock and the credits, and issues
the read of c_prev as it leaves (address: the layer's cell base + cell, computed as the word arrives).
Stage k >= 1 holds it k clock edges after it left stage 0 (past stage 0 the pipeline never stalls):

     1  the cell-state word out of its memory
     2  the cell-state word in a register
     3  partial products of p_i * c_prev, p_f * c_prev (c_prev split so each part fits one 18x18 multiplier; on a
        first frame p_i, p_f taken as 0), c_prev in a register (0 on a first frame)
     4  products p_i * c_prev, p_f * c_prev
     5  acc_i, acc_f + their peephole terms aligned to FACC (the rounding folded into the one adder)
     6  narrowed to pre-activation words
     6  sigmoid(pre_i), sigmoid(pre_f), tanh(pre_g) enter the activation pipelines (6 stages)
    12  i, f, g
    13  partial products of f * c_prev; i and g in the multiplier's operand registers
    14  products f * c_prev, i * g
    15  the cell sum at FS fractional bits
    16  narrowed once: c_t, written to the cell state as it leaves
    17  partial products of p_o * c_t; tanh input narrowed from c_t
    18  product p_o * c_t
    19  acc_o + the aligned o peephole term
    20  narrowed to pre_o
    20  sigmoid(pre_o), tanh(narrowed c_t) enter the activation pipelines
    26  o, tc
    27  product o * tc
    28  the product in a fabric register
    29  narrowed: m
    30  m in the output queue (o.valid)

(The stage constants of ElementwiseUnit follow ActivationPipeline.LATENCY; the numbers above are for 6.)

Every block-RAM read and every multiplier feeds a register of its own, with nothing in between, and no
stage has more than one carry chain (docs/architecture.md, *Timing*).

Flow control: the pipeline has no enable (an enable would fan out to every register of the unit); the
items leave it into an output queue of OUTPUT_QUEUE_DEPTH words, and an input is accepted only while the
items in the pipeline and the queue number fewer than that (credits), so the queue never overflows and a
consumer that is always ready sees one item per cycle. An item also waits at the head of stage 0 while the same
(layer, cell) is in stages 1-16 (its new c is not yet written) unless it starts a sequence (it reads
nothing; writes stay in order), so any order of cells is correct and a cell that comes back at least
MIN_REVISIT_DISTANCE = 17 items later never waits: a layer of >= 17 cells streams frame after frame at full
rate, a 3-cell layer waits 14 cycles per frame. In the accelerator the recurrence (frame t+1 needs all of
y_t) keeps visits far apart anyway.

`i.ready` is a flip-flop (a slot is free whatever leaves in the cycle), so a word arrives into a slot and
the head's decision to leave moves only the pointers: no enable decided in the cycle reaches the wide input
words (it fanned out to every input register of every lane and to the register slice in front, the routed
design's worst path). The interlock is decided a cycle ahead for each slot's item, arriving or kept, against
the stages it will meet, into registers; `o.ready` reaches only the queue and the credit counter.
`o.payload` comes from the queue's LUT-RAM (register it).

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

from amaranth.hdl import C, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..spec.numerics import Numerics
from .activation import ActivationPipeline, checked_table
from .credit_queue import CreditQueue
from .design import NO_COLLISIONS, equal_bram_slices
from .fixed import round_shift_saturate
from .interfaces import elementwise_in_layout, elementwise_out_layout
from .multiplier import PipelinedMultiplier

__all__ = ["ElementwiseLayer", "ElementwiseUnit", "revisits_need_checking"]

MULTIPLIER_BITS = 18      # a MULT18X18D's signed operand: wider operands are split (and their parts registered)


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


def revisits_need_checking(design) -> bool:
    """Whether an element-wise unit of the accelerator `design` needs its interlock: the scheduler sends every
    (layer, group) once per frame, frame after frame, so a group comes back after all the other groups of
    every layer; with at least MIN_REVISIT_DISTANCE groups in each layer it never comes back sooner."""
    groups = [design.lane_groups(l) for l in range(design.n_layers)]
    return min(groups) < ElementwiseUnit.MIN_REVISIT_DISTANCE


class ElementwiseUnit(wiring.Component):
    """Steps 2-7 of docs/numerics.md for one cell per cycle, with the cell state of every layer inside.

    Cell j of layer l keeps its c at address sum(cell sizes of layers < l) + j of a cell_bits-wide memory.
    Inputs must name an existing layer and cell; peephole words of a layer without peepholes are ignored.
    LATENCY cycles from the input handshake to o.valid (nothing waiting), one cell per cycle, outputs in
    input order.

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
    revisits_checked : bool
        True (default): the interlock above. False: the caller guarantees that no (layer, cell) comes back
        sooner than MIN_REVISIT_DISTANCE items after its previous visit (unless it starts a sequence), and the
        interlock's comparators are left out (#10: they were a routed late path); an earlier revisit then
        reads a stale c. The accelerator does so when every layer has that many cells per lane.
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

    # The stages where the activation pipelines take their inputs and give their outputs (the numbers of the
    # module docstring are those of ActivationPipeline.LATENCY = 6).
    GATE_STAGE = 6                                                # pre_i, pre_f, pre_g in
    GATES_OUT_STAGE = GATE_STAGE + ActivationPipeline.LATENCY     # i, f, g
    # c_t is written when its item leaves this stage; an input waits while its (layer, cell) is in stages
    # 1 .. WRITE_STAGE (unless it starts a sequence).
    WRITE_STAGE = GATES_OUT_STAGE + 4
    OUTPUT_GATE_STAGE = WRITE_STAGE + 4                           # pre_o, narrowed c_t in
    OUTPUT_GATE_OUT_STAGE = OUTPUT_GATE_STAGE + ActivationPipeline.LATENCY    # o, tanh(c_t)
    QUEUE_STAGE = OUTPUT_GATE_OUT_STAGE + 4    # the stage at which an item is in the output queue (o.valid)
    LATENCY = QUEUE_STAGE + 1  # from the input handshake, through the input buffer (stage 0)
    # So a cell whose previous visit was accepted at least this many cycles (= items at full rate) earlier
    # never waits: a layer of >= MIN_REVISIT_DISTANCE cells streams one cell per cycle frame after frame.
    MIN_REVISIT_DISTANCE = WRITE_STAGE + 1
    # Items past stage 0 and not taken: an item leaving stage 0 each cycle is taken QUEUE_STAGE cycles later,
    # and the credit is registered (it assumes an item leaves in the cycle it is decided): one more.
    OUTPUT_QUEUE_DEPTH = QUEUE_STAGE + 2

    def __init__(self, numerics: Numerics, tables, layers: Sequence[ElementwiseLayer], *, acc_bits: int,
                 layer_bits: int | None = None, cell_index_bits: int | None = None, streams: int = 1,
                 revisits_checked: bool = True):
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
        if not isinstance(revisits_checked, bool):
            raise TypeError(f"revisits_checked must be a bool, got {revisits_checked!r}")
        for function in ("sigmoid", "tanh"):
            checked_table(tables, function, numerics)   # fail here, not at elaboration

        self.numerics = numerics
        self.tables = tables
        self.layers = layers
        self.acc_bits = acc_bits
        self.layer_bits = layer_bits
        self.cell_index_bits = cell_index_bits
        self.streams = streams
        self.revisits_checked = revisits_checked
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
                   layer_bits=design.layer_bits, cell_index_bits=design.cell_index_bits, streams=design.streams,
                   revisits_checked=revisits_need_checking(design))

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
        any_peephole = any(layer.peephole for layer in self.layers)
        m = Module()

        # ---- submodules: the activation datapaths (lanes share a ROM), the cell state, the output queue -------
        m.submodules.sigmoid = sigmoid = ActivationPipeline("sigmoid", n, self.tables, lanes=3)   # i, f, o
        m.submodules.tanh = tanh = ActivationPipeline("tanh", n, self.tables, lanes=2)            # g, tc
        # no collisions: a cell's c is read again only after its write (the interlock, MIN_REVISIT_DISTANCE).
        # In slices of equal width, each within a block RAM's 18-bit port, so that each block's output register
        # takes `c_read_2` (hw/boards/bram_registers.py; #10: 20 bits in one 36-bit-wide DP16KD kept the register
        # in the fabric behind the array's 5.8 ns, a late path of the 16-PE board top, 8.79 ns). Equal widths, not
        # 18 + 2: a narrow slice may become distributed RAM with the address multiplexer in front of its read
        c_read_addr = Signal(range(self.streams * self.cell_depth))
        c_read_data = Signal(signed(n.cell_bits))
        c_write_addr = Signal.like(c_read_addr)
        c_write_data = Signal(signed(n.cell_bits))
        c_write_en = Signal()
        cell_state_ports = []
        for k, (low, width) in enumerate(equal_bram_slices(n.cell_bits)):
            m.submodules[f"cell_state{k}"] = cell_state = Memory(
                shape=width, depth=self.streams * self.cell_depth, init=[], attrs=NO_COLLISIONS)
            cell_state_ports.append((low, width, cell_state.read_port(), cell_state.write_port()))
        out_layout = self.o.payload.shape()
        # the queue's `r_rdy` a flip-flop: an amaranth SyncFIFO's level test through `taken` into `in_flight` was
        # the 16-PE board top's worst path with seed 3 at 336154e (#10: 7.81 ns); `in_flight` is the credit
        # count, so the queue never needs its own
        m.submodules.queue = queue = CreditQueue(out_layout.size, self.OUTPUT_QUEUE_DEPTH)

        def register(value, name, shape=None, reset_less=True):
            """A pipeline register; only valid bits need a reset, data registers go without (cheaper, and
            lets long delay chains map to shift-register LUTs)."""
            reg = Signal(value.shape() if shape is None else shape, name=name, reset_less=reset_less)
            m.d.sync += reg.eq(value)
            return reg

        def carry(value, name, first: int, until: int, reset_less=True) -> dict[int, Signal]:
            """`value` (valid at stage `first`) at every stage first .. until, one register per stage."""
            stages = {first: value}
            for stage in range(first + 1, until + 1):
                stages[stage] = register(stages[stage - 1], f"{name}_{stage}", reset_less=reset_less)
            return stages

        def multiplied(a, b, name, latency):
            """a * b, `latency` cycles later (hw/multiplier.py: in the DSP block's own registers on an ECP5)."""
            m.submodules[name] = multiplier = PipelinedMultiplier(a.shape(), b.shape(), latency)
            m.d.comb += [multiplier.a.eq(a), multiplier.b.eq(b)]
            return multiplier.p

        def product(a, b, name, stage):
            """a * b registered at stage + 2 (operands valid at `stage`). A multiplier's output meets a register
            before any adder: b wider than a MULT18X18D's port is split into an unsigned low part and a signed
            high part whose products are registered at stage + 1 and added in the next."""
            if len(b) <= MULTIPLIER_BITS:
                return multiplied(a, b, name, 2)
            low = multiplied(a, b[:MULTIPLIER_BITS - 1], f"{name}_low", 1)
            high = multiplied(a, b[MULTIPLIER_BITS - 1:].as_signed(), f"{name}_high", 1)
            return register((high << (MULTIPLIER_BITS - 1)) + low, f"{name}_{stage + 2}")

        def per_layer(layer, make):
            """make(l, info) selected by the `layer` signal (layer 0's value for an out-of-range index)."""
            value = make(0, self.layers[0])
            for index in range(1, len(self.layers)):
                value = Mux(layer == index, make(index, self.layers[index]), value)
            return value

        def with_peephole(acc, product, layer, name):
            """acc + align(p * c, fp + cell_frac, FACC) of the stage's layer (acc without peepholes), registered.
            acc + floor((p + h) / 2**k) = floor((acc * 2**k + h + p) / 2**k) with h < 2**k filling the low bits
            of acc * 2**k: one adder."""
            def one_layer(_, info):
                if not info.peephole:
                    return acc
                shift = info.fp + n.cell_frac - info.facc
                if shift <= 0:
                    return acc + (product << -shift)
                return (((acc << shift) | (1 << (shift - 1))) + product) >> shift
            return register(per_layer(layer, one_layer), name)

        def to_pre(total, layer, name):
            """sat(align(total, FACC, pre_frac), pre_bits) of the stage's layer, registered."""
            return register(per_layer(layer, lambda _, info: round_shift_saturate(
                m, total, info.facc - n.pre_frac, n.pre_bits)), name, signed(n.pre_bits))

        # ---- stage 0: a two-slot input buffer, the interlock, the cell-state read --------------------------
        # The interlock's decision (`leaves`) reaches only pointers and valid bits: the wide slots are written
        # under flip-flops (`i.ready`, `i.valid`, the write pointer) and read through a multiplexer that the read
        # pointer selects, so no enable decided in the cycle fans out to every input bit.
        in_layout = self.i.payload.shape()
        slots = [Signal(in_layout, name=f"slot{k}", reset_less=True) for k in range(2)]
        slot_addresses = [Signal(c_read_addr.shape(), name=f"slot{k}_address", reset_less=True) for k in range(2)]
        occupied = [Signal(name=f"occupied{k}") for k in range(2)]
        slot_hazards = [Signal(name=f"slot{k}_hazard") for k in range(2)]
        write_pointer, read_pointer = Signal(name="write_pointer"), Signal(name="read_pointer")
        ready = Signal(init=1)      # both slots empty after reset
        accepted = Signal()
        writes = [Signal(name=f"write{k}") for k in range(2)]
        payload = data.View(in_layout, Mux(read_pointer, slots[1].as_value(), slots[0].as_value()))
        waiting = Mux(read_pointer, occupied[1], occupied[0])     # stage 0 holds an item
        leaves = Signal()           # ... and it goes on to stage 1
        address_0 = Signal(c_read_addr.shape(), name="address_0")
        last = self.QUEUE_STAGE - 1      # the last register stage; the queue is the next
        valid = carry(leaves, "valid", 0, last, reset_less=False)
        layer = carry(payload.layer, "layer", 0, last)
        cell = carry(payload.cell, "cell", 0, last)
        address = carry(address_0, "address", 0, self.WRITE_STAGE)
        first_frame = carry(payload.first_frame, "first_frame", 0, 2)
        acc_i = carry(payload.acc_i, "acc_i", 0, 4)
        acc_f = carry(payload.acc_f, "acc_f", 0, 4)
        gates, gates_out = self.GATE_STAGE, self.GATES_OUT_STAGE
        write, o_gate, o_gate_out = self.WRITE_STAGE, self.OUTPUT_GATE_STAGE, self.OUTPUT_GATE_OUT_STAGE
        acc_g = carry(payload.acc_g, "acc_g", 0, 5)
        acc_o = carry(payload.acc_o, "acc_o", 0, o_gate - 2)

        # ---- stages 1-6: c_prev, the i and f peephole terms, pre-activations ----------------------------
        # the memory's output goes straight into a register with nothing in front (on an ECP5 the block RAM's own
        # output register, hw/boards/bram_registers.py); a first frame's c_prev = 0 is applied behind it, to the
        # peephole operands and to the carried copy (#10: the zeroing in front of the register kept it in the
        # fabric, behind the block's slow unregistered output: a routed late path)
        c_read_2 = register(c_read_data, "c_read_2", signed(n.cell_bits))
        c_prev = carry(register(Mux(first_frame[2], 0, c_read_2), "c_prev_3", signed(n.cell_bits)),
                       "c_prev", 3, gates_out)
        if any_peephole:
            # zeroed into their stage-2 registers: the split products' multipliers take them unregistered
            peep_i_2 = register(Mux(first_frame[1], 0, carry(payload.peep_i, "peep_i", 0, 1)[1]), "peep_i_2")
            peep_f_2 = register(Mux(first_frame[1], 0, carry(payload.peep_f, "peep_f", 0, 1)[1]), "peep_f_2")
            peep_o = carry(payload.peep_o, "peep_o", 0, write)
            sum_i_5 = with_peephole(acc_i[4], product(peep_i_2, c_read_2, "peep_product_i", 2), layer[4], "sum_i_5")
            sum_f_5 = with_peephole(acc_f[4], product(peep_f_2, c_read_2, "peep_product_f", 2), layer[4], "sum_f_5")
        else:
            sum_i_5 = register(acc_i[4], "sum_i_5")
            sum_f_5 = register(acc_f[4], "sum_f_5")
        pre_i = to_pre(sum_i_5, layer[5], f"pre_i_{gates}")
        pre_f = to_pre(sum_f_5, layer[5], f"pre_f_{gates}")
        pre_g = to_pre(acc_g[5], layer[5], f"pre_g_{gates}")
        gate_i, gate_f, gate_g = sigmoid.y[0], sigmoid.y[1], tanh.y[0]      # at gates_out

        # ---- the cell update with one rounding: c_t at the write stage ------------------------------------
        fs = n.cell_sum_frac
        forget_product = product(gate_f, c_prev[gates_out], "forget_product", gates_out)
        input_product = multiplied(gate_i, gate_g, "input_product", 2)
        cell_sum = register((forget_product << (fs - n.unit_frac - n.cell_frac)) +
                            (input_product << (fs - 2 * n.unit_frac)), f"cell_sum_{gates_out + 3}")
        c_t = register(round_shift_saturate(m, cell_sum, fs - n.cell_frac, n.cell_bits), f"c_{write}")

        # ---- o (peeping at c_t) and tanh(c_t) -----------------------------------------------------------
        if any_peephole:
            sum_o = with_peephole(acc_o[o_gate - 2], product(peep_o[write], c_t, "peep_product_o", write),
                                  layer[o_gate - 2], f"sum_o_{o_gate - 1}")
        else:
            sum_o = register(acc_o[o_gate - 2], f"sum_o_{o_gate - 1}")
        pre_o = to_pre(sum_o, layer[o_gate - 1], f"pre_o_{o_gate}")
        c_narrow_first = register(round_shift_saturate(m, c_t, n.cell_frac - n.pre_frac, n.pre_bits),
                                  f"c_narrow_{write + 1}")
        c_narrow = carry(c_narrow_first, "c_narrow", write + 1, o_gate)
        gate_o, tanh_c = sigmoid.y[2], tanh.y[1]       # at o_gate_out

        # ---- m ------------------------------------------------------------------------------------------
        # With tables that pass checked_table, |o * tc| <= ONE**2 and the saturation never fires; it stays
        # because it is the formula of docs/numerics.md and costs two comparators.
        # the product leaves its DSP block into a fabric register before the rounding adder (#10: the DSP's
        # output through the adder and the saturation into m was a routed late path), then is narrowed into m
        output_product = register(multiplied(gate_o, tanh_c, "output_product", 1), f"output_product_{o_gate_out + 2}")
        m_out = register(round_shift_saturate(m, output_product, n.unit_frac, n.unit_bits), f"m_{o_gate_out + 3}",
                         signed(n.unit_bits))
        queued = data.View(out_layout, queue.w_data)
        head = data.View(out_layout, queue.r_data)
        m.d.comb += [
            queue.w_en.eq(valid[last]),
            queued.layer.eq(layer[last]),
            queued.cell.eq(cell[last]),
            queued.m.eq(m_out),
        ]

        # ---- connections ---------------------------------------------------------------------------------
        m.d.comb += [
            sigmoid.en.eq(1),
            tanh.en.eq(1),
            sigmoid.x[0].eq(pre_i),
            sigmoid.x[1].eq(pre_f),
            sigmoid.x[2].eq(pre_o),
            tanh.x[0].eq(pre_g),
            tanh.x[1].eq(c_narrow[o_gate]),
        ]

        # ---- flow control: credits for the queue, the interlock -------------------------------------------
        # Items past stage 1 and not yet taken: counted from stage 1, off the path from the interlock.
        in_flight = Signal(range(self.OUTPUT_QUEUE_DEPTH + 1))
        taken = self.o.valid & self.o.ready
        with m.If(valid[1] & ~taken):
            m.d.sync += in_flight.eq(in_flight + 1)
        with m.Elif(taken & ~valid[1]):
            m.d.sync += in_flight.eq(in_flight - 1)
        # room for one more in the next cycle, even if one leaves stage 0 in this one
        room = Signal()
        m.d.sync += room.eq(in_flight + valid[1] + 1 < self.OUTPUT_QUEUE_DEPTH)

        # The interlock of each slot's item for the next cycle, against stages 1 .. WRITE_STAGE then, which are
        # stages 1 .. WRITE_STAGE - 1 now and the item leaving stage 0: for the word arriving into a slot, and for
        # the item kept in one (the head does not meet itself: if it leaves, its slot is empty). A first frame
        # does not read c_prev, and writes stay in order: it never has to wait.
        def same_cell(a, b):
            return (a.layer == b.layer) & (a.cell == b.cell)

        def meets(key, meets_leaving):
            if not self.revisits_checked:     # the caller keeps revisits far enough apart: no comparators
                return C(0, 1)
            same = [valid[s] & (layer[s] == key.layer) & (cell[s] == key.cell) for s in range(1, self.WRITE_STAGE)]
            return ~key.first_frame & reduce(operator.or_, same, leaves & meets_leaving)
        arriving = self.i.payload
        hazard_arriving = meets(arriving, Mux(read_pointer, same_cell(arriving, slots[1]),
                                              same_cell(arriving, slots[0])))
        slots_same = same_cell(slots[0], slots[1])
        cell_address = per_layer(arriving.layer, lambda index, _: self.cell_bases[index]) + arriving.cell
        if self.streams > 1:    # stream s keeps its cell state at s * cell_depth
            cell_address = cell_address + self.stream * self.cell_depth
        kept = [occupied[k] & ~(leaves & (read_pointer == k)) for k in range(2)]
        m.d.comb += [
            accepted.eq(self.i.valid & ready),
            *[writes[k].eq(accepted & (write_pointer == k)) for k in range(2)],
            leaves.eq(waiting & ~Mux(read_pointer, slot_hazards[1], slot_hazards[0]) & room),
            self.i.ready.eq(ready),
            address_0.eq(Mux(read_pointer, slot_addresses[1], slot_addresses[0])),
            c_read_addr.eq(address_0),
            c_write_addr.eq(address[self.WRITE_STAGE]),
            c_write_data.eq(c_t),
            c_write_en.eq(valid[self.WRITE_STAGE]),
            self.o.valid.eq(queue.r_rdy),
            queue.r_en.eq(self.o.ready),
            self.o.p.eq(head),
        ]
        for low, width, read, write in cell_state_ports:
            m.d.comb += [read.addr.eq(c_read_addr), c_read_data[low:low + width].eq(read.data),
                         write.addr.eq(c_write_addr), write.data.eq(c_write_data[low:low + width]),
                         write.en.eq(c_write_en)]
        # The free slot the next word goes to loads the input every cycle, word or not (its contents count only
        # once it is occupied), so its enable is a flip-flop of its own and not the handshake's AND fanning out
        # to every bit of the slot (#10: 9.0 ns); in the ring that slot is the write pointer's whenever `ready`.
        loads = [Signal(name=f"load{k}", init=int(k == 0)) for k in range(2)]
        ready_next = ~((writes[0] | kept[0]) & (writes[1] | kept[1]))
        write_next = write_pointer ^ accepted
        for k in range(2):
            with m.If(loads[k]):
                m.d.sync += [slots[k].eq(arriving), slot_addresses[k].eq(cell_address)]
            m.d.sync += [
                occupied[k].eq(writes[k] | kept[k]),
                slot_hazards[k].eq(Mux(writes[k], hazard_arriving, meets(slots[k], slots_same))),
            ]
        m.d.sync += [
            write_pointer.eq(write_next),
            read_pointer.eq(read_pointer ^ leaves),
            # a flip-flop: room for a word in the next cycle whatever leaves in it
            ready.eq(ready_next),
            *[loads[k].eq(ready_next & (write_next == k)) for k in range(2)],
        ]
        return m
