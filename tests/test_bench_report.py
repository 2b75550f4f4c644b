"""bench/report.py (`make bench`) end to end in its tiny configuration: the structure of results.json, the
consistency of its figures, and a report.md that names the source of every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "report.py"
SECTIONS = {"meta", "models", "cpu", "encoder", "elsewhere", "accelerator", "targets", "lanes", "streams",
            "load_balance", "model_size", "rtl", "simulator_speed", "routed", "ese_rtl", "plots"}


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--nice", "0", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / "results.json").read_text()), (out / "report.md").read_text(), out


def _sources(results: dict) -> set[str]:
    found = set()

    def walk(value):
        if isinstance(value, dict):
            if isinstance(value.get("source"), str):
                found.add(value["source"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(results)
    return found


def test_results_structure(tiny_report):
    results, _, _ = tiny_report
    assert set(results) == SECTIONS
    assert results["meta"]["pe_counts"] == [2, 4] and results["meta"]["tiny"]
    rows = results["accelerator"]["rows"]
    variants = {(r["model"], r["pruning"]) for r in rows}
    assert variants == {("shipped", "as shipped"), ("shipped-pruned", "balanced"), ("shipped-pruned", "unbalanced"),
                        ("ese", "balanced"), ("ese", "unbalanced")}
    assert sorted(r["n_pes"] for r in rows if r["model"] == "ese" and r["balanced"]) == [2, 4]
    for row in rows:
        # no schedule beats the busiest PE, and the entries are the non-zeros plus padding
        assert row["steady_cycles_per_frame"] >= row["busiest_pe_entries"] >= row["mean_entries_per_pe"]
        assert row["entries"] >= row["nonzeros"] > 0
        assert 0 < row["mac_utilisation"] <= row["pe_busy_fraction"] <= row["busy_bound"] <= 1
        for clock, at in row["at_clock"].items():
            assert at["us_per_frame"] == pytest.approx(row["steady_cycles_per_frame"] / float(clock))
            assert at["gops_dense_equivalent"] >= at["gops_sparse"] > 0
    # the tiny sweep has neither target's PE count: reported as not checked, not as met or missed
    assert [t["met"] for t in results["targets"]] == [None, None]


def test_lanes_rows_mark_the_default_the_sweep_uses(tiny_report):
    results = tiny_report[0]
    rows = results["lanes"]["rows"]
    assert {(r["model"], r["n_pes"]) for r in rows} == {("shipped", 4), ("ese", 4)}
    for model in ("shipped", "ese"):
        mine = [r for r in rows if r["model"] == model]
        assert [r["lanes"] for r in mine] == [1, 2, 4]
        default = [r["lanes"] for r in mine if r["default"]]
        swept = [r["lanes"] for r in results["accelerator"]["rows"]
                 if r["model"] == model and r["balanced"] and r["n_pes"] == 4]
        assert len(default) == 1 and swept == default
        assert all(r["steady_cycles_per_frame"] >= r["busiest_pe_entries"] for r in mine)


def test_streams_rows_one_and_two_streams(tiny_report):
    results, report, _ = tiny_report
    rows = results["streams"]["rows"]
    assert {(r["model"], r["n_pes"], r["streams"]) for r in rows} == {
        (m, 4, s) for m in ("shipped", "ese") for s in (1, 2)}
    for row in rows:
        assert row["steady_cycles_per_frame"] >= row["busiest_pe_entries"] > 0
        assert 0 < row["pe_busy_fraction"] <= 1
    compared = 0
    for model in ("shipped", "ese"):
        one, two = (next(r for r in rows if r["model"] == model and r["streams"] == s) for s in (1, 2))
        # the lone frame's latency does not depend on how many streams could interleave with it (at the same
        # lanes: the default lanes may differ between S = 1 and S = 2, and the element-wise pass with them)
        if two["lanes"] == one["lanes"]:
            assert two["first_frame_cycles"] == one["first_frame_cycles"]
            compared += 1
    assert compared >= 1
    assert "## Interleaved streams" in report


def test_rtl_agrees_with_the_cycle_model(tiny_report):
    rtl = tiny_report[0]["rtl"]
    assert rtl["bit_exact_vs_golden"] and rtl["frames"] == 3 and rtl["n_pes"] == 2
    assert abs(rtl["prediction_error"]) < 0.1
    assert rtl["simulated_cycles_per_second"] > 0
    # the ESE-size model on Verilator (tests/test_ese_rtl.py, slow) is no part of the tiny run
    assert tiny_report[0]["ese_rtl"]["skipped"] == "--tiny"


def test_simulator_speed_row_per_simulator_asked(tiny_report):
    results = tiny_report[0]
    (row,) = results["simulator_speed"]["rows"]        # --tiny: Icarus only, the Verilator build is too slow
    assert row["simulator"] == "icarus" and row["frames"] == 3
    if "error" not in row:      # Icarus not installed: the row says so
        assert row["passed"] and row["cycles"] > 0 and row["cycles_per_second"] > 0
    # no --routed build: the report says its clocks are stated, not routed
    assert results["routed"]["rows"] == [] and "No routed build" in results["meta"]["timing_closure"]


def test_load_balance_and_sizes(tiny_report):
    results = tiny_report[0]
    for entry in results["load_balance"]:
        balanced, unbalanced = entry["balanced"], entry["unbalanced"]
        assert len(balanced["nonzeros_per_pe"]) == len(unbalanced["nonzeros_per_pe"]) == entry["n_pes"]
        assert balanced["max"] == max(balanced["nonzeros_per_pe"])
        assert balanced["max_over_mean"] <= unbalanced["max_over_mean"]
    for row in results["model_size"]["rows"]:
        assert row["compressed_bits"] < row["dense_float32_bits"]
    assert results["encoder"]["median_seconds"] > 0


def test_cpu_rows_measured_or_skipped_with_a_reason(tiny_report):
    results = tiny_report[0]
    rows = results["cpu"]["rows"]
    assert {(r["family"], r["mode"]) for r in rows} == {(f, m) for f in ("shipped", "ese")
                                                       for m in ("streaming", "sequence")}
    for row in rows:
        assert row.get("skipped") or (row["us_per_frame"] > 0 and row["repeats"] == 1)
        if "max_abs_difference_vs_torch" in row:    # the ONNX graphs compute the same LSTMP as nn.LSTM
            assert row["max_abs_difference_vs_torch"] < 1e-4


def test_markdown_names_every_source(tiny_report):
    results, markdown, out = tiny_report
    sources = _sources(results)
    for kind in ("modelled", "simulated", "measured here", "from elsewhere", "counted"):
        assert any(source.startswith(kind) for source in sources), kind
    for source in sources:
        assert source in markdown, source
    for row in results["cpu"]["rows"]:
        assert row["implementation"] in markdown
    assert results["meta"]["timing_closure"] in markdown
    if "skipped" not in results["plots"]:
        for name in results["plots"]:
            assert (out / name).stat().st_size > 0 and f"({name})" in markdown


def test_routed_directory_without_a_build_is_refused(tmp_path, capsys):
    sys.path.insert(0, str(SCRIPT.parent))
    import report

    with pytest.raises(SystemExit):
        report.parse_arguments(["--tiny", "--routed", str(tmp_path)])
    assert f"--routed: {tmp_path}: neither fmax.json" in capsys.readouterr().err


def test_markdown_of_a_report_with_a_routed_build(tiny_report, tmp_path):
    """The tiny run names no routed build; rendering one (as `make bench BENCH_OPTIONS="--routed DIR"` does)
    puts its Fmax and latency in the report and its source beside the others."""
    sys.path.insert(0, str(SCRIPT.parent))
    import report_markdown
    import routed

    fmax = {"seed": 2, "stage": "routed", "fmax_mhz": {"$glbnet$clk": 131.25}, "target_mhz": 125,
            "utilisation": {"TRELLIS_COMB": "46693/83640"}, "late_total": 0, "endpoint_total": 127691,
            "n_pes": 16, "cycles_per_frame_modelled": 1575}
    (tmp_path / "fmax.json").write_text(json.dumps(fmax))
    results = {**tiny_report[0], "routed": routed.routed_section([routed.load_routed(tmp_path)])}
    markdown = report_markdown.render(results)
    section = markdown.split("## At a routed clock")[1].split("\n## ")[0]
    assert "131.2" in section and "12.0" in section and "met" in section and str(tmp_path) in section
    assert results["routed"]["source"] in markdown.split("## ")[0]      # named in the introduction's list
