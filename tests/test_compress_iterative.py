"""Pruning with fine-tuning: the iterative schedule (target reached, masks held, back-off, forced steps) and
the 'proper use of the mask' variant (the same mask reused after dense retraining).

Most tests use a torch-free 'teacher' task: the metric is minus the squared distance of the model's outputs
from the dense model's, and 'fine-tuning' moves the allowed weights half-way back to the dense ones; so
pruning always costs something, retraining always recovers some, and every number is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from sparselstm.sw.compress.density import overall_density
from sparselstm.sw.compress.iterative import (apply_masks, check_masks_held, iterative_compression, mask_variant,
                                              prune_at_most)
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.compress.task import CallableTask, CompressionTask, TaskError
from sparselstm.sw.model import random_model
from sparselstm.sw.pruning import prune_model
from sparselstm.sw.reference import reference_forward

N_PES = 2
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")


def teacher_task(dense, regrow: float = 0.0) -> CallableTask:
    inputs = {"val": np.random.default_rng(3).normal(size=(12, 6, dense.input_size))}
    target = reference_forward(dense, inputs["val"])
    dense_matrices = dense.matrices()

    def metric(outputs, split):
        return -float(np.mean((outputs - target) ** 2))

    def finetune(model, masks, epochs):
        current = model.matrices()
        updated = {}
        for name, w in current.items():
            moved = w + 0.5 * (dense_matrices[name] - w)
            if masks is None:
                updated[name] = moved + regrow   # dense retraining: pruned weights grow back
            else:
                updated[name] = np.where(masks[name], moved, 0.0)
        return model.with_matrices(updated)

    return CallableTask(inputs, metric, finetune, name="teacher", metric_name="-mse")


@pytest.fixture
def dense():
    return random_model(input_size=5, cell_size=8, proj_size=3, num_layers=2, peephole=True, seed=4, scale=0.8)


def test_iterative_reaches_the_target_with_masks_held(dense):
    task = teacher_task(dense)
    result = iterative_compression(dense, task, 0.3, N_PES, steps=3, epochs=1, max_loss=1.0, progress=False)
    assert result.reached_target
    assert 0.25 < result.overall_density <= 0.3          # at most the target, whole weights per PE
    steps = [h for h in result.history if h["phase"] == "prune+finetune"]
    assert len(steps) == 3 and all(h["accepted"] for h in steps)
    planned = [h["overall_target"] for h in steps]
    np.testing.assert_allclose(planned, [0.3 ** (1 / 3), 0.3 ** (2 / 3), 0.3])
    assert np.all(np.diff([h["overall_density"] for h in result.history]) < 0)
    for name, w in result.model.matrices().items():
        assert np.all(w[~result.masks[name]] == 0), name
        assert np.count_nonzero(w) == result.masks[name].sum()  # kept weights were retrained, not zeroed
    # Each step's loss is measured against the dense model and retraining recovers part of it.
    assert result.score < result.baseline == 0.0


def test_iterative_continues_from_a_pruned_model(dense):
    """A model already pruned (e.g. an earlier run's result) is pruned further from its own density: the
    planned steps go geometrically from that density to the target, and its zeros are not brought back."""
    task = teacher_task(dense)
    first = iterative_compression(dense, task, 0.5, N_PES, steps=1, epochs=1, max_loss=1.0, progress=False)
    start = first.overall_density
    result = iterative_compression(first.model, task, 0.2, N_PES, steps=2, epochs=1, max_loss=1.0, progress=False)
    assert result.history[0]["phase"] == "start" and result.history[0]["overall_density"] == start
    planned = [h["overall_target"] for h in result.history if h["phase"] == "prune+finetune"]
    np.testing.assert_allclose(planned, [start * (0.2 / start) ** 0.5, 0.2])
    assert 0.15 < result.overall_density <= 0.2
    with pytest.raises(ParameterError, match="already at or below the target"):
        iterative_compression(result.model, task, 0.3, N_PES, steps=1, epochs=0, progress=False)


def test_a_too_costly_step_is_backed_off_then_stops_above_the_target(dense):
    task = teacher_task(dense)
    result = iterative_compression(dense, task, 0.1, N_PES, steps=2, epochs=0, max_loss=1e-4, max_backoffs=2,
                                   progress=False)
    assert not result.reached_target
    # Every retry lies half-way (geometrically) between the last accepted density (1.0: every step failed)
    # and the one that failed; after max_backoffs retries the run stops.
    tried = [h["overall_target"] for h in result.history[1:]]
    assert not any(h["accepted"] for h in result.history[1:])
    np.testing.assert_allclose(tried, [0.1 ** 0.5, 0.1 ** 0.25, 0.1 ** 0.125])
    assert result.overall_density == 1.0 and result.score == result.baseline


def test_force_target_takes_the_step_anyway(dense):
    task = teacher_task(dense)
    result = iterative_compression(dense, task, 0.2, N_PES, steps=1, epochs=1, max_loss=1e-9, max_backoffs=1,
                                   force_target=True, progress=False)
    assert result.reached_target
    assert 0.15 < result.overall_density <= 0.2
    assert result.history[-1].get("forced") is True


def test_mask_variant_reuses_the_same_mask(dense):
    # Dense retraining makes every pruned weight large, so a fresh magnitude mask would keep them.
    task = teacher_task(dense, regrow=5.0)
    _, first_mask, _ = prune_at_most(dense, 0.25, 0.25, N_PES)
    result = mask_variant(dense, task, 0.25, N_PES, dense_epochs=1, masked_epochs=1, progress=False)
    assert [h["phase"] for h in result.history] == ["dense", "prune", "dense retrain", "prune with the same mask",
                                                      "masked retrain"]
    assert result.history[2]["overall_density"] == 1.0            # dense retraining regrew the pruned weights
    assert set(result.masks) == set(first_mask)
    for name, mask in first_mask.items():
        np.testing.assert_array_equal(result.masks[name], mask)
        w = result.model.matrices()[name]
        assert np.all(w[~mask] == 0), name
    _, fresh = prune_model(task.finetune(prune_model(dense, 0.25, N_PES)[0], None, 1), 0.25, N_PES)
    assert any(not np.array_equal(fresh[n], first_mask[n]) for n in first_mask), \
        "the test must be able to tell the same mask from a fresh one"


def test_a_finetune_that_revives_pruned_weights_is_caught(dense):
    pruned, masks = prune_model(dense, 0.3, N_PES)
    with pytest.raises(TaskError, match="non-zero after fine-tuning"):
        check_masks_held(dense, masks, "step 1")
    check_masks_held(apply_masks(dense, masks), masks, "step 1")
    task = CallableTask({"val": np.zeros((2, 3, 5))}, lambda o, s: 0.0, finetune=lambda m, masks, e: dense)
    with pytest.raises(TaskError, match="hold masked weights at zero"):
        iterative_compression(dense, task, 0.3, N_PES, steps=1, epochs=1, progress=False)


def test_a_task_without_finetune_can_only_prune(dense):
    task = CallableTask({"val": np.zeros((2, 3, 5))}, lambda o, s: 0.0)
    with pytest.raises(TaskError, match="cannot fine-tune"):
        iterative_compression(dense, task, 0.3, N_PES, epochs=1, progress=False)
    result = iterative_compression(dense, task, 0.3, N_PES, steps=2, epochs=0, progress=False)
    assert overall_density(result.model) < 0.4


# ------------------------------------------------------------------------------------- with PyTorch

@pytest.fixture(scope="module")
def speech():
    torch = pytest.importorskip("torch")
    from sparselstm.sw import train as training
    from sparselstm.sw.compress.task import SpeechCompressionTask
    from sparselstm.sw.speech.task import synthetic_task

    torch.set_num_threads(1)
    data = synthetic_task(num_classes=4, per_class=40, steps=8, width=6)
    classifier = training.build_classifier(data, cells=12, proj=5, layers=1)
    training.train(classifier, data, 6, lr=0.01, batch_size=32, progress=False, log=None)
    return SpeechCompressionTask(classifier, data, finetune_lr=0.005, batch_size=32, progress=False)


def test_speech_task_fine_tuning_holds_the_masks(speech):
    from sparselstm.sw import train as training

    dense, dense_state = speech.load_model(), speech.snapshot()
    result = iterative_compression(dense, speech, 0.25, 4, steps=2, epochs=1, max_loss=1.0, progress=False)
    assert result.reached_target and 0.2 < result.overall_density <= 0.25
    # The classifier itself (not only the returned LSTMPModel) holds zeros where the masks say so.
    in_torch = training.to_lstmp_model(speech.classifier).matrices()
    for name, mask in result.masks.items():
        assert np.all(in_torch[name][~mask] == 0), name
    assert result.score == pytest.approx(speech.score(result.model, "val"))
    assert result.score > 0.5    # far above chance (0.25) after pruning 75 % of the weights
    speech.restore(dense_state)   # the next tests start from the dense classifier


def test_speech_task_distillation_keeps_the_dense_teacher(speech):
    from sparselstm.sw import train as training
    from sparselstm.spec.errors import ParameterError

    dense = speech.load_model()
    state = speech.snapshot()
    try:
        speech.set_distillation(0.5, 2.0)
        teacher_logits = speech._teacher.predict_fn()(speech.data.split("val").features)
        result = iterative_compression(dense, speech, 0.3, 4, steps=1, epochs=1, max_loss=1.0, progress=False)
        for name, mask in result.masks.items():
            assert np.all(result.model.matrices()[name][~mask] == 0)
        # Fine-tuning moved the student, never the teacher.
        np.testing.assert_array_equal(speech._teacher.predict_fn()(speech.data.split("val").features),
                                      teacher_logits)
        assert not np.array_equal(training.to_lstmp_model(speech.classifier).matrices()["L0.proj"],
                                  dense.matrices()["L0.proj"])
        with pytest.raises(ParameterError, match="distillation weight"):
            speech.set_distillation(2.0)
        with pytest.raises(ParameterError, match="temperature"):
            speech.set_distillation(0.5, -1.0)
    finally:
        speech.set_distillation(0.0)
        speech.restore(state)


def test_speech_task_mask_variant_and_snapshot(speech):
    dense = speech.load_model()
    state = speech.snapshot()
    result = mask_variant(dense, speech, 0.3, 4, dense_epochs=1, masked_epochs=1, progress=False)
    assert result.history[2]["overall_density"] > 0.9   # dense retraining regrew weights
    for name, mask in result.masks.items():
        assert np.all(result.model.matrices()[name][~mask] == 0)
    speech.restore(state)
    assert speech.score(dense, "val") == pytest.approx(result.baseline)


@pytest.mark.parametrize("balanced", [True, False])
@pytest.mark.parametrize("target", [0.1, 0.13, 0.3])
def test_prune_at_most_never_exceeds_the_target(balanced, target):
    # Big enough that one weight per PE is a small fraction of a matrix (as in real models).
    model = random_model(input_size=40, cell_size=64, proj_size=24, num_layers=2, seed=5)
    plain, _ = prune_model(model, target, 4, balanced)
    pruned, masks, used = prune_at_most(model, target, target, 4, balanced)
    assert overall_density(pruned) <= target
    # Shrunk by no more than the rounding excess (a few weights per PE and matrix).
    assert overall_density(pruned) >= min(target, overall_density(plain)) - 0.01
    for name, w in pruned.matrices().items():
        np.testing.assert_array_equal(w != 0, masks[name])


class DensityCostTask(CompressionTask):
    """Score = minus how far the model's overall density is below 0.6: pruning past 0.55 costs too much
    under max_loss 0.05. A subclass with its own `score` and `finetune` (holding the masks)."""

    name, metric = "density cost", "score"

    def score(self, model, split="val"):
        return -max(0.0, 0.6 - overall_density(model))

    def finetune(self, model, masks, epochs):
        return model if masks is None else apply_masks(model, masks)


def test_an_accepted_back_off_retries_the_planned_step(dense):
    model = random_model(input_size=40, cell_size=64, proj_size=24, num_layers=1, seed=5)
    result = iterative_compression(model, DensityCostTask(), 0.5, 4, steps=1, epochs=1, max_loss=0.05,
                                   max_backoffs=2, progress=False)
    tried = [(round(h["overall_target"], 4), h["accepted"]) for h in result.history[1:]]
    # 0.5 fails; half-way to 1 (0.707) passes; 0.5 again fails; half-way from 0.707 (0.595) passes;
    # 0.5 fails a third time: out of back-offs, stop at 0.595.
    assert tried == [(0.5, False), (0.7071, True), (0.5, False), (0.5946, True), (0.5, False)]
    assert not result.reached_target
    assert 0.55 <= result.overall_density <= 0.5946


def test_without_back_offs_a_forced_step_is_taken_at_once():
    model = random_model(input_size=40, cell_size=64, proj_size=24, num_layers=1, seed=5)
    result = iterative_compression(model, DensityCostTask(), 0.5, 4, steps=1, epochs=1, max_loss=0.05,
                                   max_backoffs=0, force_target=True, progress=False)
    assert [(round(h["overall_target"], 4), h["accepted"], h.get("forced")) for h in result.history[1:]] == \
        [(0.5, True, True)]     # one fine-tuning, not a second one at the same density
    assert result.reached_target and result.overall_density <= 0.5
