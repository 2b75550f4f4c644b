"""Verilog whose initialised memories load `$readmemh` image files instead of holding their words inline.

Inline initial contents cost time at every stage (Amaranth checks each word, writes each bit into RTLIL, and
Yosys prints one assignment per word) and make the Verilog grow with the model. Here:

- elaboration runs with an `ImageGeneration` platform; a memory that holds exactly one of the encoder's
  files (entries, pointers) takes `image_init(platform, words)` as its `init` and so is elaborated empty;
- every other memory with non-zero initial contents (bias-initialised gate banks, bias and peephole ROMs,
  activation tables) is elaborated as usual, and its contents are taken from the netlist;
- the RTLIL is written without those memories' `$meminit` cells, and after Yosys has written the Verilog an
  `initial $readmemh("memory_images/<file>", <memory>);` follows each one's declaration.

The image files go to `IMAGE_DIR` next to the Verilog: the encoder's own `peNN_entries.hex` /
`peNN_pointers.hex` (copied from the encoded directory, or written in the same format when there is none)
and `<module path>.<memory>.hex` for the others. `$readmemh` paths are relative to the working directory
of the tool, so run tools in the Verilog's directory or copy IMAGE_DIR next to where they run
(docs/architecture.md, *Generating Verilog*).

This relies on Amaranth 0.5's netlist and RTLIL emitter (`amaranth.hdl._ir`, `amaranth.back.rtlil`), which
are not public API; the project pins Amaranth 0.5.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.back import verilog as amaranth_verilog
from amaranth.hdl import _ir, _nir
from amaranth.hdl._ast import SignalDict, Value, ValueCastable
from amaranth.lib import wiring

from .design import AcceleratorDesign, entry_banks, memory_depth

__all__ = ["IMAGE_DIR", "ImageGeneration", "MemoryImage", "image_init", "convert_with_images", "write_images",
           "hex_text"]

IMAGE_DIR = "memory_images"


class ImageGeneration:
    """The elaboration platform of Verilog generation with memory images (hw/verilog.py `generate`).

    Components do not need to know it: only the `init` of a memory holding an encoder file goes through
    `image_init`, which empties it under this platform."""


def _fills_memory(words) -> bool:
    """A file of `words` words initialises the whole memory (no padding word the file lacks)."""
    return memory_depth(len(words)) == len(words)


def image_init(platform, words: list[int]) -> list[int]:
    """`init` of a memory that holds exactly the encoder's file of `words`: the words, or nothing when
    elaborating for Verilog with images (the Verilog then reads the file)."""
    return [] if isinstance(platform, ImageGeneration) and _fills_memory(words) else words


@dataclass(frozen=True)
class MemoryImage:
    """One memory initialised from a file: `module` (Verilog module, e.g. `sparselstm_top.pe0`), `memory`
    (its name there), `file` (relative to the Verilog's directory), `words` (unsigned, `width` bits each),
    `source`: "encoded" (the encoder's file) or "generated" (written from the netlist)."""

    module: str
    memory: str
    file: str
    width: int
    words: tuple[int, ...]
    source: str

    def describe(self) -> dict:
        return {"module": self.module, "memory": self.memory, "file": self.file, "width": self.width,
                "depth": len(self.words), "source": self.source}


def hex_text(words, width: int) -> str:
    """$readmemh text in the encoder's format (docs/format.md): one word per line, lower-case,
    ceil(width/4) digits."""
    digits = (width + 3) // 4
    return "".join(f"{word:0{digits}x}\n" for word in words)


def _encoder_files(design: AcceleratorDesign) -> dict[tuple[str, str], tuple[str, list[int], str]]:
    """(module, memory) -> (file name, words, source) of the memories elaborated empty because their words
    come from the encoded model: the encoder's own file when a memory holds it whole ("encoded"), else one
    file per entry bank, sliced from the encoder's image ("generated"). The names are those of SparsePE's
    memories inside Accelerator's `pe{p}` submodules."""
    digits = max(2, len(str(design.n_pes - 1)))
    files = {}
    for p, pe in enumerate(design.pes):
        prefix = f"pe{p:0{digits}d}"
        banks = entry_banks(pe.entries)
        if len(banks) == 1:
            if pe.entries and _fills_memory(pe.entries):
                files[(f"pe{p}", "entries")] = (f"{prefix}_entries.hex", list(pe.entries), "encoded")
        else:
            for b, words in enumerate(banks):
                if _fills_memory(words):
                    files[(f"pe{p}", f"entries{b}")] = (f"{prefix}_entries{b}.hex", words, "generated")
        if pe.pointers and _fills_memory(pe.pointers):
            files[(f"pe{p}", "pointers")] = (f"{prefix}_pointers.hex", list(pe.pointers), "encoded")
    return files


class _ImageEmitter(rtlil.ModuleEmitter):
    """Amaranth's RTLIL module emitter, leaving out the initial contents of the image memories."""

    def __init__(self, *args, image_memories: set, **kwargs):
        super().__init__(*args, **kwargs)
        self._image_memories = image_memories

    def emit_memory(self, cell_idx, cell):
        if (self.module.name, cell.name) not in self._image_memories:
            super().emit_memory(cell_idx, cell)


def _ports(top: wiring.Component) -> dict:
    """The top-level ports as Amaranth's `verilog.convert` derives them from the signature."""
    ports = {}
    for path, member, value in top.signature.flatten(top):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Value):
            direction = _ir.PortDirection.Input if member.flow == wiring.In else _ir.PortDirection.Output
            ports["__".join(map(str, path))] = (value, direction)
    return ports


def _find_images(netlist, top_name: str, design: AcceleratorDesign) -> list[tuple[tuple, str, MemoryImage]]:
    """(module path, memory name, image) of each memory that reads a file: those holding an encoder file
    (elaborated empty) and those with non-zero contents in the netlist."""
    encoder_files = _encoder_files(design)
    images = []
    for cell in netlist.cells:
        if not isinstance(cell, _nir.Memory):
            continue
        module_path = netlist.modules[cell.module_idx].name
        key = (".".join(module_path[1:]), cell.name)
        mask = (1 << cell.width) - 1
        if key in encoder_files:
            file, words, source = encoder_files.pop(key)
            if len(words) != cell.depth:
                raise ValueError(f"memory {key[0]}.{key[1]}: {cell.depth} words, its file {file} {len(words)}")
            image = MemoryImage(".".join(module_path), cell.name, f"{IMAGE_DIR}/{file}", cell.width,
                                tuple(word & mask for word in words), source)
        elif any(cell.init):
            file = ".".join((*module_path[1:], cell.name)) + ".hex"
            image = MemoryImage(".".join(module_path), cell.name, f"{IMAGE_DIR}/{file}",
                                cell.width, tuple(word & mask for word in cell.init), "generated")
        else:
            continue
        images.append((module_path, cell.name, image))
    if encoder_files:
        missing = ", ".join(f"{module}.{memory}" for module, memory in encoder_files)
        raise ValueError(f"no memory named {missing} in {top_name}: _encoder_files names the memories that "
                         "hold the encoder's files, keep it in step with SparsePE")
    return images


_MODULE_HEADER = re.compile(r"^module \\?([^\s(]+) ?\(", re.MULTILINE)


def _insert_readmemh(text: str, images: list[MemoryImage]) -> str:
    """`initial $readmemh(...)` after each image memory's declaration in its module."""
    by_module = {}
    for image in images:
        by_module.setdefault(image.module, []).append(image)
    pieces, last = [], 0
    headers = list(_MODULE_HEADER.finditer(text))
    for index, header in enumerate(headers):
        module_images = by_module.pop(header.group(1), [])
        if not module_images:
            continue
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        body = text[header.start():end]
        for image in module_images:
            declaration = re.compile(rf"^(\s*)reg (?:\[\d+:0\] )?{re.escape(image.memory)} \[\d+:0\];$",
                                     re.MULTILINE)
            body, found = declaration.subn(
                lambda m, image=image: f'{m.group(0)}\n{m.group(1)}initial $readmemh("{image.file}", '
                                       f'{image.memory});', body, count=1)
            if not found:
                raise ValueError(f"memory {image.memory} is not declared in module {image.module} of the "
                                 "Verilog Yosys wrote")
        pieces += [text[last:header.start()], body]
        last = end
    if by_module:
        raise ValueError(f"modules {sorted(by_module)} not found in the Verilog Yosys wrote")
    return "".join(pieces) + text[last:]


def convert_with_images(top: wiring.Component, top_name: str, design: AcceleratorDesign
                        ) -> tuple[str, list[MemoryImage]]:
    """The Verilog text of `top` (module `top_name`) reading its memory images, and the images."""
    fragment = _ir.Fragment.get(top, ImageGeneration())
    netlist = _ir.build_netlist(fragment, ports=_ports(top), name=top_name)
    found = _find_images(netlist, top_name, design)
    image_memories = {(module_path, memory) for module_path, memory, _ in found}
    # rtlil.convert_fragment with the emitter swapped for one that leaves the image memories' contents out
    empty_checker = rtlil.EmptyModuleChecker(netlist)
    builder = rtlil.Design(emit_src=False)
    for module_idx, module in enumerate(netlist.modules):
        if empty_checker.is_empty(module_idx):
            continue
        module_builder = builder.module(".".join(module.name), src_loc=module.src_loc)
        if module_idx == 0:
            module_builder.attribute("top", 1)
        _ImageEmitter(module_builder, netlist, module, SignalDict(), empty_checker=empty_checker,
                      image_memories=image_memories).emit()
    images = [image for _, _, image in found]
    text = amaranth_verilog._convert_rtlil_text(str(builder))
    return _insert_readmemh(text, images), images


def write_images(images: list[MemoryImage], outdir: Path, encoded_dir=None) -> None:
    """Write the image files under `outdir`/IMAGE_DIR (removed first: no stale image survives, and inline
    Verilog leaves none); the encoder's files are copied from `encoded_dir` when given, after checking they
    hold the words the memory does."""
    image_dir = Path(outdir) / IMAGE_DIR
    if image_dir.exists():
        shutil.rmtree(image_dir)
    if images:
        image_dir.mkdir(parents=True)
    for image in images:
        text = hex_text(image.words, image.width).encode()
        target = Path(outdir) / image.file
        if image.source == "encoded" and encoded_dir is not None:
            source = Path(encoded_dir) / Path(image.file).name
            if source.read_bytes() != text:
                raise ValueError(f"{source} does not hold the words of memory {image.module}.{image.memory}: "
                                 "the Verilog must be generated from the model in that directory")
            shutil.copyfile(source, target)
        else:
            target.write_bytes(text)
