"""Payload layouts of every stream in the accelerator (amaranth.lib.data).

Widths depend on the design (numerics, layer count, cell count), so most layouts are built by factory
functions from plain integers; `hw/design.py` (AcceleratorDesign) supplies the integers. Keeping all of them
in one file is what lets two components agree on a stream without importing each other.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

__all__ = [
    "elementwise_in_layout", "elementwise_out_layout", "input_word_layout", "output_word_layout",
    "broadcast_layout", "InputWord", "OutputWord",
]


def _check_width(name: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


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
        "acc_i": signed(acc_bits),
        "acc_f": signed(acc_bits),
        "acc_g": signed(acc_bits),
        "acc_o": signed(acc_bits),
        "peep_i": signed(peephole_bits),
        "peep_f": signed(peephole_bits),
        "peep_o": signed(peephole_bits),
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


def broadcast_layout(act_bits: int, column_bits: int, segment_bits: int) -> data.StructLayout:
    """One activation word sent to every PE's FIFO: the value of column `column` of segment `segment`
    (index into the PE's segment (phase) table: which pointers to read and which product shift to apply);
    `buffer` selects the accumulator copy of a double-buffered segment (hw/design.py)."""
    _check_width("act_bits", act_bits, 2)
    _check_width("column_bits", column_bits)
    _check_width("segment_bits", segment_bits)
    return data.StructLayout({
        "segment": unsigned(segment_bits),
        "buffer": unsigned(1),
        "column": unsigned(column_bits),
        "value": signed(act_bits),
    })


# The default-numerics top-level words (act_bits = 16), for documentation and quick use.
InputWord = input_word_layout(16)
OutputWord = output_word_layout(16)
