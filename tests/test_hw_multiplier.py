# amaranth: UnusedElaboratable=no
"""PipelinedMultiplier (hw/multiplier.py): the portable form in the Amaranth simulator, the ECP5 form (one
MULT18X18D with its own registers) in Icarus against a behavioural model of the block's registered multiply,
and both against NumPy, for signed and unsigned operands and latencies 1 and 2."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Shape, signed, unsigned
from amaranth.sim import Simulator

from sparselstm.hw.multiplier import PipelinedMultiplier
from sparselstm.hw.verilog import FamilyPlatform

SHAPES = [(signed(12), signed(16)), (signed(16), unsigned(17)), (signed(16), signed(3)),
          (unsigned(8), signed(18)), (signed(18), signed(18))]


def _operands(rng, shape: Shape, count: int) -> list[int]:
    low, high = (-(1 << (shape.width - 1)), 1 << (shape.width - 1)) if shape.signed else (0, 1 << shape.width)
    extremes = [low, high - 1, 0, -1 if shape.signed else 1]
    return extremes + [int(v) for v in rng.integers(low, high, count - len(extremes))]


def test_rejects_bad_parameters():
    # The rejected multipliers are never elaborated: the first line silences Amaranth's warning for them.
    with pytest.raises(ValueError, match="latency"):
        PipelinedMultiplier(signed(8), signed(8), 3)
    with pytest.raises(ValueError, match="latency"):
        PipelinedMultiplier(signed(8), signed(8), True)
    with pytest.raises(ValueError, match="at least one bit"):
        PipelinedMultiplier(unsigned(0), signed(8), 1)


def _enabled_products(a_values, b_values, enables, latency) -> list[int]:
    """p after each edge: every register (operands at latency 2, the product) loads only while `en` is high."""
    a_reg = b_reg = product = 0
    seen = []
    for a, b, en in zip(a_values, b_values, enables):
        if en:
            if latency == 2:
                product, a_reg, b_reg = a_reg * b_reg, a, b
            else:
                product = a * b
        seen.append(product)
    return seen


def _run_portable(dut, a_values, b_values, enables) -> list[int]:
    """p after each edge of the Amaranth simulation, the operands and `en` set before it."""
    seen = []

    async def bench(ctx):
        for a, b, en in zip(a_values, b_values, enables):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            await ctx.tick()
            seen.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("latency", [1, 2])
@pytest.mark.parametrize("a_shape,b_shape", SHAPES)
def test_portable_form_multiplies_after_latency(a_shape, b_shape, latency):
    rng = np.random.default_rng(latency * 31 + a_shape.width)
    dut = PipelinedMultiplier(a_shape, b_shape, latency)
    a_values, b_values = _operands(rng, a_shape, 40), _operands(rng, b_shape, 40)
    seen = _run_portable(dut, a_values + [0] * latency, b_values + [0] * latency, [1] * (len(a_values) + latency))
    # after the edge of cycle i, p holds the product of cycle i - (latency - 1)
    assert seen[latency - 1:latency - 1 + len(a_values)] == [a * b for a, b in zip(a_values, b_values)]


@pytest.mark.parametrize("latency", [1, 2])
def test_portable_form_holds_while_not_enabled(latency):
    rng = np.random.default_rng(latency)
    dut = PipelinedMultiplier(signed(12), unsigned(6), latency)
    a_values, b_values = _operands(rng, signed(12), 60), _operands(rng, unsigned(6), 60)
    enables = [int(v) for v in rng.integers(0, 2, 60)]
    assert _run_portable(dut, a_values, b_values, enables) == _enabled_products(a_values, b_values, enables, latency)


def _mult18x18d_model() -> str:
    """The registered multiply of an ECP5 MULT18X18D as this design uses it (CLK0/CE0, signed A and B, the
    input and output registers by parameter), with the block's bit-per-port names."""
    names = ([f"A{k}" for k in range(18)] + [f"B{k}" for k in range(18)] + [f"C{k}" for k in range(18)]
             + ["SIGNEDA", "SIGNEDB", "SOURCEA", "SOURCEB", "CLK0", "CE0", "RST0"])
    params = ["REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_INPUTC_CLK", "REG_PIPELINE_CLK", "REG_OUTPUT_CLK",
              "SOURCEB_MODE", "RESETMODE", "GSR"]
    a = "{" + ", ".join(f"A{k}" for k in reversed(range(18))) + "}"
    b = "{" + ", ".join(f"B{k}" for k in reversed(range(18))) + "}"
    return "\n".join([
        "module MULT18X18D #(" + ", ".join(f'parameter {p} = "NONE"' for p in params) + ") (",
        "  " + ", ".join(f"input {n}" for n in names) + ", " + ", ".join(f"output P{k}" for k in range(36)) + ");",
        f"  wire [17:0] a = {a};", f"  wire [17:0] b = {b};",
        "  reg [17:0] a_r, b_r; reg [35:0] p_r;",
        '  wire [17:0] a_in = REG_INPUTA_CLK == "NONE" ? a : a_r;',
        '  wire [17:0] b_in = REG_INPUTB_CLK == "NONE" ? b : b_r;',
        "  wire [35:0] product = $signed(a_in) * $signed(b_in);",
        "  always @(posedge CLK0) if (CE0) begin a_r <= a; b_r <= b; p_r <= product; end",
        '  wire [35:0] p = REG_OUTPUT_CLK == "NONE" ? product : p_r;',
        *(f"  assign P{k} = p[{k}];" for k in range(36)),
        "endmodule", ""])


def icarus_stdout(directory, top_text: str, model_text: str) -> str:
    """What Icarus prints running `directory`/tb.v against the design `top_text` and a behavioural model of the
    vendor primitive it instantiates (`model_text`)."""
    (directory / "top.v").write_text(top_text)
    (directory / "model.v").write_text(model_text)
    subprocess.run(["iverilog", "-g2012", "-o", "sim", "tb.v", "top.v", "model.v"], cwd=directory, check=True)
    return subprocess.run(["vvp", "-n", "sim"], cwd=directory, check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog")
@pytest.mark.parametrize("latency", [1, 2])
@pytest.mark.parametrize("a_shape,b_shape", SHAPES[:3])
def test_ecp5_form_is_one_registered_mult18x18d(a_shape, b_shape, latency, tmp_path):
    dut = PipelinedMultiplier(a_shape, b_shape, latency)
    text = verilog.convert(dut, name="top", platform=FamilyPlatform("ecp5"), emit_src=False)
    assert text.count("MULT18X18D") == 1 and "*" not in text.split("MULT18X18D")[0].split("module top")[1]
    assert f'.REG_INPUTA_CLK("{"CLK0" if latency == 2 else "NONE"}")' in text
    assert '.REG_OUTPUT_CLK("CLK0")' in text

    rng = np.random.default_rng(latency + a_shape.width)
    a_values, b_values = _operands(rng, a_shape, 30), _operands(rng, b_shape, 30)
    enables = [1] * 10 + [int(v) for v in rng.integers(0, 2, 20 + latency)]     # CE0: the block holds while low
    width_p = len(dut.p)
    (tmp_path / "a.hex").write_text("\n".join(f"{v & ((1 << a_shape.width) - 1):x}" for v in a_values) + "\n")
    (tmp_path / "b.hex").write_text("\n".join(f"{v & ((1 << b_shape.width) - 1):x}" for v in b_values) + "\n")
    (tmp_path / "en.hex").write_text("\n".join(str(v) for v in enables) + "\n")
    count = len(a_values)
    (tmp_path / "tb.v").write_text(f"""
module tb;
  reg clk = 0; reg rst = 0;
  reg [{a_shape.width - 1}:0] a; reg [{b_shape.width - 1}:0] b; wire [{width_p - 1}:0] p;
  reg [{a_shape.width - 1}:0] va [0:{count - 1}]; reg [{b_shape.width - 1}:0] vb [0:{count - 1}];
  reg ven [0:{count + latency - 1}]; reg en;
  integer i;
  top dut(.clk(clk), .rst(rst), .a(a), .b(b), .p(p), .en(en));
  initial begin
    $readmemh("a.hex", va); $readmemh("b.hex", vb); $readmemh("en.hex", ven);
    for (i = 0; i < {count + latency}; i = i + 1) begin
      a = i < {count} ? va[i] : 0; b = i < {count} ? vb[i] : 0; en = ven[i];
      #1 clk = 1; #1 clk = 0; $display("%h", p);
    end
    $finish;
  end
endmodule
""")
    lines = icarus_stdout(tmp_path, text, _mult18x18d_model()).split()
    mask = (1 << width_p) - 1
    seen = [int(word, 16) if all(c in "0123456789abcdef" for c in word) else None for word in lines]
    assert len(seen) == count + latency
    expected = _enabled_products(a_values + [0] * latency, b_values + [0] * latency, enables, latency)
    # the block's registers start undefined: the first latency - 1 outputs are not the model's zeros
    assert seen[latency - 1:] == [value & mask for value in expected][latency - 1:]
