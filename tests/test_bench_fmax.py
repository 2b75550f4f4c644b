"""bench/fmax.py's reading of nextpnr's JSON report: the late endpoints grouped by design instance."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "fmax.py"


def load_fmax():
    spec = importlib.util.spec_from_file_location("bench_fmax", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def endpoint(cell, arrival):
    return {"cell": cell, "port": "DI", "event": "posedge clk", "delay": arrival}


def test_late_endpoints_rank_instances_by_endpoints_past_the_period():
    fmax = load_fmax()
    report = {"detailed_net_timings": [
        {"net": "dut.bc.word", "driver": "dut.bc.word_TRELLIS_FF_Q", "port": "Q", "event": "posedge clk",
         "endpoints": [endpoint("dut.unpacker1.word_1_TRELLIS_FF_Q", 9.5),
                       endpoint("dut.unpacker1.fifo.level_TRELLIS_FF_Q", [2.1, 8.4]),   # [min, max]
                       endpoint("dut.unpacker2.word_1_TRELLIS_FF_Q", 7.0)]},
        {"net": "dut.pe0.sum", "driver": "dut.pe0.adder_LUT4_Z", "port": "Z", "event": "posedge clk",
         "endpoints": [endpoint("dut.pe0.acc_TRELLIS_FF_Q", 8.1)]},
    ]}
    late, late_total, total = fmax.late_endpoints(report, 8.0, 10)
    assert (late_total, total) == (3, 4)
    # one late endpoint each: the latest arrival first
    assert [entry["instance"] for entry in late] == ["dut.unpacker1", "dut.unpacker1.fifo", "dut.pe0"]
    by_name = {entry["instance"]: entry for entry in late}
    assert by_name["dut.unpacker1"]["late"] == 1 and by_name["dut.unpacker1"]["worst_ns"] == 9.5
    assert by_name["dut.unpacker1"]["worst_driver"] == "dut.bc"
    assert "dut.unpacker2" not in by_name          # arrives in time
    assert fmax.late_endpoints({}, 8.0, 10) == ([], 0, 0)  # a placement-only report has no net timings


def test_placer_and_router_tuning_reach_nextpnr_and_the_result(tmp_path, monkeypatch):
    fmax = load_fmax()
    commands = []

    def fake_run(command, log):
        commands.append(command)
        (log.parent / "report.json").write_text(
            '{"fmax": {"clk": {"achieved": 90.0, "constraint": 125}}, "utilization": {}, "critical_paths": []}')
        return 0.0

    monkeypatch.setattr(fmax, "run", fake_run)
    monkeypatch.setattr(fmax, "tool_command", lambda name: [name])
    from test_board_bram_registers import _registered_block
    (tmp_path / "synth.json").write_text(json.dumps(_registered_block(2)))
    fmax.main(["--skip-synth", "-o", str(tmp_path), "--placer-timing-weight", "25", "--tmg-ripup"])
    (command,) = commands
    assert command[0] == "nextpnr-ecp5"
    assert command[command.index("--placer-heap-timingweight") + 1] == "25" and "--tmg-ripup" in command
    result = json.loads((tmp_path / "fmax.json").read_text())
    assert result["nextpnr_tuning"] == ["--placer-heap-timingweight", "25", "--tmg-ripup"]
    assert result["fmax_mhz"] == {"clk": 90.0}
    assert result["bram_output_registers"] == 1         # the netlist's block took its flip-flops in
    fmax.main(["--skip-synth", "-o", str(tmp_path)])        # the board builds' weight by default
    assert commands[1][commands[1].index("--placer-heap-timingweight") + 1] == str(fmax.PLACER_TIMING_WEIGHT)
    assert "--tmg-ripup" not in commands[1]
    assert json.loads((tmp_path / "fmax.json").read_text())["bram_output_registers"] == 0    # done already
    (tmp_path / "synth.json").write_text(json.dumps(_registered_block(2)))
    fmax.main(["--skip-synth", "-o", str(tmp_path), "--no-bram-registers"])
    assert "bram_output_registers" not in json.loads((tmp_path / "fmax.json").read_text())
    assert json.loads((tmp_path / "synth.json").read_text()) == _registered_block(2)
    fmax.main(["--skip-synth", "-o", str(tmp_path), "--placer", "static", "--no-ctrl-set"])
    assert commands[-1][commands[-1].index("--placer") + 1] == "static" and "--placer-heap-no-ctrl-set" in commands[-1]
    assert "--placer" not in commands[1] and "--placer-heap-no-ctrl-set" not in commands[1]     # heap by default


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog")
def test_wrapper_pins_carry_the_stream_and_the_counters_parity_three_cycles_on(tmp_path, monkeypatch):
    """The wrapper around a stand-in top: every stream bit reaches its pin a cycle on, and `pin_counters` is the
    XOR of every counter bit three cycles on (each counter's parity in a register of its own, then groups of
    them, so no path of the wrapper reduces many bits in one cycle; groups of one here, so there are two)."""
    fmax = load_fmax()
    monkeypatch.setattr(fmax, "PARITY_GROUP", 1)
    ports = [("input", "clk", 1), ("input", "rst", 1), ("input", "i__payload", 4), ("output", "o__payload", 4),
             ("output", "busy", 1), ("output", "cycles", 12), ("output", "mac_cycles__pe0", 9)]
    wrapper = fmax.wrapper_verilog(ports)
    assert "pin_counters <= parity_group_0 ^ parity_group_1;" in wrapper and "w_cycles) ^" not in wrapper
    (tmp_path / "top.v").write_text(f"""
module {fmax.TOP}(input clk, input rst, input [3:0] i__payload, output [3:0] o__payload, output busy,
                  output reg [11:0] cycles, output reg [8:0] mac_cycles__pe0);
  assign o__payload = ~i__payload; assign busy = ^i__payload;
  always @(posedge clk) begin cycles <= cycles * 5 + 3; mac_cycles__pe0 <= mac_cycles__pe0 + 7; end
  initial begin cycles = 1; mac_cycles__pe0 = 2; end
endmodule
module tb;
  reg clk = 0; reg rst_pin = 0; reg [3:0] payload = 0;
  wire [3:0] pin_o; wire pin_busy, pin_i_ready, pin_counters;
  reg [2:0] parity_history;
  integer i;
  {fmax.WRAPPER} w(.clk(clk), .rst_pin(rst_pin), .pin_i__payload(payload), .pin_o__payload(pin_o),
                   .pin_busy(pin_busy), .pin_counters(pin_counters));
  initial begin
    for (i = 0; i < 20; i = i + 1) begin
      parity_history = {{parity_history[1:0], ^{{dut_cycles(), dut_macs()}}}};
      payload = i;
      #1 clk = 1; #1 clk = 0;
      $display("%0d %h %0d %0d", i, pin_o, pin_counters, parity_history[2]);
    end
    $finish;
  end
  function [11:0] dut_cycles(); dut_cycles = w.dut.cycles; endfunction
  function [8:0] dut_macs(); dut_macs = w.dut.mac_cycles__pe0; endfunction
endmodule
""")
    (tmp_path / "wrapper.v").write_text(wrapper)
    subprocess.run(["iverilog", "-g2012", "-o", "sim", "top.v", "wrapper.v"], cwd=tmp_path, check=True)
    lines = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True, capture_output=True,
                           text=True).stdout.split("\n")
    rows = [line.split() for line in lines if line.strip() and line.split()[0].isdigit()]
    assert len(rows) == 20
    for step, pin_o, counters, expected in rows[4:]:
        assert int(pin_o, 16) == (~(int(step) - 1)) & 0xF, f"step {step}"     # registered in and out
        assert counters == expected, f"step {step}"
