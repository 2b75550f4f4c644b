"""Models in which no weight survives pruning: density 0, a tiny density, one matrix at 0, an all-zero model.

docs allow density 0: every command must then work end to end (the golden model and the RTL handle empty
matrices; the summary must not divide by the zero entries)."""

import json
import shutil

import numpy as np
import pytest

from sparselstm.cli import main
from sparselstm.sw.loaders import save_npz
from sparselstm.sw.model import random_model


@pytest.fixture(scope="module")
def model():
    return random_model(input_size=4, cell_size=6, proj_size=3, num_layers=2, peephole=True, seed=3)


def _all_zero(model):
    return model.with_matrices({name: np.zeros_like(w) for name, w in model.matrices().items()})


def _densities_file(tmp_path, model):
    path = tmp_path / "densities.json"
    names = list(model.matrices())
    path.write_text(json.dumps({"default": 0.5, names[0]: 0.0}))
    return path


CASES = {
    "density 0": lambda tmp_path, model: (model, ["--density", "0"]),
    "tiny density": lambda tmp_path, model: (model, ["--density", "1e-6"]),
    "one matrix at 0": lambda tmp_path, model: (model, ["--densities", str(_densities_file(tmp_path, model))]),
    "all-zero model": lambda tmp_path, model: (_all_zero(model), []),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_encode_golden_and_verilog_when_no_weight_survives(model, tmp_path, capsys, case):
    chosen, flags = CASES[case](tmp_path, model)
    save_npz(chosen, tmp_path / "m.npz")
    encoded = tmp_path / "enc"
    code = main(["encode", str(tmp_path / "m.npz"), "-o", str(encoded), "--pes", "2", *flags])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err and f"wrote {encoded}" in out
    report = json.loads((encoded / "report.json").read_text())
    if case != "one matrix at 0":
        assert report["totals"]["nonzeros"] == 0 and report["totals"]["entries"] == 0
    assert report["matrices"][0]["nonzeros"] == 0

    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(2, 3, 4)))
    assert main(["golden", str(encoded), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape == (2, 3, 3)
    assert main(["verilog", str(encoded), "-o", str(tmp_path / "v")]) == 0
    assert "0 entries" in capsys.readouterr().out or case == "one matrix at 0"


def test_sim_of_a_density_0_model_on_icarus(model, tmp_path, capsys):
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed")
    save_npz(model, tmp_path / "m.npz")
    assert main(["encode", str(tmp_path / "m.npz"), "-o", str(tmp_path / "enc"), "--pes", "2", "--density", "0"]) == 0
    np.save(tmp_path / "x.npy", np.random.default_rng(1).normal(size=(2, 4)))
    code = main(["sim", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--simulator", "icarus"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "PASS: 2/2 frame(s), 0 mismatching word(s)" in out
    assert np.load(tmp_path / "y.npy").shape == (2, 3)
