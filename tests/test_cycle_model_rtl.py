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
from sparselstm.sw.fixedpoint import Numerics
from sparselstm.sw.loaders import load_model
from sparselstm.sw.model import random_model

ROOT = Path(__file__).resolve().parent.parent
AGREEMENT = 0.01

pytestmark = pytest.mark.skipif("verilator" not in available_simulators(), reason="Verilator not installed")


@pytest.fixture
def ese_rtl(monkeypatch):
    """bench/ese_rtl.py (bench scripts import their neighbours by name)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import ese_rtl
    return ese_rtl


@pytest.mark.parametrize("case", ["shipped-64-pes-2-lanes", "two-layers-64-pes-4-lanes"])
def test_cycle_model_within_one_percent_of_the_rtl(case, ese_rtl, tmp_path):
    from sweep import Workload   # bench/sweep.py, on the path the fixture added

    if case.startswith("shipped"):
        workload = Workload("shipped", "shipped", "shipped", load_model(ROOT / "models" / "words-lstmp-sparse.npz"),
                            1.0, Numerics(index_bits=6))
        n_pes, lanes = 64, 2
    else:
        workload = Workload("two-layers", "two-layers", "two layers", random_model(64, 256, 128, num_layers=2, seed=5),
                            0.1, Numerics(index_bits=4))
        n_pes, lanes = 64, 4
    x_q = ese_rtl.ese_input(workload, 6)
    row = ese_rtl.measure_configuration(workload, n_pes, x_q, tmp_path, HardwareParams(lanes=lanes),
                                        log=lambda *_: None)
    assert row["passed"] and row["mismatches"] == 0, row["failure"]
    assert abs(row["prediction_error"]) <= AGREEMENT, (row["rtl_steady_cycles_per_frame"],
                                                       row["predicted_steady_cycles_per_frame"])
