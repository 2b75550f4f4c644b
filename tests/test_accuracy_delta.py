"""`sparselstm accuracy` (sw/compress/accuracy.py) on a models.json entry with "delta_thresholds": the
compressed model scored by the golden model in delta mode, the weight-sparse mode beside it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from sparselstm.sw.compress.accuracy import ShippedModelError, evaluate_entry
from sparselstm.sw.speech.task import FeatureSet

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """The shipped words model and its compressed version, with one test utterance per word (35)."""
    directory = tmp_path_factory.mktemp("models")
    for name in ("words-lstmp.npz", "words-lstmp.head.npz", "words-lstmp-sparse.npz", "words-lstmp-sparse.head.npz"):
        shutil.copy(MODELS / name, directory / name)
    test = FeatureSet.load(MODELS / "words-test.npz")
    keep = [i for i in range(len(test)) if test.labels[i] not in test.labels[:i]]
    replace(test, features=test.features[keep], labels=test.labels[keep]).save(directory / "test.npz")
    return directory


def entry(thresholds: str | None) -> dict:
    out = {"checkpoint": "words-lstmp.pt", "test_set": "test.npz", "compressed": "words-lstmp-sparse.npz"}
    if thresholds is not None:
        out["delta_thresholds"] = thresholds
    return out


def test_delta_entry_scores_delta_mode_beside_the_weight_sparse_mode(models_dir):
    (models_dir / "zero.json").write_text(json.dumps([{"x": 0, "y": 0, "m": 0}]))
    (models_dir / "coarse.json").write_text(json.dumps([{"x": 0.5, "y": 0.5, "m": 0.3}]))
    zero = evaluate_entry(models_dir, entry("zero.json"))
    coarse = evaluate_entry(models_dir, entry("coarse.json"))
    # threshold 0 gives exactly the weight-sparse outputs (docs/numerics.md, "Delta mode")
    assert zero["compressed_golden_accuracy"] == zero["weight_sparse_golden_accuracy"] \
        == coarse["weight_sparse_golden_accuracy"]
    # coarse thresholds cost this model (not trained with them) accuracy: delta mode really ran
    assert coarse["compressed_golden_accuracy"] < coarse["weight_sparse_golden_accuracy"] - 0.1
    assert coarse["delta_thresholds"] == "coarse.json"


def test_entry_without_thresholds_has_no_delta_figures(models_dir):
    result = evaluate_entry(models_dir, entry(None))
    assert "weight_sparse_golden_accuracy" not in result and "delta_thresholds" not in result


@pytest.mark.parametrize("content, expected", [
    (None, "not found"),
    ("[{\"x\": 0.1", "expected JSON thresholds"),
    ("[{\"x\": 0.1, \"z\": 1}]", "unknown key"),
    ("[{\"x\": 0.1}, {\"x\": 0.1}]", "one per layer"),
])
def test_bad_delta_thresholds_file_is_named(models_dir, content, expected):
    path = models_dir / "bad.json"
    path.unlink(missing_ok=True)
    if content is not None:
        path.write_text(content)
    with pytest.raises(ShippedModelError, match=expected) as error:
        evaluate_entry(models_dir, entry("bad.json"))
    assert "bad.json" in str(error.value)


def test_accuracy_command_says_delta_mode(models_dir, tmp_path, capsys):
    from sparselstm.cli import main

    (models_dir / "coarse.json").write_text(json.dumps([{"x": 0.5, "y": 0.5, "m": 0.3}]))
    (models_dir / "models.json").write_text(json.dumps({"models": [entry("coarse.json")]}))
    assert main(["accuracy", "--models", str(models_dir), "-o", str(tmp_path / "a.json"), "-q"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("words-lstmp.pt"))
    assert "in delta mode (coarse.json; weight-sparse golden" in line
    result = json.loads((tmp_path / "a.json").read_text())["models"][0]
    assert result["compressed_golden_accuracy"] < result["weight_sparse_golden_accuracy"]
