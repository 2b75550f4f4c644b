"""The cycle model against the generated Verilog on Verilator, where its replay of the backpressure matters: many
PEs with little work per broadcast word, so that the lane unpackers' room flags set the pace (hw/cycle_model.py,
UNPACKER_ROOM_SEEN ...), and a two-layer model with 4 lanes, whose next layer's input follows the recurrent words
sent ahead as soon as they are out (X_SETUP). bench/ese_rtl.py measures the same on the ESE-size model.

Before session 42 the model was 4.9 % fast on the first (its room flags counted each word 5 cycles late) and
2.3 % slow on the second (the next layer's input waited for the PEs to finish the recurrent words)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparselstm.hw.params import HardwareParams
from sparselstm.sim.tools import available_simulators

ROOT = Path(__file__).resolve().parent.parent
AGREEMENT = 0.01

pytestmark = pytest.mark.skipif("verilator" not in available_simulators(), reason="Verilator not installed")


@pytest.fixture
def bench_modules(monkeypatch):
    """bench/ese_rtl.py and bench/model_vs_verilator.py (bench scripts import their neighbours by name)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import ese_rtl
    import model_vs_verilator
    return ese_rtl, model_vs_verilator


@pytest.mark.parametrize("name, n_pes, lanes", [("shipped", 64, 2), ("two-layers", 64, 4)])
def test_cycle_model_within_one_percent_of_the_rtl(name, n_pes, lanes, bench_modules, tmp_path):
    ese_rtl, model_vs_verilator = bench_modules
    workload = model_vs_verilator.workloads()[name]
    x_q = ese_rtl.ese_input(workload, 6)
    row = ese_rtl.measure_configuration(workload, n_pes, x_q, tmp_path, HardwareParams(lanes=lanes),
                                        log=lambda *_: None)
    assert row["passed"] and row["mismatches"] == 0, row["failure"]
    assert abs(row["prediction_error"]) <= AGREEMENT, (row["rtl_steady_cycles_per_frame"],
                                                       row["predicted_steady_cycles_per_frame"])
