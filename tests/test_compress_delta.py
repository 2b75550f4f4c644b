"""`sparselstm compress` with delta mode (--delta-threshold, --delta-epochs, --delta-sweep) and column-balanced
pruning (--balance), on the tiny synthetic classifier of conftest.py; and their bad values (one line, exit 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

from sparselstm.cli import main  # noqa: E402
from sparselstm.sw import train as training  # noqa: E402
from sparselstm.sw.format import load_encoded  # noqa: E402
from sparselstm.sw.loaders import load_model  # noqa: E402
from sparselstm.sw.pruning import nonzeros_per_pe_and_column  # noqa: E402

from test_compress_cli import USER_TASK, one_error_line  # noqa: E402


def compress(checkpoint, corpus, out, *options):
    return main(["compress", str(checkpoint), "--task", str(corpus), "--pes", "4", "--steps", "1", "--epochs", "1",
                 "--force-target", "--lr", "0.005", "-o", str(out), "-q", *options])


def test_column_balanced_with_delta_fine_tuning_and_a_sweep(trained_classifier, tmp_path, capsys):
    _, corpus, checkpoint = trained_classifier
    out = tmp_path / "out"
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps([{"x": 0.1, "y": 0.1, "m": 0.02}]))
    assert compress(checkpoint, corpus, out, "--target-density", "0.3", "--balance", "column", "--compare",
                    "--delta-threshold", str(thresholds), "--delta-sweep", "0,0.3/0.3/0.05") == 0
    printed = capsys.readouterr().out
    assert "delta thresholds x 0.1, y 0.1, m 0.02: golden accuracy" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["runs"]) == {"primary", "row-balanced", "unbalanced"}
    assert report["runs"]["primary"]["column_balanced"] and not report["runs"]["row-balanced"]["column_balanced"]
    assert "column_minus_row_balanced" in report["comparisons"]

    delta = report["delta"]
    assert [p["label"] for p in delta["points"]] == ["x 0.1, y 0.1, m 0.02", "0", "x 0.3, y 0.3, m 0.05"]
    sparse = delta["weight_sparse"]
    for point in delta["points"]:
        for stage in ("before", "after"):
            work = point[stage]
            assert 0 <= work["macs_per_frame"] <= work["sparse_macs_per_frame"] == pytest.approx(
                sparse["sparse_macs_per_frame"], rel=0.02)
            assert work["cycles_ratio"] == pytest.approx(sparse["weight_sparse_cycles_per_frame"]
                                                         / work["lockstep_cycles_per_frame"])
    at_zero, coarse = delta["points"][1]["before"], delta["points"][2]["before"]
    # Threshold 0 without fine-tuning is the weight-sparse model, and skips only unchanged columns.
    assert at_zero["golden_score"] == sparse["golden_score"]
    assert coarse["macs_per_frame"] < at_zero["macs_per_frame"]
    assert all(coarse["skipped"][side] >= at_zero["skipped"][side] for side in "xym")

    # The files hold the model fine-tuned with the first setting, and its thresholds.
    encoded = load_encoded(out / "encoded")
    assert [t.to_dict() for t in encoded.delta_thresholds] == delta["points"][0]["after"]["thresholds_words"]
    assert json.loads((out / "encoded" / "report.json").read_text())["delta_thresholds"] == \
        delta["points"][0]["after"]["thresholds_words"]
    classifier, _ = training.load_checkpoint(out / "pruned.pt")
    assert classifier.delta == [{"x": 0.1, "y": 0.1, "m": 0.02}]
    # The model before delta fine-tuning is saved too: same zeros, other weights, no thresholds.
    before, _ = training.load_checkpoint(out / "weight-sparse.pt")
    assert before.delta is None and report["weight_sparse"] == [str(out / f"weight-sparse{suffix}")
                                                                for suffix in (".pt", ".npz", ".head.npz")]
    weight_sparse = load_model(out / "weight-sparse.npz")
    pruned = load_model(out / "pruned.npz")
    for name, w in pruned.matrices().items():
        counts = nonzeros_per_pe_and_column(w, 4)
        assert np.all(counts == counts[0]), name
        assert np.array_equal(w != 0, weight_sparse.matrices()[name] != 0), name
    assert any(not np.array_equal(w, weight_sparse.matrices()[name]) for name, w in pruned.matrices().items())
    assert "## Delta mode" in (out / "report.md").read_text()
    assert (out / "delta.png").read_bytes()[:4] == b"\x89PNG"

    # A pruned checkpoint at the target is taken as it is: its zeros held while fine-tuning with thresholds.
    again = tmp_path / "again"
    assert compress(out / "pruned.pt", corpus, again, "--target-density", "0.3", "--delta-threshold", "0.2",
                    "--delta-epochs", "1") == 0
    assert "already at overall density" in capsys.readouterr().out
    tuned = load_model(again / "pruned.npz")
    for name, w in tuned.matrices().items():
        assert not np.any((w != 0) & (pruned.matrices()[name] == 0)), name
    assert [h["phase"] for h in json.loads((again / "report.json").read_text())["runs"]["primary"]["history"]] == \
        ["already pruned"]


def test_unbalanced_is_balance_none(trained_classifier, tmp_path):
    _, corpus, checkpoint = trained_classifier
    for flag, name in ((["--unbalanced"], "alias"), (["--balance", "none"], "none")):
        assert compress(checkpoint, corpus, tmp_path / name, "--target-density", "0.3", "--epochs", "0", *flag) == 0
    reports = [json.loads((tmp_path / name / "report.json").read_text())["runs"]["primary"]
               for name in ("alias", "none")]
    assert not reports[0]["balanced"] and not reports[1]["balanced"]
    assert reports[0]["matrix_density"] == reports[1]["matrix_density"]


@pytest.mark.parametrize("arguments,message", [
    (["--delta-threshold", "-0.1"], "--delta-threshold: delta threshold: expected a finite number >= 0"),
    (["--delta-threshold", "abc"], "--delta-threshold: expected a number or a .json file, got 'abc'"),
    (["--delta-threshold", "nowhere.json"], "nowhere.json"),
    (["--delta-sweep", "0.1"], "--delta-sweep needs --delta-threshold"),
    (["--delta-threshold", "0.1", "--delta-sweep", "0.1/0.2"], "'0.1/0.2' has 2 values; expected T or X/Y/M"),
    (["--delta-threshold", "0.1", "--delta-sweep", "0.1,x"], "'x' is not T or X/Y/M"),
    (["--delta-threshold", "0.1", "--delta-sweep", "0.1/0.1/-1"], "--delta-sweep: delta thresholds[0].m"),
    (["--delta-threshold", "0.1", "--delta-epochs", "-1"], "--delta-epochs must be at least 0"),
])
def test_delta_argument_errors(trained_classifier, tmp_path, capsys, arguments, message):
    _, corpus, checkpoint = trained_classifier
    assert compress(checkpoint, corpus, tmp_path / "o", "--target-density", "0.3", *arguments) == 1
    assert message in one_error_line(capsys, "compress")


def test_delta_file_and_task_errors(trained_classifier, tmp_path, capsys):
    _, corpus, checkpoint = trained_classifier
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"x": 0.1, "z": 0.1}]))
    assert compress(checkpoint, corpus, tmp_path / "o", "--target-density", "0.3", "--delta-threshold", str(bad)) == 1
    assert f"{bad}: delta thresholds[0]: unknown key(s) ['z']" in one_error_line(capsys, "compress")
    two_layers = tmp_path / "two.json"
    two_layers.write_text(json.dumps([{"x": 0.1}, {"x": 0.1}]))
    assert compress(checkpoint, corpus, tmp_path / "o", "--target-density", "0.3", "--delta-threshold",
                    str(two_layers)) == 1
    assert "expected 1 (one per layer), got 2" in one_error_line(capsys, "compress")
    with pytest.raises(SystemExit) as exit_info:   # argparse: a usage error
        compress(checkpoint, corpus, tmp_path / "o", "--target-density", "0.3", "--balance", "column", "--unbalanced")
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        compress(checkpoint, corpus, tmp_path / "o", "--target-density", "0.3", "--balance", "diagonal")
    capsys.readouterr()

    # A task of the user's own cannot train with thresholds; --delta-epochs 0 scores them alone.
    from sparselstm.sw.loaders import save_npz
    from sparselstm.sw.model import random_model

    save_npz(random_model(5, 8, 3, seed=2), tmp_path / "model.npz")
    (tmp_path / "mytask.py").write_text(USER_TASK)
    common = ["compress", str(tmp_path / "model.npz"), "--task", str(tmp_path / "mytask.py"), "--target-density",
              "0.5", "--pes", "2", "--epochs", "0", "--delta-threshold", "0.1", "-q"]
    assert main([*common, "-o", str(tmp_path / "user")]) == 1
    assert "cannot fine-tune with delta thresholds" in one_error_line(capsys, "compress")
    assert main([*common, "--delta-epochs", "0", "-o", str(tmp_path / "user")]) == 0
    point = json.loads((tmp_path / "user" / "report.json").read_text())["delta"]["points"][0]
    assert "after" not in point and point["before"]["macs_fraction"] <= 1.0
