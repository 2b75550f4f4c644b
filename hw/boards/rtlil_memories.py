"""Memories marked `no_rw_check` (hw/design.py NO_COLLISIONS) in an RTLIL netlist: their reads' collisions with
writes made undefined, a text pass between Amaranth and Yosys in the board builds.

Yosys honours the attribute only in its Verilog frontend, which turns it into each read port's
COLLISION_X_MASK. An RTLIL netlist (what Amaranth's platform builds hand to Yosys) keeps the attribute on the
memory but the read ports' masks at 0 (old data on a collision), so `memory_libmap` emulates that behaviour with
bypass logic after the block RAM: two flip-flops and a multiplexer per data bit, on the path from the block to
its register (#10: the element-wise cell state's read, a late path of the board builds while the same design
read from Verilog by bench/fmax.py had none) and in the way of hw/boards/bram_registers.py. This pass sets the
masks the Verilog frontend would have set.

    python -m sparselstm.hw.boards.rtlil_memories NETLIST.il     # rewrites it in place, prints the memories
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["undefine_marked_collisions", "undefine_marked_collisions_in_file"]

_MARK = re.compile(r"\s*attribute \\no_rw_check (\S+)\s*$")
_MEMORY = re.compile(r"\s*memory\b.*\s(\S+)\s*$")
_MEMID = re.compile(r'\s*parameter \\MEMID "(.*)"\s*$')
_MASK = re.compile(r"(\s*parameter \\COLLISION_X_MASK )(\d+)'([01xz]+)\s*$")


def _is_set(value: str) -> bool:
    """An RTLIL attribute value as true or false: a number, a sized constant or a string."""
    value = value.strip('"')
    if "'" in value:
        return "1" in value.split("'", 1)[1]
    return value not in ("", "0")


def undefine_marked_collisions(rtlil: str) -> tuple[str, list[str]]:
    """The netlist with every read port of a memory marked `no_rw_check` given an all-ones COLLISION_X_MASK,
    and the marked memories that have read ports ("module memory")."""
    lines = rtlil.split("\n")
    module, marked, pending_mark = None, set(), False
    changed = []
    cell_start, memid, mask_line = None, None, None
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("module "):
            module = stripped.split()[1]
        if (mark := _MARK.match(line)) is not None:
            pending_mark = _is_set(mark.group(1))
            continue
        if stripped.startswith("memory ") and (memory := _MEMORY.match(line)) is not None:
            if pending_mark:
                marked.add((module, memory.group(1)))
        if not stripped.startswith("attribute "):
            pending_mark = False
        if stripped.startswith("cell $memrd_v2 "):
            cell_start, memid, mask_line = number, None, None
        elif cell_start is not None:
            if (found := _MEMID.match(line)) is not None:
                memid = found.group(1).replace("\\\\", "\\")
            elif _MASK.match(line) is not None:
                mask_line = number
            elif stripped == "end":
                if (module, memid) in marked:
                    if mask_line is None:
                        raise ValueError(f"RTLIL line {cell_start + 1}: a $memrd_v2 cell of {memid} in {module} "
                                         "has no sized COLLISION_X_MASK parameter")
                    prefix, width, _ = _MASK.match(lines[mask_line]).groups()
                    lines[mask_line] = f"{prefix}{width}'{'1' * int(width)}"
                    changed.append(f"{module} {memid}")
                cell_start = None
    return "\n".join(lines), sorted(set(changed))


def undefine_marked_collisions_in_file(path) -> list[str]:
    """undefine_marked_collisions on an RTLIL file, rewritten in place; ValueError naming the file if it is not
    RTLIL."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable RTLIL netlist ({error})") from None
    if not re.search(r"^\s*module \S", text, re.MULTILINE):
        raise ValueError(f"{path}: not an RTLIL netlist (no 'module' line)")
    try:
        text, changed = undefine_marked_collisions(text)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    path.write_text(text)
    return changed


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    changed = undefine_marked_collisions_in_file(argv[0])
    print(f"{argv[0]}: {len(changed)} memor{'y' if len(changed) == 1 else 'ies'} with undefined read-write "
          "collisions")
    for memory in changed:
        print(f"  {memory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
