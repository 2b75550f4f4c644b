"""Training with PyTorch: the peephole module against the float reference, checkpoints through
sw.loaders, masked fine-tuning, the LSTMPModel bridge, the shipped checkpoints, and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sparselstm.cli import main  # noqa: E402
from sparselstm.sw import train as training  # noqa: E402
from sparselstm.sw.loaders import load_model  # noqa: E402
from sparselstm.sw.model import random_model  # noqa: E402
from sparselstm.sw.reference import reference_forward  # noqa: E402
from sparselstm.sw.speech.task import ClassifierHead, Task, synthetic_task  # noqa: E402

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def task():
    return synthetic_task(num_classes=4, per_class=48, steps=10, width=6)


def lstm_outputs(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.lstm_outputs(torch.as_tensor(x, dtype=torch.float32)).double().numpy()


@pytest.mark.parametrize("layers,proj", [(1, 5), (2, 5), (2, 0)])
def test_peephole_module_matches_the_float_reference(layers, proj):
    reference = random_model(6, 8, proj or None, num_layers=layers, peephole=True, seed=layers, scale=0.6)
    classifier = training.SpeechClassifier(6, ("a", "b"), cells=8, proj=proj, layers=layers, peephole=True)
    training.set_lstmp_model(classifier, reference)
    x = np.random.default_rng(0).normal(size=(3, 9, 6))
    np.testing.assert_allclose(lstm_outputs(classifier, x), reference_forward(reference, x), atol=2e-6)
    # And back: the classifier's LSTM is the same model.
    back = training.to_lstmp_model(classifier)
    for mine, theirs in zip(back.layers, reference.layers):
        np.testing.assert_allclose(mine.peephole, theirs.peephole, atol=1e-7)
        np.testing.assert_allclose(mine.bias, theirs.bias, atol=1e-7)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
def test_peephole_module_without_peepholes_equals_nn_lstm():
    """Peepholes at zero reduce our module to nn.LSTM: same keys, same outputs."""
    lstm = torch.nn.LSTM(5, 7, 2, batch_first=True, proj_size=3)
    ours = training.PeepholeLSTMP(5, 7, 2, 3)
    state = dict(lstm.state_dict())
    state.update({f"peephole_l{k}": torch.zeros(3, 7) for k in range(2)})
    ours.load_state_dict(state)
    x = torch.randn(2, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], lstm(x)[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("peephole", [False, True])
def test_tiny_training_beats_chance_and_checkpoint_round_trips(task, tmp_path, peephole):
    model = training.build_classifier(task, cells=12, proj=6, peephole=peephole, seed=1)
    before = training.evaluate(model, task)
    history = training.train(model, task, epochs=6, lr=1e-2, batch_size=32, progress=False, log=None)
    after = training.evaluate(model, task)
    assert len(history) == 6 and history[-1]["loss"] < history[0]["loss"]
    assert after >= 0.65 and after > before + 0.3, (before, after)  # chance is 0.25

    paths = training.save_checkpoint(model, tmp_path / "m.pt", note="test")
    raw = torch.load(paths["checkpoint"], weights_only=True)  # plain dict: loadable without trusting the file
    assert raw["vocabulary"] == list(task.vocabulary) and "head.weight" in raw and "lstm.weight_ih_l0" in raw
    assert ("lstm.peephole_l0" in raw) == peephole

    # The checkpoint goes through the project's loader; its LSTM is what torch computes.
    x = task.split("test").features[:7]
    head = ClassifierHead.load(paths["head"])
    expected = lstm_outputs(model, x)
    for source in (paths["checkpoint"], paths["lstm"]):
        lstmp = load_model(source)
        assert lstmp.layers[0].has_peephole == peephole
        np.testing.assert_allclose(reference_forward(lstmp, head.normalise(x)), expected, atol=1e-5)

    # The torch-free pipeline gives the same scores as the classifier.
    with torch.no_grad():
        logits = model(torch.as_tensor(x)).double().numpy()
    lstmp = load_model(paths["lstm"])
    np.testing.assert_allclose(head.predict_fn(lambda z: reference_forward(lstmp, z))(x), logits, atol=1e-4)

    loaded, metadata = training.load_checkpoint(paths["checkpoint"])
    assert metadata == {"note": "test"}
    with torch.no_grad():
        np.testing.assert_allclose(loaded(torch.as_tensor(x)).numpy(), logits, atol=1e-6)


def test_masked_training_keeps_pruned_weights_at_zero(task):
    model = training.build_classifier(task, cells=12, proj=6, seed=2)
    lstmp = training.to_lstmp_model(model)
    rng = np.random.default_rng(0)
    matrix_masks = {name: rng.random(m.shape) < 0.3 for name, m in lstmp.matrices().items()}
    masks = training.parameter_masks(model, matrix_masks)
    assert set(masks) == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_hr_l0"}
    # The "f" block of the input matrix is rows H..2H of weight_ih.
    np.testing.assert_array_equal(masks["lstm.weight_ih_l0"][12:24].numpy(), matrix_masks["L0.input.f"])
    training.train(model, task, epochs=2, masks=masks, lr=1e-2, batch_size=32, progress=False, log=None)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0), name
        assert torch.count_nonzero(params[name][mask]) == int(mask.sum()), f"{name}: kept weights must train"
    pruned = training.to_lstmp_model(model)
    for name, matrix in pruned.matrices().items():
        assert np.all(matrix[~matrix_masks[name]] == 0)


def test_distillation_follows_the_teacher_not_the_labels(task):
    teacher = training.build_classifier(task, cells=12, proj=6, seed=1)
    training.train(teacher, task, epochs=6, lr=1e-2, batch_size=32, progress=False, log=None)
    teacher_labels = teacher.predict_fn()(task.split("val").features).argmax(1)
    assert np.mean(teacher_labels == task.split("val").labels) > 0.8
    # Labels scrambled: only the teacher's soft targets carry the task.
    rng = np.random.default_rng(3)
    scrambled = {name: type(fs)(fs.features, rng.permutation(fs.labels), fs.vocabulary)
                 for name, fs in task.splits.items() if name == "train"}
    noisy = Task("scrambled", task.vocabulary, {**task.splits, **scrambled})

    def agreement(distill: float) -> float:
        student = training.build_classifier(noisy, cells=12, proj=6, seed=2)
        training.train(student, noisy, epochs=6, lr=1e-2, batch_size=32, progress=False, log=None,
                       select_best=False, teacher=teacher, distill=distill, temperature=2.0)
        return float(np.mean(student.predict_fn()(task.split("val").features).argmax(1) == teacher_labels))

    assert agreement(1.0) > 0.8 > agreement(0.0) + 0.3


def test_bad_masks_and_options_are_clear_errors(task):
    model = training.build_classifier(task, cells=8, proj=4)
    with pytest.raises(training.TrainError, match="no such parameter"):
        training.train(model, task, 1, masks={"lstm.weight_xx_l0": torch.ones(1)}, progress=False, log=None)
    with pytest.raises(training.TrainError, match="shape"):
        training.parameter_masks(model, {"L0.input.i": np.ones((3, 3), bool)})
    with pytest.raises(training.TrainError, match="smaller than the cell count"):
        training.SpeechClassifier(6, ("a",), cells=8, proj=8)
    with pytest.raises(training.TrainError, match="needs a teacher"):
        training.train(model, task, 1, distill=0.5, progress=False, log=None)
    with pytest.raises(training.TrainError, match="distill must lie"):
        training.train(model, task, 1, distill=1.5, teacher=model, progress=False, log=None)
    with pytest.raises(training.TrainError, match="temperature"):
        training.train(model, task, 1, distill=0.5, teacher=model, temperature=0, progress=False, log=None)


def test_cli_trains_and_evaluates(task, tmp_path, capsys):
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    for name, split in task.splits.items():
        split.save(corpus_dir / f"{name}.npz")
    out = tmp_path / "m.pt"
    assert main(["train", str(corpus_dir), "-o", str(out), "--cells", "12", "--proj", "6", "--epochs", "5",
                 "--lr", "0.01", "--batch-size", "32", "-q"]) == 0
    assert out.exists() and (tmp_path / "m.npz").exists() and (tmp_path / "m.head.npz").exists()
    assert main(["train", str(corpus_dir), "--evaluate", str(out)]) == 0
    found = re.search(r"test \(\d+ utterances\): accuracy ([0-9.]+) \(PyTorch\), ([0-9.]+) \(NumPy",
                      capsys.readouterr().out)
    assert found, "the evaluation must report both accuracies on the test split"
    assert float(found[1]) == float(found[2]) >= 0.7
    assert main(["train", str(corpus_dir / "test.npz"), "-o", str(out)]) == 1  # no training split


# --------------------------------------------------------------------------------- shipped models

def _shipped_models():
    index = MODELS / "models.json"
    return json.loads(index.read_text())["models"] if index.exists() else []


@pytest.mark.parametrize("entry", _shipped_models(), ids=lambda e: e["checkpoint"])
def test_shipped_checkpoints(entry):
    model, metadata = training.load_checkpoint(MODELS / entry["checkpoint"])
    task = Task.load(MODELS / entry["test_set"])
    assert training.evaluate(model, task) == pytest.approx(entry["test_set_accuracy"], abs=0.006)  # float32 vs 64
    assert metadata["accuracy"]["test"] == pytest.approx(entry["corpus_test_accuracy"])
    lstmp = load_model(MODELS / entry["checkpoint"])
    assert lstmp.describe() == entry["architecture"]
