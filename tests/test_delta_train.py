"""Delta-mode training (sw/torch_lstm.py, SpeechClassifier.set_delta): the straight-through forward pass against
the float reference's delta mode, threshold 0 against the normal forward pass, the gradient, training."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

from sparselstm.spec.errors import ParameterError  # noqa: E402
from sparselstm.sw import train as training  # noqa: E402
from sparselstm.sw.model import random_model  # noqa: E402
from sparselstm.sw.reference import reference_forward  # noqa: E402
from sparselstm.sw.speech.task import synthetic_task  # noqa: E402
from sparselstm.sw.torch_lstm import straight_through  # noqa: E402

from test_train import one_thread  # noqa: E402,F401 - autouse: PyTorch on one thread


def classifier_of(reference, peephole: bool) -> training.SpeechClassifier:
    layer = reference.layers[0]
    classifier = training.SpeechClassifier(reference.input_size, ("a", "b"), cells=layer.cell_size,
                                           proj=layer.proj_size or 0, layers=len(reference.layers), peephole=peephole)
    training.set_lstmp_model(classifier, reference)
    return classifier


def lstm_outputs(classifier, x: np.ndarray) -> torch.Tensor:
    return classifier.lstm_outputs(torch.as_tensor(x, dtype=torch.float32))


@pytest.mark.parametrize("peephole,layers,proj", [(False, 1, 5), (True, 2, 5), (False, 2, None), (True, 1, None)])
def test_threshold_zero_is_the_normal_forward_pass_and_gradient(peephole, layers, proj):
    reference = random_model(6, 8, proj, num_layers=layers, peephole=peephole, seed=layers, scale=0.6)
    classifier = classifier_of(reference, peephole)
    x = np.random.default_rng(0).normal(size=(3, 9, 6))
    x[:, 4] = x[:, 3]      # frames that do not move: skipped columns, which must change nothing
    outputs = {}
    for delta in (None, 0.0):
        classifier.set_delta(delta)
        classifier.zero_grad()
        out = lstm_outputs(classifier, x)
        out.square().sum().backward()
        outputs[delta] = (out.detach(), {n: p.grad.clone() for n, p in classifier.lstm.named_parameters()})
    # Our own peephole module is the same arithmetic, bit for bit; nn.LSTM's fused kernel rounds differently.
    tolerance = dict(atol=0, rtol=0) if peephole else dict(atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(outputs[0.0][0], outputs[None][0], **tolerance)
    for name, grad in outputs[None][1].items():
        torch.testing.assert_close(outputs[0.0][1][name], grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("peephole,layers,proj", [(False, 1, 5), (True, 2, 4)])
def test_thresholds_give_the_float_references_delta_mode(peephole, layers, proj):
    reference = random_model(6, 8, proj, num_layers=layers, peephole=peephole, seed=3, scale=0.6)
    classifier = classifier_of(reference, peephole)
    x = np.cumsum(np.random.default_rng(1).normal(scale=0.2, size=(4, 12, 6)), axis=1)   # slowly moving
    thresholds = [{"x": 0.15, "y": 0.05, "m": 0.1}] + [{"x": 0.1, "y": 0.2, "m": 0.0}] * (layers - 1)
    classifier.set_delta(thresholds)
    expected = reference_forward(reference, x, delta=thresholds)
    with torch.no_grad():
        got = lstm_outputs(classifier, x).double().numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert np.abs(expected - reference_forward(reference, x)).max() > 1e-2   # the thresholds do matter here


def test_straight_through_sends_by_the_rule_and_passes_every_gradient():
    value = torch.tensor([[0.5, 0.05, -0.3, 0.2]], requires_grad=True)
    last = torch.tensor([[0.0, 0.0, -0.1, 0.25]])
    sent, new_last = straight_through(value, last, 0.1)
    torch.testing.assert_close(sent.detach(), torch.tensor([[0.5, 0.0, -0.3, 0.25]]))
    torch.testing.assert_close(new_last, sent.detach())
    (sent * torch.tensor([[1.0, 2.0, 3.0, 4.0]])).sum().backward()
    torch.testing.assert_close(value.grad, torch.tensor([[1.0, 2.0, 3.0, 4.0]]))   # as if every column were sent


def test_training_with_thresholds_learns_and_the_checkpoint_keeps_them(tmp_path):
    task = synthetic_task(num_classes=4, per_class=48, steps=10, width=6)
    model = training.build_classifier(task, cells=12, proj=6, seed=1)
    model.set_delta(0.2)
    before = training.evaluate(model, task)
    history = training.train(model, task, epochs=6, lr=1e-2, batch_size=32, progress=False, log=None)
    assert history[-1]["loss"] < history[0]["loss"] and training.evaluate(model, task) > before + 0.5
    paths = training.save_checkpoint(model, tmp_path / "m.pt")
    loaded, _ = training.load_checkpoint(paths["checkpoint"])
    assert loaded.delta == [{"x": 0.2, "y": 0.2, "m": 0.2}]
    x = torch.as_tensor(task.split("test").features[:5])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_bad_thresholds_are_clear_errors():
    model = training.SpeechClassifier(5, ("a", "b"), cells=6, proj=0)
    with pytest.raises(ParameterError, match="finite number >= 0"):
        model.set_delta(-0.1)
    with pytest.raises(ParameterError, match="no projection"):
        model.set_delta([{"x": 0.1, "m": 0.1}])
    with pytest.raises(ParameterError, match="one per layer"):
        model.set_delta([{"x": 0.1}, {"x": 0.1}])
    with pytest.raises(TypeError, match="expected a number"):
        model.set_delta("0.1")
