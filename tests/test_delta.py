"""Delta mode (docs/numerics.md, "Delta mode"): threshold 0 is the normal forward pass bit for bit, the
accumulators equal bias + W * last sent, larger thresholds skip more, and the thresholds' checks."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparselstm.spec.encoded import DeltaThresholds, check_delta_thresholds
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.delta import skipped_fraction, thresholds_from_real
from sparselstm.sw.fixedpoint import Numerics, quantize_input
from sparselstm.sw.golden import golden_forward, golden_trace
from sparselstm.sw.model import random_model
from sparselstm.sw.pruning import prune_model
from sparselstm.sw.quantize import quantize_model
from sparselstm.sw.quantized import QuantizedModel
from sparselstm.sw.reference import reference_forward
from test_golden import random_qlayer, random_words


def _model_and_words(seed, input_size, cells, proj, layers, peephole, density, batch, frames, smooth):
    model = random_model(input_size, cells, proj, layers, peephole, seed=seed, scale=0.6)
    if density < 1.0:
        model, _ = prune_model(model, density, 2)
    rng = np.random.default_rng(seed + 1)
    # A random walk: consecutive frames are close, as speech features are, so deltas are often small.
    steps = rng.normal(0.0, smooth, (batch, frames, input_size))
    x = np.cumsum(steps, axis=1)
    x_q, _ = quantize_input(x, Numerics())
    return model, quantize_model(model, Numerics()), x_q


models = st.tuples(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 6), st.sampled_from([None, 1, 2]),
                   st.integers(1, 2), st.booleans(), st.sampled_from([1.0, 0.5]), st.integers(1, 3),
                   st.integers(1, 7), st.sampled_from([0.0, 0.05, 1.0]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models, st.integers(0, 3))
def test_threshold_zero_is_the_normal_forward_pass(params, start_seed):
    seed, input_size, cells, proj, layers, peephole, density, batch, frames, smooth = params
    if proj is not None and proj >= cells:
        proj = None
    model, qmodel, x_q = _model_and_words(seed, input_size, cells, proj, layers, peephole, density, batch,
                                          frames, smooth)
    starts = np.random.default_rng(start_seed).random((batch, frames)) < 0.3
    zero = [DeltaThresholds()] * layers
    expected = golden_forward(qmodel, x_q, sequence_starts=starts)
    counts: list = []
    actual = golden_forward(qmodel, x_q, sequence_starts=starts, delta=zero, delta_counts=counts)
    np.testing.assert_array_equal(actual, expected)
    assert len(counts) == layers and counts[0]["x_columns"] == batch * frames * input_size
    moved = np.count_nonzero(np.diff(x_q, axis=1, prepend=0) != 0)    # without starts: every change is sent
    if not starts[:, 1:].any():
        assert counts[0]["x_sent"] == moved
    np.testing.assert_array_equal(reference_forward(model, x_q / 2048.0, starts, delta=0.0),
                                  reference_forward(model, x_q / 2048.0, starts))


@pytest.mark.parametrize("peephole", [False, True])
def test_accumulators_equal_bias_plus_weights_times_last_sent(peephole):
    _, qmodel, x_q = _model_and_words(3, 5, 6, 3, 2, peephole, 0.5, 1, 12, 0.2)
    thresholds = [DeltaThresholds(x=300, y=200, m=2000), DeltaThresholds(x=100, y=400, m=800)]
    starts = np.zeros(12, dtype=bool)
    starts[7] = True
    trace = golden_trace(qmodel, x_q[0], sequence_starts=starts, delta=thresholds)
    for frame in trace:
        for layer, record in zip(qmodel.layers, frame):
            gates = (layer.bias + (layer.w_input.astype(np.int64) << layer.shift_x) @ record["last_x"]
                     + (layer.w_recurrent.astype(np.int64) << layer.shift_r) @ record["last_y"])
            np.testing.assert_array_equal(record["acc"], gates)
            np.testing.assert_array_equal(record["proj_acc"], layer.w_proj.astype(np.int64) @ record["last_m"])
    # A sequence start clears what was sent: frame 7 sends exactly the columns that moved away from 0.
    assert np.array_equal(trace[7][0]["last_x"], np.where(np.abs(x_q[0, 7]) > 300, x_q[0, 7], 0))


@pytest.mark.parametrize("fw_x, fw_r", [(12, 12), (0, 28), (0, 40)])
def test_delta_mode_is_exact_on_every_matrix_product_path(fw_x, fw_r):
    # float64, int64 and Python-int products (test_golden.py): threshold 0 is exact, and so is the invariant.
    rng = np.random.default_rng(2)
    n = Numerics()
    layer = random_qlayer(rng, n, 6, 5, 3, True, fw_x=fw_x, fw_r=fw_r)
    qmodel = QuantizedModel(n, (layer,))
    x_q = np.cumsum(random_words(rng, n, (8, 6), 0.001), axis=0)
    np.testing.assert_array_equal(golden_forward(qmodel, x_q, delta=[DeltaThresholds()]), golden_forward(qmodel, x_q))
    for frame in golden_trace(qmodel, x_q, delta=[DeltaThresholds(x=3, y=5, m=50)]):
        record = frame[0]
        gates = (layer.bias.astype(object) + (layer.w_input.astype(object) * 2 ** layer.shift_x) @ record["last_x"]
                 + (layer.w_recurrent.astype(object) * 2 ** layer.shift_r) @ record["last_y"])
        assert [int(v) for v in record["acc"]] == [int(v) for v in gates]


def test_larger_thresholds_skip_more_and_cost_fewer_macs():
    _, qmodel, x_q = _model_and_words(5, 8, 8, 4, 1, False, 0.5, 4, 30, 0.05)
    previous = None
    for threshold in (0.0, 0.01, 0.05, 0.2, 1.0):
        counts: list = []
        golden_forward(qmodel, x_q, delta=thresholds_from_real(threshold, qmodel.numerics, [True]),
                       delta_counts=counts)
        skipped = [skipped_fraction(counts[0], side) for side in "xym"]
        macs = sum(counts[0][f"{side}_macs"] for side in "xym")
        assert macs <= sum(counts[0][f"{side}_dense_macs"] for side in "xym")
        w_columns = {"x": qmodel.layers[0].w_input, "y": qmodel.layers[0].w_recurrent, "m": qmodel.layers[0].w_proj}
        assert macs == sum(int(counts[0][f"{side}_sends"] @ np.count_nonzero(w, axis=0))
                           for side, w in w_columns.items())
        if previous is not None:
            assert all(now >= before for now, before in zip(skipped, previous[0])) and macs <= previous[1]
        previous = (skipped, macs)
    assert previous[0][0] > 0.5     # threshold 1.0 on a slow random walk sends few input columns


def test_reference_delta_mode_skips_like_the_golden_model():
    model, qmodel, x_q = _model_and_words(7, 6, 8, 4, 1, True, 1.0, 2, 20, 0.05)
    x = x_q / 2048.0
    skipped: list = []
    y = reference_forward(model, x, delta=0.1, delta_counts=skipped)
    assert y.shape == (2, 20, 4) and 0.0 < skipped_fraction(skipped[0], "x") < 1.0
    assert np.max(np.abs(y - reference_forward(model, x))) > 0.0


def test_thresholds_from_real_and_their_checks():
    n = Numerics()
    assert thresholds_from_real(0.01, n, [True, False]) == (DeltaThresholds(20, 20, 164), DeltaThresholds(20, 20, 0))
    assert thresholds_from_real([{"x": 0.5}, {"y": 1.0}], n, [True, True]) == \
        (DeltaThresholds(1024, 0, 0), DeltaThresholds(0, 2048, 0))
    with pytest.raises(ParameterError, match="unknown key"):
        thresholds_from_real([{"z": 1.0}], n, [True])
    with pytest.raises(ParameterError, match="expected 2"):
        thresholds_from_real([{}], n, [True, True])
    with pytest.raises(ParameterError, match=">= 0"):
        thresholds_from_real(-1.0, n, [True])
    with pytest.raises(ParameterError, match="no projection"):
        check_delta_thresholds([DeltaThresholds(m=1)], n, [False])
    with pytest.raises(ParameterError, match="at most 65535"):
        check_delta_thresholds([DeltaThresholds(x=65536)], n, [True])
    with pytest.raises(TypeError):
        DeltaThresholds(x=1.5)
    with pytest.raises(ParameterError):
        DeltaThresholds(y=-1)
    _, qmodel, x_q = _model_and_words(1, 3, 4, None, 1, False, 1.0, 1, 3, 0.1)
    with pytest.raises(ParameterError, match="only counted in delta mode"):
        golden_forward(qmodel, x_q, delta_counts=[])
