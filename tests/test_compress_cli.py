"""The commands `sparselstm sensitivity`, `compress` and `accuracy` end to end on a synthetic corpus, and
their errors (one line, exit 1)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

from sparselstm.cli import main  # noqa: E402
from sparselstm.sw import train as training  # noqa: E402
from sparselstm.sw.format import load_encoded  # noqa: E402
from sparselstm.sw.loaders import load_model  # noqa: E402
from sparselstm.sw.speech.task import Task  # noqa: E402


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sparselstm {command}: error: "), err
    return err[0]


def test_sensitivity_then_compress_then_accuracy(trained_classifier, tmp_path, capsys):
    root, corpus, checkpoint = trained_classifier
    sens = tmp_path / "sens"
    assert main(["sensitivity", str(checkpoint), "--task", str(corpus), "--densities", "0.1,0.3,0.6", "--pes", "4",
                 "-o", str(sens), "-q"]) == 0
    curves = json.loads((sens / "sensitivity.json").read_text())
    assert set(curves["scores"]) == {f"L0.{s}.{g}" for s in ("input", "recurrent") for g in "ifgo"} | {"L0.proj"}
    assert (sens / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"   # dev installs the "plots" extra

    out = tmp_path / "dense-compressed"
    assert main(["compress", str(checkpoint), "--task", str(corpus), "--target-density", "0.3", "--pes", "4",
                 "--sensitivity", str(sens), "--steps", "1", "--epochs", "1", "--force-target", "--compare",
                 "--lr", "0.005", "--distill", "0.5", "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "primary: overall density" in printed and "compression" in printed
    # -q drops the bars, not the progress: one line per step and per fine-tuning epoch.
    assert "step 1: overall density" in printed and "  fine-tuning epoch 1/1: loss" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["runs"]) == {"primary", "unbalanced", "uniform"}
    primary = report["runs"]["primary"]
    # The dense score is the dense classifier's own (not the dense LSTM under a fine-tuned head).
    dense_classifier, _ = training.load_checkpoint(checkpoint)
    assert report["dense"]["float_score"] == training.evaluate(dense_classifier, Task.load(corpus), "test")
    assert set(report["dense"]["golden_score"]) == {"w12", "w8"}
    assert abs(primary["overall_density"] - 0.3) < 0.05 and primary["reached_target"]
    assert set(primary["golden_score"]) == {"w12", "w8"}
    assert primary["size"]["w12"]["compression"] > 1.0
    assert report["runs"]["unbalanced"]["balanced"] is False
    assert "balanced_minus_unbalanced" in report["comparisons"]
    assert "sensitivity_minus_uniform" in report["comparisons"]
    assert (out / "report.md").read_text().startswith("# Compression report")
    # The pruned checkpoint, its exports and the encoded model are the same model.
    pruned = load_model(out / "pruned.npz")
    encoded = load_encoded(out / "encoded")
    assert encoded.n_pes == 4 and encoded.numerics.weight_bits == 12
    for name, w in pruned.matrices().items():
        assert np.count_nonzero(w) == int(round(primary["matrix_density"][name] * w.size)), name
    densities = json.loads((out / "densities.json").read_text())
    assert set(densities) == set(pruned.matrices())

    # `sparselstm accuracy` reads the same files and must find the same golden accuracy on the test split.
    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".pt", ".npz", ".head.npz"):
        shutil.copy(root / f"dense{suffix}", models / f"dense{suffix}")
    shutil.copy(corpus / "test.npz", models / "dense-test.npz")
    shutil.copytree(out, models / "dense-compressed")
    (models / "models.json").write_text(json.dumps({"models": [{"checkpoint": "dense.pt",
                                                                "test_set": "dense-test.npz"}]}))
    result_path = tmp_path / "build" / "accuracy.json"
    assert main(["accuracy", "--models", str(models), "-o", str(result_path), "-q"]) == 0
    result = json.loads(result_path.read_text())
    assert result["compressed_golden_accuracy"] == pytest.approx(primary["golden_score"]["w12"])
    assert result["compressed_float_accuracy"] == pytest.approx(primary["float_score"], abs=1e-9 + 1 / 40)
    assert result["dense_float_accuracy"] == pytest.approx(report["dense"]["float_score"], abs=1 / 40)
    assert result["overall_density"] == pytest.approx(primary["overall_density"])
    assert "fine-tuning" in result["method"] and "one-shot" not in result["method"]

    # The pruned export alone (<stem>-sparse.npz + .head.npz) is encoded by the command: the same words.
    shutil.rmtree(models / "dense-compressed")
    shutil.copy(out / "pruned.npz", models / "dense-sparse.npz")
    shutil.copy(out / "pruned.head.npz", models / "dense-sparse.head.npz")
    assert main(["accuracy", "--models", str(models), "--pes", "4", "-o", str(result_path), "-q"]) == 0
    flat = json.loads(result_path.read_text())
    assert flat["compressed_golden_accuracy"] == pytest.approx(primary["golden_score"]["w12"])
    assert flat["overall_density"] == result["overall_density"]

    # Without a shipped compressed model the command prunes in one shot and says so.
    (models / "dense-sparse.npz").unlink()
    assert main(["accuracy", "--models", str(models), "--density", "0.25", "--pes", "4", "-o", str(result_path),
                 "-q"]) == 0
    result = json.loads(result_path.read_text())
    assert result["method"].startswith("one-shot") and 0.2 < result["overall_density"] <= 0.25


def test_compress_continues_from_an_earlier_run(trained_classifier, tmp_path, capsys):
    """--start-from: an earlier run's pruned.pt, or its .npz with the .head.npz beside it, is pruned further;
    the checkpoint stays the dense reference of the report."""
    root, corpus, checkpoint = trained_classifier
    first = tmp_path / "first"
    assert main(["compress", str(checkpoint), "--task", str(corpus), "--target-density", "0.5", "--pes", "4",
                 "--steps", "1", "--epochs", "1", "--force-target", "-o", str(first), "-q"]) == 0
    first_report = json.loads((first / "report.json").read_text())
    for start in (first / "pruned.pt", first / "pruned.npz"):
        out = tmp_path / f"second-{start.suffix[1:]}"
        assert main(["compress", str(checkpoint), "--task", str(corpus), "--target-density", "0.25", "--pes", "4",
                     "--start-from", str(start), "--steps", "2", "--epochs", "1", "--force-target",
                     "-o", str(out), "-q"]) == 0
        assert f"starting from {start}: overall density" in capsys.readouterr().out
        report = json.loads((out / "report.json").read_text())
        assert report["dense"] == first_report["dense"] and report["start_from"] == str(start)
        history = report["runs"]["primary"]["history"]
        assert history[0]["phase"] == "start"
        assert history[0]["overall_density"] == pytest.approx(first_report["runs"]["primary"]["overall_density"])
        assert 0.2 < report["runs"]["primary"]["overall_density"] <= 0.25
    # A model already at the target only gets --final-epochs of masked fine-tuning: its zeros stay.
    out = tmp_path / "more-epochs"
    assert main(["compress", str(checkpoint), "--task", str(corpus), "--target-density", "0.5", "--pes", "4",
                 "--start-from", str(first / "pruned.pt"), "--final-epochs", "1", "-o", str(out), "-q"]) == 0
    assert "no pruning, its zeros are held; 1 final epochs" in capsys.readouterr().out
    phases = [h["phase"] for h in json.loads((out / "report.json").read_text())["runs"]["primary"]["history"]]
    assert phases == ["already pruned", "final finetune"]
    before, after = load_model(first / "pruned.npz").matrices(), load_model(out / "pruned.npz").matrices()
    for name, w in after.items():
        assert np.all(w[before[name] == 0] == 0), name
    assert any(not np.array_equal(w, before[name]) for name, w in after.items())   # it did train
    (first / "pruned.head.npz").unlink()
    assert main(["compress", str(checkpoint), "--task", str(corpus), "--target-density", "0.25", "--pes", "4",
                 "--start-from", str(first / "pruned.npz"), "-o", str(tmp_path / "third"), "-q"]) == 1
    assert "pruned.head.npz (not found)" in one_error_line(capsys, "compress")


USER_TASK = '''
import numpy as np
from sparselstm.sw.compress.task import CallableTask
from sparselstm.sw.loaders import load_model
from sparselstm.sw.reference import reference_forward

def make_task(checkpoint):
    dense = load_model(checkpoint)
    inputs = {split: np.random.default_rng(k).normal(size=(6, 5, dense.input_size))
              for k, split in enumerate(("val", "test"))}
    targets = {split: reference_forward(dense, x) for split, x in inputs.items()}
    return CallableTask(inputs, lambda outputs, split: -float(np.mean((outputs - targets[split]) ** 2)),
                        name="distance to the dense model", metric_name="-mse")
'''


def test_compress_with_a_user_task_file_and_no_finetuning(tmp_path, capsys):
    from sparselstm.sw.loaders import save_npz
    from sparselstm.sw.model import random_model

    save_npz(random_model(5, 8, 3, seed=2), tmp_path / "model.npz")
    (tmp_path / "mytask.py").write_text(USER_TASK)
    out = tmp_path / "out"
    assert main(["compress", str(tmp_path / "model.npz"), "--task", str(tmp_path / "mytask.py"),
                 "--target-density", "0.5", "--pes", "2", "--epochs", "0", "--steps", "2", "--max-loss", "1",
                 "-o", str(out), "-q"]) == 0
    assert (out / "pruned.npz").exists() and (out / "encoded" / "manifest.json").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["metric"] == "-mse" and abs(report["runs"]["primary"]["overall_density"] - 0.5) < 0.05
    # Asking it to fine-tune is a clear error.
    assert main(["compress", str(tmp_path / "model.npz"), "--task", str(tmp_path / "mytask.py"),
                 "--target-density", "0.5", "--pes", "2", "-o", str(out), "-q"]) == 1
    assert "cannot fine-tune" in one_error_line(capsys, "compress")
    assert main(["compress", str(tmp_path / "model.npz"), "--task", str(tmp_path / "mytask.py"), "--epochs", "0",
                 "--target-density", "0.5", "--distill", "0.5", "--pes", "2", "-o", str(out), "-q"]) == 1
    assert "is not the built-in one" in one_error_line(capsys, "compress")


@pytest.mark.parametrize("arguments,message", [
    (["--target-density", "1.5"], "target density must be in (0, 1]"),
    (["--target-density", "0"], "target density must be in (0, 1]"),
    (["--target-density", "0.1", "--pes", "0"], "number of PEs"),
    (["--target-density", "0.1", "--steps", "0"], "--steps must be at least 1"),
    (["--target-density", "0.1", "--sensitivity", "nowhere"], "nowhere: sensitivity file or directory not found"),
    (["--target-density", "0.1", "--distill", "1.5"], "distillation weight must lie in [0, 1]"),
])
def test_compress_argument_errors(trained_classifier, tmp_path, capsys, arguments, message):
    _, corpus, checkpoint = trained_classifier
    assert main(["compress", str(checkpoint), "--task", str(corpus), *arguments, "-o", str(tmp_path / "o")]) == 1
    assert message in one_error_line(capsys, "compress")


def test_missing_task_file_and_checkpoint(trained_classifier, tmp_path, capsys):
    _, corpus, checkpoint = trained_classifier
    assert main(["compress", str(checkpoint), "--task", str(tmp_path / "task.py"), "--target-density", "0.1",
                 "-o", str(tmp_path / "o")]) == 1
    assert "task file not found" in one_error_line(capsys, "compress")
    assert main(["sensitivity", str(tmp_path / "none.pt"), "--task", str(corpus), "-o", str(tmp_path / "o")]) == 1
    assert "checkpoint not found" in one_error_line(capsys, "sensitivity")
    assert main(["sensitivity", str(checkpoint), "--task", str(tmp_path / "nocorpus"), "-o", str(tmp_path / "o")]) == 1
    assert "no such corpus directory" in one_error_line(capsys, "sensitivity")
    assert main(["accuracy", "--models", str(tmp_path), "-o", str(tmp_path / "a.json")]) == 1
    assert "models.json: not found" in one_error_line(capsys, "accuracy")
    with pytest.raises(SystemExit) as exit_info:
        main(["sensitivity", str(checkpoint), "--task", str(corpus), "--densities", "0.1,2", "-o", str(tmp_path)])
    assert exit_info.value.code == 2   # argparse: a usage error


def test_compression_experiment_script_quick(trained_classifier, tmp_path):
    """bench/compression_experiment.py end to end at CI size: every variant in its own process, 2 at a time,
    and targets.json built from their reports."""
    import subprocess
    import sys
    from pathlib import Path

    _, corpus, checkpoint = trained_classifier
    script = Path(__file__).resolve().parent.parent / "bench" / "compression_experiment.py"
    out = tmp_path / "experiment"
    done = subprocess.run([sys.executable, str(script), "--quick", "--checkpoint", str(checkpoint), "--data",
                           str(corpus), "--pes", "4", "--target-density", "0.3", "--mask-variant", "-o", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for variant in ("primary", "unbalanced", "uniform", "mask"):
        assert f"[{variant}] done" in done.stdout
    targets = json.loads((out / "targets.json").read_text())
    reports = {v: json.loads((out / v / "report.json").read_text())["runs"]["primary"]
               for v in ("primary", "unbalanced", "uniform", "mask")}
    assert targets["compressed_golden_accuracy"] == reports["primary"]["golden_score"]["w12"]
    assert targets["unbalanced_golden_accuracy"] == reports["unbalanced"]["golden_score"]["w12"]
    assert targets["uniform_golden_accuracy"] == reports["uniform"]["golden_score"]["w12"]
    assert targets["mask_variant_golden_accuracy"] == reports["mask"]["golden_score"]["w12"]
    assert reports["primary"]["balanced"] and not reports["unbalanced"]["balanced"]
    assert reports["uniform"]["allocation"] is None and reports["primary"]["allocation"] is not None
    assert targets["overall_density"] <= 0.3 and targets["checks"]["density_at_most_target"]
    assert set(targets["checks"]) == {"density_at_most_target", "golden_within_1_point_of_dense_float",
                                      "balanced_within_0.3_points_of_unbalanced", "sensitivity_at_least_uniform"}
    assert targets["checks"]["golden_within_1_point_of_dense_float"] == \
        (targets["dense_float_accuracy"] - targets["compressed_golden_accuracy"] <= 0.01 + 1e-12)
    # The mask variant gets the iterative runs' fine-tuning budget (quick: 1 step x 1 epoch + 0 -> 1 each).
    assert "--method mask" in (out / "mask.log").read_text().splitlines()[0]
    assert [h["epochs"] for h in reports["mask"]["history"]] == [0, 0, 1, 0, 1]

    # --only "": no run, targets.json rebuilt from the reports; an unknown variant is an error.
    base = [sys.executable, str(script), "--quick", "--checkpoint", str(checkpoint), "--data", str(corpus),
            "--pes", "4", "--target-density", "0.3", "--mask-variant", "-o", str(out)]
    again = subprocess.run([*base, "--only", ""], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "started" not in again.stdout, again.stdout + again.stderr
    rebuilt = json.loads((out / "targets.json").read_text())
    assert {k: v for k, v in rebuilt.items() if k not in ("seconds", "sensitivity_seconds", "only", "command")} == \
        {k: v for k, v in targets.items() if k not in ("seconds", "sensitivity_seconds", "only", "command")}
    wrong = subprocess.run([*base, "--only", "bogus"], capture_output=True, text=True, timeout=600)
    assert wrong.returncode == 1 and "unknown variant" in wrong.stderr
