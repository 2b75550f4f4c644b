"""Column-balanced pruning (sw/pruning.py, for delta mode): every column keeps the same number of weights in
every PE, the budget per PE is that of balanced pruning, and each PE keeps its largest weights per column."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sparselstm.spec.errors import ParameterError
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode, compression_report, format_report
from sparselstm.sw.pruning import balanced_keep_count, nonzeros_per_pe_and_column, prune_matrix, prune_model


@settings(max_examples=80, deadline=None)
@given(cells_per_pe=st.integers(1, 6), cols=st.integers(1, 12), n_pes=st.integers(1, 9),
       density=st.floats(0, 0.999), seed=st.integers(0, 2**16))
def test_every_column_keeps_the_same_count_in_every_pe(cells_per_pe, cols, n_pes, density, seed):
    rows = cells_per_pe * n_pes
    w = np.random.default_rng(seed).normal(size=(rows, cols))
    mask = prune_matrix(w, density, n_pes, columns=True)
    counts = nonzeros_per_pe_and_column(mask, n_pes)
    assert np.all(counts == counts[0])                          # per column, equal in every PE
    keep = balanced_keep_count(rows, cols, density, n_pes)
    assert counts[0].sum() == min(keep, rows // n_pes * cols)  # the balanced budget per PE
    assert counts[0].max() - counts[0].min() <= 1              # spread evenly over the columns
    for p in range(n_pes):
        sub, kept = np.abs(w[p::n_pes]), mask[p::n_pes]
        for c in range(cols):
            if kept[:, c].any() and (~kept[:, c]).any():
                assert sub[kept[:, c], c].min() >= sub[~kept[:, c], c].max()


def test_uneven_rows_cap_the_smaller_pes_and_the_extra_weights_go_to_the_heaviest_columns():
    w = np.array([[1.0, 9.0, 2.0], [3.0, 8.0, 1.0], [5.0, 7.0, 4.0], [2.0, 6.0, 3.0], [4.0, 5.0, 6.0]])
    # 2 PEs: rows 0, 2, 4 and rows 1, 3; keep = round(0.4 * 15 / 2) = 3 per PE: one per column.
    mask = prune_matrix(w, 0.4, 2, columns=True)
    assert mask.astype(int).tolist() == [[0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]]
    # keep = round(0.6 * 15 / 2) = 5 (round half up): one per column and one more in the two heaviest.
    counts = nonzeros_per_pe_and_column(prune_matrix(w, 0.6, 2, columns=True), 2)
    assert counts.tolist() == [[1, 2, 2], [1, 2, 2]]     # L1 norms 15, 35, 16


def test_column_balanced_needs_balanced_and_keeps_the_model_shape():
    with pytest.raises(ParameterError, match="needs balanced=True"):
        prune_matrix(np.ones((4, 4)), 0.5, 2, balanced=False, columns=True)
    model = random_model(input_size=7, cell_size=8, proj_size=4, seed=1)
    pruned, masks = prune_model(model, 0.25, 4, columns=True)
    for name, w in pruned.matrices().items():
        counts = nonzeros_per_pe_and_column(w, 4)
        assert np.all(counts == counts[0]), name
    result = compress_and_encode(model, 4, 0.25, columns=True)
    report = compression_report(result)
    assert report["column_balanced"] and "column-balanced pruning" in format_report(report)
    assert compression_report(compress_and_encode(model, 4, 0.25))["column_balanced"] is False


@pytest.mark.parametrize("flags, balanced, column_balanced", [
    (["--balance", "column"], True, True), (["--balance", "none"], False, False), (["--balance", "row"], True, False),
    (["--unbalanced"], False, False), ([], True, False)])
def test_encode_balance_flags(tmp_path, capsys, flags, balanced, column_balanced):
    import json

    from sparselstm.cli import main
    from sparselstm.sw.format import decode, load_encoded
    from sparselstm.sw.loaders import save_npz

    save_npz(random_model(input_size=7, cell_size=8, proj_size=4, seed=2), tmp_path / "m.npz")
    code = main(["encode", str(tmp_path / "m.npz"), "-o", str(tmp_path / "out"), "--pes", "4", "--density", "0.3",
                 *flags])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["balanced"], report["column_balanced"]) == (balanced, column_balanced)
    w_input = decode(load_encoded(tmp_path / "out")).layers[0].w_input
    counts = nonzeros_per_pe_and_column(w_input[:8], 4)
    assert np.all(counts == counts[0]) or not column_balanced
