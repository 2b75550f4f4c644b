"""The pluggable task and the sensitivity analysis: float vs fixed-point scoring agree on tiny models, user
tasks from callables and from files, and sensitivity curves with the right shape and trend."""

from __future__ import annotations

import numpy as np
import pytest

from sparselstm.sw.compress.sensitivity import SensitivityCurves, prune_one, sensitivity_analysis
from sparselstm.sw.compress.task import CallableTask, TaskError, golden_lstm_outputs, load_task
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode
from sparselstm.sw.quantize import quantize_model
from sparselstm.sw.reference import reference_forward

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")


@pytest.fixture
def dense():
    return random_model(input_size=5, cell_size=8, proj_size=3, num_layers=2, peephole=True, seed=7, scale=0.8)


def distance_task(dense) -> CallableTask:
    """Metric: minus the mean squared distance from the dense model's float outputs (0 = the dense model)."""
    inputs = {"val": np.random.default_rng(1).normal(size=(10, 7, dense.input_size))}
    target = reference_forward(dense, inputs["val"])
    return CallableTask(inputs, lambda outputs, split: -float(np.mean((outputs - target) ** 2)), name="distance")


def test_golden_scoring_matches_float_scoring_on_a_tiny_model(dense):
    task = distance_task(dense)
    assert task.score(dense, "val") == 0.0
    golden = task.score_golden(quantize_model(dense), "val")
    assert -1e-5 < golden < 0.0          # only the fixed-point rounding separates them
    encoded = compress_and_encode(dense, n_pes=3).encoded
    assert task.score_golden(encoded, "val") == golden    # the encoded model is the same words and tables
    outputs, saturated = golden_lstm_outputs(encoded, task.lstm_inputs("val"))
    assert outputs.shape == (10, 7, 3) and saturated == 0


def test_golden_accuracy_matches_float_accuracy_of_a_trained_classifier():
    torch = pytest.importorskip("torch")
    from sparselstm.sw import train as training
    from sparselstm.sw.compress.task import SpeechCompressionTask
    from sparselstm.sw.speech.task import synthetic_task

    torch.set_num_threads(1)
    data = synthetic_task(num_classes=4, per_class=32, steps=8, width=6)
    classifier = training.build_classifier(data, cells=12, proj=5, layers=1, peephole=True)
    training.train(classifier, data, 8, lr=0.01, batch_size=32, progress=False, log=None)
    task = SpeechCompressionTask(classifier, data, progress=False)
    model = task.load_model()
    float_accuracy = task.score(model, "test")
    golden_accuracy = task.score_golden(quantize_model(model), "test")
    assert float_accuracy > 0.5
    assert abs(float_accuracy - golden_accuracy) <= 1 / len(data.split("test")) + 1e-12
    # The NumPy path (reference forward + head) is the same metric as the PyTorch one.
    assert CallableTask({"test": task.lstm_inputs("test")}, task.score_outputs).score(model, "test") == \
        pytest.approx(float_accuracy, abs=1 / len(data.split("test")) + 1e-12)


def test_sensitivity_curves_have_the_right_shape_and_trend(dense, tmp_path):
    task = distance_task(dense)
    densities = (0.05, 0.2, 0.5, 0.9)
    curves = sensitivity_analysis(dense, task, densities, n_pes=2, progress=False)
    names = list(dense.matrices())
    assert curves.matrices == names and len(names) == 18
    assert all(len(curves.scores[n]) == len(densities) for n in names)
    assert curves.baseline == 0.0 and curves.densities == densities
    assert curves.sizes == {n: w.size for n, w in dense.matrices().items()}
    for name in names:
        loss = curves.error_increase(name)
        assert np.all(loss >= 0), name          # pruning never brings a model closer to itself
        assert loss[0] > loss[-1], name        # pruning 95 % costs more than pruning 10 %
    # The same numbers as pruning the matrix by hand.
    assert curves.scores["L1.proj"][1] == task.score(prune_one(dense, "L1.proj", 0.2, 2), "val")
    assert SensitivityCurves.from_dict(curves.to_dict()).to_dict() == curves.to_dict()
    pytest.importorskip("matplotlib")
    from sparselstm.sw.compress.sensitivity import plot_sensitivity

    png = plot_sensitivity(curves, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prune_one_leaves_the_other_matrices_alone(dense):
    pruned = prune_one(dense, "L0.recurrent.g", 0.25, 2, balanced=False)
    for name, w in pruned.matrices().items():
        if name == "L0.recurrent.g":
            assert np.count_nonzero(w) == round(0.25 * w.size)
        else:
            np.testing.assert_array_equal(w, dense.matrices()[name])


def test_sensitivity_argument_errors(dense):
    task = distance_task(dense)
    with pytest.raises(ParameterError, match=r"densities must lie in \(0, 1\]"):
        sensitivity_analysis(dense, task, (0.0, 0.5), progress=False)
    with pytest.raises(ParameterError, match="unknown matrix"):
        sensitivity_analysis(dense, task, (0.5,), matrices=["L9.proj"], progress=False)
    with pytest.raises(TaskError, match="no 'test' split"):
        task.score(dense, "test")


def test_callable_task_checks_what_it_is_given(dense):
    with pytest.raises(TaskError, match="metric must be a function"):
        CallableTask({"val": np.zeros((1, 2, 5))}, metric=0.5)
    task = CallableTask({"val": np.zeros((2, 5))}, lambda o, s: 0.0)
    with pytest.raises(TaskError, match=r"must be \(B, T, I\)"):
        task.score(dense, "val")
    loader = CallableTask(lambda split: np.ones((2, 3, 5)), lambda o, s: float(o.shape[0]))
    assert loader.score(dense, "anything") == 2.0 and not loader.can_finetune


TASK_FILE = '''
import numpy as np
from sparselstm.sw.compress.task import CallableTask

def make_task(checkpoint):
    return CallableTask({"val": np.zeros((2, 3, 5)), "test": np.zeros((2, 3, 5))}, lambda o, s: 1.0,
                        name="from a file")

def not_a_task(checkpoint):
    return 42
'''


def test_load_task_from_a_user_file(tmp_path):
    path = tmp_path / "mytask.py"
    path.write_text(TASK_FILE)
    task = load_task(str(path), tmp_path / "model.npz")
    assert task.name == "from a file"
    with pytest.raises(TaskError, match="returned int, expected a CompressionTask"):
        load_task(f"{path}:not_a_task", tmp_path / "model.npz")
    with pytest.raises(TaskError, match="no function 'missing'"):
        load_task(f"{path}:missing", tmp_path / "model.npz")
    with pytest.raises(TaskError, match="task file not found"):
        load_task(str(tmp_path / "nothere.py"), tmp_path / "model.npz")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(TaskError, match="failed to load .RuntimeError: boom"):
        load_task(str(broken), tmp_path / "model.npz")
    with pytest.raises(TaskError, match="no such corpus directory"):
        load_task(str(tmp_path / "nocorpus"), tmp_path / "model.npz")
