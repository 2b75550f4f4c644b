"""hw/boards/bram_registers.py: the flip-flops that only register a DP16KD's read data move into its output
register. Rules on small hand-made netlists; then on Yosys's own synth_ecp5 netlist of a memory design,
simulated before and after the pass with Icarus (the board tools are an optional extra: skipped without them)."""

from __future__ import annotations

import copy
import json
from collections import Counter
import shutil
import subprocess

import numpy as np
import pytest

from sparselstm.hw.boards.bram_registers import absorb_output_registers, absorb_output_registers_in_file, main

from test_hw_table_rom import _dp16kd_model

CLOCK = 2


def _block(data_nets: dict[int, int], side: str = "A", **overrides) -> dict:
    connections = {f"CLK{side}": [CLOCK], f"RST{side}": ["0"], f"OCE{side}": ["1"], f"CE{side}": ["1"],
                   **{f"DO{side}{k}": [net] for k, net in data_nets.items()}}
    connections.update(overrides.pop("connections", {}))
    parameters = {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG", f"CLK{side}MUX": f"CLK{side}"}
    parameters.update(overrides.pop("parameters", {}))
    directions = {port: "output" if port.startswith("DO") else "input" for port in connections}
    return {"type": "DP16KD", "parameters": parameters, "connections": connections, "port_directions": directions}


def _flip_flop(d: int, q: int, **overrides) -> dict:
    connections = {"CLK": [CLOCK], "DI": [d], "Q": [q], **overrides.pop("connections", {})}
    parameters = {"CEMUX": "1 ", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR", "REGSET": "RESET",
                  "SRMODE": "LSR_OVER_CE", **overrides.pop("parameters", {})}
    return {"type": "TRELLIS_FF", "parameters": parameters, "connections": connections,
            "port_directions": {port: "output" if port == "Q" else "input" for port in connections},
            "attributes": overrides.pop("attributes", {})}


def _lut(inputs: list[int], out: int) -> dict:
    connections = {**{name: [net] for name, net in zip("ABCD", inputs)}, "Z": [out]}
    return {"type": "LUT4", "parameters": {}, "connections": connections,
            "port_directions": {port: "output" if port == "Z" else "input" for port in connections}}


def _netlist(cells: dict) -> dict:
    return {"modules": {"top": {"ports": {}, "cells": cells}}}


def _registered_block(bits: int = 3, **flip_flop_overrides) -> dict:
    """A block whose data bits 0..bits-1 (nets 100+k) each drive one flip-flop (outputs 200+k)."""
    cells = {"ram": _block({k: 100 + k for k in range(bits)})}
    for k in range(bits):
        cells[f"ff{k}"] = _flip_flop(100 + k, 200 + k, **copy.deepcopy(flip_flop_overrides))
    return _netlist(cells)


def test_a_port_whose_data_only_feed_plain_flip_flops_takes_them_in():
    netlist = _registered_block(3)
    assert absorb_output_registers(netlist) == ["ram:A"]
    cells = netlist["modules"]["top"]["cells"]
    assert set(cells) == {"ram"}
    assert cells["ram"]["parameters"]["REGMODE_A"] == "OUTREG"
    assert cells["ram"]["parameters"]["REGMODE_B"] == "NOREG"
    assert [cells["ram"]["connections"][f"DOA{k}"] for k in range(3)] == [[200], [201], [202]]


def test_unused_data_bits_do_not_matter_and_side_b_works_too():
    cells = {"ram": _block({0: 100, 1: 101, 5: 105}, side="B"), "ff0": _flip_flop(100, 200),
             "ff5": _flip_flop(105, 205)}           # bit 1 drives nothing
    netlist = _netlist(cells)
    assert absorb_output_registers(netlist) == ["ram:B"]
    connections = netlist["modules"]["top"]["cells"]["ram"]["connections"]
    assert connections["DOB0"] == [200] and connections["DOB5"] == [205] and connections["DOB1"] == [101]


@pytest.mark.parametrize("case", ["second reader", "logic reader", "module port", "enables differ", "inverted enable",
                                  "reset", "other clock",
                                  "inverted clock", "kept", "set", "gsr", "port reset", "output enable",
                                  "36-bit mode"])
def test_a_port_with_any_other_use_of_its_data_is_left_alone(case):
    netlist = _registered_block(3)
    cells = netlist["modules"]["top"]["cells"]
    if case == "second reader":
        cells["ff_extra"] = _flip_flop(101, 300)
    elif case == "logic reader":
        cells["ff1"] = _lut([101], 201)
    elif case == "module port":
        netlist["modules"]["top"]["ports"]["out"] = {"direction": "output", "bits": [102]}
    elif case == "enables differ":
        cells["ff1"] = _flip_flop(101, 201, connections={"CE": [55]}, parameters={"CEMUX": "CE"})
    elif case == "inverted enable":
        for k in range(3):
            cells[f"ff{k}"] = _flip_flop(100 + k, 200 + k, connections={"CE": [55]}, parameters={"CEMUX": "INV"})
    elif case == "reset":
        cells["ff2"] = _flip_flop(102, 202, connections={"LSR": [56]})
    elif case == "other clock":
        cells["ff0"] = _flip_flop(100, 200, connections={"CLK": [3]})
    elif case == "inverted clock":
        cells["ff0"] = _flip_flop(100, 200, parameters={"CLKMUX": "INV"})
    elif case == "kept":
        cells["ff0"] = _flip_flop(100, 200, attributes={"keep": "00000000000000000000000000000001"})
    elif case == "set":
        cells["ff0"] = _flip_flop(100, 200, parameters={"REGSET": "SET"})
    elif case == "gsr":
        cells["ff0"] = _flip_flop(100, 200, parameters={"GSR": "ENABLED"})
    elif case == "port reset":
        cells["ram"]["connections"]["RSTA"] = [57]
    elif case == "output enable":
        cells["ram"]["connections"]["OCEA"] = [58]
    elif case == "36-bit mode":
        cells["ram"]["parameters"].update(DATA_WIDTH_A="00000000000000000000000000100100",
                                          DATA_WIDTH_B="00000000000000000000000000100100")
    before = copy.deepcopy(netlist)
    assert absorb_output_registers(netlist) == []
    assert netlist == before


def test_a_port_already_registered_is_left_alone():
    netlist = _registered_block(2)
    netlist["modules"]["top"]["cells"]["ram"]["parameters"]["REGMODE_A"] = "OUTREG"
    before = copy.deepcopy(netlist)
    assert absorb_output_registers(netlist) == [] and netlist == before


def test_reset_and_enable_tied_off_still_count_as_plain():
    netlist = _registered_block(2, connections={"LSR": ["0"], "CE": ["1"]}, parameters={"CEMUX": "CE"})
    assert absorb_output_registers(netlist) == ["ram:A"]
    assert netlist["modules"]["top"]["cells"]["ram"]["connections"]["OCEA"] == ["1"]


def test_a_shared_clock_enable_becomes_the_output_registers():
    netlist = _registered_block(3, connections={"CE": [55]}, parameters={"CEMUX": "CE"})
    assert absorb_output_registers(netlist) == ["ram:A"]
    cells = netlist["modules"]["top"]["cells"]
    assert set(cells) == {"ram"} and cells["ram"]["connections"]["OCEA"] == [55]


def test_the_file_form_names_the_file_on_a_bad_netlist(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        absorb_output_registers_in_file(bad)
    bad.write_text("{}")
    with pytest.raises(ValueError, match="'modules'"):
        absorb_output_registers_in_file(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_registered_block(2)))
    assert main([str(good)]) == 0
    assert "1 block-RAM port(s)" in capsys.readouterr().out
    assert json.loads(good.read_text())["modules"]["top"]["cells"]["ram"]["parameters"]["REGMODE_A"] == "OUTREG"


# ---- on a real synth_ecp5 netlist --------------------------------------------------------------------------------

DESIGN = """
module top(input clk, input [9:0] addr, input [9:0] addr2, input [17:0] wdata, input we,
           output reg [17:0] registered, output [17:0] through_logic, output reg [17:0] written);
  reg [17:0] rom [0:1023];
  reg [17:0] rom2 [0:1023];
  reg [17:0] ram [0:1023];
  initial $readmemh("rom.hex", rom);
  initial $readmemh("rom.hex", rom2);
  reg [17:0] data, data2, wread;
  always @(posedge clk) data <= rom[addr];            // read data -> a register only: absorbed
  always @(posedge clk) if (we) registered <= data;  // ... under an enable: the output register's
  always @(posedge clk) data2 <= rom2[addr2];         // read data -> logic: left alone
  assign through_logic = data2 ^ 18'h2a5a5;
  always @(posedge clk) begin                         // a written RAM, read before write: absorbed
    if (we) ram[addr2] <= wdata;
    wread <= ram[addr2];
  end
  always @(posedge clk) written <= wread;
endmodule
"""

TESTBENCH = """
module tb;
  reg clk = 0; reg [9:0] addr = 0; reg [9:0] addr2 = 0; reg [17:0] wdata = 0; reg we = 0;
  wire [17:0] registered, through_logic, written;
  reg [9:0] va [0:{last}]; reg [9:0] vb [0:{last}]; reg [17:0] vw [0:{last}]; reg ve [0:{last}];
  integer i;
  top dut(.clk(clk), .addr(addr), .addr2(addr2), .wdata(wdata), .we(we), .registered(registered),
          .through_logic(through_logic), .written(written));
  initial begin
    $readmemh("a.hex", va); $readmemh("b.hex", vb); $readmemh("w.hex", vw); $readmemh("e.hex", ve);
    for (i = 0; i < {n}; i = i + 1) begin
      addr = va[i]; addr2 = vb[i]; wdata = vw[i]; we = ve[i];
      #1 clk = 1; #1 clk = 0;
      $display("%h %h %h", registered, through_logic, written);
    end
    $finish;
  end
endmodule
"""


def _renamed_blocks(netlist: dict, name: str) -> dict:
    """The netlist with its DP16KD cells instantiating `name` (our model instead of Yosys's, which has no
    output register)."""
    netlist = copy.deepcopy(netlist)
    for module in netlist["modules"].values():
        for cell in module.get("cells", {}).values():
            if cell["type"] == "DP16KD":
                cell["type"] = name
    return netlist


CELL_MODELS = """
module TRELLIS_FF #(parameter GSR = "DISABLED", CEMUX = "1", CLKMUX = "CLK", LSRMUX = "LSR", SRMODE = "LSR_OVER_CE",
                    REGSET = "RESET", LSRMODE = "LSR", REGDDR = "DISABLED")
                   (input CLK, input LSR, input CE, input DI, input M, output reg Q);
  initial Q = REGSET == "SET";
  wire enabled = (CEMUX == "1" || CEMUX == "1 ") ? 1'b1 : CE === 1'b1;
  always @(posedge CLK)
    if (LSRMUX != "0" && LSR === 1'b1) Q <= REGSET == "SET";
    else if (enabled) Q <= DI;
endmodule
module LUT4 #(parameter [15:0] INIT = 0) (input A, B, C, D, output Z);
  assign Z = INIT[{D, C, B, A}];
endmodule
"""


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog")
def test_synthesised_netlist_simulates_the_same_after_the_pass(tmp_path, yosys):

    rng = np.random.default_rng(3)
    (tmp_path / "rom.hex").write_text("".join(f"{int(w):05x}\n" for w in rng.integers(0, 1 << 18, 1024)))
    (tmp_path / "top.v").write_text(DESIGN)
    subprocess.run([*yosys, "-q", "-p", "read_verilog top.v; synth_ecp5 -top top; write_json before.json"],
                   cwd=tmp_path, check=True)
    before = json.loads((tmp_path / "before.json").read_text())
    after = copy.deepcopy(before)
    changed = absorb_output_registers(after)
    blocks = [cell for module in before["modules"].values() for cell in module.get("cells", {}).values()
              if cell["type"] == "DP16KD"]
    assert len(blocks) == 3 and len(changed) == 2       # rom's and ram's read ports; rom2's feeds logic
    assert all(int(cell["parameters"][f"DATA_WIDTH_{s}"], 2) == 18 for cell in blocks for s in "AB")   # the model's
    flip_flops = [sum(cell["type"] == "TRELLIS_FF" for cell in netlist["modules"]["top"]["cells"].values())
                  for netlist in (before, after)]
    assert flip_flops == [2 * 18, 0]     # Yosys put data, data2, wread into the read ports; registered, written

    n = 300
    (tmp_path / "a.hex").write_text("".join(f"{int(v):03x}\n" for v in rng.integers(0, 1024, n)))
    (tmp_path / "b.hex").write_text("".join(f"{int(v):03x}\n" for v in rng.integers(0, 8, n)))  # revisits
    (tmp_path / "w.hex").write_text("".join(f"{int(v):05x}\n" for v in rng.integers(0, 1 << 18, n)))
    (tmp_path / "e.hex").write_text("".join(f"{int(v)}\n" for v in rng.integers(0, 2, n)))
    (tmp_path / "tb.v").write_text(TESTBENCH.replace("{n}", str(n)).replace("{last}", str(n - 1)))
    (tmp_path / "model.v").write_text(_dp16kd_model("DP16KD_MODEL"))
    (tmp_path / "cells.v").write_text(CELL_MODELS)
    outputs = []
    for label, netlist in (("before", before), ("after", after)):
        (tmp_path / f"{label}_renamed.json").write_text(json.dumps(_renamed_blocks(netlist, "DP16KD_MODEL")))
        subprocess.run([*yosys, "-q", "-p", f"read_json {label}_renamed.json; write_verilog -noattr {label}.v"],
                       cwd=tmp_path, check=True)
        subprocess.run(["iverilog", "-g2012", "-o", f"{label}.sim", "tb.v", f"{label}.v", "model.v", "cells.v"],
                       cwd=tmp_path, check=True)
        run = subprocess.run(["vvp", "-n", f"{label}.sim"], cwd=tmp_path, check=True, capture_output=True, text=True)
        outputs.append(run.stdout.splitlines())
    assert len(outputs[0]) == n
    assert outputs[0] == outputs[1]


# ---- the accelerator's written block RAMs ------------------------------------------------------------------------

def test_written_block_rams_map_without_collision_logic_and_take_their_registers(tmp_path, yosys):
    """The output buffer and the y memory (hw/design.NO_COLLISIONS): Yosys maps them with no bypass flip-flops
    after the block, and the pass gives both their output registers. The element-wise cell state carries the
    same attribute."""
    from amaranth.back import verilog

    from sparselstm.hw.design import AcceleratorDesign
    from sparselstm.hw.memory_images import component_ports
    from sparselstm.hw.output_streamer import OutputStreamer
    from sparselstm.hw.y_reader import YReader
    from sparselstm.sw.model import random_model
    from sparselstm.sw.pipeline import compress_and_encode

    encoded = compress_and_encode(random_model(4, 160, None, seed=2), n_pes=2, density=0.5).encoded
    design = AcceleratorDesign.from_encoded(encoded)
    for name, component in (("streamer", OutputStreamer(design)), ("reader", YReader(design))):
        (tmp_path / f"{name}.v").write_text(verilog.convert(component, name=name, emit_src=False,
                                                            ports=component_ports(component)))
        subprocess.run([*yosys, "-q", "-p", f"read_verilog {name}.v; synth_ecp5 -top {name}; write_json {name}.json"],
                       cwd=tmp_path, check=True)
        netlist = json.loads((tmp_path / f"{name}.json").read_text())
        cells = netlist["modules"][name]["cells"]
        assert sum(cell["type"] == "DP16KD" for cell in cells.values()) == 1
        bypass = [cell for cell in cells if "_DOA" in cell or "_DOB" in cell]
        assert bypass == [], f"{name}: collision logic after the block RAM: {bypass[:3]}"
        assert len(absorb_output_registers(netlist)) == 1     # the reader's register has an enable: OCE
    from sparselstm.hw.accelerator import Accelerator
    top = Accelerator(design)
    text = verilog.convert(top, name="top", emit_src=False, ports=component_ports(top))
    # the attribute stands before its memory (after any other attributes of it)
    marked = sorted(next(line for line in part.split("\n")[1:] if not line.strip().startswith("(*")).split()[-2]
                    for part in text.split("no_rw_check")[1:])
    # the element-wise cell state in two slices (20 bits), the slices of the PEs' copies of their gate banks
    # (hw/pe.py), two per PE
    assert marked == ["cell_state0", "cell_state1", *["gate_mac_copy0"] * 2, *["gate_mac_copy1"] * 2,
                      "output_buffer", "y_memory"]


@pytest.mark.parametrize("cell_bits,cell_frac", [(14, 10), (20, 14), (30, 14)])
def test_cell_state_reads_leave_block_ram_output_registers(tmp_path, yosys, cell_bits, cell_frac):
    """The element-wise unit's cell state (hw/elementwise.py): slices of equal width, each one DP16KD read on
    its own side's pins, so that the pass moves `c_read_2` into every block (#10: one 36-bit-wide block for 20
    bits kept it in the fabric, a late path of the 16-PE board top)."""
    from amaranth.back import verilog

    from sparselstm.hw.design import BRAM_SLICE_BITS
    from sparselstm.hw.elementwise import ElementwiseLayer, ElementwiseUnit
    from sparselstm.hw.memory_images import component_ports
    from sparselstm.sw.fixedpoint import Numerics, activation_tables

    numerics = Numerics(cell_bits=cell_bits, cell_frac=cell_frac)
    unit = ElementwiseUnit(numerics, activation_tables(numerics), (ElementwiseLayer(cell_size=300, facc=20),),
                           acc_bits=32)
    (tmp_path / "ew.v").write_text(verilog.convert(unit, name="ew", emit_src=False, ports=component_ports(unit)))
    subprocess.run([*yosys, "-q", "-p", "read_verilog ew.v; synth_ecp5 -top ew; write_json ew.json"],
                   cwd=tmp_path, check=True)
    netlist = json.loads((tmp_path / "ew.json").read_text())
    blocks = {name: cell for name, cell in netlist["modules"]["ew"]["cells"].items()
              if cell["type"] == "DP16KD" and name.startswith("cell_state")}
    assert len(blocks) == -(-cell_bits // BRAM_SLICE_BITS), sorted(blocks)
    assert all(int(cell["parameters"]["DATA_WIDTH_B"], 2) <= BRAM_SLICE_BITS for cell in blocks.values())
    absorbed = {port.split(":")[0] for port in absorb_output_registers(netlist)}
    assert set(blocks) <= absorbed, (sorted(blocks), sorted(absorbed))


def test_pe_gate_copy_is_one_block_ram_with_its_output_register(tmp_path, yosys):
    """A PE's copy of its gate banks (hw/pe.py), read by the MAC: Yosys maps each slice of it to one DP16KD with
    no collision logic after it, and the pass moves the flip-flops behind it (S's `s_gate_word`) into the block;
    the banks themselves stay distributed RAM, one copy each (their only read port is the cell read's). The cell
    read's registered words have no reset: a cleared word is masked in their data path (#10: Yosys had made
    `cleared ? 0 : word` their synchronous reset, driven by the XOR of two tags, the board top's late path)."""
    from amaranth.back import verilog

    from sparselstm.hw.design import AcceleratorDesign
    from sparselstm.hw.memory_images import component_ports
    from sparselstm.hw.design import BRAM_SLICE_BITS
    from sparselstm.hw.pe import SparsePE
    from sparselstm.sw.model import random_model
    from sparselstm.sw.pipeline import compress_and_encode

    encoded = compress_and_encode(random_model(4, 24, None, seed=3), n_pes=2, density=0.5).encoded
    pe = SparsePE(AcceleratorDesign.from_encoded(encoded), 1)
    (tmp_path / "pe.v").write_text(verilog.convert(pe, name="pe", emit_src=False, ports=component_ports(pe)))
    subprocess.run([*yosys, "-q", "-p", "read_verilog pe.v; synth_ecp5 -top pe; write_json pe.json"],
                   cwd=tmp_path, check=True)
    netlist = json.loads((tmp_path / "pe.json").read_text())
    cells = netlist["modules"]["pe"]["cells"]
    copies = sorted(name for name, cell in cells.items() if cell["type"] == "DP16KD" and "gate_mac_copy" in name)
    slices = -(-(pe._design.acc_bits + 1) // BRAM_SLICE_BITS)      # the value and its tag
    assert len(copies) == slices == 2, sorted(name for name, cell in cells.items() if cell["type"] == "DP16KD")
    assert [name for name in cells if "gate_mac_copy" in name and ("_DOA" in name or "_DOB" in name)] == []
    changed = absorb_output_registers(netlist)
    assert all(any(port.startswith(copy + ":") for port in changed) for copy in copies), changed
    bank_rams = [name for name, cell in cells.items() if cell["type"] == "TRELLIS_DPR16X4" and "gate_bank" in name]
    # one copy of each bank: (acc_bits + tag) bits in cells of 16 words x 4 bits (two copies before the MAC's)
    one_copy = -(-(pe._design.acc_bits + 1) // 4) * -(-pe._design.pe_shape.gate_depth // 16)
    assert len(bank_rams) == 4 * one_copy, (len(bank_rams), one_copy)
    net_names = {bit: name for name, net in netlist["modules"]["pe"]["netnames"].items() for bit in net["bits"]}
    word_flops = [cell for cell in cells.values()
                  if cell["type"] == "TRELLIS_FF" and "read_words" in net_names.get(cell["connections"]["Q"][0], "")]
    assert len(word_flops) == 4 * pe._design.acc_bits, len(word_flops)
    assert [cell["connections"]["LSR"] for cell in word_flops if cell["connections"]["LSR"] != ["0"]] == []


def test_cell_reader_constants_are_block_ram_slices_with_their_output_registers(tmp_path, yosys):
    """The CellReader's bias and peephole ROM (hw/readout.py): each slice is one DP16KD, and the pass moves the
    flip-flops behind it (`group_constants`) into the block (#10: the ROM's output into them was a late path)."""
    from amaranth.back import verilog

    from sparselstm.hw.design import BRAM_SLICE_BITS, AcceleratorDesign
    from sparselstm.hw.memory_images import component_ports
    from sparselstm.hw.params import HardwareParams
    from sparselstm.hw.pe_shape import cell_constants
    from sparselstm.hw.readout import CellReader
    from sparselstm.sw.model import random_model
    from sparselstm.sw.pipeline import compress_and_encode

    encoded = compress_and_encode(random_model(4, 40, 8, seed=5), n_pes=4, density=0.5).encoded
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=2))
    reader = CellReader(design)
    (tmp_path / "reader.v").write_text(verilog.convert(reader, name="reader", emit_src=False,
                                                       ports=component_ports(reader)))
    subprocess.run([*yosys, "-q", "-p", "read_verilog reader.v; synth_ecp5 -top reader; write_json reader.json"],
                   cwd=tmp_path, check=True)
    netlist = json.loads((tmp_path / "reader.json").read_text())
    cells = netlist["modules"]["reader"]["cells"]
    roms = sorted(name for name, cell in cells.items() if cell["type"] == "DP16KD" and "constants_rom" in name)
    width = cell_constants(design).width            # 2 lanes x (4 biases + 3 peepholes)
    assert width == 2 * (4 * design.acc_bits + 3 * design.numerics.peephole_bits)
    assert len(roms) == -(-width // BRAM_SLICE_BITS) > 1, roms
    changed = absorb_output_registers(netlist)
    assert all(any(port.startswith(rom + ":") for port in changed) for rom in roms), changed


@pytest.mark.parametrize("kind", ["cell", "proj"])
def test_readers_zero_unread_words_without_a_reset_across_the_chip(tmp_path, yosys, kind):
    """A reader's register of a PE's word is zero unless the PE was read (hw/readout.py). The ProjReader zeroes it
    by the flip-flops' synchronous reset (LSR, no LUT) from a flag of the PE's own (an AND in the data path cost
    2 148 TRELLIS_COMB at 24d0dd4). The CellReader's registers have no reset: the PE's cell data is zero without
    a read (#10: the flags into their reset were 38 of the 180 late inputs at 32 PEs, 10.08 ns; before, one flag
    as the reset of a cell's 176 bits was the board top's worst path at 9903fa4, 9.95 ns)."""
    from amaranth.back import rtlil

    from sparselstm.hw.design import AcceleratorDesign
    from sparselstm.hw.memory_images import component_ports
    from sparselstm.hw.params import HardwareParams
    from sparselstm.hw.boards.flow import KEEP_FLIP_FLOPS
    from sparselstm.hw.readout import CellReader, ProjReader
    from sparselstm.sw.model import random_model
    from sparselstm.sw.pipeline import compress_and_encode

    encoded = compress_and_encode(random_model(4, 40, 8, seed=5), n_pes=4, density=0.5).encoded
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=2))
    reader = CellReader(design) if kind == "cell" else ProjReader(design)
    # as the board builds synthesise it: RTLIL, `keep` copied onto the flip-flops (else Yosys merges the flags)
    (tmp_path / "reader.il").write_text(rtlil.convert(reader, name="reader", emit_src=False,
                                                      ports=component_ports(reader)))
    subprocess.run([*yosys, "-q", "-p", f"read_rtlil reader.il; {KEEP_FLIP_FLOPS}; synth_ecp5 -top reader; "
                    "write_json reader.json"], cwd=tmp_path, check=True)
    module = json.loads((tmp_path / "reader.json").read_text())["modules"]["reader"]
    net_names = {bit: name for name, net in module["netnames"].items() for bit in net["bits"]}
    flops = [cell for cell in module["cells"].values() if cell["type"] == "TRELLIS_FF"]
    for p in range(design.n_pes):
        words = [cell for cell in flops
                 if net_names.get(cell["connections"]["Q"][0], "").startswith(f"pe{p}_read_data")]
        resets = Counter(cell["connections"]["LSR"][0] for cell in words)
        # Yosys keeps the bits the reader uses: all of a cell word's four gates, a y word's share of a proj sum
        assert len(words) == 4 * design.acc_bits if kind == "cell" else len(words) > 0, (p, len(words))
        if kind == "cell":
            assert set(resets) == {"0"}, (p, resets)
        else:
            assert len(resets) == 1 and "0" not in resets, (p, resets)


def test_link_receive_buffer_is_one_block_ram_with_its_output_register(tmp_path, yosys):
    """The host link's receive buffer (hw/registered_fifo.py): one DP16KD with no collision logic behind it
    (its memory is marked, and the board builds' RTLIL pass sets the masks), whose read data load only the
    parser's byte register, which has no reset: the pass makes it the block's output register (#10: the block
    RAM into that register was the 16-PE board top's worst path, 7.54 ns)."""
    from amaranth.back import rtlil

    from sparselstm.hw.boards.host_link import HostLink
    from sparselstm.hw.boards.rtlil_memories import undefine_marked_collisions
    from sparselstm.hw.interfaces import input_word_layout, output_word_layout
    from sparselstm.hw.memory_images import component_ports
    from sparselstm.spec.host_link import MODEL_ID_BYTES

    link = HostLink(input_layout=input_word_layout(16), output_layout=output_word_layout(16), input_size=40,
                    output_size=40, model_id=bytes(MODEL_ID_BYTES), counter_bits=32, cycle_counter_bits=48,
                    rx_buffer_bytes=2048, timeout_cycles=1000, quiet_cycles=1000, clock_hz=125_000_000)
    text, marked = undefine_marked_collisions(rtlil.convert(link, name="link", emit_src=False,
                                                            ports=component_ports(link)))
    assert any("rx_buffer" in name for name in marked), marked
    (tmp_path / "link.il").write_text(text)
    subprocess.run([*yosys, "-q", "-p", "read_rtlil link.il; synth_ecp5 -top link; write_json link.json"],
                   cwd=tmp_path, check=True)
    netlist = json.loads((tmp_path / "link.json").read_text())
    cells = netlist["modules"]["link"]["cells"]
    blocks = [name for name, cell in cells.items() if cell["type"] == "DP16KD" and "rx_buffer" in name]
    assert len(blocks) == 1, blocks
    assert not [name for name in cells if "rx_buffer" in name and ("_DOA" in name or "_DOB" in name)]
    assert blocks[0] in {port.split(":")[0] for port in absorb_output_registers(netlist)}
