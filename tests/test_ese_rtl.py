"""The ESE-size model (2 layers, input 153, 1024 cells, projection 512, peepholes, density 0.1, balanced,
12-bit) in RTL simulation on Verilator (issue #12): every output word equal to the golden model, and the cycle
model within 2 % of the RTL's cycles per frame. bench/ese_rtl.py measures the same for `make bench`.

Slow: Verilator builds of the whole design, about 2, 6 and 9 minutes of CPU at 32, 64 and 128 PEs
(docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sparselstm.sim.tools import available_simulators

BENCH = Path(__file__).resolve().parent.parent / "bench"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif("verilator" not in available_simulators(), reason="Verilator not installed")]


@pytest.fixture
def bench_modules(monkeypatch):
    """bench/ese_rtl.py and the report's renderer (bench scripts import their neighbours by name)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import ese_rtl
    import report_markdown
    return ese_rtl, report_markdown


@pytest.mark.parametrize("n_pes", [32, 64, 128])
def test_ese_size_model_on_verilator(n_pes, bench_modules, tmp_path):
    ese_rtl, report_markdown = bench_modules
    section = ese_rtl.ese_rtl([n_pes], frames=4, workdir=tmp_path)
    row = section["rows"][0]
    assert "error" not in row, row.get("error")
    assert row["passed"] and row["mismatches"] == 0, row["failure"]
    assert row["words_received"] == row["words_compared"] == 4 * 512
    assert abs(row["prediction_error"]) <= ese_rtl.AGREEMENT, row
    # the zeros the broadcaster drops only make frames faster than the all-non-zero prediction
    assert row["predicted_all_nonzero"] >= row["predicted_steady_cycles_per_frame"]
    text = "\n".join(report_markdown._ese_rtl({"ese_rtl": section, "accelerator": {"source": "modelled"}}))
    assert f"| {n_pes} | {row['lanes']} | 4 |" in text and "bit-exact" in text
