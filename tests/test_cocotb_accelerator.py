"""System tests: the generated accelerator Verilog in Icarus (cocotb) and Verilator (the native C++ main, and cocotb
where said), word for word against sw.golden, over a matrix of models, PE counts, densities and stream conditions.

Every model is made here (random_model -> compress_and_encode -> write_encoded -> hw.verilog.generate); each
case builds in its own directory. The same cases run on both simulators: the Icarus runs (builds in a second)
and two Verilator runs are the CI subset; the other Verilator runs (a C++ build of about a minute each) and the
big sweep are marked slow.
A run that fails reports the first mismatching word (frame, element, expected, got) and the log path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest

from sparselstm import cli
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.verilog import generate
from sparselstm.sim import tools
from sparselstm.sim.runner import SimResult, SimulationError, run_accelerator_sim
from sparselstm.spec.encoded import DeltaThresholds
from sparselstm.sw.format import write_encoded
from sparselstm.sw.fixedpoint import quantize_input
from sparselstm.sw.golden import golden_forward_encoded
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode

pytestmark = pytest.mark.cocotb


@dataclass(frozen=True)
class Case:
    id: str
    input_size: int = 5
    cells: int = 8
    proj: int | None = None
    layers: int = 1
    peephole: bool = True
    n_pes: int = 2
    density: float = 0.3
    zero_matrices: tuple = ()        # matrix names pruned to nothing (all-zero matrices)
    balanced: bool = True
    seed: int = 0
    scale: float | None = None       # weight range (default PyTorch-like 1/sqrt(H))
    frames: int = 4
    restarts: tuple = ()             # frames (besides 0) that start a new sequence
    stall_in: float = 0.0
    stall_out: float = 0.0
    first_noise: bool = False        # `first` set at random where the protocol says it is ignored
    saturating: bool = False         # inputs far outside the act range (they saturate on quantisation)
    lanes: int | None = None         # element-wise lanes (None: the design's default)
    delta: tuple | None = None       # delta mode: thresholds (x, y, m) in words, every layer (m 0 without proj)


def _require(simulator: str) -> None:
    try:
        tools.find_simulator(simulator)
    except tools.SimulatorNotFoundError as error:
        pytest.skip(str(error))


def build_case(case: Case, directory):
    """Model -> encoded directory -> Verilog directory; returns (encoded, encoded_dir, verilog_dir, x_q, starts)."""
    model = random_model(case.input_size, case.cells, case.proj, num_layers=case.layers, peephole=case.peephole,
                         seed=case.seed, scale=case.scale)
    density = case.density
    if case.zero_matrices:
        density = {"default": case.density, **{name: 0.0 for name in case.zero_matrices}}
    encoded = compress_and_encode(model, case.n_pes, density, case.balanced).encoded
    if case.delta is not None:
        x, y, m = case.delta
        encoded = replace(encoded, delta_thresholds=tuple(
            DeltaThresholds(x, y, m if layer.proj_size is not None else 0) for layer in encoded.layers))
    encoded_dir, verilog_dir = directory / "encoded", directory / "verilog"
    write_encoded(encoded, encoded_dir)
    generate(encoded, HardwareParams(lanes=case.lanes), verilog_dir, encoded_dir=encoded_dir)

    rng = np.random.default_rng(1000 + case.seed)
    x = rng.normal(0.0, 1.5, (case.frames, case.input_size))
    x[rng.random(x.shape) < 0.2] = 0.0                       # exact zeros: the PEs skip zero activations
    if case.saturating:
        x = rng.choice([-1.0, 1.0], x.shape) * rng.uniform(16.0, 100.0, x.shape)
    x_q, _ = quantize_input(x, encoded.numerics)
    starts = np.zeros(case.frames, dtype=bool)
    starts[list(case.restarts)] = True
    return encoded, encoded_dir, verilog_dir, x_q, starts


def run_case(case: Case, simulator: str, directory, harness: str = "auto") -> SimResult:
    """`harness` "auto": the native C++ main on Verilator, cocotb with the HDL harness on Icarus."""
    _require(simulator)
    encoded, encoded_dir, verilog_dir, x_q, starts = build_case(case, directory)
    result = run_accelerator_sim(verilog_dir, encoded_dir, x_q, sequence_starts=starts, simulator=simulator,
                                 build_dir=directory / f"sim_{simulator}", stall_in=case.stall_in,
                                 stall_out=case.stall_out, seed=case.seed, first_noise=case.first_noise,
                                 encoded=encoded, harness=harness)
    assert result.passed, result.failure_summary()
    np.testing.assert_array_equal(result.outputs, golden_forward_encoded(encoded, x_q, sequence_starts=starts))
    assert result.status["frames_done"] == case.frames and result.status["busy"] == 0
    macs = result.counters["mac_cycles"]
    assert len(macs) == case.n_pes and all(0 <= m <= result.status["cycles"] for m in macs)
    return result


# The CI subset runs these on Icarus (and VERILATOR_IN_CI on Verilator); all of them run on Verilator in the slow sweep.
CASES = [
    Case("pe1-dense-plain", input_size=3, cells=4, peephole=False, n_pes=1, density=1.0),
    Case("pe4-odd-shapes", input_size=13, cells=40, proj=24, n_pes=4, density=0.3, frames=3),
    Case("pe16-sparse", input_size=8, cells=32, n_pes=16, density=0.05),
    Case("two-layers-unbalanced", input_size=6, cells=12, proj=5, layers=2, peephole=False, density=0.3,
         balanced=False, seed=3),
    Case("zero-matrices", cells=8, proj=4, zero_matrices=("L0.input.f", "L0.recurrent.i", "L0.recurrent.f",
                                                        "L0.recurrent.g", "L0.recurrent.o"), seed=4),
    Case("stress-stalls-restarts", cells=8, proj=6, density=0.5, frames=12, restarts=(5, 6), stall_in=0.5,
         stall_out=0.5, first_noise=True, seed=5),
    Case("saturating", input_size=4, cells=6, density=1.0, scale=4.0, frames=6, seed=6),
    Case("lanes2-odd-cells", input_size=9, cells=21, proj=10, n_pes=4, density=0.3, frames=4, restarts=(2,),
         stall_in=0.2, stall_out=0.3, seed=8, lanes=2),
    Case("delta-restarts-stalls", cells=8, proj=6, density=0.5, frames=10, restarts=(4, 5), stall_in=0.3,
         stall_out=0.3, delta=(400, 250, 120), seed=7),
    Case("delta-two-layers", input_size=6, cells=10, proj=None, layers=2, n_pes=4, density=0.4, frames=6,
         restarts=(3,), delta=(300, 300, 0), seed=8),
    Case("delta-lanes4-odd-cells", input_size=7, cells=19, proj=9, n_pes=4, density=0.4, frames=8, restarts=(3, 4),
         stall_in=0.2, stall_out=0.3, delta=(300, 200, 100), seed=9, lanes=4),
]


# In CI (`make test`) these also run on Verilator: many PEs, and two layers with unbalanced pruning.
VERILATOR_IN_CI = {"pe16-sparse", "two-layers-unbalanced"}


def _regression_matrix():
    for case in CASES:
        yield pytest.param(case, "icarus", id=f"{case.id}-icarus")
        marks = () if case.id in VERILATOR_IN_CI else (pytest.mark.slow,)
        yield pytest.param(case, "verilator", id=f"{case.id}-verilator", marks=marks)


@pytest.mark.parametrize("case, simulator", list(_regression_matrix()))
def test_accelerator_matches_golden(case, simulator, tmp_path):
    run_case(case, simulator, tmp_path)


def test_all_zero_weights_do_no_macs(tmp_path):
    """Every matrix empty: only biases drive the cells; no PE may count a MAC."""
    result = run_case(Case("all-zero", cells=8, proj=5, density=0.0, frames=3, seed=7), "icarus", tmp_path)
    assert result.counters["mac_cycles"] == [0, 0]


def test_simulators_agree_cycle_for_cycle(tmp_path):
    """Icarus and Verilator on the same Verilog and the same stall pattern, Verilator both under cocotb and
    run by the native main (`make sim`'s): the same words in the same cycles."""
    case = Case("agree", input_size=13, cells=40, proj=24, n_pes=4, density=0.3, frames=4, restarts=(2,),
                stall_in=0.3, stall_out=0.3, seed=8)
    icarus = run_case(case, "icarus", tmp_path / "icarus")
    for harness in ("native", "hdl"):
        verilator = run_case(case, "verilator", tmp_path / harness, harness)
        np.testing.assert_array_equal(icarus.outputs, verilator.outputs)
        assert icarus.frame_start_cycles == verilator.frame_start_cycles
        assert icarus.frame_done_cycles == verilator.frame_done_cycles
        assert icarus.status == verilator.status and icarus.counters == verilator.counters


def test_verilog_of_another_model_is_refused(tmp_path):
    _, _, verilog_dir, x_q, _ = build_case(Case("a", seed=1), tmp_path / "a")
    _, other_encoded_dir, _, _, _ = build_case(Case("b", seed=2), tmp_path / "b")
    with pytest.raises(SimulationError, match="different encoded model"):
        run_accelerator_sim(verilog_dir, other_encoded_dir, x_q)


# ----------------------------------------------------------------------------------------------------------
# The `sparselstm sim` command


def test_sim_command_writes_what_golden_writes(tmp_path, capsys):
    _require("icarus")
    model = random_model(4, 6, 3, num_layers=1, peephole=True, seed=9)
    write_encoded(compress_and_encode(model, 2, 0.5).encoded, tmp_path / "enc")
    x = np.random.default_rng(9).normal(0.0, 1.0, (2, 3, 4))
    x[0, 1, 2] = 50.0                                            # saturates on quantisation
    np.save(tmp_path / "x.npy", x)
    code = cli.main(["sim", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                     "--simulator", "icarus", "--report", str(tmp_path / "r.json"), "--stall-out", "0.3",
                     "--fifo-depth", "4"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert cli.main(["golden", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"),
                     "-o", str(tmp_path / "g.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "g.npy"))
    assert "PASS: 6/6 frame(s), 0 mismatching word(s)" in out
    assert "1 of 24 input value(s) saturated" in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] and report["frames"] == 6 and report["input_saturated"] == 1
    assert report["status"]["frames_done"] == 6 and len(report["pe_utilisation"]) == 2
    assert report["hardware_params"]["fifo_depth"] == 4
    assert report["build_dir"] is None                           # temporary, removed after a pass


def test_sim_command_in_delta_mode_reports_the_columns_skipped(tmp_path, capsys):
    """Thresholds in the manifest (`encode --delta-threshold`): the hardware and the golden model run delta
    mode, and sim reports the columns skipped and the cycle model in both modes."""
    _require("icarus")
    model = random_model(4, 6, 3, num_layers=1, peephole=True, seed=10)
    encoded = compress_and_encode(model, 2, 0.5).encoded
    write_encoded(replace(encoded, delta_thresholds=(DeltaThresholds(300, 200, 100),)), tmp_path / "enc")
    x = np.cumsum(np.random.default_rng(10).normal(0.0, 0.1, (2, 4, 4)), axis=1)
    np.save(tmp_path / "x.npy", x)
    code = cli.main(["sim", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                     "--simulator", "icarus", "--report", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "PASS: 8/8 frame(s), 0 mismatching word(s)" in out and "columns skipped" in out
    # the sidecar's prediction assumes every column is sent: it must not read as delta mode's
    assert "(cycle model with every column sent: " in out and "(cycle model: " not in out
    delta = json.loads((tmp_path / "r.json").read_text())["delta"]
    assert delta["thresholds"] == [{"x": 300, "y": 200, "m": 100}]
    assert 0 < delta["macs"] < delta["dense_macs"]
    assert delta["cycle_model_delta"] < delta["cycle_model_weight_sparse"]


def test_sim_command_rejects_a_wrong_input_shape(tmp_path, capsys):
    _require("icarus")
    model = random_model(4, 6, None, num_layers=1, peephole=False, seed=10)
    write_encoded(compress_and_encode(model, 1, 1.0).encoded, tmp_path / "enc")
    np.save(tmp_path / "x.npy", np.zeros((3, 5)))
    code = cli.main(["sim", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                     "--simulator", "icarus"])
    err = capsys.readouterr().err
    assert code == 1
    assert "expected shape (T, 4) or (B, T, 4)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y.npy").exists()


# ----------------------------------------------------------------------------------------------------------
# The big sweep (slow)

SWEEP = [Case(f"pe{n}-density{d}", input_size=13, cells=40, proj=24, n_pes=n, density=d, frames=3, seed=20 + i)
         for i, (n, d) in enumerate((n, d) for n in (1, 4, 16) for d in (1.0, 0.3, 0.05))]
SWEEP += [Case(f"peephole{int(p)}-proj{int(q)}-layers{k}", input_size=7, cells=10, proj=6 if q else None,
               layers=k, peephole=p, n_pes=3, density=0.4, seed=40 + 4 * k + 2 * p + q)
          for p in (False, True) for q in (False, True) for k in (1, 2)]
SWEEP += [Case(f"random-seed{s}", input_size=9, cells=20, proj=11, layers=2, n_pes=4, density=0.25, frames=6,
               restarts=(3,), stall_in=0.2, stall_out=0.2, balanced=bool(s % 2), seed=60 + s) for s in range(4)]


@pytest.mark.slow
@pytest.mark.parametrize("simulator", tools.SIMULATORS)
@pytest.mark.parametrize("case", SWEEP, ids=lambda case: case.id)
def test_sweep(case, simulator, tmp_path):
    run_case(case, simulator, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("simulator", tools.SIMULATORS)
def test_long_sequence(simulator, tmp_path):
    """500 frames in one sequence (plus one restart near the end), with light stalls on both streams."""
    case = Case("long", cells=8, proj=6, n_pes=2, density=0.5, frames=500, restarts=(450,), stall_in=0.1,
                stall_out=0.1, seed=80)
    result = run_case(case, simulator, tmp_path)
    assert len(result.frame_done_cycles) == 500


def test_case_ids_are_unique():
    ids = [case.id for case in CASES + SWEEP]
    assert len(ids) == len(set(ids))
