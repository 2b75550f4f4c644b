"""The whole accelerator in the Amaranth simulator, word for word against sw.golden.

Models go through the real software flow (random_model -> sw.pipeline.compress_and_encode); the
reference is golden_forward_encoded (the decoded words and the encoded tables, exactly what hw reads).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparselstm.hw.accelerator import Accelerator
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.testing import stream_receive, stream_send
from sparselstm.sw.format import segment_entries
from sparselstm.sw.fixedpoint import quantize_input
from sparselstm.sw.golden import golden_forward_encoded
from sparselstm.sw.model import LSTMPModel, random_model
from sparselstm.sw.pipeline import compress_and_encode


def encoded_model(input_size, cells, proj, layers=1, peephole=True, density=0.3, n_pes=2, seed=0, scale=None):
    model = random_model(input_size, cells, proj, num_layers=layers, peephole=peephole, seed=seed, scale=scale)
    return compress_and_encode(model, n_pes, density).encoded


def input_frames(encoded, frames, seed=0, zero_fraction=0.2):
    """Input words: values spread over the whole act range, some exact zeros (zero-skipping)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, (frames, encoded.layers[0].input_size))
    x[rng.random(x.shape) < zero_fraction] = 0.0
    x_q, _ = quantize_input(x, encoded.numerics)
    return x_q


def rtl_forward(design, x_q, sequence_starts, in_stall=0.0, out_stall=0.0, seed=0, max_cycles=200_000,
                record_frame_cycles=False, noise_first=False):
    """Run frames through the accelerator. Returns (outputs (T, out), status dict); with
    `record_frame_cycles`, status["frame_cycles"] holds the `cycles` counter as each frame's last word left;
    with `noise_first`, `first` is set at random on words other than a frame's first (it must be ignored)."""
    dut = Accelerator(design)
    frames, input_size = x_q.shape
    output_size = design.output_size
    outputs, lasts, status = [], [], {"frame_cycles": []}

    async def sender(ctx):
        rng = random.Random(seed)
        payloads = [{"value": int(x_q[t, c]),
                     "first": int(sequence_starts[t] if c == 0 else (noise_first and rng.random() < 0.5))}
                    for t in range(frames) for c in range(input_size)]
        await stream_send(ctx, dut.i, payloads, rng=rng, idle=in_stall)

    async def receiver(ctx):
        received = await stream_receive(ctx, dut.o, frames * output_size, rng=random.Random(seed + 1),
                                        stall=out_stall, sample=(dut.cycles,), max_cycles=max_cycles)
        for word in received:
            outputs.append(word.payload.value)
            lasts.append(word.payload.last)
            if word.payload.last and record_frame_cycles:
                status["frame_cycles"].append(word.sampled[0])
        for _ in range(3):
            await ctx.tick()
        status["busy"] = ctx.get(dut.busy)
        status["frames_done"] = ctx.get(dut.frames_done)
        status["cycles"] = ctx.get(dut.cycles)
        status["mac_cycles"] = [ctx.get(getattr(dut.mac_cycles, f"pe{p}")) for p in range(design.n_pes)]
        status["pad_cycles"] = [ctx.get(getattr(dut.pad_cycles, f"pe{p}")) for p in range(design.n_pes)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(sender, background=True)
    sim.add_testbench(receiver)
    sim.run()
    y = np.array(outputs, dtype=np.int64).reshape(frames, output_size)
    expected_last = np.zeros((frames, output_size), dtype=bool)
    expected_last[:, -1] = True
    assert np.array_equal(np.array(lasts, dtype=bool).reshape(frames, output_size), expected_last)
    return y, status


def check_against_golden(encoded, frames=3, restart_at=None, in_stall=0.0, out_stall=0.0, seed=0,
                         params=None, noise_first=False):
    design = AcceleratorDesign.from_encoded(encoded, params or HardwareParams())
    x_q = input_frames(encoded, frames, seed)
    starts = np.zeros(frames, dtype=bool)
    starts[0] = True
    if restart_at is not None:
        starts[restart_at if np.ndim(restart_at) == 0 else list(restart_at)] = True
    expected = golden_forward_encoded(encoded, x_q, sequence_starts=starts)
    got, status = rtl_forward(design, x_q, starts, in_stall, out_stall, seed, noise_first=noise_first)
    mismatches = np.argwhere(got != expected)
    assert mismatches.size == 0, (f"{len(mismatches)} words differ, first at (frame, index) "
                                  f"{tuple(mismatches[0])}: got {got[tuple(mismatches[0])]}, "
                                  f"expected {expected[tuple(mismatches[0])]}")
    assert status["frames_done"] == frames
    assert status["busy"] == 0
    return got, status


def test_restart_waits_for_the_previous_frames_projection_readout():
    """A sequence start skips the recurrent phase, the only thing that otherwise makes a frame wait for the
    previous frame's projection readout (one row per cycle). With a long projection and a tiny, prefetched
    input, the new frame's m words would reach projection rows still being read. Found by `make sim` on the
    shipped compressed model (projection 128, utterances back to back)."""
    encoded = encoded_model(2, 64, 48, density=0.3, n_pes=4, seed=21)
    check_against_golden(encoded, frames=6, restart_at=(2, 3, 5), seed=21)


@pytest.mark.parametrize("n_pes", [1, 2, 4])
def test_lstmp_with_peepholes_and_restart(n_pes):
    encoded = encoded_model(13, 10, 6, peephole=True, density=0.3, n_pes=n_pes, seed=n_pes)
    check_against_golden(encoded, frames=4, restart_at=2, in_stall=0.3, out_stall=0.3, seed=n_pes)


def test_sixteen_pes_more_than_cells_per_pe():
    encoded = encoded_model(13, 20, 7, peephole=True, density=0.5, n_pes=16, seed=3)
    check_against_golden(encoded, frames=3, in_stall=0.2, out_stall=0.2, seed=3)


def test_no_projection_no_peephole_dense():
    encoded = encoded_model(5, 8, None, peephole=False, density=1.0, n_pes=2, seed=4)
    check_against_golden(encoded, frames=3, restart_at=1, in_stall=0.4, out_stall=0.5, seed=4)


def test_two_layers_with_projection():
    encoded = encoded_model(7, 9, 5, layers=2, peephole=True, density=0.4, n_pes=4, seed=5)
    check_against_golden(encoded, frames=3, in_stall=0.2, out_stall=0.2, seed=5)


def test_two_layers_without_projection():
    encoded = encoded_model(6, 7, None, layers=2, peephole=True, density=0.5, n_pes=2, seed=6)
    check_against_golden(encoded, frames=3, restart_at=2, out_stall=0.6, seed=6)


def test_very_sparse_and_saturating():
    # density 0.05 leaves many PEs without work in a column; a large scale saturates pre-activations
    encoded = encoded_model(13, 12, 5, peephole=True, density=0.05, n_pes=4, seed=7, scale=2.0)
    check_against_golden(encoded, frames=3, in_stall=0.1, seed=7)


def test_all_zero_matrices_give_bias_only_outputs():
    model = random_model(6, 8, 4, peephole=True, seed=8)
    layer = model.layers[0]
    zeroed = model.with_matrices({f"L0.{name}": np.zeros_like(w) for name, w in layer.matrices().items()
                                  if name != "proj"})
    encoded = compress_and_encode(zeroed, 2).encoded
    _, status = check_against_golden(encoded, frames=2, seed=8)
    assert all(count > 0 for count in status["mac_cycles"])   # the projection still works


def test_odd_shape_input_13_cells_40_projection_24():
    encoded = encoded_model(13, 40, 24, peephole=True, density=0.3, n_pes=4, seed=9)
    _, status = check_against_golden(encoded, frames=2, in_stall=0.1, out_stall=0.1, seed=9)
    total_macs = sum(status["mac_cycles"])
    assert 0 < total_macs <= sum(seg.nonzeros for pe in encoded.pes for seg in pe.segments) * 2


def test_counters_count_macs_of_dense_model_exactly():
    # dense, no zero inputs: every non-zero is processed once per frame, except yprev at the first frame
    encoded = encoded_model(4, 6, None, peephole=False, density=1.0, n_pes=2, seed=10)
    design = AcceleratorDesign.from_encoded(encoded)
    x_q = np.full((2, 4), 1000, dtype=np.int64)
    starts = np.array([True, False])
    got, status = rtl_forward(design, x_q, starts)
    assert np.array_equal(got, golden_forward_encoded(encoded, x_q, sequence_starts=starts))
    y_first = got[0]
    for p, image in enumerate(encoded.pes):
        entries = segment_entries(encoded, p, 0, "gates")
        real = ~entries.padding
        x_entries = real & (entries.column < 4)
        r_entries = real & (entries.column >= 4) & (y_first[np.maximum(entries.column - 4, 0)] != 0)
        assert status["mac_cycles"][p] == 2 * np.count_nonzero(x_entries) + np.count_nonzero(r_entries)
    assert status["cycles"] > 0


def test_accumulator_too_narrow_is_rejected():
    encoded = encoded_model(5, 6, 3, n_pes=1)
    with pytest.raises(ValueError, match="accumulators"):
        AcceleratorDesign.from_encoded(encoded, HardwareParams(acc_bits=8))


def test_wider_accumulators_and_small_fifo_are_still_exact():
    encoded = encoded_model(9, 10, 6, n_pes=2, seed=11)
    check_against_golden(encoded, frames=2, in_stall=0.2, out_stall=0.2, seed=11,
                         params=HardwareParams(acc_bits=48, fifo_depth=2))


def test_thirty_two_pes_and_a_very_slow_consumer():
    # more PEs than proj rows; the output buffer is still busy when the next frame's readout is ready
    encoded = encoded_model(13, 40, 24, peephole=True, density=0.3, n_pes=32, seed=12)
    check_against_golden(encoded, frames=3, restart_at=2, in_stall=0.1, out_stall=0.9, seed=12)


def mixed_model(seed):
    """Layer 0: projection, no peepholes; layer 1: peepholes, no projection (sizes 7 -> 5 -> 6)."""
    first = random_model(7, 9, 5, peephole=False, seed=seed).layers[0]
    second = random_model(5, 6, None, peephole=True, seed=seed + 1).layers[0]
    return LSTMPModel((first, second.replace(name="layer1")))


def test_mixed_layers_and_first_flag_only_on_first_words():
    encoded = compress_and_encode(mixed_model(13), 2, 0.5).encoded
    check_against_golden(encoded, frames=4, restart_at=2, in_stall=0.2, out_stall=0.3, seed=13,
                         noise_first=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_random_configurations(seed):
    rng = np.random.default_rng(100 + seed)
    layers = int(rng.integers(1, 3))
    cells = int(rng.integers(2, 24))
    proj = int(rng.integers(1, cells)) if rng.random() < 0.6 else None
    n_pes = int(rng.choice([1, 2, 3, 4, 8, 16]))
    n_pes = min(n_pes, cells)      # rows go to PEs by cell: no more PEs than cells (check_pe_count_for_model)
    density = float(rng.choice([1.0, 0.5, 0.2, 0.05]))
    encoded = encoded_model(int(rng.integers(1, 20)), cells, proj, layers=layers, peephole=bool(rng.random() < 0.5),
                            density=density, n_pes=n_pes, seed=seed, scale=float(rng.choice([0.3, 1.0, 3.0])))
    params = HardwareParams(fifo_depth=int(rng.choice([2, 3, 8])))
    check_against_golden(encoded, frames=4, restart_at=int(rng.integers(1, 4)), in_stall=float(rng.random() * 0.5),
                         out_stall=float(rng.random() * 0.7), seed=seed, params=params, noise_first=True)
