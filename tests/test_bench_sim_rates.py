"""bench/sim_rates.py (`make bench`'s simulated cycles per second) on a tiny model, Icarus only (fast)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import sim_rates  # noqa: E402
from sweep import Workload  # noqa: E402

from sparselstm.sim.tools import available_simulators  # noqa: E402
from sparselstm.spec.numerics import Numerics  # noqa: E402
from sparselstm.sw.model import random_model  # noqa: E402

pytestmark = pytest.mark.skipif("icarus" not in available_simulators(), reason="needs Icarus Verilog")


def _tiny() -> Workload:
    return Workload("tiny", "shipped", "tiny", random_model(6, 8, 4, num_layers=1, peephole=True, seed=4), 0.5,
                    Numerics())


def test_rates_of_a_tiny_model_on_icarus(tmp_path):
    features = np.random.default_rng(0).normal(0.0, 1.0, (4, 6))
    section = sim_rates.measure(_tiny(), 2, {"icarus": 4, "verilator": 0}, tmp_path, features, log=lambda _: None)
    (row,) = section["rows"]
    assert row["simulator"] == "icarus" and row["harness"] == "hdl" and row["frames"] == 4
    assert row["passed"] and row["mismatches"] == 0
    # 4 frames of an 8-cell model take more than a hundred cycles, and the rate is cycles over the wall time
    assert row["cycles"] > 100
    assert row["cycles_per_second"] == pytest.approx(row["cycles"] / row["simulation_seconds"])


def test_more_frames_than_given_is_an_error(tmp_path):
    features = np.zeros((2, 6))
    with pytest.raises(ValueError, match="3 frames asked for icarus, only 2 available"):
        sim_rates.measure(_tiny(), 2, {"icarus": 3}, tmp_path, features, log=lambda _: None)
