"""The PEs in Verilog generated with memory images: one PE module, elaborated and converted once, and an
instance of it per PE that reads its own image files.

Every PE of a design is the same hardware with its own memory contents (hw/pe_shape.py), so Amaranth need
not elaborate and convert N PEs: under the `ImageGeneration` platform the accelerator takes a `PEInstance`
per PE (`pe_for`), an `Instance` of the module `<top>.pe` with the string parameter IMAGE_PREFIX
(`memory_images/peNN`), and `shared_pe_module` describes that module (SparsePE 0, its memories reading
`{IMAGE_PREFIX, "_<memory>.hex"}`) and every PE's images, computed from the design without elaboration
(`pe_memory_contents`). The Amaranth simulator and the inline Verilog keep elaborating real PEs.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, ResetSignal
from amaranth.hdl._ast import ValueCastable
from amaranth.lib import wiring

from .design import AcceleratorDesign
from .memory_images import IMAGE_DIR, ImageGeneration, MemoryImage, SharedModule
from .pe import SparsePE
from .pe_shape import pe_memory_contents, pe_signature

__all__ = ["PE_MODULE", "PEInstance", "pe_for", "pe_prefix", "shared_pe_module"]

PE_MODULE = "pe"            # the PE module is `<top>.pe`
# SparsePE's memories holding one of the encoder's files (`peNN_<memory>.hex`, docs/format.md), when its
# words fill the memory
_ENCODER_FILES = ("entries", "pointers")


def pe_prefix(design: AcceleratorDesign, pe_index: int) -> str:
    """The prefix of PE `pe_index`'s files, the encoder's (`pe03` of 16 PEs, `pe003` of 128)."""
    return f"pe{pe_index:0{max(2, len(str(design.n_pes - 1)))}d}"


class PEInstance(wiring.Component):
    """PE `pe_index` of `design` as an instance of the PE module `module` (`shared_pe_module`), its
    IMAGE_PREFIX naming its image files.

    Parameters
    ----------
    design : AcceleratorDesign
    pe_index : int
    module : str
        Verilog name of the PE module.

    Attributes
    ----------
    The ports of SparsePE (hw/pe_shape.py `pe_signature`), wired to the instance's ports of the same names
    (clock `clk` and reset `rst` of the `sync` domain besides).
    """

    def __init__(self, design: AcceleratorDesign, pe_index: int, module: str):
        if not isinstance(design, AcceleratorDesign):
            raise TypeError(f"PEInstance needs an AcceleratorDesign, got {type(design).__name__}")
        if not isinstance(pe_index, int) or isinstance(pe_index, bool):
            raise TypeError(f"pe_index must be an integer, got {type(pe_index).__name__}")
        if not 0 <= pe_index < design.n_pes:
            raise ValueError(f"pe_index must be in [0, {design.n_pes}), got {pe_index!r}")
        self._module, self._prefix = module, f"{IMAGE_DIR}/{pe_prefix(design, pe_index)}"
        super().__init__(pe_signature(design))

    def elaborate(self, platform):
        ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for path, member, value in self.signature.flatten(self):
            if isinstance(value, ValueCastable):
                value = value.as_value()
            ports[("i_" if member.flow == wiring.In else "o_") + "__".join(map(str, path))] = value
        return Instance(self._module, p_IMAGE_PREFIX=self._prefix, **ports)


def pe_for(platform, design: AcceleratorDesign, pe_index: int) -> SparsePE | PEInstance:
    """PE `pe_index` of the accelerator: an instance of the PE module when elaborated for Verilog with
    memory images (`ImageGeneration`), else the SparsePE itself."""
    if isinstance(platform, ImageGeneration):
        return PEInstance(design, pe_index, f"{platform.top_name}.{PE_MODULE}")
    return SparsePE(design, pe_index)


def shared_pe_module(design: AcceleratorDesign, top_name: str) -> SharedModule:
    """The PE module of `design`'s Verilog (top module `top_name`) and the images of its instances: each
    memory the model fills that holds non-zero words in some PE (or one of the encoder's files) reads
    `memory_images/peNN_<memory>.hex`."""
    contents = [pe_memory_contents(design, p) for p in range(design.n_pes)]
    words = [{name: memory.words() for name, memory in pe.items()} for pe in contents]
    encoded = [{name for name in _ENCODER_FILES if name in pe and len(pe[name].init) == pe[name].depth}
               for pe in contents]
    memories = tuple(sorted(name for name in contents[0]
                            if any(any(pe[name]) for pe in words) or any(name in pe for pe in encoded)))
    images = tuple(MemoryImage(f"{top_name}.pe{p}", name, f"{IMAGE_DIR}/{pe_prefix(design, p)}_{name}.hex",
                               contents[p][name].width, tuple(words[p][name]),
                               "encoded" if name in encoded[p] else "generated")
                   for p in range(design.n_pes) for name in memories)
    return SharedModule(SparsePE(design, 0), f"{top_name}.{PE_MODULE}", memories, images,
                        f"{IMAGE_DIR}/{pe_prefix(design, 0)}")
