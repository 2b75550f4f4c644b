"""Verilog with memory images (hw/memory_images.py): the same contents as inline, the encoder's own files,
the sidecar's list, and Yosys finding the files from the Verilog's directory."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from sparselstm.hw.memory_images import IMAGE_DIR, hex_text
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
    assert {"pe0.entries", "pe2.pointers", "pe1.gate_bank3", "elementwise.lane0.tanh.rom"} <= {
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
                                                     for p in range(3) for memory in ("entries", "pointers")}
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


def test_yosys_reads_the_images_from_the_verilogs_directory(both):
    # Amaranth's built-in Yosys has no Verilog frontend: a system or YoWASP Yosys is needed
    from sparselstm.hw.boards.flow import tool_command
    from sparselstm.spec.errors import ParameterError

    try:
        yosys = tool_command("yosys")
    except ParameterError as error:
        pytest.skip(str(error))     # the board tools (.[boards], part of .[dev]) are not installed
    _, images_dir, info, _ = both
    # read_verilog fails on a $readmemh file it cannot open; flattened, every PE's memories are the top's
    result = subprocess.run([*yosys, "-q", "-p", f"read_verilog {TOP_NAME}.v; hierarchy -top {TOP_NAME}; proc; "
                             "flatten; memory_collect; write_rtlil memories.il"], cwd=images_dir, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rtlil = (images_dir / "memories.il").read_text()
    cells = re.findall(r"^  cell \$mem_v2 .*?^  end$", rtlil, re.MULTILINE | re.DOTALL)
    pe_images = [image for image in info["memory_images"] if image["module"].startswith(f"{TOP_NAME}.pe")]
    assert {image["memory"] for image in pe_images} >= {"entries", "pointers", "phase_rom", "gate_bank0"}
    for image in pe_images:
        memid = image["module"].removeprefix(f"{TOP_NAME}.") + "." + image["memory"]
        cell = next(cell for cell in cells if f'parameter \\MEMID "\\\\{memid}"' in cell)
        init = re.search(r"parameter \\INIT \d+'([01]+)", cell)[1]
        words = [int(line, 16) for line in (images_dir / image["file"]).read_text().splitlines()]
        assert int(init, 2) == sum(word << (image["width"] * index) for index, word in enumerate(words)), memid
