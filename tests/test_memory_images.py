# amaranth: UnusedElaboratable=no
"""Verilog with memory images (hw/memory_images.py): the same contents as inline, the encoder's own files,
the sidecar's list, Yosys finding the files from the Verilog's directory, the PEs as one module reading
their own files, and the same simulation as inline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparselstm.hw.memory_images import (IMAGE_DIR, MemoryImage, SharedModule, convert_with_images, hex_text,
                                         write_images)
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.verilog import TOP_NAME, generate
from sparselstm.sw.format import encode, write_encoded
from sparselstm.sw.fixedpoint import Numerics
from sparselstm.sw.model import random_model
from sparselstm.sw.pruning import prune_model
from sparselstm.sw.quantize import quantize_model

_MODULE = re.compile(r"^module \\?([^\s(]+) ?\((.*?)^endmodule", re.MULTILINE | re.DOTALL)
_INLINE_MEMORY = re.compile(r"^\s*reg (?:\[\d+:0\] )?(\w+) \[(\d+):0\];\n\s*initial begin\n(.*?)^\s*end$",
                            re.MULTILINE | re.DOTALL)
_READMEMH = re.compile(r'^\s*reg (?:\[\d+:0\] )?(\w+) \[(\d+):0\];\n'
                       r'\s*initial \$readmemh\((?:"([^"]+)"|\{IMAGE_PREFIX, "([^"]+)"\}), (\w+)\);$', re.MULTILINE)
_INSTANCE = re.compile(r'^\s*\\?(\S+)\s+#\(\s*\.IMAGE_PREFIX\("([^"]+)"\)\s*\)\s*(\w+) \(', re.MULTILINE)


def _encoded(n_pes=3):
    model = random_model(11, 8, 4, num_layers=2, peephole=True, seed=5)
    pruned, _ = prune_model(model, 0.5, n_pes)
    return encode(quantize_model(pruned, Numerics()), n_pes)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(encoded_dir, images_dir, images sidecar, inline_dir) of one model."""
    encoded = _encoded()
    encoded_dir = tmp_path_factory.mktemp("encoded")
    write_encoded(encoded, encoded_dir)
    images_dir, inline_dir = tmp_path_factory.mktemp("images"), tmp_path_factory.mktemp("inline")
    info = generate(encoded, HardwareParams(fifo_depth=4), images_dir, encoded_dir=encoded_dir)
    generate(encoded, HardwareParams(fifo_depth=4), inline_dir, encoded_dir=encoded_dir, memory_images=False)
    return encoded_dir, images_dir, info, inline_dir


def _inline_contents(text: str) -> dict[tuple[str, str], list[int]]:
    """(module, memory) -> words of every memory Yosys initialises with an `initial begin` block."""
    contents = {}
    for module, body in _MODULE.findall(text):
        for memory, last, block in _INLINE_MEMORY.findall(body):
            words = [0] * (int(last) + 1)
            for index, value in re.findall(rf"{memory}\[(\d+)\] = \d+'h([0-9a-fA-F]+);", block):
                words[int(index)] = int(value, 16)
            contents[(module, memory)] = words
    return contents


def _image_reads(text: str) -> dict[tuple[str, str], tuple[str, int]]:
    """(module instance path, memory) -> (file, depth) of every `$readmemh` that follows its memory's
    declaration; a module reading `{IMAGE_PREFIX, suffix}` once for each of the top's instances of it."""
    modules = dict(_MODULE.findall(text))
    instances = {}
    for module, prefix, instance in _INSTANCE.findall(modules[TOP_NAME]):
        instances.setdefault(module, []).append((f"{TOP_NAME}.{instance}", prefix))
    reads = {}
    for module, body in modules.items():
        for memory, last, file, suffix, target in _READMEMH.findall(body):
            assert target == memory
            if file:
                reads[(module, memory)] = (file, int(last) + 1)
            for path, prefix in instances.get(module, []) if suffix else []:
                reads[(path, memory)] = (prefix + suffix, int(last) + 1)
    return reads


def test_images_hold_what_the_inline_verilog_initialises(both):
    _, images_dir, info, inline_dir = both
    inline = _inline_contents((inline_dir / f"{TOP_NAME}.v").read_text())
    with_images = (images_dir / f"{TOP_NAME}.v").read_text()
    reads = _image_reads(with_images)
    # every memory with non-zero contents moved to a file, every other one stayed inline
    assert set(reads) == {key for key, words in inline.items() if any(words)}
    still_inline = _inline_contents(with_images)     # by module: one module holds every PE's
    assert not any(any(words) for words in still_inline.values())
    assert {memory for _, memory in still_inline} == {memory for (_, memory), words in inline.items() if not any(words)}
    assert {"pe0.entries", "pe2.column_pointers", "pe1.layer_rom", "cell_reader.constants_rom0",
            "elementwise.lane0.tanh.rom.memory"} <= {
        f"{module.removeprefix(TOP_NAME + '.')}.{memory}" for module, memory in reads}
    for key, (file, depth) in reads.items():
        lines = (images_dir / file).read_text().splitlines()
        assert [int(line, 16) for line in lines] == inline[key] and len(lines) == depth, key


def test_sidecar_lists_the_images_the_verilog_reads(both):
    _, images_dir, info, _ = both
    reads = _image_reads((images_dir / f"{TOP_NAME}.v").read_text())
    listed = {(image["module"], image["memory"]): (image["file"], image["depth"])
              for image in info["memory_images"]}
    assert listed == reads
    assert all(image["file"].startswith(f"{IMAGE_DIR}/") for image in info["memory_images"])
    assert json.loads((images_dir / f"{TOP_NAME}.json").read_text())["memory_images"] == info["memory_images"]


def test_entry_and_pointer_memories_load_the_encoders_files(both, tmp_path):
    encoded_dir, images_dir, info, _ = both
    encoded = [image for image in info["memory_images"] if image["source"] == "encoded"]
    assert {image["file"] for image in encoded} == {f"{IMAGE_DIR}/pe{p:02d}_{memory}.hex"
                                                     for p in range(3) for memory in ("entries",)}
    for image in encoded:
        encoder_file = encoded_dir / image["file"].removeprefix(f"{IMAGE_DIR}/")
        assert (images_dir / image["file"]).read_bytes() == encoder_file.read_bytes()
    # without the encoded directory the same files are written in the encoder's format
    generate(_encoded(), HardwareParams(fifo_depth=4), tmp_path)
    for image in encoded:
        assert (tmp_path / image["file"]).read_bytes() == (images_dir / image["file"]).read_bytes()


def test_a_different_encoder_file_is_refused(tmp_path):
    encoded_dir = tmp_path / "encoded"
    write_encoded(_encoded(), encoded_dir)
    entries = encoded_dir / "pe01_entries.hex"
    lines = entries.read_text().splitlines()
    lines[0] = ("1" if lines[0][0] == "0" else "0") + lines[0][1:]       # one word changed
    entries.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="pe01_entries.hex does not hold the words of memory"):
        generate(_encoded(), None, tmp_path / "out", encoded_dir=encoded_dir)


def test_inline_generation_writes_no_images_and_removes_stale_ones(both, tmp_path):
    _, _, _, inline_dir = both
    assert not (inline_dir / IMAGE_DIR).exists()
    assert "$readmemh" not in (inline_dir / f"{TOP_NAME}.v").read_text()
    generate(_encoded(), None, tmp_path)
    info = generate(_encoded(), None, tmp_path, memory_images=False)
    assert info["memory_images"] == [] and not (tmp_path / IMAGE_DIR).exists()


def test_hex_text_is_the_encoders_format():
    assert hex_text([0, 0x3ffff, 5], 18) == "00000\n3ffff\n00005\n"
    assert hex_text([1], 1) == "1\n" and hex_text([], 8) == ""


def test_yosys_reads_the_images_from_the_verilogs_directory(both, yosys):
    _, images_dir, info, _ = both
    # read_verilog fails on a $readmemh file it cannot open; flattened, every PE's memories are the top's
    result = subprocess.run([*yosys, "-q", "-p", f"read_verilog {TOP_NAME}.v; hierarchy -top {TOP_NAME}; proc; "
                             "flatten; memory_collect; write_rtlil memories.il"], cwd=images_dir, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rtlil = (images_dir / "memories.il").read_text()
    cells = re.findall(r"^  cell \$mem_v2 .*?^  end$", rtlil, re.MULTILINE | re.DOTALL)
    pe_images = [image for image in info["memory_images"] if image["module"].startswith(f"{TOP_NAME}.pe")]
    assert {image["memory"] for image in pe_images} >= {"entries", "column_pointers", "phase_rom", "layer_rom"}
    for image in pe_images:
        memid = image["module"].removeprefix(f"{TOP_NAME}.") + "." + image["memory"]
        cell = next(cell for cell in cells if f'parameter \\MEMID "\\\\{memid}"' in cell)
        init = re.search(r"parameter \\INIT \d+'([01]+)", cell)[1]
        words = [int(line, 16) for line in (images_dir / image["file"]).read_text().splitlines()]
        assert int(init, 2) == sum(word << (image["width"] * index) for index, word in enumerate(words)), memid


def test_every_pe_is_one_verilog_module(both):
    _, images_dir, _, inline_dir = both
    modules = dict(_MODULE.findall((images_dir / f"{TOP_NAME}.v").read_text()))
    assert f"{TOP_NAME}.pe" in modules and f"{TOP_NAME}.pe.fifo" in modules
    assert not [name for name in modules if re.match(rf"{TOP_NAME}\.pe\d", name)]
    assert _INSTANCE.findall(modules[TOP_NAME]) == [(f"{TOP_NAME}.pe", f"{IMAGE_DIR}/pe{p:02d}", f"pe{p}")
                                                    for p in range(3)]
    # inline contents: Amaranth's one module per PE
    inline_modules = dict(_MODULE.findall((inline_dir / f"{TOP_NAME}.v").read_text()))
    assert {f"{TOP_NAME}.pe{p}" for p in range(3)} <= set(inline_modules)


class _Table(wiring.Component):
    """A ROM of four `width`-bit `words`, read at `addr` without a clock."""

    def __init__(self, width, words):
        self._width, self._words = width, words
        super().__init__({"addr": In(2), "data": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = Memory(shape=self._width, depth=4, init=self._words)
        port = rom.read_port(domain="comb")
        m.d.comb += [port.addr.eq(self.addr), self.data.eq(port.data)]
        return m


class _Tables(wiring.Component):
    """Two ROMs alike but for their contents (one all zero) and one of another width."""

    def __init__(self):
        super().__init__({"addr": In(2), "a": Out(8), "b": Out(8), "c": Out(9)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.t0 = t0 = _Table(8, [1, 2, 3, 4])
        m.submodules.t1 = t1 = _Table(8, [0, 0, 0, 0])
        m.submodules.t2 = t2 = _Table(9, [9, 10, 11, 12])
        for table, output in ((t0, self.a), (t1, self.b), (t2, self.c)):
            m.d.comb += [table.addr.eq(self.addr), output.eq(table.data)]
        return m


def test_modules_alike_but_for_their_contents_share_a_module_the_others_do_not(tmp_path):
    if shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    text, images = convert_with_images(_Tables(), "tables")
    modules = dict(_MODULE.findall(text))
    assert {"tables.t", "tables.t2"} <= set(modules) and "tables.t0" not in modules and "tables.t1" not in modules
    assert {(image.module, image.file) for image in images} == {
        ("tables.t0", f"{IMAGE_DIR}/t0_rom.hex"), ("tables.t1", f"{IMAGE_DIR}/t1_rom.hex"),
        ("tables.t2", f"{IMAGE_DIR}/t2.rom.hex")}
    write_images(images, tmp_path)
    (tmp_path / "tables.v").write_text(text)
    (tmp_path / "bench.v").write_text(
        "module bench; reg [1:0] addr = 2; wire [7:0] a, b; wire [8:0] c;\n"
        "  tables dut(.addr(addr), .a(a), .b(b), .c(c));\n"
        '  initial begin #1 $display("%0d %0d %0d", a, b, c); $finish; end\nendmodule\n')
    subprocess.run(["iverilog", "-o", "bench.vvp", "tables.v", "bench.v"], cwd=tmp_path, check=True)
    result = subprocess.run(["vvp", "bench.vvp"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "3 0 11"


def test_images_and_inline_verilog_simulate_alike(tmp_path):
    """PEs of different sizes (21 cells of two layers over 4 PEs, two lanes) as one module reading images,
    and inline: the same words in the same cycles on Icarus."""
    from sparselstm.sim import tools
    from sparselstm.sim.runner import run_accelerator_sim
    from sparselstm.sw.fixedpoint import quantize_input
    from sparselstm.sw.pipeline import compress_and_encode

    try:
        tools.find_simulator("icarus")
    except tools.SimulatorNotFoundError as error:
        pytest.skip(str(error))
    model = random_model(9, 21, 10, num_layers=2, peephole=True, seed=8)
    encoded = compress_and_encode(model, 4, 0.3, True).encoded
    encoded_dir = tmp_path / "encoded"
    write_encoded(encoded, encoded_dir)
    x_q, _ = quantize_input(np.random.default_rng(8).normal(0.0, 1.5, (3, 9)), encoded.numerics)
    results = []
    for memory_images in (True, False):
        verilog_dir = tmp_path / f"verilog_{memory_images}"
        generate(encoded, HardwareParams(lanes=2), verilog_dir, encoded_dir=encoded_dir, memory_images=memory_images)
        result = run_accelerator_sim(verilog_dir, encoded_dir, x_q, build_dir=tmp_path / f"sim_{memory_images}",
                                     stall_in=0.2, stall_out=0.3, seed=8, encoded=encoded)
        assert result.passed, result.failure_summary()
        results.append(result)
    with_images, inline = results
    np.testing.assert_array_equal(with_images.outputs, inline.outputs)
    assert with_images.frame_done_cycles == inline.frame_done_cycles
    assert with_images.status == inline.status and with_images.counters == inline.counters


@pytest.mark.parametrize("n_pes, lanes", [(1, 1), (6, 2), (8, 4)])
def test_instances_of_one_pe_module_compute_the_golden_model(tmp_path, n_pes, lanes):
    """The Verilog with one PE (and unpacker) module instantiated per PE, at several PE and lane counts:
    every output word equal to the golden model's on Icarus."""
    from sparselstm.sim import tools
    from sparselstm.sim.runner import run_accelerator_sim
    from sparselstm.sw.fixedpoint import quantize_input
    from sparselstm.sw.pipeline import compress_and_encode

    try:
        tools.find_simulator("icarus")
    except tools.SimulatorNotFoundError as error:
        pytest.skip(str(error))
    model = random_model(7, 19, 9, num_layers=2, peephole=True, seed=n_pes)
    encoded = compress_and_encode(model, n_pes, 0.4, True).encoded
    encoded_dir = tmp_path / "encoded"
    write_encoded(encoded, encoded_dir)
    info = generate(encoded, HardwareParams(lanes=lanes), tmp_path / "verilog", encoded_dir=encoded_dir)
    modules = dict(_MODULE.findall((tmp_path / "verilog" / f"{TOP_NAME}.v").read_text()))
    assert not [name for name in modules if re.match(rf"{TOP_NAME}\.(pe|unpacker)\d", name)]
    assert len(_INSTANCE.findall(modules[TOP_NAME])) == n_pes * (1 if lanes == 1 else 2)
    assert info["lanes"] == lanes
    x_q, _ = quantize_input(np.random.default_rng(n_pes).normal(0.0, 1.5, (3, 7)), encoded.numerics)
    result = run_accelerator_sim(tmp_path / "verilog", encoded_dir, x_q, build_dir=tmp_path / "sim",
                                 stall_in=0.2, stall_out=0.2, seed=n_pes, encoded=encoded)
    assert result.passed, result.failure_summary()
    np.testing.assert_array_equal(result.outputs, result.expected)


def test_each_instance_reads_its_own_images_and_one_pe_is_elaborated(tmp_path, monkeypatch):
    from sparselstm.hw.pe import SparsePE

    elaborated = []
    elaborate = SparsePE.elaborate
    monkeypatch.setattr(SparsePE, "elaborate",
                        lambda self, platform: elaborated.append(self) or elaborate(self, platform))
    encoded = _encoded(n_pes=4)
    info = generate(encoded, HardwareParams(lanes=2), tmp_path)
    assert len(elaborated) == 1        # the PE module; the top module holds instances of it
    modules = dict(_MODULE.findall((tmp_path / f"{TOP_NAME}.v").read_text()))
    instances = _INSTANCE.findall(modules[TOP_NAME])
    assert sorted(instances) == sorted(
        [(f"{TOP_NAME}.pe", f"{IMAGE_DIR}/pe{p:02d}", f"pe{p}") for p in range(4)]
        + [(f"{TOP_NAME}.unpacker", f"{IMAGE_DIR}/pe{p:02d}_unpacker", f"unpacker{p}") for p in range(4)])
    # every instance's files are its own: distinct, and the PEs' hold their own entries
    files = [image["file"] for image in info["memory_images"]]
    assert len(set(files)) == len(files)
    reads = _image_reads((tmp_path / f"{TOP_NAME}.v").read_text())
    for p in range(4):
        file, depth = reads[(f"{TOP_NAME}.pe{p}", "entries")]
        words = [int(line, 16) for line in (tmp_path / file).read_text().splitlines()]
        assert words == list(encoded.pes[p].entries) + [0] * (depth - len(encoded.pes[p].entries))
        assert (f"{TOP_NAME}.unpacker{p}", "masks") in reads


def test_a_shared_module_needs_an_image_for_every_memory_with_contents():
    table = _Table(8, [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"have contents but no image per instance"):
        convert_with_images(_Tables(), "tables", (SharedModule(table, "tables.shared", (), (), "x"),))
    image = MemoryImage("tables.t9", "rom", f"{IMAGE_DIR}/t9_rom.hex", 8, (1, 2, 3), "generated")
    with pytest.raises(ValueError, match=r"3 words of 8 bits\) does not fit a memory rom"):
        convert_with_images(_Tables(), "tables", (SharedModule(_Table(8, [1, 2, 3, 4]), "tables.shared", ("rom",),
                                                               (image,), "x"),))


def test_memory_contents_words_are_what_the_memory_holds():
    from amaranth.hdl import Const, signed
    from amaranth.lib import data

    from sparselstm.hw.pe_shape import MemoryContents

    layout = data.StructLayout({"value": signed(5), "parts": data.ArrayLayout(signed(3), 2), "tag": 1})
    init = ({"value": -3, "parts": [-1, 2], "tag": 1}, {"value": 7, "parts": [0, -4], "tag": 0})
    contents = MemoryContents(layout, 3, init)
    assert contents.words() == [Const.cast(layout.const(word)).value for word in init] + [0]
    assert MemoryContents(signed(4), 2, (-1,)).words() == [15, 0]
    with pytest.raises(ValueError, match="3 words do not fit a memory of depth 2"):
        MemoryContents(signed(4), 2, (1, 2, 3))
    with pytest.raises(TypeError, match="init must be a tuple"):
        MemoryContents(signed(4), 2, [1])
    with pytest.raises(TypeError, match="depth must be an integer"):
        MemoryContents(signed(4), 2.0, ())


def test_a_shared_instance_stands_for_a_component():
    # the refused instance is never elaborated: the file's first line silences Amaranth's warning for it (a
    # filterwarnings mark does not: the warning comes when the object is collected, under another test)
    from sparselstm.hw.shared_pe import SharedInstance

    with pytest.raises(TypeError, match="stands for a wiring.Component"):
        SharedInstance(object(), f"{TOP_NAME}.pe", f"{IMAGE_DIR}/pe00")
