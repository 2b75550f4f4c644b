"""The accelerator in delta mode (docs/architecture.md, "Delta mode") in the Amaranth simulator, word for
word against sw.golden's delta mode: thresholds 0 to large, sequence restarts, stalls, one and two layers,
one element-wise lane and 2 or 4 (group words of m columns through the delta filter)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sparselstm.commands._delta_sim import frames_sent
from sparselstm.hw.cycle_model import delta_frame_cycles, predict_cycles
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.spec.encoded import DeltaThresholds
from sparselstm.sw.format import decode
from sparselstm.sw.golden import golden_forward_encoded, golden_trace
from sparselstm.sw.pipeline import compress_and_encode

from test_hw_accelerator import encoded_model, input_frames, mixed_model, rtl_forward


def with_thresholds(encoded, x, y, m):
    """The encoded model with the same thresholds in every layer (m 0 where a layer has no projection)."""
    return replace(encoded, delta_thresholds=tuple(
        DeltaThresholds(x, y, m if layer.proj_size is not None else 0) for layer in encoded.layers))


def slowly_changing_frames(encoded, frames, seed):
    """Input words that drift from frame to frame (as speech features do), some exact zeros."""
    rng = np.random.default_rng(seed)
    x_q = input_frames(encoded, 1, seed)
    drift = rng.integers(-600, 600, (frames, x_q.shape[1])) * (rng.random((frames, x_q.shape[1])) < 0.5)
    half = 1 << (encoded.numerics.act_bits - 1)
    return np.clip(x_q + np.cumsum(drift, axis=0), -half, half - 1)


def check_delta(encoded, frames=6, restart_at=(), in_stall=0.0, out_stall=0.0, seed=0, params=None,
                noise_first=False):
    design = AcceleratorDesign.from_encoded(encoded, params or HardwareParams())
    assert design.delta_mode
    x_q = slowly_changing_frames(encoded, frames, seed)
    starts = np.zeros(frames, dtype=bool)
    starts[[0, *restart_at]] = True
    counts = []
    expected = golden_forward_encoded(encoded, x_q, sequence_starts=starts, delta_counts=counts)
    got, status = rtl_forward(design, x_q, starts, in_stall, out_stall, seed, noise_first=noise_first)
    mismatches = np.argwhere(got != expected)
    assert mismatches.size == 0, (f"{len(mismatches)} words differ, first at (frame, index) "
                                  f"{tuple(mismatches[0])}: got {got[tuple(mismatches[0])]}, "
                                  f"expected {expected[tuple(mismatches[0])]}")
    assert status["frames_done"] == frames and status["busy"] == 0
    return status, counts


@pytest.mark.parametrize("thresholds", [(0, 0, 0), (150, 100, 60), (2000, 1500, 900), (65535, 65535, 65535)])
def test_one_layer_thresholds_restarts_and_stalls(thresholds):
    encoded = with_thresholds(encoded_model(13, 10, 6, peephole=True, density=0.4, n_pes=2, seed=1), *thresholds)
    check_delta(encoded, frames=7, restart_at=(3, 4), in_stall=0.3, out_stall=0.3, seed=1)


@pytest.mark.parametrize("lanes", [1, 4])
def test_threshold_zero_gives_the_outputs_of_delta_mode_off(lanes):
    plain = encoded_model(9, 12, 7, peephole=True, density=0.3, n_pes=4, seed=2)
    encoded = with_thresholds(plain, 0, 0, 0)
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=lanes))
    x_q = slowly_changing_frames(encoded, 5, 2)
    starts = np.array([True, False, False, True, False])
    got, _ = rtl_forward(design, x_q, starts, seed=2)
    assert np.array_equal(got, golden_forward_encoded(plain, x_q, sequence_starts=starts, delta=None))


@pytest.mark.parametrize("lanes", [1, 2])
def test_macs_are_those_of_the_sent_columns(lanes):
    """One sequence: the PEs do exactly the multiply-accumulates of the columns golden sends (with lanes, a
    group word's columns that did not move cost nothing)."""
    encoded = with_thresholds(encoded_model(11, 16, 8, peephole=True, density=0.5, n_pes=4, seed=3), 300, 200, 100)
    status, counts = check_delta(encoded, frames=6, seed=3, params=HardwareParams(lanes=lanes))
    golden_macs = sum(layer[f"{side}_macs"] for layer in counts for side in ("x", "y", "m"))
    assert sum(status["mac_cycles"]) == golden_macs
    assert golden_macs < sum(layer[f"{side}_dense_macs"] for layer in counts for side in ("x", "y", "m"))


@pytest.mark.parametrize("n_pes", [1, 4])
def test_two_layers_with_projection(n_pes):
    encoded = with_thresholds(encoded_model(7, 9, 5, layers=2, density=0.4, n_pes=n_pes, seed=4), 200, 150, 80)
    check_delta(encoded, frames=6, restart_at=(2,), in_stall=0.2, out_stall=0.2, seed=4)


@pytest.mark.parametrize("lanes, n_pes, layers, proj, peephole, seed", [
    (2, 2, 1, 5, True, 21), (2, 4, 2, 6, False, 22), (4, 4, 1, None, True, 23), (4, 8, 2, 7, True, 24),
    (2, 8, 2, None, False, 25), (8, 8, 1, 6, True, 26)])
def test_lanes_odd_cells_restarts_and_stalls(lanes, n_pes, layers, proj, peephole, seed):
    """Lanes 2, 4, 8 with 13 cells (a partial last group), with and without projection and peepholes."""
    encoded = with_thresholds(encoded_model(5, 13, proj, layers=layers, peephole=peephole, density=0.4,
                                            n_pes=n_pes, seed=seed), 150, 100, 60)
    check_delta(encoded, frames=6, restart_at=(2, 3), in_stall=0.2, out_stall=0.3, seed=seed, noise_first=True,
                params=HardwareParams(lanes=lanes))


def test_two_layers_without_projection_and_a_slow_consumer():
    encoded = with_thresholds(encoded_model(6, 7, None, layers=2, density=0.5, n_pes=2, seed=5), 100, 300, 0)
    check_delta(encoded, frames=5, restart_at=(1, 3), out_stall=0.7, seed=5)


def test_mixed_layers_first_flag_only_on_first_words_small_fifo():
    encoded = with_thresholds(compress_and_encode(mixed_model(6), 2, 0.5).encoded, 120, 60, 40)
    check_delta(encoded, frames=6, restart_at=(2, 5), in_stall=0.2, out_stall=0.3, seed=6, noise_first=True,
                params=HardwareParams(fifo_depth=2))


@pytest.mark.parametrize("lanes", [1, 4])
def test_sixteen_pes_long_projection_back_to_back_restarts(lanes):
    encoded = with_thresholds(encoded_model(3, 48, 40, density=0.3, n_pes=16, seed=7), 50, 50, 50)
    check_delta(encoded, frames=6, restart_at=(1, 2, 4), seed=7, params=HardwareParams(lanes=lanes))


def test_design_of_delta_mode_copies_sum_banks_and_wider_words():
    """One layer: split sums (two copies that start at 0, sum banks that start at the bias); more layers:
    one copy of layer 0 (the bias added by the cell read). A delta is one bit wider than a word."""
    plain = encoded_model(5, 6, 3, n_pes=2, seed=8)
    delta = AcceleratorDesign.from_encoded(with_thresholds(plain, 1, 1, 1), HardwareParams(lanes=1))
    normal = AcceleratorDesign.from_encoded(plain, HardwareParams(lanes=1))
    assert delta.value_bits == normal.value_bits + 1
    assert delta.split_sums and not normal.split_sums
    for pe_delta, pe_normal in zip(delta.pes, normal.pes):
        assert pe_delta.gate_depth == pe_normal.gate_depth and pe_delta.alt_base == pe_normal.alt_base > 0
        for gate in range(4):
            assert pe_delta.sum_bank_init(gate) == [bias[gate] for bias in pe_normal.bias]
    assert delta.memory_bits()["delta_last_sent"] == (5 + 3 + 6) * delta.numerics.act_bits
    assert "delta_last_sent" not in normal.memory_bits()
    # with 2 lanes a row per x and y column and per group of 2 m columns, 2 values a row
    two = AcceleratorDesign.from_encoded(with_thresholds(plain, 1, 1, 1), HardwareParams(lanes=2))
    assert two.memory_bits()["delta_last_sent"] == (5 + 3 + 3) * 2 * delta.numerics.act_bits
    layered = encoded_model(5, 6, 3, layers=2, n_pes=2, seed=8)
    delta2 = AcceleratorDesign.from_encoded(with_thresholds(layered, 1, 1, 1), HardwareParams(lanes=1))
    normal2 = AcceleratorDesign.from_encoded(layered, HardwareParams(lanes=1))
    assert not delta2.split_sums
    for pe_delta, pe_normal in zip(delta2.pes, normal2.pes):
        assert pe_delta.gate_depth == pe_normal.gate_depth - pe_normal.cells[0]
        assert pe_delta.alt_base == 0
        assert pe_delta.bias == pe_normal.bias


@pytest.mark.parametrize("layers, thresholds, n_pes, lanes", [
    (1, (200, 150, 100), 4, 1), (1, (200, 150, 100), 4, 2), (1, (0, 0, 0), 4, 4), (2, (300, 300, 150), 4, 1),
    # the largest two in the slow suite (CI time); 4 lanes stay in the fast one at 4 PEs
    pytest.param(2, (300, 300, 150), 8, 4, marks=pytest.mark.slow), (1, (600, 600, 300), 16, 2),
    pytest.param(2, (100, 100, 50), 16, 4, marks=pytest.mark.slow)])
def test_cycle_model_with_the_columns_sent(layers, thresholds, n_pes, lanes):
    """hw.cycle_model frame by frame with the columns each frame sends (golden's trace) against the
    simulated cycles per frame; the share of frames each column is sent gives a rougher figure."""
    encoded = with_thresholds(encoded_model(16, 32, 16, layers=layers, density=0.3, n_pes=n_pes, seed=9),
                              *thresholds)
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=lanes))
    x_q = slowly_changing_frames(encoded, 9, 9)
    starts = np.zeros(9, dtype=bool)
    starts[0] = True
    sent = frames_sent(encoded, x_q, starts)       # frames 2-8 end in the measured window
    _, status = rtl_forward(design, x_q, starts, record_frame_cycles=True)
    measured = (status["frame_cycles"][8] - status["frame_cycles"][1]) / 7
    assert delta_frame_cycles(design, sent[2:9]) == pytest.approx(measured, rel=0.06)
    share = {key: np.mean([frame[key] for frame in sent[2:9]], axis=0) for key in sent[0]}
    assert predict_cycles(design, column_share=share).steady_state == pytest.approx(measured, rel=0.15)


def test_frames_sent_are_golden_sends_and_the_take_backs_of_a_restart():
    """Within a sequence a frame sends the columns golden counts; a restart also sends the columns whose old
    last value is taken back (hw/delta_filter.py); the cycle model's average over frames checks its input."""
    encoded = with_thresholds(encoded_model(6, 10, 4, layers=2, density=0.5, n_pes=2, seed=10), 200, 150, 80)
    x_q = slowly_changing_frames(encoded, 8, 10)
    starts = np.zeros(8, dtype=bool)
    starts[[0, 5]] = True
    sent = frames_sent(encoded, x_q, starts)
    assert len(sent) == 8 and set(sent[0]) == {(l, kind) for l in range(2) for kind in range(3)}
    counts = []
    golden_forward_encoded(encoded, x_q[:5], sequence_starts=starts[:5], delta_counts=counts)
    for (layer, kind), side in ((key, "xym"[key[1]]) for key in sent[0]):
        assert np.array_equal(sum(frame[(layer, kind)].astype(int) for frame in sent[:5]),
                              counts[layer][f"{side}_sends"])
    # frame 5 restarts: a recurrent column goes back to 0, so exactly those whose last value is not 0 send
    trace = golden_trace(decode(encoded, hardware_order=True), x_q[:5], tables=encoded.tables,
                         sequence_starts=starts[:5], delta=encoded.delta_thresholds)
    for layer in range(2):
        assert np.array_equal(sent[5][(layer, 1)], trace[4][layer]["last_y"] != 0)
    assert any(sent[5][(layer, 1)].any() for layer in range(2))
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=2))
    with pytest.raises(ValueError, match="at least one frame"):
        delta_frame_cycles(design, [])
    with pytest.raises(ValueError, match="max_frames"):
        delta_frame_cycles(design, sent, max_frames=0)
    assert delta_frame_cycles(design, sent[1:5]) < predict_cycles(design).steady_state


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_random_configurations(seed):
    rng = np.random.default_rng(300 + seed)
    cells = int(rng.integers(2, 24))
    proj = int(rng.integers(1, cells)) if rng.random() < 0.6 else None
    encoded = encoded_model(int(rng.integers(1, 20)), cells, proj, layers=int(rng.integers(1, 3)),
                            peephole=bool(rng.random() < 0.5), density=float(rng.choice([1.0, 0.5, 0.2, 0.05])),
                            n_pes=min(cells, int(rng.choice([1, 2, 3, 4, 8, 16]))), seed=seed,
                            scale=float(rng.choice([0.3, 1.0, 3.0])))
    encoded = with_thresholds(encoded, *(int(v) for v in rng.choice([0, 20, 300, 3000], 3)))
    restarts = tuple(int(t) for t in np.flatnonzero(rng.random(7) < 0.3) + 1)
    fifo_depth = int(rng.choice([2, 3, 8]))
    in_stall, out_stall = float(rng.random() * 0.5), float(rng.random() * 0.7)
    lanes = int(rng.choice([lanes for lanes in (1, 2, 4) if encoded.n_pes % lanes == 0]))
    check_delta(encoded, frames=8, restart_at=restarts, in_stall=in_stall, out_stall=out_stall, seed=seed,
                params=HardwareParams(fifo_depth=fifo_depth, lanes=lanes), noise_first=True)
