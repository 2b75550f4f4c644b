"""The float reference forward pass (sw/reference.py) and the `sparselstm reference` command.

Agreement with PyTorch and onnxruntime is in test_loaders.py (it goes through the loaders); here the
reference is checked against a deliberately naive scalar implementation of the equations, and its batch and
sequence-start behaviour against itself.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from sparselstm.cli import main
from sparselstm.spec.errors import ParameterError, SparseLSTMError
from sparselstm.sw.loaders import save_npz
from sparselstm.sw.model import LSTMPLayer, LSTMPModel, random_model
from sparselstm.sw.reference import reference_forward, sigmoid


def assert_same(actual, desired):
    # Same arithmetic up to BLAS summation order (which differs between a batch and a single sequence).
    np.testing.assert_allclose(actual, desired, rtol=0, atol=1e-14)


def naive_forward(model: LSTMPModel, x: np.ndarray) -> np.ndarray:
    """One sequence (T, I), cell by cell with Python floats: the equations of the reference README, verbatim."""
    def sig(v):
        return 1.0 / (1.0 + math.exp(-v))

    signal = [list(map(float, frame)) for frame in x]
    for layer in model.layers:
        h = layer.cell_size
        c = [0.0] * h
        y = [0.0] * layer.output_size
        outputs = []
        for frame in signal:
            def gate(k, j):
                row = k * h + j
                return (sum(layer.w_input[row, col] * frame[col] for col in range(layer.input_size))
                        + sum(layer.w_recurrent[row, col] * y[col] for col in range(layer.recurrent_size))
                        + layer.bias[row])
            peep = layer.peephole if layer.peephole is not None else np.zeros((3, h))
            new_c, m = [0.0] * h, [0.0] * h
            for j in range(h):
                i_gate = sig(gate(0, j) + peep[0, j] * c[j])
                f_gate = sig(gate(1, j) + peep[1, j] * c[j])
                g_gate = math.tanh(gate(2, j))
                new_c[j] = f_gate * c[j] + i_gate * g_gate
                o_gate = sig(gate(3, j) + peep[2, j] * new_c[j])
                m[j] = o_gate * math.tanh(new_c[j])
            c = new_c
            if layer.w_proj is not None:
                y = [sum(layer.w_proj[r, j] * m[j] for j in range(h)) for r in range(layer.proj_size)]
            else:
                y = m
            outputs.append(list(y))
        signal = outputs
    return np.array(signal)


@pytest.mark.parametrize("proj_size, peephole, num_layers", [
    (None, False, 1), (None, True, 1), (3, False, 2), (3, True, 3), (1, True, 1),
])
def test_matches_naive_implementation(rng, proj_size, peephole, num_layers):
    model = random_model(input_size=4, cell_size=5, proj_size=proj_size, num_layers=num_layers,
                         peephole=peephole, seed=7, scale=0.8)
    x = rng.normal(size=(9, 4))
    np.testing.assert_allclose(reference_forward(model, x), naive_forward(model, x), rtol=0, atol=1e-12)


def test_peephole_o_reads_the_new_cell(rng):
    # With only an o peephole, one frame from a zero state: o = sigmoid(pre_o + p_o * c_1), c_1 = i*g.
    h = 3
    layer = LSTMPLayer(w_input=rng.normal(size=(4 * h, 2)), w_recurrent=np.zeros((4 * h, h)),
                       bias=rng.normal(size=4 * h), peephole=np.vstack([np.zeros((2, h)), np.full((1, h), 2.0)]))
    x = rng.normal(size=(1, 2))
    pre = layer.w_input @ x[0] + layer.bias
    c1 = sigmoid(pre[:h]) * np.tanh(pre[2 * h:3 * h])
    expected = sigmoid(pre[3 * h:] + 2.0 * c1) * np.tanh(c1)
    np.testing.assert_allclose(reference_forward(LSTMPModel((layer,)), x)[0], expected, rtol=0, atol=1e-15)


def test_shapes_and_dtype(small_model, rng):
    y = reference_forward(small_model, rng.normal(size=(6, 5)).astype(np.float32))
    assert y.shape == (6, 3) and y.dtype == np.float64
    assert reference_forward(small_model, rng.normal(size=(2, 6, 5))).shape == (2, 6, 3)
    # plain nested lists work too
    assert reference_forward(small_model, [[0.0] * 5] * 4).shape == (4, 3)


def test_batch_equals_independent_sequences(small_model, rng):
    x = rng.normal(size=(3, 8, 5))
    batched = reference_forward(small_model, x)
    for b in range(3):
        assert_same(batched[b], reference_forward(small_model, x[b]))


def test_reset_mid_sequence_equals_two_separate_runs(small_model, rng):
    x = rng.normal(size=(10, 5))
    starts = np.zeros(10, dtype=bool)
    starts[4] = True
    joined = reference_forward(small_model, x, sequence_starts=starts)
    assert_same(joined[:4], reference_forward(small_model, x[:4]))
    assert_same(joined[4:], reference_forward(small_model, x[4:]))
    # and without the reset the second part really is different (the state carries over)
    assert not np.allclose(reference_forward(small_model, x)[4:], joined[4:])


def test_per_stream_starts_in_a_batch(small_model, rng):
    x = rng.normal(size=(2, 7, 5))
    starts = np.zeros((2, 7), dtype=bool)
    starts[1, 3] = True
    y = reference_forward(small_model, x, sequence_starts=starts)
    assert_same(y[0], reference_forward(small_model, x[0]))
    assert_same(y[1, 3:], reference_forward(small_model, x[1, 3:]))
    assert_same(y[1, :3], reference_forward(small_model, x[1, :3]))


def test_frame_zero_always_starts_a_sequence(small_model, rng):
    x = rng.normal(size=(5, 5))
    assert_same(reference_forward(small_model, x, sequence_starts=np.zeros(5, dtype=bool)),
                                  reference_forward(small_model, x))
    # 0/1 integers are accepted as flags
    assert_same(reference_forward(small_model, x, sequence_starts=[0, 0, 1, 0, 0]),
                                  reference_forward(small_model, x, sequence_starts=np.array([0, 0, 1, 0, 0], bool)))


def test_saturated_gates_give_no_warnings():
    layer = LSTMPLayer(w_input=np.full((4, 1), 1e3), w_recurrent=np.zeros((4, 1)), bias=np.zeros(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = reference_forward(LSTMPModel((layer,)), np.array([[1e3], [-1e3]]))
    assert np.all(np.isfinite(y))
    assert sigmoid(np.array([-1e4]))[0] == 0.0 and sigmoid(np.array([1e4]))[0] == 1.0


@pytest.mark.parametrize("x, sequence_starts, message", [
    (np.zeros(5), None, "got 1 dimension"),
    (np.zeros((1, 2, 3, 5)), None, "got 4 dimension"),
    (np.zeros((4, 6)), None, "last dimension is 6, the model's input size is 5"),
    (np.zeros((0, 5)), None, "at least one frame"),
    (np.array([[0, 0, np.nan, 0, 0]]), None, "1 non-finite"),
    (np.array([[0, 0, np.inf, 0, 0]]), None, "1 non-finite"),
    (np.array([["a"] * 5]), None, "not numeric"),
    (np.zeros((4, 5)), np.zeros(3, bool), "sequence_starts: expected shape (4,)"),
    (np.zeros((2, 4, 5)), np.zeros(4, bool), "sequence_starts: expected shape (2, 4)"),
    (np.zeros((4, 5)), np.array([0, 2, 0, 0]), "expected booleans"),
    (np.zeros((4, 5)), np.zeros(4), "expected booleans"),
])
def test_bad_inputs_are_user_errors(small_model, x, sequence_starts, message):
    with pytest.raises(ParameterError) as error:
        reference_forward(small_model, x, sequence_starts=sequence_starts)
    assert message in str(error.value)
    assert isinstance(error.value, SparseLSTMError)


def test_model_must_be_a_model():
    with pytest.raises(TypeError, match="expected an LSTMPModel"):
        reference_forward(object(), np.zeros((1, 1)))


# ---- the command -----------------------------------------------------------------------------------------


def test_command_writes_the_reference_output(tmp_path, small_model, rng, capsys):
    save_npz(small_model, tmp_path / "model.npz")
    x = rng.normal(size=(2, 6, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["reference", str(tmp_path / "model.npz"), "--input", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.out")]) == 0
    assert_same(np.load(tmp_path / "y.out"), reference_forward(small_model, x))
    line = capsys.readouterr().out.strip()
    assert "shape (2, 6, 3)" in line and "12 frame(s)" in line and "\n" not in line


@pytest.mark.parametrize("make_input, message", [
    (lambda p: np.save(p, np.zeros((4, 6))), "x.npy: input: last dimension is 6, the model's input size is 5"),
    (lambda p: np.save(p, np.zeros((4, 5), dtype=complex)), "x.npy: expected a real-valued numeric array"),
    (lambda p: p.write_bytes(b"not numpy"), "x.npy: not a readable .npy array"),
    (lambda p: None, "x.npy: input file not found"),
])
def test_command_input_errors(tmp_path, small_model, capsys, make_input, message):
    save_npz(small_model, tmp_path / "model.npz")
    make_input(tmp_path / "x.npy")
    code = main(["reference", str(tmp_path / "model.npz"), "--input", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("sparselstm reference: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "y.npy").exists()


def test_command_model_errors_name_the_file(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((3, 5)))
    code = main(["reference", str(tmp_path / "missing.npz"), "--input", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy")])
    assert code == 1
    assert f"{tmp_path / 'missing.npz'}: file not found" in capsys.readouterr().err


def test_command_prefix_is_only_for_pytorch(tmp_path, small_model, capsys):
    save_npz(small_model, tmp_path / "model.npz")
    np.save(tmp_path / "x.npy", np.zeros((3, 5)))
    code = main(["reference", str(tmp_path / "model.npz"), "--input", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy"), "--prefix", "lstm"])
    assert code == 1
    assert "prefix ('lstm') only selects an LSTM inside a PyTorch checkpoint" in capsys.readouterr().err
