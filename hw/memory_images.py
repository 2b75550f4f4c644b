"""Verilog whose initialised memories load `$readmemh` image files instead of holding their words inline,
with the modules that differ only in memory contents (the PEs) written once.

Inline initial contents cost time at every stage (Amaranth checks each word, writes each bit into RTLIL, and
Yosys prints one assignment per word) and make the Verilog grow with the model. Here:

- elaboration runs with an `ImageGeneration` platform: the accelerator then instantiates a PE module
  (hw/shared_pe.py) instead of elaborating every PE; that module is elaborated and converted once, as a
  `SharedModule` with the string parameter IMAGE_PREFIX, and its memories read
  `{IMAGE_PREFIX, "_<memory>.hex"}` (Yosys, Verilator and Icarus accept that expression; the default prefix
  is PE 0's, so a tool reading the module alone finds files too);
- every other memory with non-zero initial contents (activation tables, ...) takes its contents from the
  netlist;
- other modules whose RTLIL is the same but for memory contents become one Verilog module too: when they
  read images they are children of the top module and get IMAGE_PREFIX the same way;
- the RTLIL is written without the image memories' `$meminit` cells, and after Yosys has written the
  Verilog an `initial $readmemh(...)` follows each one's declaration.

The image files go to `IMAGE_DIR` next to the Verilog: the shared module's (for the PEs: the encoder's own
`peNN_entries.hex` / `peNN_pointers.hex`, copied from the encoded directory or written in the same format,
and `peNN_<memory>.hex` for their other memories), `<prefix>_<memory>.hex` for the other shared modules and
`<module path>.<memory>.hex` for the rest.
`$readmemh` paths are relative to the working directory of the tool, so run tools in the Verilog's
directory or copy IMAGE_DIR next to where they run (docs/architecture.md, *Generating Verilog*).

This relies on Amaranth 0.5's netlist and RTLIL emitter (`amaranth.hdl._ir`, `amaranth.back.rtlil`), which
are not public API; the project pins Amaranth 0.5.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.back import verilog as amaranth_verilog
from amaranth.hdl import _ir, _nir
from amaranth.hdl._ast import Const, SignalDict, Value, ValueCastable
from amaranth.lib import wiring

__all__ = ["IMAGE_DIR", "ImageGeneration", "MemoryImage", "SharedModule",
           "component_ports", "convert_with_images", "write_images", "hex_text"]

IMAGE_DIR = "memory_images"


class ImageGeneration:
    """The elaboration platform of Verilog generation with memory images (hw/verilog.py `generate`) of the
    top module `top_name`. Under it the accelerator instantiates the PE module (hw/shared_pe.py)."""

    def __init__(self, top_name: str, family: str | None = None):
        self.top_name = top_name
        self.family = family          # the device family of vendor primitives (hw/multiplier.py), or None


@dataclass(frozen=True)
class MemoryImage:
    """One memory initialised from a file: `module` (the instance path of the memory's module, e.g.
    `sparselstm_top.pe0`), `memory` (its name there), `file` (relative to the Verilog's directory), `words`
    (unsigned, `width` bits each), `source`: "encoded" (the encoder's file) or "generated" (written from the
    netlist)."""

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


@dataclass(frozen=True)
class SharedModule:
    """A module of the Verilog elaborated once and instantiated with the string parameter IMAGE_PREFIX (as
    hw/shared_pe.py's SharedInstance does): `component` converted as module `name`, whose memories `memories`
    read `{IMAGE_PREFIX, "_<memory>.hex"}`; `images`: the files of every instance; `default_prefix`: the
    parameter's default (the first instance's)."""

    component: wiring.Component
    name: str
    memories: tuple[str, ...]
    images: tuple[MemoryImage, ...]
    default_prefix: str


class _SharingEmitter(rtlil.ModuleEmitter):
    """Amaranth's RTLIL module emitter, leaving out the initial contents of the memories named in `omitted`
    (None: of every memory) and the wires of struct fields, naming each submodule's module
    `module_names[index]`, with the cell parameters `parameters.get(index, {})`, and keeping the flip-flops
    of signals with the `keep` attribute."""

    def __init__(self, *args, omitted, module_names, parameters, **kwargs):
        super().__init__(*args, **kwargs)
        self._omitted, self._module_names, self._parameters = omitted, module_names, parameters

    def emit_memory(self, cell_idx, cell):
        if self._omitted is not None and cell.name not in self._omitted:
            super().emit_memory(cell_idx, cell)

    def emit_flip_flop(self, cell_idx, cell):
        """Amaranth 0.5's, with a `keep` of the signal's attributes on the flip-flop cell too, where Yosys
        looks for it: on the wire alone (Amaranth's choice) it does not stop opt_merge from merging identical
        registers (hw/lanes.py)."""
        super().emit_flip_flop(cell_idx, cell)
        if "keep" in cell.attributes:
            flip_flop = next(reversed(self.builder.contents.values()))   # the cell just emitted
            flip_flop.attribute("keep", cell.attributes["keep"])

    def emit_signal_fields(self):
        """None: a wire per field of every `data.View` signal (`payload.value`, ...) is a debugging aid that
        makes up a third of the Verilog of 128 PEs; the packed signals keep their names."""

    def emit_submodules(self):      # Amaranth 0.5's, with the module name and parameters chosen here
        for submodule_idx in self.module.submodules:
            submodule = self.netlist.modules[submodule_idx]
            if not self.empty_checker.is_empty(submodule_idx):
                ports = {name: self.sigspec(value) for name, (value, _flow) in submodule.ports.items()}
                ports.update({name: self.io_sigspec(value) for name, (value, _dir) in submodule.io_ports.items()})
                self.builder.cell(f"\\{self._module_names[submodule_idx]}", submodule.name[-1], ports=ports,
                                  parameters=self._parameters.get(submodule_idx, {}), src_loc=submodule.cell_src_loc)


def component_ports(top: wiring.Component) -> dict[str, tuple[Value, _ir.PortDirection]]:
    """The ports of a component as Amaranth's `verilog.convert` derives them from its signature (name ->
    (value, direction)), without the constant members (an always-ready stream's ready: the PE's `i.ready`),
    which Amaranth's own `convert` cannot take. SharedInstance wires an instance's ports by the same rule."""
    ports = {}
    for path, member, value in top.signature.flatten(top):
        if isinstance(value, Const):
            continue
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Value):
            direction = _ir.PortDirection.Input if member.flow == wiring.In else _ir.PortDirection.Output
            ports["__".join(map(str, path))] = (value, direction)
    return ports


def _image_words(netlist, shared: tuple[str, ...] = ()) -> dict[int, dict[str, tuple[int, ...]]]:
    """module index -> {memory: words} of every memory with non-zero contents in the netlist, but for the
    top module's memories `shared` (they read a file per instance)."""
    found = {}
    for cell in netlist.cells:
        if isinstance(cell, _nir.Memory) and any(cell.init) and not (cell.module_idx == 0 and cell.name in shared):
            found.setdefault(cell.module_idx, {})[cell.name] = cell.init
    return found


@dataclass
class _Group:
    """Modules of the netlist emitted as one Verilog module `name`. With `parameterised`, the module has the
    string parameter IMAGE_PREFIX and its memories `memories` read `{IMAGE_PREFIX, "_<memory>.hex"}`."""

    members: list[int]
    name: str = ""
    parameterised: bool = False
    memories: tuple[str, ...] = ()


def _group_name(paths: list[tuple[str, ...]], taken: set[str]) -> str:
    """The Verilog name of a module shared by the modules at `paths`: their path, with the digits taken off
    the end of the parts where the paths differ (`pe0`, `pe1` -> `pe`); made unique among `taken`."""
    parts = [part if all(len(path) > i and path[i] == part for path in paths) else part.rstrip("0123456789") or part
             for i, part in enumerate(paths[0])]
    name = base = ".".join(parts)
    count = 1
    while name in taken:
        count += 1
        name = f"{base}_{count}"
    return name


def _port_key(module) -> tuple:
    return tuple(sorted((name, len(value), flow) for name, (value, flow) in module.ports.items()))


def _share_modules(netlist, empty_checker, images: dict) -> dict[int, _Group]:
    """module index -> its group. Modules whose RTLIL is the same (memory contents aside) share one Verilog
    module when no memory below them reads a file, or when only their own memories do and their parent is the
    top module, which then passes each instance its IMAGE_PREFIX. Every other module is a group of its own."""
    groups, by_key, below = {}, {}, {}
    # only modules with the same ports can share one; the others are not emitted twice to find out
    port_counts = Counter(_port_key(module) for module in netlist.modules)

    def visit(index):
        module = netlist.modules[index]
        children = [child for child in module.submodules if not empty_checker.is_empty(child)]
        for child in children:
            visit(child)
        below[index] = bool(images.get(index)) or any(below[child] for child in children)
        shareable = module.parent is not None and not any(below[child] for child in children) and (
            not images.get(index) or module.parent == 0)
        if not shareable or port_counts[_port_key(module)] == 1:
            groups[index] = _Group([index])
            return
        scratch = rtlil.Design(emit_src=False)
        _SharingEmitter(scratch.module("shared"), netlist, module, SignalDict(), empty_checker=empty_checker,
                        omitted=None, module_names={child: str(id(groups[child])) for child in children},
                        parameters={}).emit()
        key = str(scratch)
        group = by_key.setdefault(key, _Group([]))
        group.members.append(index)
        groups[index] = group

    visit(0)
    distinct = list({id(group): group for group in groups.values()}.values())
    taken = {".".join(netlist.modules[group.members[0]].name) for group in distinct if len(group.members) == 1}
    for group in distinct:
        paths = [netlist.modules[index].name for index in group.members]
        group.name = ".".join(paths[0]) if len(paths) == 1 else _group_name(paths, taken)
        taken.add(group.name)
        group.parameterised = len(paths) > 1 and any(images.get(index) for index in group.members)
        if group.parameterised:
            group.memories = tuple(sorted({memory for index in group.members for memory in images.get(index, {})}))
    return groups


def _images(netlist, groups: dict[int, _Group], found: dict) -> list[tuple[int, MemoryImage]]:
    """(module index, image) of every memory that reads a file. A shared module's memory reads one in every
    instance (zeros where an instance's contents are), `<instance>_<memory>.hex`; a module of its own reads
    `<module path>.<memory>.hex`."""
    cells = {(cell.module_idx, cell.name): cell for cell in netlist.cells if isinstance(cell, _nir.Memory)}
    images = []
    for index, group in groups.items():
        path = netlist.modules[index].name
        own = found.get(index, {})
        for memory in group.memories if group.parameterised else sorted(own):
            cell = cells[(index, memory)]
            words = own.get(memory, cell.init)
            file = f"{path[-1]}_{memory}.hex" if group.parameterised else ".".join((*path[1:], memory)) + ".hex"
            mask = (1 << cell.width) - 1
            images.append((index, MemoryImage(".".join(path), memory, f"{IMAGE_DIR}/{file}", cell.width,
                                              tuple(word & mask for word in words), "generated")))
    return images


_MODULE_HEADER = re.compile(r"^module \\?([^\s(]+) ?\(", re.MULTILINE)


def _insert_readmemh(text: str, reads: dict[str, tuple[str | None, list[tuple[str, str]]]]) -> str:
    """In each module named in `reads` (module -> (default IMAGE_PREFIX or None, [(memory, file expression)])):
    the IMAGE_PREFIX parameter after the port list when it has one, `initial $readmemh(...)` after each
    memory's declaration."""
    reads = dict(reads)
    pieces, last = [], 0
    headers = list(_MODULE_HEADER.finditer(text))
    for index, header in enumerate(headers):
        if header.group(1) not in reads:
            continue
        default_prefix, memories = reads.pop(header.group(1))
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        body = text[header.start():end]
        if default_prefix is not None:
            port_list_end = body.index(");\n") + 3
            body = f'{body[:port_list_end]}  parameter IMAGE_PREFIX = "{default_prefix}";\n{body[port_list_end:]}'
        for memory, file in memories:
            declaration = re.compile(rf"^(\s*)reg (?:\[\d+:0\] )?{re.escape(memory)} \[\d+:0\];$", re.MULTILINE)
            body, found = declaration.subn(
                lambda m, memory=memory, file=file: f"{m.group(0)}\n{m.group(1)}initial $readmemh({file}, {memory});",
                body, count=1)
            if not found:
                raise ValueError(f"memory {memory} is not declared in module {header.group(1)} of the Verilog "
                                 "Yosys wrote")
        pieces += [text[last:header.start()], body]
        last = end
    if reads:
        raise ValueError(f"modules {sorted(reads)} not found in the Verilog Yosys wrote")
    return "".join(pieces) + text[last:]


def _check_shared(netlist, shared: SharedModule, found: dict) -> None:
    """`shared`'s images fit its memories, and no other memory of the module has contents (it would be the
    first instance's in every instance)."""
    cells = {cell.name: cell for cell in netlist.cells if isinstance(cell, _nir.Memory) and cell.module_idx == 0}
    for image in shared.images:
        cell = cells.get(image.memory)
        if cell is None or (cell.width, cell.depth) != (image.width, len(image.words)):
            raise ValueError(f"image {image.file} ({len(image.words)} words of {image.width} bits) does not fit "
                             f"a memory {image.memory} of module {shared.name}")
    if found:
        names = sorted(f"{'.'.join(netlist.modules[index].name)}.{memory}" for index, memories in found.items()
                       for memory in memories)
        raise ValueError(f"memories {names} of the shared module {shared.name} have contents but no image per "
                         "instance")


def _emit_netlist(builder, component: wiring.Component, name: str, platform, shared: SharedModule | None = None
                  ) -> tuple[dict, list[MemoryImage]]:
    """Emit the modules of `component`, converted as module `name` (the top module of the design unless it
    is `shared`'s component), into the RTLIL `builder`, leaving out the contents of every memory that reads a
    file; return what `_insert_readmemh` inserts for them and their images."""
    fragment = _ir.Fragment.get(component, platform)
    netlist = _ir.build_netlist(fragment, ports=component_ports(component), name=name)
    empty_checker = rtlil.EmptyModuleChecker(netlist)
    shared_memories = shared.memories if shared is not None else ()
    found = _image_words(netlist, shared_memories)
    if shared is not None:
        _check_shared(netlist, shared, found)
    groups = _share_modules(netlist, empty_checker, found)
    images = _images(netlist, groups, found)
    module_names = {index: group.name for index, group in groups.items()}
    parameters = {index: {"IMAGE_PREFIX": f"{IMAGE_DIR}/{netlist.modules[index].name[-1]}"}
                  for index, group in groups.items() if group.parameterised}
    reads = {}
    if shared is not None:
        reads[name] = (shared.default_prefix,
                       [(memory, f'{{IMAGE_PREFIX, "_{memory}.hex"}}') for memory in shared_memories])
    # rtlil.convert_fragment, emitting one module per group with the image memories' contents left out
    for index, group in groups.items():
        if index != group.members[0]:
            continue
        module = netlist.modules[index]
        memories = group.memories if group.parameterised else tuple(found.get(index, {}))
        module_builder = builder.module(group.name, src_loc=module.src_loc)
        if index == 0 and shared is None:
            module_builder.attribute("top", 1)
        omitted = set(memories) | (set(shared_memories) if index == 0 else set())
        _SharingEmitter(module_builder, netlist, module, SignalDict(), empty_checker=empty_checker,
                        omitted=omitted, module_names=module_names, parameters=parameters).emit()
        if group.parameterised:
            reads[group.name] = (parameters[index]["IMAGE_PREFIX"],
                                 [(memory, f'{{IMAGE_PREFIX, "_{memory}.hex"}}') for memory in memories])
    for index, image in images:
        if not groups[index].parameterised:
            reads.setdefault(groups[index].name, (None, []))[1].append((image.memory, f'"{image.file}"'))
    return reads, [image for _, image in images]


def convert_with_images(top: wiring.Component, top_name: str, shared: tuple[SharedModule, ...] = (),
                        family: str | None = None) -> tuple[str, list[MemoryImage]]:
    """The Verilog text of `top` (module `top_name`) and of the modules `shared` it instantiates, reading
    their memory images, and the images. Modules that differ only in memory contents are one Verilog module,
    instantiated with their IMAGE_PREFIX. `family`: elaborated for that device family (ImageGeneration)."""
    platform = ImageGeneration(top_name, family)
    builder = rtlil.Design(emit_src=False)
    reads, images = _emit_netlist(builder, top, top_name, platform)
    for module in shared:
        module_reads, module_images = _emit_netlist(builder, module.component, module.name, platform, module)
        reads.update(module_reads)
        images += module_images + list(module.images)
    text = amaranth_verilog._convert_rtlil_text(str(builder))
    return _insert_readmemh(text, reads), images


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
