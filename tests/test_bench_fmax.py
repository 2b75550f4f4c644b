"""bench/fmax.py's reading of nextpnr's JSON report: the late endpoints grouped by design instance."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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
    fmax.main(["--skip-synth", "-o", str(tmp_path), "--placer-timing-weight", "25", "--tmg-ripup"])
    (command,) = commands
    assert command[0] == "nextpnr-ecp5"
    assert command[command.index("--placer-heap-timingweight") + 1] == "25" and "--tmg-ripup" in command
    result = json.loads((tmp_path / "fmax.json").read_text())
    assert result["nextpnr_tuning"] == ["--placer-heap-timingweight", "25", "--tmg-ripup"]
    assert result["fmax_mhz"] == {"clk": 90.0}
    fmax.main(["--skip-synth", "-o", str(tmp_path)])        # the board builds' weight by default
    assert commands[1][commands[1].index("--placer-heap-timingweight") + 1] == str(fmax.PLACER_TIMING_WEIGHT)
    assert "--tmg-ripup" not in commands[1]
