"""The per-PE parts in Verilog generated with memory images: one module per kind of part (the PE, the lane
unpacker in front of it), elaborated and converted once, and an instance of it per PE that reads its own
image files.

Every PE of a design is the same hardware with its own memory contents (hw/pe_shape.py), and so is every
LaneUnpacker (its group mask ROM), so Amaranth need not elaborate and convert N of each: under the
`ImageGeneration` platform the accelerator takes, for each part, a `SharedInstance` (`per_pe`): an
`Instance` of the module `<top>.pe` / `<top>.unpacker` with the string parameter IMAGE_PREFIX
(`memory_images/peNN`, `memory_images/peNN_unpacker`). `shared_modules` describes those modules (the parts
of PE 0) and every PE's images, computed from the design without elaborating the parts. The Amaranth
simulator and the inline Verilog keep elaborating every part.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, ResetSignal
from amaranth.hdl._ir import PortDirection
from amaranth.lib import wiring

from .design import AcceleratorDesign, memory_depth
from .lane_unpacker import LaneUnpacker
from .memory_images import IMAGE_DIR, ImageGeneration, MemoryImage, SharedModule, component_ports
from .pe import SparsePE
from .pe_shape import pe_memory_contents

__all__ = ["SharedInstance", "per_pe", "pe_prefix", "shared_modules"]

# SparsePE's memories holding one of the encoder's files (`peNN_<memory>.hex`, docs/format.md), when its
# words fill the memory (the pointer memory holds each column's flags too: pe_shape.column_pointers)
_ENCODER_FILES = ("entries",)
# LaneUnpacker's group mask ROM (hw/lanes.py), holding `group_masks()` words
_UNPACKER_MASKS = "masks"


def pe_prefix(design: AcceleratorDesign, pe_index: int) -> str:
    """The prefix of PE `pe_index`'s files, the encoder's (`pe03` of 16 PEs, `pe003` of 128)."""
    return f"pe{pe_index:0{max(2, len(str(design.n_pes - 1)))}d}"


def _file_prefix(design: AcceleratorDesign, kind: str, pe_index: int) -> str:
    return f"{IMAGE_DIR}/{pe_prefix(design, pe_index)}" + ("" if kind == "pe" else f"_{kind}")


class SharedInstance(wiring.Component):
    """An instance of the Verilog module `module`, written once (memory_images.SharedModule), standing for
    `part`: `part`'s ports wired to the instance's ports of the same names (and the `sync` domain's clock
    `clk` and reset `rst`), the string parameter IMAGE_PREFIX = `prefix`. `part` itself is not elaborated.

    Parameters
    ----------
    part : wiring.Component
    module, prefix : str
    """

    def __init__(self, part: wiring.Component, module: str, prefix: str):
        if not isinstance(part, wiring.Component):
            raise TypeError(f"SharedInstance stands for a wiring.Component, got {part!r}")
        part._MustUse__silence = True       # only its ports are used: its module is elaborated from another part
        self._module, self._prefix = module, prefix
        super().__init__(part.signature)

    def elaborate(self, platform):
        ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for name, (value, direction) in component_ports(self).items():
            ports[("i_" if direction == PortDirection.Input else "o_") + name] = value
        return Instance(self._module, p_IMAGE_PREFIX=self._prefix, **ports)


def per_pe(platform, part: wiring.Component, kind: str, design: AcceleratorDesign, pe_index: int):
    """`part` of PE `pe_index` (its SparsePE, kind "pe", or its LaneUnpacker, kind "unpacker"; the
    accelerator's submodule is named `<kind><pe_index>`): the part itself, or, when elaborated for Verilog
    with memory images (`ImageGeneration`), an instance of the module `<top>.<kind>`."""
    if isinstance(platform, ImageGeneration):
        return SharedInstance(part, f"{platform.top_name}.{kind}", _file_prefix(design, kind, pe_index))
    return part


def _pe_module(design: AcceleratorDesign, top_name: str) -> SharedModule:
    """Each memory of the PE that the model fills with non-zero words in some PE (or with one of the
    encoder's files) reads `memory_images/peNN_<memory>.hex`."""
    contents = [pe_memory_contents(design, p) for p in range(design.n_pes)]
    words = [{name: memory.words() for name, memory in pe.items()} for pe in contents]
    encoded = [{name for name in _ENCODER_FILES if name in pe and len(pe[name].init) == pe[name].depth}
               for pe in contents]
    memories = tuple(sorted(name for name in contents[0]
                            if any(any(pe[name]) for pe in words) or any(name in pe for pe in encoded)))
    images = tuple(MemoryImage(f"{top_name}.pe{p}", name, f"{_file_prefix(design, 'pe', p)}_{name}.hex",
                               contents[p][name].width, tuple(words[p][name]),
                               "encoded" if name in encoded[p] else "generated")
                   for p in range(design.n_pes) for name in memories)
    return SharedModule(SparsePE(design, 0), f"{top_name}.pe", memories, images, _file_prefix(design, "pe", 0))


def _unpacker_module(design: AcceleratorDesign, top_name: str) -> SharedModule:
    """The group mask ROM of every unpacker reads `memory_images/peNN_unpacker_masks.hex`."""
    unpackers = [LaneUnpacker(design, p) for p in range(design.n_pes)]
    images = []
    for p, unpacker in enumerate(unpackers):
        unpacker._MustUse__silence = p > 0      # only the mask words of the others are used
        words = unpacker.group_masks()[1]
        images.append(MemoryImage(f"{top_name}.unpacker{p}", _UNPACKER_MASKS,
                                  f"{_file_prefix(design, 'unpacker', p)}_{_UNPACKER_MASKS}.hex", design.lanes,
                                  tuple(words) + (0,) * (memory_depth(len(words)) - len(words)), "generated"))
    return SharedModule(unpackers[0], f"{top_name}.unpacker", (_UNPACKER_MASKS,), tuple(images),
                        _file_prefix(design, "unpacker", 0))


def shared_modules(design: AcceleratorDesign, top_name: str) -> tuple[SharedModule, ...]:
    """The modules the accelerator's SharedInstances (`per_pe`) instantiate, with their images."""
    return (_pe_module(design, top_name),) + ((_unpacker_module(design, top_name),) if design.lanes > 1 else ())
