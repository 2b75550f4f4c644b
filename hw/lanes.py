"""Element-wise lanes: `lanes` cells per cycle through the element-wise pass, `lanes` m words per broadcast.

With one lane the element-wise pass takes a cycle per cell and the m words one broadcast word each, so a
frame lasts at least about one cycle per cell of every layer; with many PEs and little work per cell that
bounds the frame (docs/architecture.md, *Lanes*). Two components lift it:

- `LaneElementwise`: `lanes` ElementwiseUnits in lock step. Lane k takes cells k, k + lanes, ... of every
  layer (its own cell-state range); the CellReader reads the `lanes` cells of a group from `lanes`
  different PEs in one cycle (cells are interleaved over the PEs and `lanes` divides the PE count).
- `LaneUnpacker` (hw/lane_unpacker.py), one in front of each PE: the broadcast words of a design with
  lanes > 1 carry up to `lanes` columns (the m words of a group; x and y words use one); the unpacker hands
  the PE one column per cycle and drops the columns in which the PE has no entry, so a group costs the PE
  only its entries, and an x or y word in whose column the PE has none costs it nothing (a PE pops a column
  per cycle: at 64 PEs, about 1.5 entries per recurrent column, the empty ones cost the walker a cycle each
  behind short columns).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .design import AcceleratorDesign
from .elementwise import ElementwiseLayer, ElementwiseUnit, revisits_need_checking
from .interfaces import elementwise_group_in_layout, elementwise_group_out_layout
from .skid import SkidBuffer

__all__ = ["LaneElementwise"]


class LaneElementwise(wiring.Component):
    """`lanes` ElementwiseUnits in lock step: one group of `lanes` consecutive cells per cycle.

    Lane k computes cells `lanes * group + k`; its unit keeps their cell state at its local index `group`
    (a cell past the layer's last has a state slot of its own, so its don't-care input harms nothing).
    Every lane takes an item in the same cycle (all units are ready together: they see the same groups), so
    their outputs leave together. Each lane's output passes a register slice of its own before the lanes'
    words meet: the lanes sit apart on a large chip, and the m slice's `ready` reached every lane's output
    queue in one cycle (#10: lane 1's queue 9.6 ns from it across the 32-PE board top). LATENCY =
    ElementwiseUnit.LATENCY + 1 (the slice), outputs in input order.

    Parameters
    ----------
    numerics, tables, acc_bits : as for ElementwiseUnit
    layers : sequence of ElementwiseLayer
        The layers as the model has them (cell_size = the layer's cells).
    lanes : int
        Number of lanes (>= 1).
    layer_bits, group_bits : int or None
        Widths of the `layer` and `group` fields (None: the narrowest that fits).
    streams : int
        Independent sequences, a cell state each (ElementwiseUnit).
    revisits_checked : bool
        As for ElementwiseUnit, for every lane (a lane's cells are its groups).
    `LaneElementwise.from_design(design)` takes all of these from an AcceleratorDesign.

    Attributes
    ----------
    i : In(stream.Signature(elementwise_group_in_layout(acc_bits, peephole_bits, layer_bits, group_bits, lanes)))
    o : Out(stream.Signature(elementwise_group_out_layout(unit_bits, layer_bits, group_bits, lanes)))
        `layer` and `group` as given, `m[k]` of cell `lanes * group + k`.
    stream : In(range(streams))
        With more than one stream only: as ElementwiseUnit.stream, for every lane.
    """

    LATENCY = ElementwiseUnit.LATENCY + 1

    def __init__(self, numerics, tables, layers, *, acc_bits: int, lanes: int, layer_bits: int | None = None,
                 group_bits: int | None = None, streams: int = 1, revisits_checked: bool = True):
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"lanes must be an integer, got {type(lanes).__name__}")
        if lanes < 1:
            raise ValueError(f"lanes must be an integer >= 1, got {lanes!r}")
        layers = tuple(layers)
        if not all(isinstance(layer, ElementwiseLayer) for layer in layers):
            raise TypeError("layers must be a sequence of ElementwiseLayer")
        self.lanes = lanes
        # every lane holds one slot per group of every layer
        lane_layers = tuple(ElementwiseLayer(-(-layer.cell_size // lanes), layer.facc, layer.fp) for layer in layers)
        self._units = [ElementwiseUnit(numerics, tables, lane_layers, acc_bits=acc_bits, layer_bits=layer_bits,
                                       cell_index_bits=group_bits, streams=streams,
                                       revisits_checked=revisits_checked) for _ in range(lanes)]
        unit = self._units[0]
        super().__init__({
            "i": In(stream.Signature(elementwise_group_in_layout(acc_bits, numerics.peephole_bits, unit.layer_bits,
                                                                 unit.cell_index_bits, lanes))),
            "o": Out(stream.Signature(elementwise_group_out_layout(numerics.unit_bits, unit.layer_bits,
                                                                   unit.cell_index_bits, lanes))),
            **({"stream": In(range(streams))} if streams > 1 else {}),
        })

    @classmethod
    def from_design(cls, design: AcceleratorDesign) -> "LaneElementwise":
        layers = tuple(ElementwiseLayer(cell_size=int(info.cell_size), facc=int(info.facc),
                                        fp=int(info.fp) if info.peephole else None) for info in design.layers)
        return cls(design.numerics, design.tables, layers, acc_bits=design.acc_bits, lanes=design.lanes,
                   layer_bits=design.layer_bits, group_bits=design.group_bits, streams=design.streams,
                   revisits_checked=revisits_need_checking(design))

    def elaborate(self, platform):
        m = Module()
        first = self._units[0]
        slices = []
        for k, unit in enumerate(self._units):
            m.submodules[f"lane{k}"] = unit
            m.submodules[f"lane{k}_slice"] = out_slice = SkidBuffer(unit.o.payload.shape())
            slices.append(out_slice)
            wiring.connect(m, unit.o, out_slice.i)
        first_slice = slices[0]
        for k, (unit, out_slice) in enumerate(zip(self._units, slices)):
            cell = self.i.payload.cells[k]
            m.d.comb += [
                # the lanes see the same (layer, group) items, so their interlocks and credits agree: lane 0
                # speaks for all (an AND over every lane's interlock would lengthen the path)
                unit.i.valid.eq(self.i.valid & first.i.ready),
                unit.i.payload.layer.eq(self.i.payload.layer),
                unit.i.payload.cell.eq(self.i.payload.group),
                unit.i.payload.first_frame.eq(self.i.payload.first_frame),
                *[getattr(unit.i.payload, name).eq(getattr(cell, name))
                  for name in ("acc_i", "acc_f", "acc_g", "acc_o", "peep_i", "peep_f", "peep_o")],
                # the slices see the same words and the same `ready`: they move in lock step too
                out_slice.o.ready.eq(self.o.ready),
                self.o.payload.m[k].eq(out_slice.o.payload.m),
            ]
            if unit.streams > 1:
                m.d.comb += unit.stream.eq(self.stream)
        m.d.comb += [
            self.i.ready.eq(first.i.ready),
            # the lanes hold the same groups at the same stages: lane 0 speaks for all
            self.o.valid.eq(first_slice.o.valid),
            self.o.payload.layer.eq(first_slice.o.payload.layer),
            self.o.payload.group.eq(first_slice.o.payload.cell),
        ]
        return m
