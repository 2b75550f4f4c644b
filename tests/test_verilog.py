"""Verilog generation: the file, the sidecar (docs/verification.md), the CLI, and verilator lint."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.hdl import signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparselstm.cli import main
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.sidecar import describe_top
from sparselstm.hw.verilog import LINT_WAIVERS, TOP_NAME, generate, lint_command
from sparselstm.sim import tools
from sparselstm.sim.standin import STANDIN_TOP, generate_standin
from sparselstm.sw.format import encode, write_encoded
from sparselstm.sw.fixedpoint import Numerics
from sparselstm.sw.model import random_model
from sparselstm.sw.pruning import prune_model
from sparselstm.sw.quantize import quantize_model

def small_encoded(n_pes=2, proj=4, layers=1, peephole=True):
    model = random_model(11, 8, proj, num_layers=layers, peephole=peephole, seed=2)
    pruned, _ = prune_model(model, 0.4, n_pes)
    return encode(quantize_model(pruned, Numerics()), n_pes)


def module_ports(verilog_text: str, top: str = TOP_NAME) -> dict[str, tuple[str, int]]:
    """{port: (direction, width)} of the top module, read from its declarations."""
    body = verilog_text[verilog_text.index(f"module {top}("):]
    body = body[:body.index("endmodule")]
    ports = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        ports[name] = (direction, int(msb) + 1 if msb else 1)
    return ports


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    encoded = small_encoded(n_pes=3)
    encoded_dir = tmp_path_factory.mktemp("encoded")
    write_encoded(encoded, encoded_dir)
    outdir = tmp_path_factory.mktemp("verilog")
    info = generate(encoded, HardwareParams(fifo_depth=4), outdir, encoded_dir=encoded_dir)
    return info, outdir, encoded_dir


def assert_sidecar_matches_verilog(info: dict, outdir: Path) -> None:
    """Every port the sidecar names exists in the Verilog with that direction and width."""
    ports = module_ports((outdir / info["verilog"]).read_text(), info["top"])
    assert {p["name"]: (p["direction"], p["width"]) for p in info["ports"]} == ports
    assert json.loads((outdir / f"{info['top']}.json").read_text()) == info
    for stream_info in info["streams"].values():
        for key in ("valid", "ready", "payload"):
            assert stream_info[key] in ports
        assert ports[stream_info["payload"]][1] == stream_info["width"]
    for key, name in info["status"].items():
        assert ports[name] == ("output", info["status_widths"][key])
    for name in info["counters"]["mac_cycles"] + info["counters"]["pad_cycles"]:
        assert ports[name] == ("output", info["counters"]["width"])
    assert ports[info["clock"]] == ("input", 1) and ports[info["reset"]] == ("input", 1)


def test_sidecar_matches_the_verilog_ports(generated):
    info, outdir, _ = generated
    assert_sidecar_matches_verilog(info, outdir)


def test_standin_sidecar_matches_its_verilog_ports(tmp_path):
    info = generate_standin(tmp_path, input_size=3, n_pes=3)
    assert info["top"] == STANDIN_TOP and len(info["counters"]["mac_cycles"]) == 3
    assert_sidecar_matches_verilog(info, tmp_path)


class _TwoInputs(wiring.Component):
    def __init__(self):
        word = stream.Signature(data.StructLayout({"value": signed(8)}))
        super().__init__({"a": In(word), "b": In(word), "o": Out(word)})


def test_sidecar_description_needs_a_component_with_one_stream_each_way():
    with pytest.raises(TypeError, match="wiring.Component"):
        describe_top(object(), "top", "test", {})
    top = _TwoInputs()
    top._MustUse__silence = True           # refused before elaboration, on purpose
    with pytest.raises(ValueError, match="more than one input stream"):
        describe_top(top, "top", "test", {})


def test_sidecar_content(generated):
    info, _, encoded_dir = generated
    assert info["top"] == TOP_NAME and info["n_pes"] == 3
    assert (info["input_size"], info["output_size"], info["act_bits"], info["act_frac"]) == (11, 4, 16, 11)
    assert info["streams"]["input"]["fields"] == {
        "value": {"offset": 0, "width": 16, "signed": True}, "first": {"offset": 16, "width": 1, "signed": False}}
    assert info["streams"]["output"]["fields"]["last"] == {"offset": 16, "width": 1, "signed": False}
    assert info["hardware_params"]["fifo_depth"] == 4
    manifest = Path(encoded_dir) / "manifest.json"
    assert info["encoded"] == {"path": str(Path(encoded_dir).resolve()),
                               "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()}
    assert info["cycle_model"]["cycles_per_frame"] >= max(info["work"]["entries_per_pe"])


def _lint(verilog_path):
    try:
        verilator = tools.find_simulator("verilator").executable
    except tools.SimulatorNotFoundError as error:
        pytest.skip(str(error))
    result = subprocess.run(lint_command(verilog_path, verilator), capture_output=True, text=True, timeout=300,
                            env={**os.environ, **tools.environment_overrides("verilator")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "%Warning" not in result.stderr and "%Error" not in result.stderr


def test_verilator_lint_is_clean_with_the_documented_waivers(generated):
    _, outdir, _ = generated
    _lint(outdir / f"{TOP_NAME}.v")
    assert set(LINT_WAIVERS) and all(reason for reason in LINT_WAIVERS.values())


def test_verilator_lint_single_pe_two_layers_without_projection(tmp_path):
    # one PE, one-word memories and no proj path: the corner cases of zero-width wires
    generate(small_encoded(n_pes=1, proj=None, layers=2, peephole=False), None, tmp_path)
    _lint(tmp_path / f"{TOP_NAME}.v")


def test_cli_writes_both_files_and_reports_errors(tmp_path, capsys):
    encoded_dir = tmp_path / "enc"
    write_encoded(small_encoded(n_pes=1, proj=None, peephole=False), encoded_dir)
    outdir = tmp_path / "out"
    assert main(["verilog", str(encoded_dir), "-o", str(outdir), "--fifo-depth", "2"]) == 0
    assert (outdir / f"{TOP_NAME}.v").is_file()
    info = json.loads((outdir / f"{TOP_NAME}.json").read_text())
    assert info["hardware_params"]["fifo_depth"] == 2 and info["output_size"] == 8
    output = capsys.readouterr().out
    assert "cycles/frame" in output and "memory images" in output
    assert main(["verilog", str(encoded_dir), "-o", str(outdir), "--inline-memories"]) == 0
    assert "memory images" not in capsys.readouterr().out and not (outdir / "memory_images").exists()
    assert main(["verilog", str(encoded_dir), "-o", str(outdir), "--acc-bits", "6"]) == 1
    assert "acc_bits = 6" in capsys.readouterr().err
    assert main(["verilog", str(encoded_dir), "-o", str(outdir), "--fifo-depth", "1"]) == 1


def test_icarus_compiles_the_verilog(generated, tmp_path):
    _, outdir, _ = generated
    iverilog = shutil.which("iverilog")
    if iverilog is None:
        pytest.skip("iverilog not installed")
    result = subprocess.run([iverilog, "-g2012", "-s", TOP_NAME, "-o", str(tmp_path / "top.vvp"),
                             str(outdir / f"{TOP_NAME}.v")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_ecp5_family_puts_the_multiplier_registers_in_the_dsp_blocks(generated, tmp_path):
    """`--family ecp5`: one MULT18X18D per PE and per element-wise multiplier, each with its own registers;
    the same design otherwise (same ports); the sidecar names the family and the simulators' loader refuses
    it; an unknown family is a ParameterError."""
    from sparselstm.sim.dut import DutSpec, SidecarError
    from sparselstm.spec.errors import ParameterError

    portable_info, portable_dir, encoded_dir = generated
    outdir = tmp_path / "ecp5"
    assert main(["verilog", str(encoded_dir), "-o", str(outdir), "--fifo-depth", "4", "--family", "ecp5"]) == 0
    text = (outdir / f"{TOP_NAME}.v").read_text()
    info = json.loads((outdir / f"{TOP_NAME}.json").read_text())
    instances = re.findall(r"MULT18X18D #\((.*?)\)\s*\\?\S+ \(", text, re.S)
    assert instances and all('.REG_OUTPUT_CLK("CLK0")' in params for params in instances)
    # the PE's product has both registers inside (it is instantiated once: the shared PE module)
    assert any('.REG_INPUTA_CLK("CLK0")' in params for params in instances)
    assert "MULT18X18D" not in (portable_dir / f"{TOP_NAME}.v").read_text()
    assert info["family"] == "ecp5" and portable_info["family"] is None
    assert info["ports"] == portable_info["ports"]
    with pytest.raises(SidecarError, match="ecp5"):
        DutSpec.from_sidecar(info)
    with pytest.raises(ParameterError, match="device family"):
        generate(small_encoded(), HardwareParams(), tmp_path / "bad", family="xilinx7")


def test_every_unpacker_keeps_its_own_input_registers(tmp_path, yosys):
    """#10: the LaneUnpackers' stage-1 registers load the same broadcast word in every PE; Yosys merges
    identical flip-flops unless the cell (not only its wire) has `keep`, and one merged copy fanning out to
    every PE was the 16-PE design's critical path. In the Verilog the registers' always blocks carry `keep`,
    and after Yosys' opt_merge each of the 4 unpackers still has its own 4 kept flip-flops (valid, word, the
    two parts of the mask ROM's address)."""
    n_pes = 4
    generate(small_encoded(n_pes=n_pes), HardwareParams(fifo_depth=4, lanes=2), tmp_path)
    text = (tmp_path / f"{TOP_NAME}.v").read_text()
    unpacker = text[text.index(f"module \\{TOP_NAME}.unpacker "):]      # the one module of every unpacker
    unpacker = unpacker[:unpacker.index("endmodule")]
    for register in ("valid_1", "word_1", "mask_base_1", "mask_offset_1"):
        assert re.search(rf"\(\* keep = 32'd1 \*\)\n\s*always @\(posedge clk\)\n\s*{register} <=", unpacker), register
    result = subprocess.run([*yosys, "-q", "-p", f"read_verilog {TOP_NAME}.v; hierarchy -top {TOP_NAME}; proc; "
                             "flatten; opt_clean; opt_merge; select -write kept.txt t:$dff a:keep %i"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    listed = (tmp_path / "kept.txt").read_text()
    kept = re.findall(r"^\S+/\$flatten\\(unpacker\d+)\.\S+$", listed, re.MULTILINE)
    assert sorted(kept) == sorted(f"unpacker{p}" for p in range(n_pes) for _ in range(4)), listed
