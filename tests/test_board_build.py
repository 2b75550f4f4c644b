"""Board builds (hw/boards/flow.py, `sparselstm build`): the PLL dividers, the board tops elaborated into
amaranth-boards build plans, synth_ecp5 of the ULX3S top on a tiny model, and (slow) a whole ULX3S build."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("amaranth_boards")

from sparselstm.cli import main
from sparselstm.hw.boards.bram_registers import absorb_output_registers_in_file
from sparselstm.hw.boards.flow import KEEP_FLIP_FLOPS, PLACER_TIMING_WEIGHT, TOP_NAME, ULX3SBuild, read_nextpnr_report
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.boards.pll import VCO_MAX_HZ, VCO_MIN_HZ, ecp5_pll_config
from sparselstm.hw.boards.serial_board import link_frames_per_second
from sparselstm.spec.host_link import Command, Reply
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.format import load_encoded, write_encoded
from sparselstm.sw.hostlink.frames import encode_frame
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode


@pytest.fixture(scope="module")
def tiny_encoded(tmp_path_factory):
    directory = tmp_path_factory.mktemp("build") / "encoded"
    write_encoded(compress_and_encode(random_model(4, 8, None, seed=2), n_pes=2, density=0.5).encoded, directory)
    return directory


@pytest.mark.parametrize("mhz", [25, 50, 100, 125, 133.33, 150, 200, 312.5])
def test_pll_dividers_hit_the_frequency_with_the_vco_in_range(mhz):
    config = ecp5_pll_config(mhz * 1e6)
    assert VCO_MIN_HZ <= config.vco_hz <= VCO_MAX_HZ
    assert abs(config.output_hz - mhz * 1e6) <= 0.005 * mhz * 1e6
    assert config.output_hz == 25e6 * config.clkfb_div / config.clki_div


def test_pll_rejects_what_it_cannot_make():
    with pytest.raises(ParameterError, match="output range"):
        ecp5_pll_config(500e6)
    with pytest.raises(TypeError):
        ecp5_pll_config("125")


def test_ulx3s_plan_has_the_pll_dividers_and_the_oscillator_constraint(tiny_encoded, tmp_path, capsys):
    assert main(["build", str(tiny_encoded), "--board", "ulx3s-85f", "-o", str(tmp_path), "--plan-only",
                 "--freq", "100"]) == 0
    output = capsys.readouterr().out
    assert "100.000 MHz achieved" in output
    assert f"host link at 3000000 baud: at most {link_frames_per_second(4, 8, 3_000_000):.0f} frames/s" in output
    config = ecp5_pll_config(100e6)
    netlist = (tmp_path / f"{TOP_NAME}.il").read_text()
    for name, value in (("CLKI_DIV", config.clki_div), ("CLKFB_DIV", config.clkfb_div),
                        ("CLKOP_DIV", config.clkop_div)):
        assert f"parameter \\{name} {value}\n" in netlist
    constraints = (tmp_path / f"{TOP_NAME}.lpf").read_text()
    assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ' in constraints    # nextpnr derives the PLL's
    assert 'LOCATE COMP "uart_0__tx__io" SITE "L4"' in constraints
    script = json.loads((tmp_path / f"build_{TOP_NAME}.json").read_text())["commands"]
    assert [command[0] for command in script] == ["yosys", "nextpnr-ecp5", "ecppack"]
    assert "--seed" in script[1] and "--report" in script[1]
    assert script[1][script[1].index("--placer-heap-timingweight") + 1] == str(PLACER_TIMING_WEIGHT)
    assert script[1][script[1].index("--placer") + 1] == "heap"
    # the unpackers' registers stay one per PE (hw/lanes.py): `keep` reaches the flip-flops before synthesis
    yosys_script = (tmp_path / f"{TOP_NAME}.ys").read_text()
    assert yosys_script.index(KEEP_FLIP_FLOPS) < yosys_script.index("synth_ecp5")


def test_ulx3s_plan_takes_the_placer(tiny_encoded, tmp_path):
    assert main(["build", str(tiny_encoded), "--board", "ulx3s-85f", "-o", str(tmp_path), "--plan-only",
                 "--placer", "static"]) == 0
    script = json.loads((tmp_path / f"build_{TOP_NAME}.json").read_text())["commands"]
    assert script[1][script[1].index("--placer") + 1] == "static"
    design = AcceleratorDesign.from_encoded(load_encoded(tiny_encoded))
    with pytest.raises(ParameterError, match="placer must be one of heap, static, got 'sa'"):
        ULX3SBuild(design, b"id", tmp_path, placer="sa")


def test_the_commands_offer_the_flows_placers():
    """The build command registers without importing amaranth, so it spells the placers out: they must stay
    the flow's (bench/fmax.py takes the flow's and adds nextpnr's "sa")."""
    import argparse

    from sparselstm.cli import build_parser
    from sparselstm.hw.boards.flow import PLACERS

    subparsers = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    placer = next(action for action in subparsers.choices["build"]._actions if action.dest == "placer")
    assert tuple(placer.choices) == PLACERS and placer.default in PLACERS


@pytest.mark.parametrize("input_size, output_size", [(80, 128), (128, 80), (4, 8)])
def test_the_link_bound_counts_the_frames_the_driver_sends_and_receives(input_size, output_size):
    """10 bits a byte on the line (8N1); the longer of the INPUT and OUTPUT frames bounds the rate."""
    sent = len(encode_frame(Command.INPUT, bytes(2 * input_size)))
    received = len(encode_frame(Reply.OUTPUT, bytes(2 * output_size)))
    assert link_frames_per_second(input_size, output_size, 3_000_000) == 3_000_000 / (10 * max(sent, received))


def test_kcu105_plan_has_verilog_constraints_and_tcl(tiny_encoded, tmp_path):
    assert main(["build", str(tiny_encoded), "--board", "kcu105", "-o", str(tmp_path), "--plan-only"]) == 0
    constraints = (tmp_path / f"{TOP_NAME}.xdc").read_text()
    assert "create_clock" in constraints and "G25" in constraints and "K26" in constraints
    assert "synth_design -top sparselstm_board" in (tmp_path / f"{TOP_NAME}.tcl").read_text()
    assert "module sparselstm_board" in (tmp_path / f"{TOP_NAME}.v").read_text()


def test_kcu105_without_plan_only_is_refused(tiny_encoded, tmp_path, capsys):
    assert main(["build", str(tiny_encoded), "--board", "kcu105", "-o", str(tmp_path)]) == 1
    assert "--plan-only" in capsys.readouterr().err


def test_yosys_synthesises_the_ulx3s_top_for_ecp5(tiny_encoded, tmp_path, capsys):
    assert main(["build", str(tiny_encoded), "--board", "ulx3s-85f", "-o", str(tmp_path), "--synth-only"]) == 0
    output = capsys.readouterr().out
    cells = json.loads((tmp_path / f"{TOP_NAME}.stat.json").read_text())["design"]["num_cells_by_type"]
    assert cells.get("EHXPLLL") == 1
    assert cells.get("LUT4", 0) > 0 and cells.get("TRELLIS_FF", 0) > 0
    assert cells.get("MULT18X18D", 0) >= 2          # at least one multiplier per PE
    assert "synthesis: LUT4" in output
    # the accelerator's reset: one flip-flop into one global buffer, and from it into registers' resets
    netlist = json.loads((tmp_path / f"{TOP_NAME}.json").read_text())["modules"][TOP_NAME]["cells"]
    (buffer,) = [cell for cell in netlist.values() if cell["type"] == "DCCA"]
    (source,), (distributed,) = buffer["connections"]["CLKI"], buffer["connections"]["CLKO"]
    assert [(cell["type"], port) for cell in netlist.values() for port, bits in cell["connections"].items()
            if source in bits and cell["port_directions"][port] == "output"] == [("TRELLIS_FF", "Q")]
    resets = sum(cell["type"] == "TRELLIS_FF" and distributed in cell["connections"]["LSR"]
                 for cell in netlist.values())
    assert resets > 100


def test_nextpnr_report_is_read_into_clocks_utilisation_and_critical_path(tmp_path):
    report = {
        "fmax": {"$glbnet$clk": {"achieved": 97.5, "constraint": 100.0}},
        "utilization": {"TRELLIS_COMB": {"used": 10, "available": 100}, "DP16KD": {"used": 1, "available": 208},
                        "OSCG": {"used": 0, "available": 1}},
        "critical_paths": [{"from": "clk", "to": "clk", "path": [
            {"from": {"cell": "a", "port": "Q"}, "to": {"cell": "b", "port": "A"}, "delay": 1.5},
            {"from": {"cell": "b", "port": "Z"}, "to": {"cell": "c", "port": "D"}, "delay": 2.25}]}],
    }
    (tmp_path / "r.json").write_text(json.dumps(report))
    parsed = read_nextpnr_report(tmp_path / "r.json")
    assert parsed["clocks"] == {"$glbnet$clk": {"target_mhz": 100.0, "achieved_mhz": 97.5, "met": False}}
    assert parsed["timing_met"] is False
    assert parsed["utilisation"] == {"TRELLIS_COMB": {"used": 10, "available": 100},
                                     "DP16KD": {"used": 1, "available": 208}}
    assert parsed["critical_path"] == {"from_clock": "clk", "to_clock": "clk", "start": "a.Q", "end": "c.D",
                                       "delay_ns": 3.75}


@pytest.mark.slow
def test_ulx3s_build_end_to_end(tiny_encoded, tmp_path, capsys):
    result = main(["build", str(tiny_encoded), "--board", "ulx3s-85f", "-o", str(tmp_path), "--seed", "3",
                   "--freq", "50", "--allow-timing-fail"])
    assert result == 0
    assert (tmp_path / f"{TOP_NAME}.bit").stat().st_size > 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["seed"] == 3 and report["bitstream"] == f"{TOP_NAME}.bit"
    assert report["n_pes"] == load_encoded(tiny_encoded).n_pes and report["cycles_per_frame_modelled"] > 0
    assert len(bytes.fromhex(report["model_id"])) > 0
    assert report["placer_timing_weight"] == PLACER_TIMING_WEIGHT and report["placer"] == "heap"
    assert set(report["utilisation"]) == {"TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D"}
    assert report["clocks"] and all({"target_mhz", "achieved_mhz", "met"} <= set(c) for c in report["clocks"].values())
    assert isinstance(report["timing_met"], bool)
    assert report["critical_path"]["start"] and report["critical_path"]["end"]
    # the pass ran between Yosys and nextpnr (the tiny model's memories are LUTs: nothing to move here; the
    # rules and a netlist with such ports: tests/test_board_bram_registers.py, tests/test_bench_fmax.py)
    assert isinstance(report["bram_output_registers"], int)
    assert absorb_output_registers_in_file(tmp_path / f"{TOP_NAME}.json") == []
    # nextpnr put the accelerator's reset on a global network, as the clock
    assert "routing clock net board.core.reset_buffer.o using global" in (tmp_path / f"{TOP_NAME}.tim").read_text()
    out = capsys.readouterr().out
    assert "critical path:" in out and "given their output register" in out


def test_a_failed_tool_shows_the_error_from_its_own_log_file(tmp_path, monkeypatch):
    """Yosys run as `yosys -q -l FILE` writes its error into FILE, not to its output: the message shows FILE."""
    from sparselstm.hw.boards.flow import _run_step

    tool = tmp_path / "fake-yosys"
    tool.write_text("#!/bin/sh\nprintf 'pass 1\\nERROR: Assert failed in rtlil.cc\\n' > \"$3\"\nexit 1\n")
    tool.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(tool))
    with pytest.raises(ParameterError, match=r"(?s)yosys failed \(exit code 1\).*top\.rpt.*ERROR: Assert failed"):
        _run_step(["yosys", "-q", "-l", "top.rpt", "top.ys"], tmp_path, lambda line: None)
