"""bench/routed.py: the routed builds that `make bench --routed DIR` reports latency at."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import routed  # noqa: E402

from sparselstm.hw.cycle_model import predict_cycles  # noqa: E402
from sparselstm.hw.design import AcceleratorDesign  # noqa: E402
from sparselstm.hw.params import HardwareParams  # noqa: E402
from sparselstm.sw.format import write_encoded  # noqa: E402
from sparselstm.sw.model import random_model  # noqa: E402
from sparselstm.sw.pipeline import compress_and_encode  # noqa: E402

FMAX_JSON = {"seed": 2, "stage": "routed", "fmax_mhz": {"$glbnet$clk": 129.04}, "target_mhz": 125,
             "utilisation": {"TRELLIS_COMB": "46693/83640"}, "late_total": 0, "endpoint_total": 127691,
             "n_pes": 16, "cycles_per_frame_modelled": 1558}


def test_fmax_run_gives_microseconds_at_its_fmax(tmp_path):
    (tmp_path / "fmax.json").write_text(json.dumps(FMAX_JSON))
    build = routed.load_routed(tmp_path)
    assert build["fmax_mhz"] == 129.04 and build["met"] and build["n_pes"] == 16 and build["seed"] == 2
    assert build["us_per_frame"] == pytest.approx(1558 / 129.04)
    assert build["late_register_inputs"] == 0 and "timing wrapper" in build["kind"]


def test_board_report_below_its_target_is_not_met(tmp_path):
    report = {"board": "ulx3s-85f", "seed": 1, "n_pes": 4, "cycles_per_frame_modelled": 900,
              "clocks": {"$glbnet$clk": {"target_mhz": 125.0, "achieved_mhz": 118.5, "met": False}},
              "utilisation": {"TRELLIS_FF": {"used": 10, "available": 20}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    build = routed.load_routed(tmp_path)
    assert not build["met"] and build["target_mhz"] == 125.0 and build["us_per_frame"] == pytest.approx(900 / 118.5)
    assert build["utilisation"] == {"TRELLIS_FF": "10/20"} and "board top" in build["kind"]
    assert "late_register_inputs" not in build      # no nextpnr report beside it


def test_board_report_counts_the_late_register_inputs_of_nextpnrs_report(tmp_path):
    report = {"board": "ulx3s-85f", "seed": 3, "placer": "static", "n_pes": 4, "cycles_per_frame_modelled": 900,
              "clocks": {"$glbnet$clk": {"target_mhz": 125.0, "achieved_mhz": 118.5, "met": False}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    timings = {"detailed_net_timings": [
        {"net": "a", "driver": "x.q", "endpoints": [{"cell": "pe0.r", "port": "DI", "delay": [1.0, 8.4]},
                                                    {"cell": "pe1.r", "port": "DI", "delay": [1.0, 7.9]}]},
        {"net": "b", "driver": "y.q", "endpoints": [{"cell": "link.r", "port": "CE", "delay": 8.01}]}]}
    (tmp_path / "sparselstm_board.report.json").write_text(json.dumps(timings))
    build = routed.load_routed(tmp_path)
    assert build["late_register_inputs"] == 2 and build["register_inputs"] == 3     # after 8 ns, 1000 / 125
    assert build["nextpnr_options"] == "--placer static" and build["seed"] == 3


def test_older_runs_take_the_model_from_their_encoded_directory(tmp_path):
    encoded = compress_and_encode(random_model(6, 8, 4, num_layers=1, peephole=True, seed=1), 2, density=0.5).encoded
    write_encoded(encoded, tmp_path / "encoded")
    data = {key: value for key, value in FMAX_JSON.items() if key not in ("n_pes", "cycles_per_frame_modelled")}
    (tmp_path / "fmax.json").write_text(json.dumps(data))
    build = routed.load_routed(tmp_path)
    assert build["n_pes"] == 2
    assert build["cycles_per_frame_modelled"] == predict_cycles(
        AcceleratorDesign.from_encoded(encoded, HardwareParams())).steady_state


@pytest.mark.parametrize("files, message", [
    ({}, "neither fmax.json"),
    ({"fmax.json": "{"}, "not JSON"),
    ({"fmax.json": json.dumps({**FMAX_JSON, "fmax_mhz": {}})}, "'fmax_mhz' missing or empty"),
    ({"report.json": json.dumps({"seed": 1})}, "not a `sparselstm build` report"),
    ({"fmax.json": json.dumps({"fmax_mhz": {"c": 100.0}, "target_mhz": 125})}, "no 'n_pes'"),
])
def test_bad_build_directories_are_named(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        routed.load_routed(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_command_prints_the_builds_side_by_side(tmp_path, capsys):
    wide, narrow = tmp_path / "32", tmp_path / "16"
    for directory, data in ((wide, {**FMAX_JSON, "n_pes": 32, "fmax_mhz": {"clk": 99.18}, "late_total": 180,
                                    "endpoint_total": 146711, "cycles_per_frame_modelled": 814,
                                    "nextpnr_tuning": ["--placer", "static"]}),
                            (narrow, FMAX_JSON)):
        directory.mkdir()
        (directory / "fmax.json").write_text(json.dumps(data))
    assert routed.main([str(wide), str(narrow)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| accelerator")]
    assert len(rows) == 2
    assert "| 32 | 99.2 |" in rows[0] and "NOT met | 180 of 146711 | 814 | 8.21 |" in rows[0]
    assert "--placer static" in rows[0]
    assert "| 16 | 129.0 |" in rows[1] and "| met | 0 of 127691 | 1558 | 12.1 |" in rows[1]


def test_command_names_a_directory_without_a_build(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        routed.main([str(tmp_path)])
    assert caught.value.code == 2 and f"{tmp_path}: neither fmax.json" in capsys.readouterr().err
