"""Block-RAM output registers for an ECP5 netlist: the flip-flops that only register a DP16KD's read data move
into the block RAM (REGMODE OUTREG), a netlist pass between Yosys (`synth_ecp5`) and nextpnr.

Yosys maps every memory read port to a DP16KD without its output register (REGMODE NOREG: the read data leave
the block ~5 ns after the clock) and keeps the register that follows it in the fabric, so the path from the block
RAM to that flip-flop is one of the longest of the design when they are placed apart (#10: the PEs' pointer and
entry memories, 30 of the 121 late register inputs at ed4e6af). A port whose every used read-data bit drives
exactly one flip-flop, and nothing else, on the port's clock, never reset, all with the same clock enable (or
none), is the same circuit as the port with REGMODE OUTREG, that enable on the output register's (OCE), and those
flip-flops' outputs on its data pins: the output register takes the read data when they did. Ports with any other
use of their data are left alone.

    python -m sparselstm.hw.boards.bram_registers NETLIST.json     # rewrites it in place, prints the ports
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["absorb_output_registers", "absorb_output_registers_in_file"]

DATA_BITS = 18


def _width(value) -> int:
    """A DATA_WIDTH parameter as Yosys writes it (a binary string) or as a number."""
    return int(value, 2) if isinstance(value, str) else int(value)


def _constant(connection, value: str) -> bool:
    return connection is not None and len(connection) == 1 and connection[0] == value


def _register_enable(cell: dict, clock):
    """For a TRELLIS_FF on `clock` (not inverted) that is never reset: its clock enable, ["1"] when it takes its D
    input every cycle. None for any other cell."""
    parameters, connections = cell["parameters"], cell["connections"]
    if cell["type"] != "TRELLIS_FF" or connections.get("CLK") != clock:
        return None
    if parameters.get("CLKMUX", "CLK").strip() != "CLK" or parameters.get("REGSET", "RESET").strip() != "RESET":
        return None
    if parameters.get("GSR", "DISABLED").strip() != "DISABLED":
        return None
    never_reset = parameters.get("LSRMUX", "LSR").strip() == "0" or _constant(connections.get("LSR"), "0") \
        or "LSR" not in connections
    if not never_reset or str(cell.get("attributes", {}).get("keep", "0")).strip("0") != "":
        return None
    enable_mux = parameters.get("CEMUX", "CE").strip()
    if enable_mux == "1" or "CE" not in connections or _constant(connections["CE"], "1"):
        return ["1"]
    if enable_mux == "CE" and len(connections["CE"]) == 1:
        return list(connections["CE"])
    return None


def absorb_output_registers(netlist: dict) -> list[str]:
    """Rewrite `netlist` (Yosys JSON after synth_ecp5) in place; returns the ports changed ("cell:A")."""
    changed = []
    for module in netlist["modules"].values():
        cells = module.get("cells", {})
        readers = defaultdict(list)     # net bit -> [(cell, port)] of every input it drives
        for name, cell in cells.items():
            for port, bits in cell["connections"].items():
                if cell.get("port_directions", {}).get(port) != "output":
                    for bit in bits:
                        if isinstance(bit, int):
                            readers[bit].append((name, port))
        for port in module.get("ports", {}).values():
            if port["direction"] != "input":
                for bit in port["bits"]:
                    if isinstance(bit, int):
                        readers[bit].append(("", "module port"))
        removed = set()
        for name, cell in cells.items():
            if cell["type"] != "DP16KD":
                continue
            parameters, connections = cell["parameters"], cell["connections"]
            if any(_width(parameters.get(f"DATA_WIDTH_{side}", 18)) > DATA_BITS for side in "AB"):
                continue    # 36-bit mode: both sides' data pins carry one port's word, under the other side's controls
            for side in "AB":
                if parameters.get(f"REGMODE_{side}", "NOREG").strip() != "NOREG":
                    continue
                if not (_constant(connections.get(f"RST{side}"), "0")
                        and _constant(connections.get(f"OCE{side}"), "1")):
                    continue
                if parameters.get(f"CLK{side}MUX", f"CLK{side}").strip() != f"CLK{side}":
                    continue
                clock = connections.get(f"CLK{side}")
                registers, enables = {}, set()
                for k in range(DATA_BITS):
                    bits = connections.get(f"DO{side}{k}", [])
                    if not bits or not isinstance(bits[0], int) or not readers[bits[0]]:
                        continue        # an unused data bit
                    sinks = readers[bits[0]]
                    register, port = sinks[0]
                    enable = None if len(sinks) != 1 or port != "DI" or register in removed \
                        else _register_enable(cells[register], clock)
                    if enable is None:
                        registers = None
                        break
                    registers[k] = register
                    enables.add(tuple(enable))
                if not registers or len(enables) != 1:
                    continue            # the output register has one clock enable for all its bits
                for k, register in registers.items():
                    connections[f"DO{side}{k}"] = list(cells[register]["connections"]["Q"])
                    removed.add(register)
                parameters[f"REGMODE_{side}"] = "OUTREG"
                connections[f"OCE{side}"] = list(enables.pop())
                changed.append(f"{name}:{side}")
        for register in removed:
            del cells[register]
    return changed


def absorb_output_registers_in_file(path) -> list[str]:
    """absorb_output_registers on a Yosys JSON file, written back in place."""
    path = Path(path)
    try:
        netlist = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable Yosys JSON netlist ({error})") from None
    if not isinstance(netlist, dict) or "modules" not in netlist:
        raise ValueError(f"{path}: a Yosys JSON netlist needs a 'modules' key")
    changed = absorb_output_registers(netlist)
    path.write_text(json.dumps(netlist))
    return changed


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    changed = absorb_output_registers_in_file(argv[0])
    print(f"{argv[0]}: {len(changed)} block-RAM port(s) now with their output register")
    for port in changed:
        print(f"  {port}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
