"""Every payload layout and port signature that crosses a component boundary in the accelerator.

Widths depend on the design (numerics, layer count, cell count), so the layouts are built by factory
functions: from plain integers (the streams a component can be tested with alone) or from an
`AcceleratorDesign` (hw/design.py). Keeping all of them in this one module lets two components agree on a
boundary without importing each other; a new component (a second element-wise lane, a host link) takes its
ports from here.

Streams (`amaranth.lib.stream`, payload `data.StructLayout`):

    input_word_layout        accelerator input:  x_q[c] of layer 0, `first` = a sequence starts
    output_word_layout       accelerator output: y_q[r] of the last layer, `last` = a frame's last word
    broadcast_layout         scheduler -> broadcaster -> every PE: column `column` of phase `phase`
    elementwise_in_layout    CellReader -> ElementwiseUnit: one cell's gate accumulators and peepholes
    elementwise_out_layout   ElementwiseUnit -> scheduler: m_j
    y_word_layout            ProjReader / m narrowed -> y memory and output buffer: y_l[index]
    activation_in_layout, activation_out_layout   the stand-alone ActivationUnit's streams
    elementwise_group_in_layout, elementwise_group_out_layout
                             CellReader -> LaneElementwise -> scheduler: `lanes` consecutive cells at once
    lane_broadcast_layout    scheduler -> broadcaster -> LaneUnpacker (lanes > 1): up to `lanes` columns

Port signatures (`wiring.Signature`, seen from the side that drives the command / reads):

    CellReadSignature, ProjReadSignature   read-and-reset ports of a PE's accumulators (latency 1)
    ReadoutCommandSignature                scheduler -> CellReader / ProjReader
    YReadCommandSignature                  scheduler -> YReader
    ReadoutStatusSignature                 a running proj readout, as the YReader follows it
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..spec.numerics import Numerics
from .design import AcceleratorDesign, bits_for

__all__ = [
    "elementwise_in_layout", "elementwise_out_layout", "input_word_layout", "output_word_layout",
    "broadcast_layout", "design_broadcast_layout", "cell_data_layout", "gate_sums_layout", "y_word_layout",
    "activation_in_layout", "activation_out_layout", "InputWord", "OutputWord",
    "CellReadSignature", "CELL_READ_DATA_LATENCY",
    "ProjReadSignature", "ReadoutCommandSignature", "YReadCommandSignature",
    "ReadoutStatusSignature", "elementwise_group_in_layout", "elementwise_group_out_layout",
    "lane_broadcast_layout", "design_lane_broadcast_layout",
]


def _check_width(name: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_design(design) -> AcceleratorDesign:
    if not isinstance(design, AcceleratorDesign):
        raise TypeError(f"expected an AcceleratorDesign, got {type(design).__name__}")
    return design


# ---- stream payloads ------------------------------------------------------------------------------------

def elementwise_in_layout(acc_bits: int, peephole_bits: int, layer_bits: int,
                          cell_index_bits: int) -> data.StructLayout:
    """One cell's work for the ElementwiseUnit: its four gate accumulators (bias included, FACC fractional
    bits) and its three peephole weights (0 without peepholes).

    `first_frame` = 1 when the frame starts a sequence, so the unit must use c_prev = 0.
    """
    _check_width("acc_bits", acc_bits, 2)
    _check_width("peephole_bits", peephole_bits, 2)
    _check_width("layer_bits", layer_bits)
    _check_width("cell_index_bits", cell_index_bits)
    return data.StructLayout({
        "layer": unsigned(layer_bits),
        "cell": unsigned(cell_index_bits),
        "first_frame": unsigned(1),
        **cell_data_layout(acc_bits, peephole_bits).members,
    })


def elementwise_out_layout(unit_bits: int, layer_bits: int, cell_index_bits: int) -> data.StructLayout:
    """One cell output m_j of the ElementwiseUnit, (unit_bits, unit_frac)."""
    _check_width("unit_bits", unit_bits, 2)
    _check_width("layer_bits", layer_bits)
    _check_width("cell_index_bits", cell_index_bits)
    return data.StructLayout({
        "layer": unsigned(layer_bits),
        "cell": unsigned(cell_index_bits),
        "m": signed(unit_bits),
    })


def elementwise_group_in_layout(acc_bits: int, peephole_bits: int, layer_bits: int, group_bits: int,
                                lanes: int) -> data.StructLayout:
    """Cells `lanes * group + k` (k = 0 .. lanes-1) of a layer for the LaneElementwise, one per lane:
    their gate accumulators and peephole weights (`cells[k]`; don't-care for a cell past the layer's
    last), `first_frame` as in `elementwise_in_layout`."""
    _check_width("layer_bits", layer_bits)
    _check_width("group_bits", group_bits)
    _check_width("lanes", lanes)
    return data.StructLayout({
        "layer": unsigned(layer_bits),
        "group": unsigned(group_bits),
        "first_frame": unsigned(1),
        "cells": data.ArrayLayout(cell_data_layout(acc_bits, peephole_bits), lanes),
    })


def elementwise_group_out_layout(unit_bits: int, layer_bits: int, group_bits: int, lanes: int) -> data.StructLayout:
    """m of cells `lanes * group + k` (k = 0 .. lanes-1), (unit_bits, unit_frac); don't-care past the
    layer's last cell."""
    _check_width("unit_bits", unit_bits, 2)
    _check_width("layer_bits", layer_bits)
    _check_width("group_bits", group_bits)
    _check_width("lanes", lanes)
    return data.StructLayout({
        "layer": unsigned(layer_bits),
        "group": unsigned(group_bits),
        "m": data.ArrayLayout(signed(unit_bits), lanes),
    })


def input_word_layout(act_bits: int) -> data.StructLayout:
    """One word of the accelerator's input stream: x_q[c] of layer 0.

    `first` is set on the first word of a frame that starts a new sequence (state cleared); it is ignored on
    the other words of a frame.
    """
    _check_width("act_bits", act_bits, 2)
    return data.StructLayout({"value": signed(act_bits), "first": unsigned(1)})


def output_word_layout(act_bits: int) -> data.StructLayout:
    """One word of the accelerator's output stream: y_q[r] of the last layer; `last` marks a frame's end."""
    _check_width("act_bits", act_bits, 2)
    return data.StructLayout({"value": signed(act_bits), "last": unsigned(1)})


def broadcast_layout(act_bits: int, column_bits: int, phase_bits: int) -> data.StructLayout:
    """One activation word sent to every PE's FIFO: the value of column `column` of phase `phase` (an index
    into the PE's phase table: which pointers to read, which accumulators to update, which product shift to
    apply; hw/design.py); `buffer` selects the accumulator copy of a double-buffered phase."""
    _check_width("act_bits", act_bits, 2)
    _check_width("column_bits", column_bits)
    _check_width("phase_bits", phase_bits)
    return data.StructLayout({
        "phase": unsigned(phase_bits),
        "buffer": unsigned(1),
        "column": unsigned(column_bits),
        "value": signed(act_bits),
    })


def design_broadcast_layout(design: AcceleratorDesign) -> data.StructLayout:
    """The broadcast word of a design: the value is wide enough for x, y and m words (in delta mode for
    their deltas)."""
    _check_design(design)
    return broadcast_layout(design.value_bits, design.column_bits, design.phase_bits)


def lane_broadcast_layout(value_bits: int, column_bits: int, phase_bits: int, lanes: int) -> data.StructLayout:
    """A broadcast word of a design with `lanes` > 1: the values of columns `column + k` of phase `phase`
    (`values[k]`, k = 0 .. lanes-1). `value` has bit k set where column `column + k` is sent (its value is
    not zero and the column exists): the broadcaster drops a word whose `value` is 0. x and y words use
    lane 0 only; m words fill every lane."""
    _check_width("value_bits", value_bits, 2)
    _check_width("column_bits", column_bits)
    _check_width("phase_bits", phase_bits)
    _check_width("lanes", lanes)
    return data.StructLayout({
        "phase": unsigned(phase_bits),
        "buffer": unsigned(1),
        "column": unsigned(column_bits),
        "value": unsigned(lanes),
        "values": data.ArrayLayout(signed(value_bits), lanes),
    })


def design_lane_broadcast_layout(design: AcceleratorDesign) -> data.StructLayout:
    """The lane broadcast word of a design (its `lanes`), values as wide as `design_broadcast_layout`'s (in
    delta mode `value` marks the columns sent, hw/delta_filter.py, and `values` carry their deltas)."""
    _check_design(design)
    return lane_broadcast_layout(design.value_bits, design.column_bits, design.phase_bits, design.lanes)


def gate_sums_layout(acc_bits: int) -> data.StructLayout:
    """A cell's four gate sums as a PE's read port gives them (the CellReader adds the bias and peepholes)."""
    _check_width("acc_bits", acc_bits, 2)
    return data.StructLayout({"acc_i": signed(acc_bits), "acc_f": signed(acc_bits), "acc_g": signed(acc_bits),
                              "acc_o": signed(acc_bits)})


def cell_data_layout(acc_bits: int, peephole_bits: int) -> data.StructLayout:
    """A cell on its way into the element-wise pipeline: its four gate accumulators (the bias added) and its
    three peephole weights."""
    _check_width("peephole_bits", peephole_bits, 2)
    return data.StructLayout({
        **gate_sums_layout(acc_bits).members,
        "peep_i": signed(peephole_bits), "peep_f": signed(peephole_bits), "peep_o": signed(peephole_bits),
    })


def y_word_layout(design: AcceleratorDesign) -> data.StructLayout:
    """A y word on its way into the y memory (and, for the last layer, the output buffer):
    y_layer[index] = value."""
    _check_design(design)
    widest = max(layer.recurrent_size for layer in design.layers)
    return data.StructLayout({
        "layer": unsigned(design.layer_bits),
        "index": unsigned(bits_for(widest - 1)),
        "value": signed(design.act_bits),
    })


def activation_in_layout(numerics: Numerics, tag_shape=unsigned(0)) -> data.StructLayout:
    """ActivationUnit input payload: the pre-activation word `x` and a caller-defined `tag`."""
    return data.StructLayout({"x": signed(numerics.pre_bits), "tag": tag_shape})


def activation_out_layout(numerics: Numerics, tag_shape=unsigned(0)) -> data.StructLayout:
    """ActivationUnit output payload: the unit word `y` and the `tag` that came in with its `x`."""
    return data.StructLayout({"y": signed(numerics.unit_bits), "tag": tag_shape})


# The default-numerics top-level words (act_bits = 16), for documentation and quick use.
InputWord = input_word_layout(16)
OutputWord = output_word_layout(16)


# ---- port signatures --------------------------------------------------------------------------------------

CELL_READ_DATA_LATENCY = 2   # the gate banks' read register, the words registered (hw/pe.py)


class CellReadSignature(wiring.Signature):
    """Read-and-reset of one cell's gate accumulators, seen from the reader.

    `en` with (`layer`, `index` = the PE's local cell, `buffer` = accumulator copy of layer 0) at cycle t
    gives `data` (a `gate_sums_layout`: the sums without the bias; with split sums, hw/design.py, the sum banks',
    which start at the bias) at t + CELL_READ_DATA_LATENCY, and zero in every cycle that is not so placed after an
    `en` (the reader ORs the PEs' data without a selection).
    """

    def __init__(self, design: AcceleratorDesign):
        _check_design(design)
        super().__init__({
            "en": Out(1),
            "layer": Out(design.layer_bits),
            "index": Out(design.cell_index_bits),
            "buffer": Out(1),
            "data": In(gate_sums_layout(design.acc_bits)),
        })


class ProjReadSignature(wiring.Signature):
    """Read-and-reset of one proj accumulator, seen from the reader (latency 1, data held)."""

    def __init__(self, design: AcceleratorDesign):
        _check_design(design)
        widest = max(layer.proj_size or 1 for layer in design.layers)
        super().__init__({
            "en": Out(1),
            "layer": Out(design.layer_bits),
            "index": Out(bits_for(widest - 1)),
            "data": In(signed(design.acc_bits)),
        })


class ReadoutCommandSignature(wiring.Signature):
    """Start of a readout engine, seen from the scheduler.

    `start` (a pulse, only while not `busy`) with the `layer` to read; `busy` until the last word has left.
    With `cell_readout` (the CellReader) also `first_frame` (passed on to the ElementwiseUnit) and `buffer`
    (accumulator copy of layer 0), both captured at `start`.
    """

    def __init__(self, design: AcceleratorDesign, *, cell_readout: bool):
        _check_design(design)
        if not isinstance(cell_readout, bool):
            raise TypeError(f"cell_readout must be a bool, got {type(cell_readout).__name__}")
        members = {"start": Out(1), "layer": Out(design.layer_bits), "busy": In(1)}
        if cell_readout:
            members["first_frame"] = Out(1)
            members["buffer"] = Out(1)
        super().__init__(members)


class YReadCommandSignature(wiring.Signature):
    """Start of the YReader, seen from the scheduler.

    `start` (a pulse, only while not `busy`): broadcast every word of `layer`'s y as columns of phase
    `phase`, accumulator copy `buffer`; `busy` until the last word has been taken. With more than one
    stream also the `stream` whose y is read.
    """

    def __init__(self, design: AcceleratorDesign):
        _check_design(design)
        streams = {"stream": Out(range(design.streams))} if design.streams > 1 else {}
        super().__init__({
            "start": Out(1),
            "layer": Out(design.layer_bits),
            "phase": Out(design.phase_bits),
            "buffer": Out(1),
            "busy": In(1),
            **streams,
        })


class ReadoutStatusSignature(wiring.Signature):
    """A proj readout as a follower sees it: `start` pulses when the readout of `layer` starts, `busy` while
    it runs. Its y words arrive one per cycle in index order."""

    def __init__(self, design: AcceleratorDesign):
        _check_design(design)
        super().__init__({"start": Out(1), "layer": Out(design.layer_bits), "busy": Out(1)})
