"""Cell order (docs/format.md, "Cell order"): reordering cells balances the PEs and changes no output word."""

import json

import numpy as np
import pytest

from sparselstm.cli import main
from sparselstm.spec.encoded import DeltaThresholds, LayerInfo
from sparselstm.spec.errors import EncodedModelError, ParameterError
from sparselstm.sw.fixedpoint import Numerics
from sparselstm.sw.format import (balanced_cell_orders, can_reorder, decode, encode, inverse_order, load_encoded,
                                  permute_cells, write_encoded)
from sparselstm.sw.golden import golden_forward, golden_forward_encoded
from sparselstm.sw.loaders import save_npz
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode

from test_encoder import assert_same_qmodel, random_qmodel


def pe_counts(encoded):
    """Per PE: (input-side + projection non-zeros, recurrent-side non-zeros) of layer 0."""
    first, second = [], []
    info = encoded.layers[0]
    model = decode(encoded, hardware_order=True).layers[0]
    for p in range(encoded.n_pes):
        cells = np.arange(p, info.cell_size, encoded.n_pes)
        rows = (np.arange(4)[:, None] * info.cell_size + cells[None, :]).ravel()
        nonzero = model.w_gates[rows] != 0
        proj = np.count_nonzero(model.w_proj[p::encoded.n_pes]) if model.w_proj is not None else 0
        first.append(int(nonzero[:, :info.input_size].sum()) + proj)
        second.append(int(nonzero[:, info.input_size:].sum()))
    return np.array(first), np.array(second)


def words(rng, frames, size, numerics):
    return rng.integers(-(1 << (numerics.act_bits - 1)), 1 << (numerics.act_bits - 1), size=(frames, size))


# One and two layers, with and without projections (a last layer without projection is never reordered).
SHAPES = [dict(cells=[12], projs=[5]), dict(cells=[12], projs=[None]), dict(cells=[10, 9], projs=[None, 4]),
          dict(cells=[10, 9], projs=[6, None]), dict(cells=[10, 9], projs=[None, None]),
          dict(cells=[11, 8], projs=[4, 3])]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s['cells']}-{s['projs']}")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_cell_order_gives_the_same_words(shape, seed):
    rng = np.random.default_rng(seed)
    layers = len(shape["cells"])
    numerics = Numerics()
    qmodel = random_qmodel(rng, numerics, layers, 5, shape["cells"], shape["projs"], [seed != 1] * layers,
                           [0.6] * layers)
    orders = [rng.permutation(h) if can_reorder(qmodel, k) else None for k, h in enumerate(shape["cells"])]
    permuted = permute_cells(qmodel, orders)
    x_q = words(rng, 6, 5, numerics)
    starts = np.zeros(6, dtype=bool)
    starts[3] = True
    expected_saturation, saturation = [], []
    expected = golden_forward(qmodel, x_q, sequence_starts=starts, saturation=expected_saturation)
    np.testing.assert_array_equal(golden_forward(permuted, x_q, sequence_starts=starts, saturation=saturation),
                                  expected)
    assert saturation == expected_saturation      # the same words saturate, only in other places
    assert any(s["pre"] for s in saturation)      # so that the order of saturation is exercised
    delta = [DeltaThresholds(x=3, y=5, m=7 if p is not None else 0) for p in shape["projs"]]
    np.testing.assert_array_equal(golden_forward(permuted, x_q, delta=delta), golden_forward(qmodel, x_q, delta=delta))
    restored = permute_cells(permuted, [None if o is None else inverse_order(o) for o in orders])
    assert_same_qmodel(restored, qmodel)


def test_the_last_layer_without_projection_keeps_its_order():
    qmodel = random_qmodel(np.random.default_rng(0), Numerics(), 2, 3, [6, 5], [None, None], [False, False],
                           [1.0, 1.0])
    assert can_reorder(qmodel, 0) and not can_reorder(qmodel, 1)
    with pytest.raises(ParameterError, match="layer 1 is the last layer and has no projection"):
        permute_cells(qmodel, [None, np.arange(5)[::-1]])
    with pytest.raises(ParameterError, match="not a permutation"):
        permute_cells(qmodel, [np.array([0, 0, 1, 2, 3, 4]), None])
    with pytest.raises(ParameterError, match="expected 2 orders"):
        permute_cells(qmodel, [None])


@pytest.mark.parametrize("layers,proj", [(1, 6), (1, None), (2, 6), (2, None)])
@pytest.mark.parametrize("pruned_for,encoded_for", [(4, 8), (4, 16), (8, 16), (2, 8)])
def test_balanced_encoding_lowers_the_busiest_pe_and_keeps_every_word(layers, proj, pruned_for, encoded_for):
    model = random_model(7, 32, proj, num_layers=layers, seed=layers * 100 + encoded_for)
    plain = compress_and_encode(model, pruned_for, density=0.3, balance_cells=False)
    qmodel = plain.qmodel
    in_order = encode(qmodel, encoded_for, balance_cells=False)
    balanced = encode(qmodel, encoded_for)
    assert all(info.cell_order is None for info in in_order.layers)
    assert balanced.layers[-1].cell_order is None or proj is not None
    if layers == 1 and proj is None:
        assert balanced.layers[0].cell_order is None           # its output order is the model's
    else:
        assert balanced.layers[0].cell_order is not None
        before, after = pe_counts(in_order), pe_counts(balanced)
        assert after[0].max() + after[1].max() < before[0].max() + before[1].max()
        assert after[0].sum() == before[0].sum() and after[1].sum() == before[1].sum()
    assert_same_qmodel(decode(balanced), qmodel)
    x_q = words(np.random.default_rng(encoded_for), 5, 7, qmodel.numerics)
    np.testing.assert_array_equal(golden_forward_encoded(balanced, x_q), golden_forward_encoded(in_order, x_q))
    np.testing.assert_array_equal(golden_forward_encoded(balanced, x_q), golden_forward(qmodel, x_q))


def test_a_model_pruned_for_its_pe_count_is_left_in_order():
    model = random_model(7, 32, 12, num_layers=2, seed=3)
    balanced = compress_and_encode(model, 8, density=0.25)
    unbalanced = compress_and_encode(model, 8, density=0.25, balance_cells=False)
    assert balanced.encoded.manifest() == unbalanced.encoded.manifest()
    assert "cell_order" not in balanced.encoded.manifest()["layers"][0]
    assert balanced_cell_orders(balanced.qmodel, 8) == (None, None)


def test_cell_order_round_trips_through_the_directory(tmp_path):
    model = random_model(7, 32, 12, num_layers=2, seed=4)
    qmodel = compress_and_encode(model, 4, density=0.3).qmodel
    encoded = encode(qmodel, 16)
    assert encoded.layers[0].cell_order is not None
    loaded = load_encoded(write_encoded(encoded, tmp_path / "enc"))
    assert [info.cell_order for info in loaded.layers] == [info.cell_order for info in encoded.layers]
    assert loaded.manifest() == encoded.manifest()
    assert_same_qmodel(decode(loaded), qmodel)


@pytest.fixture
def reordered_dir(tmp_path):
    model = random_model(7, 32, None, num_layers=2, seed=5)
    qmodel = compress_and_encode(model, 4, density=0.3).qmodel
    encoded = encode(qmodel, 16)
    assert encoded.layers[0].cell_order is not None and encoded.layers[1].cell_order is None
    return write_encoded(encoded, tmp_path / "enc")


def edit_order(directory, layer, value):
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["layers"][layer]["cell_order"] = value(manifest["layers"][0].get("cell_order"))
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("layer,value,message", [
    (0, lambda order: order[:-1], r"layers\[0\].cell_order'?: expected a list of 32 integers"),
    (0, lambda order: [order[1]] + order[1:], r"layers\[0\].cell_order'?: .* position 1 holds .* repeats"),
    (0, lambda order: order[:-1] + [32], r"layers\[0\].cell_order'?: .* position 31 holds 32, which is not a cell"),
    (0, lambda order: order[:-1] + [-1], r"layers\[0\].cell_order'?: .* position 31 holds -1, which is not a cell 0"),
    (0, lambda order: [float(c) for c in order], r"layers\[0\].cell_order'?: expected a list of 32 integers"),
    (0, lambda order: "reversed", r"layers\[0\].cell_order'?: expected a list"),
    (1, lambda order: list(range(32)), r"layers\[1\].cell_order'?: expected null: the last layer has no proj"),
])
def test_bad_cell_orders_in_the_manifest_are_rejected(reordered_dir, layer, value, message):
    edit_order(reordered_dir, layer, value)
    with pytest.raises(EncodedModelError, match=r"manifest\.json: key '?" + message):
        load_encoded(reordered_dir)


def test_manifests_without_cell_order_still_load(reordered_dir):
    manifest = json.loads((reordered_dir / "manifest.json").read_text())
    assert "cell_order" in manifest["layers"][0] and "cell_order" not in manifest["layers"][1]
    edit_order(reordered_dir, 0, lambda order: None)     # as null
    assert load_encoded(reordered_dir).layers[0].cell_order is None
    del manifest["layers"][0]["cell_order"]               # as a manifest written before cell orders
    (reordered_dir / "manifest.json").write_text(json.dumps(manifest))
    assert load_encoded(reordered_dir).layers[0].cell_order is None


def test_layer_info_checks_its_cell_order():
    sizes = dict(input_size=3, cell_size=4, proj_size=None, recurrent_size=4, peephole=False, fw_x=1, fw_r=1,
                 fw_p=None, facc=12, fp=None, gate_acc_bits=20, proj_acc_bits=None)
    assert LayerInfo(**sizes, cell_order=np.array([3, 1, 0, 2])).cell_order == (3, 1, 0, 2)
    for bad in ([0, 1, 2], [0, 1, 2, 2], [0.0, 1.0, 2.0, 3.0], [1, 2, 3, 4]):
        with pytest.raises(ParameterError, match="cell_order: expected a permutation of 0 .. 3"):
            LayerInfo(**sizes, cell_order=bad)


def test_encode_cli_balances_cells_by_default(tmp_path, capsys):
    path = tmp_path / "model.npz"
    save_npz(random_model(5, 16, 6, num_layers=1, seed=2), path)
    assert main(["encode", str(path), "-o", str(tmp_path / "a"), "--pes", "8", "--density", "0.3",
                 "--unbalanced"]) == 0
    assert "cell_order" in json.loads((tmp_path / "a" / "manifest.json").read_text())["layers"][0]
    assert "cells reordered to balance the PEs" in capsys.readouterr().out
    assert main(["encode", str(path), "-o", str(tmp_path / "b"), "--pes", "8", "--density", "0.3",
                 "--unbalanced", "--no-balance-cells"]) == 0
    assert "cell_order" not in json.loads((tmp_path / "b" / "manifest.json").read_text())["layers"][0]
    assert "cells reordered" not in capsys.readouterr().out


def test_golden_counts_columns_in_the_hardware_order():
    """The delta-mode column counts of golden_forward_encoded follow the stored cells (the columns the
    hardware broadcasts), so the cycle model can weight its columns with them."""
    model = random_model(7, 32, 12, num_layers=1, seed=6)
    qmodel = compress_and_encode(model, 4, density=0.3).qmodel
    encoded = encode(qmodel, 16)
    order = np.array(encoded.layers[0].cell_order)
    x_q = words(np.random.default_rng(6), 8, 7, qmodel.numerics)
    delta = [DeltaThresholds(x=40, y=40, m=40)]
    in_model_order, in_hardware_order = [], []
    expected = golden_forward(qmodel, x_q, delta=delta, delta_counts=in_model_order)
    np.testing.assert_array_equal(golden_forward_encoded(encoded, x_q, delta=delta, delta_counts=in_hardware_order),
                                  expected)
    sends = in_model_order[0]["m_sends"]
    assert not np.array_equal(sends, sends[order])        # the reordering shows in the counts
    np.testing.assert_array_equal(in_hardware_order[0]["m_sends"], sends[order])
    np.testing.assert_array_equal(in_hardware_order[0]["y_sends"], in_model_order[0]["y_sends"])


def test_switches_must_be_booleans():
    qmodel = random_qmodel(np.random.default_rng(1), Numerics(), 1, 3, [6], [2], [False], [1.0])
    with pytest.raises(TypeError, match="balance_cells must be True or False"):
        encode(qmodel, 2, balance_cells="yes")
    with pytest.raises(TypeError, match="hardware_order must be True or False"):
        decode(encode(qmodel, 2), hardware_order=1)
    with pytest.raises(TypeError, match="expected a QuantizedModel"):
        balanced_cell_orders(encode(qmodel, 2), 2)


@pytest.mark.parametrize("proj", [None, 5])
def test_a_reordered_model_runs_word_for_word_in_the_accelerator(proj):
    """Two layers, the first reordered: without a projection the second layer's input columns follow it."""
    from test_hw_accelerator import check_against_golden, input_frames

    model = random_model(5, 12, proj, num_layers=2, seed=8)
    qmodel = compress_and_encode(model, 2, density=0.4).qmodel
    encoded = encode(qmodel, 4)
    assert encoded.layers[0].cell_order is not None
    got, _ = check_against_golden(encoded, frames=4, restart_at=2)
    starts = np.array([True, False, True, False])   # check_against_golden's frames: the same seed
    np.testing.assert_array_equal(got, golden_forward(qmodel, input_frames(encoded, 4, 0), sequence_starts=starts))
