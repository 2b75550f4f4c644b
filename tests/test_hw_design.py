"""AcceleratorDesign (layout of every memory), HardwareParams, layouts, and the cycle model vs simulation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sparselstm.hw.cycle_model import predict_cycles
from sparselstm.hw.design import GATE_TARGET, PROJ_TARGET, AcceleratorDesign, phase_index
from sparselstm.hw.interfaces import broadcast_layout, elementwise_in_layout, elementwise_out_layout
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.pe_shape import cell_constants, cell_constants_bases, cell_constants_layout
from sparselstm.spec.encoded import DeltaThresholds
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.fixedpoint import quantize_input
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode


def encoded_model(input_size=7, cells=9, proj=5, layers=2, n_pes=4, density=0.3, peephole=True, seed=0):
    model = random_model(input_size, cells, proj, num_layers=layers, peephole=peephole, seed=seed)
    return compress_and_encode(model, n_pes, density).encoded


def test_design_lays_out_bias_peepholes_and_phases_from_the_images():
    encoded = encoded_model()
    design = AcceleratorDesign.from_encoded(encoded)
    assert design.n_pes == 4 and design.n_layers == 2
    assert design.acc_bits == max(max(l.gate_acc_bits, l.proj_acc_bits or 0) for l in encoded.layers)
    for p, (pe, image) in enumerate(zip(design.pes, encoded.pes)):
        assert pe.entries == tuple(int(v) for v in image.entries)
        address = 0
        for l, layer in enumerate(encoded.layers):
            assert pe.cell_base[l] == address
            for q in range(image.cells[l]):
                base = image.bias_base[l] + 4 * q
                assert pe.bias[address + q] == tuple(int(v) for v in image.bias[base:base + 4])
                base = image.peephole_base[l] + 3 * q
                assert pe.peephole[address + q] == tuple(int(v) for v in image.peephole[base:base + 3])
            address += image.cells[l]
            gates = encoded.segment(p, l, "gates")
            x, r, proj = (pe.phases[phase_index(l, k)] for k in range(3))
            assert (x.ptr_offset, x.target, x.shift) == (gates.ptr_base, GATE_TARGET, layer.shift_x)
            assert (r.ptr_offset, r.target, r.shift) == (gates.ptr_base + layer.input_size, GATE_TARGET,
                                                         layer.shift_r)
            assert (proj.ptr_offset, proj.target) == (encoded.segment(p, l, "proj").ptr_base, PROJ_TARGET)
    assert design.y_bases == (0, 5)
    numerics = encoded.numerics
    assert design.y_shift(0) == encoded.layers[0].fw_p + numerics.unit_frac - numerics.act_frac


@pytest.mark.parametrize("lanes, n_pes, split", [(1, 4, False), (2, 4, False), (4, 4, False), (2, 2, True)])
def test_cell_reader_constants_hold_every_cells_bias_and_peepholes_in_model_order(lanes, n_pes, split):
    # the CellReader's ROM (pe_shape.cell_constants): word base[l] + group, lane k = cell lanes * group + k of
    # layer l; 9 cells leave the last group of 2 or 4 lanes partial (zeros past the last cell)
    layers = 1 if split else 2
    compressed = compress_and_encode(random_model(7, 9, 5, num_layers=layers, seed=3), n_pes, 0.3,
                                     balance_cells=False)       # the encoded cells in model order
    encoded = compressed.encoded
    if split:
        encoded = dataclasses.replace(encoded, delta_thresholds=(DeltaThresholds(1, 1, 0),))
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(lanes=lanes))
    assert design.split_sums == split
    rom = cell_constants(design)
    bases = cell_constants_bases(design)
    words = rom.words()
    layout = cell_constants_layout(design)
    assert rom.depth == max(2, sum(-(-9 // lanes) for _ in range(layers))) and len(bases) == layers
    for l, layer in enumerate(compressed.qmodel.layers):
        for j in range(-(-9 // lanes) * lanes):
            word = layout.from_bits(words[bases[l] + j // lanes])[j % lanes]
            peeps = [int(word.peep[k]) for k in range(3)]
            assert peeps == ([int(v) for v in layer.peephole[:, j]] if j < 9 else [0] * 3)
            if split:
                assert "bias" not in layout.elem_shape.members
            else:
                assert [int(word.bias[k]) for k in range(4)] == \
                    ([int(layer.bias[k * 9 + j]) for k in range(4)] if j < 9 else [0] * 4)


def test_design_without_projection_or_peepholes():
    encoded = encoded_model(proj=None, layers=1, peephole=False, n_pes=2)
    design = AcceleratorDesign.from_encoded(encoded)
    assert not design.pes[0].phases[phase_index(0, 2)].used
    assert all(p == (0, 0, 0) for pe in design.pes for p in pe.peephole)
    assert design.y_shift(0) == encoded.numerics.unit_frac - encoded.numerics.act_frac


def test_design_rejects_models_that_do_not_fit():
    encoded = encoded_model(layers=1, n_pes=1)
    with pytest.raises(ParameterError, match="accumulators"):
        AcceleratorDesign.from_encoded(encoded, HardwareParams(acc_bits=10))
    with pytest.raises(ParameterError, match="max_entry_depth"):
        AcceleratorDesign.from_encoded(encoded, HardwareParams(max_entry_depth=3))
    with pytest.raises(TypeError, match="HardwareParams"):
        AcceleratorDesign.from_encoded(encoded, {"fifo_depth": 8})
    with pytest.raises(TypeError, match="EncodedModel"):
        AcceleratorDesign.from_encoded(object())


@pytest.mark.parametrize("changes, error", [
    ({"fifo_depth": 1}, ValueError), ({"fifo_depth": True}, TypeError), ({"acc_bits": 1}, ValueError),
    ({"acc_bits": 32.0}, TypeError), ({"counter_bits": 4}, ValueError), ({"max_entry_depth": 0}, ValueError)])
def test_hardware_params_reject_bad_values(changes, error):
    with pytest.raises(error, match="HardwareParams"):
        HardwareParams(**changes)


def test_hardware_params_round_trip():
    params = HardwareParams(fifo_depth=4, acc_bits=40)
    assert HardwareParams.from_dict(params.to_dict()) == params
    with pytest.raises(ValueError, match="unknown"):
        HardwareParams.from_dict({"fifo": 4})


def test_layouts_have_the_contract_fields_and_reject_bad_widths():
    layout = elementwise_in_layout(31, 16, 1, 6)
    assert [name for name, _ in layout] == ["layer", "cell", "first_frame", "acc_i", "acc_f", "acc_g", "acc_o",
                                            "peep_i", "peep_f", "peep_o"]
    assert layout.size == 1 + 6 + 1 + 4 * 31 + 3 * 16
    assert [name for name, _ in elementwise_out_layout(16, 1, 6)] == ["layer", "cell", "m"]
    assert broadcast_layout(16, 8, 2).size == 27
    for bad in (0, -1):
        with pytest.raises(ValueError):
            elementwise_in_layout(bad, 16, 1, 6)
    for bad in (2.0, True):
        with pytest.raises(TypeError):
            elementwise_in_layout(bad, 16, 1, 6)


def simulated_steady_cycles(design, input_size, numerics):
    """Steady-state cycles per frame of `design` in the Amaranth simulator (frames 1-3 of 5, overlapped on both
    sides), with the inputs and sequence starts it ran."""
    from test_hw_accelerator import rtl_forward   # the same simulation harness

    rng = np.random.default_rng(1)
    # no zero activations in x (the model assumes none are skipped)
    x_q, _ = quantize_input(rng.uniform(0.5, 2.0, (5, input_size)) * rng.choice([-1, 1], (5, input_size)),
                            numerics)
    starts = np.array([True, False, False, False, False])
    _, status = rtl_forward(design, x_q, starts, record_frame_cycles=True)
    frame_cycles = status["frame_cycles"]
    return (frame_cycles[3] - frame_cycles[0]) / 3, x_q, starts


@pytest.mark.parametrize("shape", [(13, 24, 10, 1, 4), (20, 64, 32, 1, 4), (9, 12, None, 2, 2),
                                   (7, 16, 6, 2, 2)])
def test_cycle_model_predicts_simulated_cycles(shape):
    from test_hw_accelerator import rtl_forward   # the same simulation harness

    input_size, cells, proj, layers, n_pes = shape
    model = random_model(input_size, cells, proj, num_layers=layers, seed=1)
    encoded = compress_and_encode(model, n_pes, 0.2).encoded
    design = AcceleratorDesign.from_encoded(encoded)
    steady, x_q, starts = simulated_steady_cycles(design, input_size, encoded.numerics)
    _, alone = rtl_forward(design, x_q[:1], starts[:1], record_frame_cycles=True)
    prediction = predict_cycles(design)
    assert prediction.steady_state == pytest.approx(steady, rel=0.10)
    assert prediction.first_frame == pytest.approx(alone["frame_cycles"][0], rel=0.15)
    assert max(prediction.mac_cycles) <= prediction.steady_state


def test_memory_bits_count_every_memory():
    encoded = encoded_model(layers=2, n_pes=4)
    design = AcceleratorDesign.from_encoded(encoded, HardwareParams(fifo_depth=4))
    bits = design.memory_bits()
    entry_bits = encoded.numerics.weight_bits + encoded.numerics.index_bits
    # every PE is sized like the largest (hw/pe_shape.py)
    assert bits["entries"] == 4 * max(max(2, image.entries.size) for image in encoded.pes) * entry_bits
    # layer 0's gate accumulators are held twice (double buffer)
    cells = [sum(image.cells) + image.cells[0] for image in encoded.pes]
    assert bits["gate_accumulators"] == 4 * 4 * max(max(2, c) for c in cells) * design.acc_bits
    assert bits["gate_accumulator_copy"] == bits["gate_accumulators"]       # the MAC's copy (hw/pe.py)
    assert bits["total"] == sum(v for k, v in bits.items() if k != "total")
