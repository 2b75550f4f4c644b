"""The float model description (sw/model.py): validation, accessors, named matrices."""

from __future__ import annotations

import numpy as np
import pytest

from sparselstm.spec.errors import ModelError, SparseLSTMError
from sparselstm.sw.model import GATES, LSTMPLayer, LSTMPModel, random_model


def layer(rng, input_size=3, cells=4, proj=None, peephole=False, name="layer"):
    recurrent = proj if proj is not None else cells
    return LSTMPLayer(w_input=rng.normal(size=(4 * cells, input_size)),
                      w_recurrent=rng.normal(size=(4 * cells, recurrent)),
                      bias=rng.normal(size=4 * cells),
                      peephole=rng.normal(size=(3, cells)) if peephole else None,
                      w_proj=rng.normal(size=(proj, cells)) if proj is not None else None, name=name)


def test_sizes_and_flags(rng):
    def sizes(made):
        return made.input_size, made.cell_size, made.proj_size, made.recurrent_size, made.output_size

    plain = layer(rng)
    assert sizes(plain) == (3, 4, None, 4, 4)
    assert not plain.has_peephole and not plain.has_projection
    full = layer(rng, input_size=5, cells=6, proj=2, peephole=True)
    assert sizes(full) == (5, 6, 2, 2, 2)
    assert full.has_peephole and full.has_projection


def test_arrays_are_float64_read_only_copies(rng):
    w = rng.normal(size=(16, 3)).astype(np.float32)
    made = LSTMPLayer(w_input=w, w_recurrent=np.zeros((16, 4)), bias=np.zeros(16))
    assert made.w_input.dtype == np.float64 and not made.w_input.flags.writeable
    w[0, 0] = 123.0
    assert made.w_input[0, 0] != 123.0
    with pytest.raises(ValueError):
        made.bias[0] = 1.0


@pytest.mark.parametrize("changes, message", [
    ({"w_input": np.zeros((15, 3))}, "layer.w_input: expected shape (4*H, I)"),
    ({"w_input": np.zeros((16,))}, "layer.w_input: expected shape (4*H, I)"),
    ({"w_input": np.zeros((16, 0))}, "layer.w_input: expected shape (4*H, I)"),
    ({"w_input": np.zeros((0, 3))}, "layer.w_input: expected shape (4*H, I)"),
    ({"w_recurrent": np.zeros((16, 3))}, "layer.w_recurrent: expected shape (16, 4), got (16, 3)"),
    ({"bias": np.zeros(15)}, "layer.bias: expected shape (16,), got (15,)"),
    ({"peephole": np.zeros((4, 4))}, "layer.peephole: expected shape (3, 4), got (4, 4)"),
    ({"w_proj": np.zeros((2, 5))}, "layer.w_proj: expected shape (P, 4), got (2, 5)"),
    ({"w_proj": np.zeros((4, 4)), "w_recurrent": np.zeros((16, 4))},
     "projection size 4 must be smaller than the cell count 4"),
    ({"w_proj": np.zeros((2, 4))}, "layer.w_recurrent: expected shape (16, 2), got (16, 4)"),
    ({"bias": np.full(16, np.nan)}, "layer.bias: 16 non-finite value(s)"),
    ({"peephole": np.array([[np.inf] * 4] * 3)}, "layer.peephole: 12 non-finite"),
])
def test_layer_validation(rng, changes, message):
    with pytest.raises(ModelError) as error:
        layer(rng).replace(**changes)
    assert message in str(error.value)
    assert isinstance(error.value, SparseLSTMError) and isinstance(error.value, ValueError)


def test_layer_name_appears_in_errors(rng):
    with pytest.raises(ModelError, match=r"^L3\.bias: expected shape"):
        layer(rng, name="L3").replace(bias=np.zeros(3))


def test_model_chaining(rng):
    first = layer(rng, input_size=3, cells=6, proj=2)
    model = LSTMPModel((first, layer(rng, input_size=2, cells=4)))
    assert (model.input_size, model.output_size) == (3, 4)
    assert "layer 0: input 3, 6 cells, projection 2; layer 1: input 2, 4 cells" == model.describe()
    with pytest.raises(ModelError, match="layer 1: input size 3 does not match layer 0's output size 2"):
        LSTMPModel((first, layer(rng, input_size=3)))
    with pytest.raises(ModelError, match="at least one layer"):
        LSTMPModel(())
    with pytest.raises(TypeError, match="layer 0: expected an LSTMPLayer, got dict"):
        LSTMPModel(({},))
    assert isinstance(LSTMPModel([first]).layers, tuple)


def test_gate_blocks_follow_i_f_g_o(rng):
    made = layer(rng, cells=3)
    for k, gate in enumerate(GATES):
        np.testing.assert_array_equal(made.gate_block("input", gate), made.w_input[3 * k:3 * k + 3])
        np.testing.assert_array_equal(made.gate_block("recurrent", gate), made.w_recurrent[3 * k:3 * k + 3])


def test_matrix_names():
    model = random_model(3, 5, proj_size=2, num_layers=2)
    names = list(model.matrices())
    assert names[:8] == [f"L0.{side}.{g}" for side in ("input", "recurrent") for g in "ifgo"]
    assert names[8] == "L0.proj" and len(names) == 18
    assert list(random_model(3, 5).matrices())[-1] == "L0.recurrent.o"


def test_with_matrices_round_trip(rng):
    model = random_model(3, 5, proj_size=2, num_layers=2, peephole=True, seed=4)
    same = model.with_matrices(model.matrices())
    for a, b in zip(model.layers, same.layers):
        for name in ("w_input", "w_recurrent", "bias", "peephole", "w_proj"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))

    # Replacing some matrices changes exactly those blocks, nothing else.
    new_f = rng.normal(size=(5, 2))
    new_proj = rng.normal(size=(2, 5))
    changed = model.with_matrices({"L1.recurrent.f": new_f, "L0.proj": new_proj})
    np.testing.assert_array_equal(changed.layers[1].gate_block("recurrent", "f"), new_f)
    np.testing.assert_array_equal(changed.layers[0].w_proj, new_proj)
    for name, matrix in model.matrices().items():
        if name not in ("L1.recurrent.f", "L0.proj"):
            np.testing.assert_array_equal(changed.matrices()[name], matrix, err_msg=name)
    np.testing.assert_array_equal(changed.layers[1].bias, model.layers[1].bias)
    np.testing.assert_array_equal(changed.layers[0].peephole, model.layers[0].peephole)
    # the original is untouched
    assert not np.array_equal(model.layers[1].gate_block("recurrent", "f"), new_f)


@pytest.mark.parametrize("name", ["L2.input.i", "X0.input.i", "L0.input.z", "L0.proj.i", "Lx.input.i"])
def test_with_matrices_rejects_unknown_names(name):
    model = random_model(3, 5, num_layers=2)
    with pytest.raises(ModelError, match="unknown matrix name"):
        model.with_matrices({name: np.zeros((5, 3))})


def test_with_matrices_checks_the_projection_shape():
    with pytest.raises(ModelError, match="w_proj"):
        random_model(3, 5, proj_size=2).with_matrices({"L0.proj": np.zeros((2, 4))})


@pytest.mark.parametrize("block", [np.zeros((4, 3)), np.zeros(3), np.zeros((1, 3))])
def test_with_matrices_rejects_wrongly_shaped_gate_blocks(block):
    with pytest.raises(ModelError, match=r"L0\.input\.i"):
        random_model(3, 5, proj_size=2).with_matrices({"L0.input.i": block})


def test_random_model_is_reproducible():
    a = random_model(3, 5, proj_size=2, num_layers=2, seed=9)
    b = random_model(3, 5, proj_size=2, num_layers=2, seed=9)
    np.testing.assert_array_equal(a.layers[1].w_proj, b.layers[1].w_proj)
    assert np.max(np.abs(a.layers[0].w_input)) <= 1 / np.sqrt(5)
    assert random_model(3, 5, peephole=False).layers[0].peephole is None
