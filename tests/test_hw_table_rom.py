# amaranth: UnusedElaboratable=no
"""TableRom (hw/table_rom.py): the portable form in the Amaranth simulator, the ECP5 form (DP16KD blocks with
their output registers) in Icarus against a behavioural model of the block, both against a Python model of two
enabled edges; and the INITVAL layout against the one Yosys's own block RAM mapping writes."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from sparselstm.hw.table_rom import DP16KD_DEPTH, TableRom, dp16kd_initvals
from sparselstm.hw.verilog import FamilyPlatform

from test_hw_multiplier import icarus_stdout

# (width, depth, ports): one block, slices side by side, odd port counts (a B side unused), stacked banks
SHAPES = [(7, 5, 1), (18, 1024, 2), (25, 1024, 3), (40, 300, 2), (9, 2500, 3)]


def _words(rng, width, depth) -> list[int]:
    return [int(v) for v in rng.integers(0, 1 << width, depth, dtype=np.uint64)]


def _expected(init, addresses, enables) -> list[list[int | None]]:
    """data after each edge, per port: the address register and the output register load while `en` is high."""
    ports = len(addresses[0])
    address_reg, output = [None] * ports, [None] * ports
    seen = []
    for addrs, en in zip(addresses, enables):
        if en:
            output = [None if a is None else init[a] for a in address_reg]
            address_reg = list(addrs)
        seen.append(list(output))
    return seen


def _stimulus(rng, depth, ports, count=80):
    addresses = [[int(a) for a in rng.integers(0, depth, ports)] for _ in range(count)]
    addresses[:3] = [[0] * ports, [depth - 1] * ports, [depth // 2] * ports]
    enables = [1] * 6 + [int(v) for v in rng.integers(0, 2, count - 6)]
    return addresses, enables


def test_rejects_bad_parameters():
    # The rejected TableRoms are never elaborated: the first line silences Amaranth's warning for them.
    with pytest.raises(ValueError, match="width"):
        TableRom(0, [0])
    with pytest.raises(ValueError, match="ports"):
        TableRom(4, [0], ports=0)
    with pytest.raises(ValueError, match="at least one word"):
        TableRom(4, [])
    with pytest.raises(ValueError, match="below 2\\*\\*4"):
        TableRom(4, [3, 16])
    with pytest.raises(ValueError, match="below 2\\*\\*4"):
        TableRom(4, [-1])
    with pytest.raises(ValueError, match="1024 words"):
        dp16kd_initvals([0] * (DP16KD_DEPTH + 1))


@pytest.mark.parametrize("width,depth,ports", SHAPES)
def test_portable_form_reads_two_enabled_edges_later(width, depth, ports):
    rng = np.random.default_rng(width * depth + ports)
    init = _words(rng, width, depth)
    dut = TableRom(width, init, ports=ports)
    addresses, enables = _stimulus(rng, depth, ports)
    seen = []

    async def bench(ctx):
        for addrs, en in zip(addresses, enables):
            for port, address in enumerate(addrs):
                ctx.set(dut.addr[port], address)
            ctx.set(dut.en, en)
            await ctx.tick()
            seen.append([ctx.get(dut.data[port]) for port in range(ports)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    expected = _expected(init, addresses, enables)
    for step, (got, want) in enumerate(zip(seen, expected)):
        for port in range(ports):
            if want[port] is not None:
                assert got[port] == want[port], f"step {step}, port {port}"


def _dp16kd_model(name: str = "DP16KD") -> str:
    """An ECP5 DP16KD for Icarus, as module `name`: 1024 x 18 on each side, INITVAL_00..3F with word 16j+i in bits
    20i..20i+17 of INITVAL_j, writes (NORMAL: the read data show the word written; READBEFOREWRITE: the old
    word), CE/OCE, REGMODE NOREG or OUTREG, both registers 0 as after configuration."""
    sides = []
    for s in "AB":
        sides += [f"input DI{s}{k}" for k in range(18)] + [f"input AD{s}{k}" for k in range(14)]
        sides += [f"input CE{s}", f"input OCE{s}", f"input CLK{s}", f"input WE{s}", f"input RST{s}"]
        sides += [f"input CS{s}{k}" for k in range(3)] + [f"output DO{s}{k}" for k in range(18)]
    params = [f"parameter [319:0] INITVAL_{j:02X} = 0" for j in range(64)]
    params += [f'parameter {p} = "NOREG"' for p in ("REGMODE_A", "REGMODE_B")]
    params += [f'parameter {p} = "NORMAL"' for p in ("WRITEMODE_A", "WRITEMODE_B")]
    params += [f'parameter {p} = "NONE"' for p in ("RESETMODE", "ASYNC_RESET_RELEASE", "CSDECODE_A", "CSDECODE_B",
                                                  "GSR", "CLKAMUX", "CLKBMUX")]
    params += ["parameter DATA_WIDTH_A = 18", "parameter DATA_WIDTH_B = 18"]
    body = ["  reg [17:0] mem [0:1023];", "  integer i;", "  initial begin"]
    for j in range(64):
        body.append(f"    for (i = 0; i < 16; i = i + 1) mem[{16 * j} + i] = INITVAL_{j:02X}[20 * i +: 18];")
    body.append("  end")
    for s in "AB":
        address = "{" + ", ".join(f"AD{s}{k}" for k in reversed(range(4, 14))) + "}"
        data = "{" + ", ".join(f"DI{s}{k}" for k in reversed(range(18))) + "}"
        body += [f"  reg [17:0] array_{s} = 0, out_{s} = 0;     // as after configuration",
                 f"  always @(posedge CLK{s}) begin",
                 f"    if (CE{s}) begin",
                 f'      if (WE{s} && WRITEMODE_{s} == "NORMAL") array_{s} <= {data};',
                 f"      else array_{s} <= mem[{address}];",
                 f"      if (WE{s}) mem[{address}] <= {data};",
                 "    end",
                 f"    if (OCE{s}) out_{s} <= array_{s};",
                 "  end",
                 f'  wire [17:0] do_{s} = REGMODE_{s} == "OUTREG" ? out_{s} : array_{s};',
                 *(f"  assign DO{s}{k} = do_{s}[{k}];" for k in range(18))]
    return "\n".join([f"module {name} #(" + ", ".join(params) + ") (", "  " + ", ".join(sides) + ");",
                      *body, "endmodule", ""])


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog")
@pytest.mark.parametrize("width,depth,ports", SHAPES)
def test_ecp5_form_is_dp16kd_blocks_with_output_registers(width, depth, ports, tmp_path):
    rng = np.random.default_rng(width + depth + ports)
    init = _words(rng, width, depth)
    dut = TableRom(width, init, ports=ports)
    text = verilog.convert(dut, name="top", platform=FamilyPlatform("ecp5"), emit_src=False)
    blocks = -(-ports // 2) * -(-width // 18) * -(-depth // DP16KD_DEPTH)
    assert text.count("DP16KD #(") == blocks
    assert text.count('.REGMODE_A("OUTREG")') == blocks and text.count('.REGMODE_B("OUTREG")') == blocks

    addresses, enables = _stimulus(rng, depth, ports)
    addr_bits = dut.addr_bits
    (tmp_path / "addr.hex").write_text("".join(
        "".join(f"{a:0{-(-addr_bits // 4)}x}\n" for a in addrs) for addrs in addresses))
    (tmp_path / "en.hex").write_text("\n".join(str(e) for e in enables) + "\n")
    count = len(addresses)
    unpack = " ".join(f"addr_flat[{p * addr_bits} +: {addr_bits}] = va[i * {ports} + {p}];" for p in range(ports))
    display = ", ".join(f"data_flat[{p * width} +: {width}]" for p in reversed(range(ports)))
    (tmp_path / "tb.v").write_text(f"""
module tb;
  reg clk = 0; reg rst = 0; reg en;
  reg [{addr_bits * ports - 1}:0] addr_flat; wire [{width * ports - 1}:0] data_flat;
  reg [{addr_bits - 1}:0] va [0:{count * ports - 1}]; reg ven [0:{count - 1}];
  integer i;
  top dut(.clk(clk), .rst(rst), .en(en), .addr(addr_flat), .data(data_flat));
  initial begin
    $readmemh("addr.hex", va); $readmemh("en.hex", ven);
    for (i = 0; i < {count}; i = i + 1) begin
      {unpack}
      en = ven[i];
      #1 clk = 1; #1 clk = 0; $display("{' '.join(['%h'] * ports)}", {display});
    end
    $finish;
  end
endmodule
""")
    lines = icarus_stdout(tmp_path, text, _dp16kd_model()).splitlines()
    assert len(lines) == count
    expected = _expected(init, addresses, enables)
    for step, (line, want) in enumerate(zip(lines, expected)):
        for port, word in enumerate(reversed(line.split())):
            if want[port] is not None:
                assert int(word, 16) == want[port], f"step {step}, port {port}"


def test_initval_layout_is_the_one_yosys_writes(tmp_path, yosys):
    """Yosys maps a 1024 x 18 ROM onto one DP16KD itself: its INITVAL parameters must equal ours."""
    rng = np.random.default_rng(7)
    words = _words(rng, 18, DP16KD_DEPTH)
    (tmp_path / "rom.hex").write_text("".join(f"{w:05x}\n" for w in words))
    (tmp_path / "rom.v").write_text("""
module rom(input clk, input [9:0] addr, output reg [17:0] data);
  reg [17:0] mem [0:1023];
  initial $readmemh("rom.hex", mem);
  always @(posedge clk) data <= mem[addr];
endmodule
""")
    subprocess.run([*yosys, "-q", "-p", "read_verilog rom.v; synth_ecp5 -top rom; write_json rom.json"],
                   cwd=tmp_path, check=True)
    cells = json.loads((tmp_path / "rom.json").read_text())["modules"]["rom"]["cells"]
    blocks = [cell for cell in cells.values() if cell["type"] == "DP16KD"]
    assert len(blocks) == 1
    theirs = {name: int(value, 2) for name, value in blocks[0]["parameters"].items() if name.startswith("INITVAL_")}
    ours = {name: const.value for name, const in dp16kd_initvals(words).items()}
    assert theirs == ours
