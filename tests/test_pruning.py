"""Magnitude pruning (balanced and global) and the PE load statistics (sw/pruning.py)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sparselstm.spec.errors import ParameterError
from sparselstm.sw.model import random_model
from sparselstm.sw.pruning import (MAX_PES, balanced_keep_count, check_pe_count, check_pe_count_for_model,
                                   load_imbalance, prune_matrix, prune_model,
                                   resolve_densities)


def per_pe_counts(mask, n_pes):
    return np.array([mask[p::n_pes].sum() for p in range(n_pes)])


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 12), n_pes=st.integers(1, 50),
       density=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_balanced_keeps_the_same_count_in_every_pe(rows, cols, n_pes, density, seed):
    w = np.random.default_rng(seed).normal(size=(rows, cols))
    mask = prune_matrix(w, density, n_pes)
    counts = per_pe_counts(mask, n_pes)
    if density == 1.0:
        assert mask.all()
        return
    keep = balanced_keep_count(rows, cols, density, n_pes)
    sizes = np.array([w[p::n_pes].size for p in range(n_pes)])
    np.testing.assert_array_equal(counts, np.minimum(keep, sizes))
    # Every PE keeps its largest magnitudes: nothing dropped is larger than anything kept in the same PE.
    for p in range(min(n_pes, rows)):
        sub, kept = np.abs(w[p::n_pes]), mask[p::n_pes]
        if kept.any() and (~kept).any():
            assert sub[kept].min() >= sub[~kept].max()


def test_keep_count_rounds_half_up():
    assert balanced_keep_count(5, 2, 0.5, 2) == 3  # 2.5 -> 3, as every rounding in docs/numerics.md
    assert balanced_keep_count(5, 2, 0.3, 2) == 2  # 1.5 -> 2


def test_balanced_worked_example_with_uneven_rows():
    # 5 rows on 2 PEs: PE 0 holds rows 0, 2, 4 (6 weights), PE 1 rows 1, 3 (4 weights).
    w = np.arange(1, 11, dtype=float).reshape(5, 2)
    assert balanced_keep_count(5, 2, 0.4, 2) == 2  # 0.4 * 10 / 2
    mask = prune_matrix(w, 0.4, 2)
    np.testing.assert_array_equal(np.flatnonzero(mask.ravel()), [6, 7, 8, 9])  # rows 3 (PE 1) and 4 (PE 0)
    # At density 0.8 every PE would keep 4: PE 1 is kept whole, PE 0 keeps 4 of 6.
    mask = prune_matrix(w, 0.8, 2)
    assert per_pe_counts(mask, 2).tolist() == [4, 4]
    assert mask[1::2].all()
    assert not mask[0].any()  # PE 0 drops its two smallest: row 0


def test_more_pes_than_rows_shares_the_budget_among_the_pes_that_hold_rows():
    w = np.random.default_rng(0).normal(size=(3, 10))
    mask = prune_matrix(w, 0.5, 8)
    assert per_pe_counts(mask, 8).tolist() == [5, 5, 5, 0, 0, 0, 0, 0]


def test_unbalanced_is_global_and_not_balanced_in_general():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(64, 32)) * np.linspace(0.1, 3.0, 64)[:, None]  # row scales differ
    mask = prune_matrix(w, 0.25, 8, balanced=False)
    assert mask.sum() == round(0.25 * w.size)
    assert np.abs(w[mask]).min() >= np.abs(w[~mask]).max()
    counts = per_pe_counts(mask, 8)
    assert counts.max() > counts.min()
    balanced = per_pe_counts(prune_matrix(w, 0.25, 8), 8)
    assert balanced.tolist() == [64] * 8


def test_ties_are_broken_by_row_major_position():
    w = np.ones((4, 4))
    mask = prune_matrix(w, 0.25, 1, balanced=False)
    np.testing.assert_array_equal(np.flatnonzero(mask.ravel()), [0, 1, 2, 3])
    mask = prune_matrix(w, 0.25, 2)  # PE 0: rows 0, 2 -> keeps 2 of row 0; PE 1: rows 1, 3 -> 2 of row 1
    np.testing.assert_array_equal(np.flatnonzero(mask.ravel()), [0, 1, 4, 5])


@pytest.mark.parametrize("balanced", [True, False])
def test_density_edges(balanced):
    w = np.random.default_rng(2).normal(size=(7, 5))
    assert not prune_matrix(w, 0.0, 3, balanced).any()
    assert prune_matrix(w, 1.0, 3, balanced).all()


@pytest.mark.parametrize("density, error", [(-0.1, ParameterError), (1.5, ParameterError),
                                            (float("nan"), ParameterError), ("0.5", TypeError), (True, TypeError)])
def test_bad_density_is_rejected(density, error):
    with pytest.raises(error, match="density"):
        prune_matrix(np.ones((2, 2)), density, 1)


def test_non_finite_weights_are_rejected():
    with pytest.raises(ParameterError, match="1 non-finite weight"):
        prune_matrix(np.array([[1.0, np.nan]]), 0.5, 1)


@pytest.mark.parametrize("n_pes", [0, -1, 2.0, None])
def test_bad_pe_count_is_rejected(n_pes):
    with pytest.raises(ParameterError, match="PEs"):
        prune_matrix(np.ones((2, 2)), 0.5, n_pes)


def test_prune_model_applies_per_matrix_densities_and_returns_masks():
    model = random_model(6, 10, proj_size=4, num_layers=2, seed=3)
    densities = {"L0.input.i": 0.0, "L1.proj": 1.0, "default": 0.5}
    pruned, masks = prune_model(model, densities, n_pes=4)
    assert set(masks) == set(model.matrices())
    for name, w in pruned.matrices().items():
        original = model.matrices()[name]
        np.testing.assert_array_equal(w, np.where(masks[name], original, 0.0))
    assert not masks["L0.input.i"].any()
    assert masks["L1.proj"].all()
    assert balanced_keep_count(10, 4, 0.5, 4) == 5  # PEs hold 3, 3, 2, 2 rows of 4: all have >= 5 weights
    assert per_pe_counts(masks["L0.recurrent.g"], 4).tolist() == [5, 5, 5, 5]
    np.testing.assert_array_equal(pruned.layers[0].bias, model.layers[0].bias)
    np.testing.assert_array_equal(pruned.layers[0].peephole, model.layers[0].peephole)


def test_density_mapping_errors_name_the_matrices():
    names = ["L0.input.i", "L0.proj"]
    with pytest.raises(ParameterError, match=r"unknown matrix name\(s\) \['L0.nope'\]"):
        resolve_densities({"L0.nope": 0.1, "default": 0.2}, names)
    with pytest.raises(ParameterError, match=r"no density for \['L0.proj'\]"):
        resolve_densities({"L0.input.i": 0.1}, names)
    with pytest.raises(ParameterError, match=r"densities\['L0.proj'\]"):
        resolve_densities({"L0.input.i": 0.1, "L0.proj": 2}, names)
    assert resolve_densities({"default": 0.3, "L0.proj": 0.1}, names) == {"L0.input.i": 0.3, "L0.proj": 0.1}


def test_load_imbalance_on_a_hand_made_model():
    model = random_model(3, 4, proj_size=2, num_layers=1, peephole=False, seed=4)
    matrices = {name: np.zeros_like(w) for name, w in model.matrices().items()}
    matrices["L0.input.i"] = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 0]], float)  # rows: 1, 2, 3, 0
    matrices["L0.recurrent.o"] = np.array([[0, 0], [0, 0], [0, 0], [5, 5]], float)  # row 3 -> PE 1
    matrices["L0.proj"] = np.array([[1, 1, 1, 1], [0, 0, 0, 1]], float)
    report = load_imbalance(model.with_matrices(matrices), n_pes=2)
    load = report.matrices["L0.input.i"]
    assert load.nonzeros.tolist() == [4, 2]  # PE 0: rows 0, 2; PE 1: rows 1, 3
    assert (load.max, load.mean, load.imbalance) == (4, 3.0, 4 / 3)
    assert report.hardware["L0.gates"].nonzeros.tolist() == [4, 4]
    assert report.hardware["L0.gates"].imbalance == 1.0
    assert report.hardware["L0.proj"].nonzeros.tolist() == [4, 1]
    assert report.matrices["L0.input.f"].imbalance == 1.0  # all zero: nothing to balance
    assert report.to_dict()["hardware"]["L0.proj"]["max"] == 4


def test_balanced_pruning_balances_the_hardware_matrices():
    model = random_model(17, 23, proj_size=9, num_layers=2, seed=5)
    pruned, _ = prune_model(model, 0.2, n_pes=5)
    report = load_imbalance(pruned, 5)
    for name, load in report.hardware.items():
        assert load.max == load.nonzeros.min() > 0, name  # 23 cells on 5 PEs: every PE has room for its share
    unbalanced, _ = prune_model(model, 0.2, n_pes=5, balanced=False)
    assert load_imbalance(unbalanced, 5).hardware["L0.gates"].imbalance > report.hardware["L0.gates"].imbalance


def test_load_imbalance_of_a_quantised_model_counts_its_non_zero_words():
    from sparselstm.sw.quantize import quantize_model

    model = random_model(9, 13, proj_size=6, num_layers=2, seed=6)
    pruned, _ = prune_model(model, 0.3, n_pes=4, balanced=False)
    qmodel = quantize_model(pruned)
    float_report, quantised_report = load_imbalance(pruned, 4), load_imbalance(qmodel, 4)
    assert list(quantised_report.matrices) == list(float_report.matrices)
    layer = qmodel.layers[0]
    w_ig = layer.w_input[2 * 13:3 * 13]  # gate g of the input side
    assert quantised_report.matrices["L0.input.g"].nonzeros.tolist() == [np.count_nonzero(w_ig[p::4])
                                                                         for p in range(4)]
    for name, load in quantised_report.matrices.items():
        # Quantisation can only turn tiny kept weights into zeros, never the reverse.
        assert np.all(load.nonzeros <= float_report.matrices[name].nonzeros), name
    w_gates = qmodel.layers[1].w_gates
    cells_per_pe = [np.count_nonzero(w_gates[[k * 13 + j for k in range(4) for j in range(p, 13, 4)]])
                    for p in range(4)]
    assert quantised_report.hardware["L1.gates"].nonzeros.tolist() == cells_per_pe
    with pytest.raises(TypeError, match="LSTMPModel or a QuantizedModel"):
        load_imbalance("model.npz", 4)


def test_the_pe_count_has_a_hardware_maximum():
    assert check_pe_count(MAX_PES) == MAX_PES
    with pytest.raises(ParameterError, match=f"at most {MAX_PES}"):
        check_pe_count(MAX_PES + 1)


def test_a_pe_count_beyond_the_largest_matrix_is_rejected():
    model = random_model(input_size=5, cell_size=9, proj_size=4, num_layers=2, seed=0)
    assert check_pe_count_for_model(9, model) == 9
    with pytest.raises(ParameterError, match="10 PEs.*at most 9 rows.*PE 9 would hold no rows"):
        check_pe_count_for_model(10, model)
