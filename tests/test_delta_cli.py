"""Delta thresholds in the encoded model: `encode --delta-threshold`, the manifest key (old manifests read as
delta mode off, bad values refused), `golden` running and reporting them, `reference --delta-threshold`."""

import json
from dataclasses import replace

import numpy as np
import pytest

from sparselstm.cli import main
from sparselstm.spec.encoded import DeltaThresholds
from sparselstm.spec.errors import EncodedModelError, ParameterError
from sparselstm.sw.format import load_encoded, write_encoded
from sparselstm.sw.loaders import save_npz
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode


@pytest.fixture(scope="module")
def model():
    return random_model(input_size=6, cell_size=9, proj_size=4, num_layers=2, peephole=False, seed=3)


@pytest.fixture
def checkpoint(model, tmp_path):
    path = tmp_path / "model.npz"
    save_npz(model, path)
    return path


def run(capsys, *args):
    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_encode_writes_thresholds_and_golden_runs_them(checkpoint, tmp_path, capsys):
    x = np.cumsum(np.random.default_rng(0).normal(0, 0.1, (2, 15, 6)), axis=1)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "t.json").write_text(json.dumps([{"x": 0.25, "y": 0.125}, {"m": 0.5}]))
    code, out, err = run(capsys, "encode", checkpoint, "-o", tmp_path / "file", "--pes", 2, "--delta-threshold",
                         tmp_path / "t.json")
    assert code == 0, err
    assert load_encoded(tmp_path / "file").delta_thresholds == (DeltaThresholds(512, 256, 0),
                                                                  DeltaThresholds(0, 0, 8192))
    assert "layer 0: x 512, y 256, m 0" in out
    code, _, err = run(capsys, "encode", checkpoint, "-o", tmp_path / "plain", "--pes", 2)
    assert code == 0, err
    assert "delta_thresholds" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())
    assert load_encoded(tmp_path / "plain").delta_thresholds is None

    outputs = {}
    for name, extra in (("plain", []), ("zero", ["--delta-threshold", 0]), ("file", [])):
        directory = tmp_path / ("file" if name == "file" else "plain")
        code, out, err = run(capsys, "golden", directory, "-i", tmp_path / "x.npy", "-o", tmp_path / f"{name}.npy",
                             "--raw", *extra)
        assert code == 0, err
        assert ("columns skipped" in out) == (name != "plain")
        outputs[name] = np.load(tmp_path / f"{name}.npy")
    np.testing.assert_array_equal(outputs["zero"], outputs["plain"])
    assert not np.array_equal(outputs["file"], outputs["plain"])

    code, out, err = run(capsys, "reference", checkpoint, "-i", tmp_path / "x.npy", "-o", tmp_path / "r.npy",
                         "--delta-threshold", 0.1)
    assert code == 0, err
    assert out.count("columns skipped") == 2


@pytest.mark.parametrize("value, message", [
    ("abc", "expected a number or a .json file"),
    ("-0.5", ">= 0"),
    ("t.json", "unknown key"),
    ("m.json", "no projection"),
])
def test_bad_thresholds_exit_1_naming_the_option_or_file(checkpoint, tmp_path, capsys, value, message):
    (tmp_path / "t.json").write_text(json.dumps([{"q": 1}, {}]))
    (tmp_path / "m.json").write_text(json.dumps([{"m": 1}, {}]))
    plain = random_model(input_size=6, cell_size=9, num_layers=2, peephole=False, seed=3)
    save_npz(plain, tmp_path / "plain.npz")
    path = tmp_path / "plain.npz" if value == "m.json" else checkpoint
    value = str(tmp_path / value) if value.endswith(".json") else value
    code, _, err = run(capsys, "encode", path, "-o", tmp_path / "out", "--pes", 2, "--delta-threshold", value)
    assert code == 1 and message in err
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(delta_thresholds=[{"x": 1, "y": 1, "m": 1}]), "length"),
    (lambda m: m["delta_thresholds"][0].update(x=-1), r"in \[0, 65535\]"),
    (lambda m: m["delta_thresholds"][0].update(y=1.5), "expected an integer"),
    (lambda m: m["delta_thresholds"][1].update(w=0), "unknown key"),
    (lambda m: m["delta_thresholds"][1].pop("m"), "missing key"),
    (lambda m: m.update(delta_thresholds={"x": 0}), "expected a list"),
])
def test_the_reader_validates_the_thresholds(model, tmp_path, edit, message):
    encoded = compress_and_encode(model, 2).encoded
    write_encoded(replace(encoded, delta_thresholds=(DeltaThresholds(1, 2, 3), DeltaThresholds(4, 5, 6))),
                  tmp_path)
    assert load_encoded(tmp_path).delta_thresholds[1] == DeltaThresholds(4, 5, 6)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    edit(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EncodedModelError, match=message):
        load_encoded(tmp_path)


def test_the_encoded_model_checks_its_thresholds(model):
    encoded = compress_and_encode(model, 2).encoded
    with pytest.raises(ParameterError, match="expected 2"):
        replace(encoded, delta_thresholds=(DeltaThresholds(),))
    with pytest.raises(TypeError):
        replace(encoded, delta_thresholds=DeltaThresholds())
