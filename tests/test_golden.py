"""The golden model against an independent per-element reading of docs/numerics.md, and against float."""

import math

import numpy as np
import pytest

from sparselstm.spec.errors import ParameterError
from sparselstm.sw.fixedpoint import (
    Numerics, activation_tables, dequantize_output, narrow, quantize_input, tanh_q,
)
from sparselstm.sw.golden import golden_forward, golden_forward_encoded, golden_trace
from sparselstm.sw.model import random_model
from sparselstm.sw.quantize import accumulator_bounds, quantize_model
from sparselstm.sw.quantized import QuantizedLayer, QuantizedModel
from sparselstm.sw.reference import reference_forward

# ---------------------------------------------------------------------------------------------------------
# An independent, slow, obviously-correct implementation: plain Python ints, one element at a time.


def rs(v: int, k: int) -> int:
    """round_shift by the text of the spec: floor((v + 2**(k-1)) / 2**k), or an exact left shift."""
    return (v + 2 ** (k - 1)) // 2 ** k if k > 0 else v * 2 ** (-k)


def st(v: int, bits: int) -> int:
    return min(max(v, -2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def nr(v: int, from_frac: int, to_frac: int, bits: int, counts=None, key=None) -> int:
    word = st(rs(v, from_frac - to_frac), bits)
    if counts is not None:
        counts[key] += word != rs(v, from_frac - to_frac)
        counts[key + "_words"] += 1
    return word


class SpecActivations:
    def __init__(self, n: Numerics):
        self.n = n
        self.s = n.pre_bits - 1 - n.table_log2
        self.one = 2 ** n.unit_frac
        self.tables = {}
        for name, f in (("sigmoid", lambda z: 1.0 / (1.0 + math.exp(-z))), ("tanh", math.tanh)):
            table = [math.floor(f(k * 2 ** self.s / 2 ** n.pre_frac) * self.one + 0.5)
                     for k in range(2 ** n.table_log2 + 1)]
            diff = [table[k + 1] - table[k] for k in range(2 ** n.table_log2)] + [0]
            self.tables[name] = (table, diff)

    def _lookup(self, name: str, x: int) -> int:
        table, diff = self.tables[name]
        a = abs(x)
        k, r = a // 2 ** self.s, a % 2 ** self.s
        return table[k] + (diff[k] * r + (2 ** (self.s - 1) if self.s > 0 else 0)) // 2 ** self.s

    def sigmoid(self, x: int) -> int:
        v = self._lookup("sigmoid", x)
        return v if x >= 0 else self.one - v

    def tanh(self, x: int) -> int:
        v = self._lookup("tanh", x)
        return v if x >= 0 else -v


def spec_forward(qmodel: QuantizedModel, x_q, starts=None, saturation=None) -> list[list[int]]:
    n = qmodel.numerics
    act = SpecActivations(n)
    frames = len(x_q)
    starts = [t == 0 or (starts is not None and bool(starts[t])) for t in range(frames)]
    signal = [[int(v) for v in row] for row in x_q]
    for layer in qmodel.layers:
        h, i_size, r_size = layer.cell_size, layer.input_size, layer.recurrent_size
        w = layer.w_gates.tolist()
        b = layer.bias.tolist()
        fw = max(layer.fw_x, layer.fw_r)
        facc = layer.facc
        fs = max(n.unit_frac + n.cell_frac, 2 * n.unit_frac)
        counts = {name: 0 for key in ("pre", "cell", "tanh_in", "y") for name in (key, key + "_words")}
        if saturation is not None:
            saturation.append(counts)
        out = []
        for t in range(frames):
            if starts[t]:
                c = [0] * h
                y = [0] * r_size
            x = signal[t]
            acc = []
            for r in range(4 * h):
                total = sum(w[r][col] * x[col] * 2 ** (fw - layer.fw_x) for col in range(i_size))
                total += sum(w[r][i_size + col] * y[col] * 2 ** (fw - layer.fw_r) for col in range(r_size))
                acc.append(total + b[r])
            c_new, m = [], []
            for j in range(h):
                if layer.peephole is not None:
                    p = layer.peephole.tolist()
                    peep_i = rs(p[0][j] * c[j], layer.fp + n.cell_frac - facc)
                    peep_f = rs(p[1][j] * c[j], layer.fp + n.cell_frac - facc)
                else:
                    peep_i = peep_f = 0
                pre_i = nr(acc[j] + peep_i, facc, n.pre_frac, n.pre_bits, counts, "pre")
                pre_f = nr(acc[h + j] + peep_f, facc, n.pre_frac, n.pre_bits, counts, "pre")
                pre_g = nr(acc[2 * h + j], facc, n.pre_frac, n.pre_bits, counts, "pre")
                gi, gf, gg = act.sigmoid(pre_i), act.sigmoid(pre_f), act.tanh(pre_g)
                s = gf * c[j] * 2 ** (fs - n.unit_frac - n.cell_frac) + gi * gg * 2 ** (fs - 2 * n.unit_frac)
                cj = nr(s, fs, n.cell_frac, n.cell_bits, counts, "cell")
                peep_o = 0 if layer.peephole is None else \
                    rs(layer.peephole.tolist()[2][j] * cj, layer.fp + n.cell_frac - facc)
                go = act.sigmoid(nr(acc[3 * h + j] + peep_o, facc, n.pre_frac, n.pre_bits, counts, "pre"))
                tc = act.tanh(nr(cj, n.cell_frac, n.pre_frac, n.pre_bits, counts, "tanh_in"))
                m.append(nr(go * tc, 2 * n.unit_frac, n.unit_frac, n.unit_bits))
                c_new.append(cj)
            c = c_new
            if layer.w_proj is not None:
                wp = layer.w_proj.tolist()
                y = [nr(sum(wp[r][j] * m[j] for j in range(h)), layer.fw_p + n.unit_frac, n.act_frac, n.act_bits,
                        counts, "y") for r in range(r_size)]
            else:
                y = [nr(v, n.unit_frac, n.act_frac, n.act_bits, counts, "y") for v in m]
            out.append(y)
        signal = out
    return signal


# ---------------------------------------------------------------------------------------------------------
# Random quantised models built directly from integers, so that every word range is exercised.


def random_qlayer(rng, n: Numerics, input_size, cells, proj, peephole, fw_x=None, fw_r=None) -> QuantizedLayer:
    recurrent = proj if proj is not None else cells
    # Real weights up to between 2**-2 and 2**5 in magnitude.
    fw_x = int(rng.integers(n.weight_bits - 6, n.weight_bits + 2)) if fw_x is None else fw_x
    fw_r = int(rng.integers(n.weight_bits - 6, n.weight_bits + 2)) if fw_r is None else fw_r
    facc = n.act_frac + max(fw_x, fw_r)
    w_max = 2 ** (n.weight_bits - 1)
    w_gates = rng.integers(-w_max, w_max, (4 * cells, input_size + recurrent))
    w_gates[rng.random(w_gates.shape) < 0.4] = 0                   # sparse, as after pruning
    bias = rng.integers(-2 ** (facc + 1), 2 ** (facc + 1), 4 * cells)
    kw = {}
    if peephole:
        kw.update(peephole=rng.integers(-2 ** (n.peephole_bits - 1), 2 ** (n.peephole_bits - 1), (3, cells)),
                  fp=int(rng.integers(10, 18)))
    if proj is not None:
        kw.update(w_proj=rng.integers(-w_max, w_max, (proj, cells)), fw_p=int(rng.integers(8, 14)))
    return QuantizedLayer(input_size=input_size, cell_size=cells, recurrent_size=recurrent, w_gates=w_gates,
                          fw_x=fw_x, fw_r=fw_r, facc=facc, bias=bias, **kw)


def random_qmodel(rng, n: Numerics, input_size, cells, proj, peephole, layers) -> QuantizedModel:
    out, size = [], input_size
    for _ in range(layers):
        layer = random_qlayer(rng, n, size, cells, proj, peephole)
        out.append(layer)
        size = layer.recurrent_size
    return QuantizedModel(n, tuple(out))


def random_words(rng, n: Numerics, shape, scale=None) -> np.ndarray:
    if scale is None:   # the whole act word range, saturating plenty
        return rng.integers(-2 ** (n.act_bits - 1), 2 ** (n.act_bits - 1), shape)
    return np.clip(np.round(rng.normal(0, scale * 2 ** n.act_frac, shape)),
                   -2 ** (n.act_bits - 1), 2 ** (n.act_bits - 1) - 1).astype(np.int64)


CASES = [  # input, cells, projection, peepholes, layers
    (3, 5, None, False, 1),
    (3, 5, None, True, 1),
    (4, 7, 3, True, 2),
    (2, 6, 5, False, 2),
    (5, 3, None, True, 2),
]


@pytest.mark.parametrize("case", CASES, ids=[f"I{c[0]}H{c[1]}P{c[2]}peep{int(c[3])}L{c[4]}" for c in CASES])
@pytest.mark.parametrize("scale", [None, 1.0], ids=["full-range", "normal"])
def test_golden_equals_the_per_element_spec(case, scale):
    rng = np.random.default_rng([CASES.index(case), scale is None])
    n = Numerics()
    qmodel = random_qmodel(rng, n, *case)
    x_q = random_words(rng, n, (9, case[0]), scale)
    saturation, spec_saturation = [], []
    assert golden_forward(qmodel, x_q, saturation=saturation).tolist() == \
        spec_forward(qmodel, x_q, saturation=spec_saturation)
    assert saturation == spec_saturation
    if scale is None:   # full-range inputs do saturate: the counting is exercised
        assert sum(layer["pre"] + layer["y"] for layer in saturation) > 0


@pytest.mark.parametrize("n", [
    Numerics(weight_bits=8, act_bits=12, act_frac=7, unit_bits=12, unit_frac=10, cell_bits=16, cell_frac=12,
             pre_bits=12, pre_frac=8, peephole_bits=10, table_log2=7),
    Numerics(unit_frac=12, cell_frac=9, pre_frac=12, table_log2=15),      # S = 0, cell_frac < unit_frac
    Numerics(cell_frac=18, cell_bits=24, act_frac=4),
    Numerics(act_frac=2, pre_frac=13),                                    # FACC < pre_frac: left shifts
], ids=["narrow", "no-interp", "wide-cell", "coarse-act"])
def test_golden_equals_the_spec_for_other_numerics(n):
    rng = np.random.default_rng(7)
    qmodel = random_qmodel(rng, n, 4, 6, 3, True, 2)
    for scale in (2.0, None):
        x_q = random_words(rng, n, (8, 4), scale)
        saturation, spec_saturation = [], []
        assert golden_forward(qmodel, x_q, saturation=saturation).tolist() == \
            spec_forward(qmodel, x_q, saturation=spec_saturation)
        assert saturation == spec_saturation


def test_saturation_count_for_left_and_right_shifts():
    from sparselstm.sw.golden import _saturated

    values = np.arange(-5000, 5000, 7)
    for from_frac, to_frac, bits in [(11, 13, 12), (11, 11, 12), (14, 9, 8), (3, 20, 16), (0, 15, 16)]:
        exact = [rs(int(v), from_frac - to_frac) for v in values]
        expected = sum(word != st(word, bits) for word in exact)
        assert _saturated(values, from_frac, to_frac, bits) == expected
        assert _saturated(values.astype(object), from_frac, to_frac, bits) == expected


@pytest.mark.parametrize("fw_x, fw_r, path", [(12, 12, "float64"), (0, 28, "int64"), (0, 40, "python ints")])
def test_golden_is_exact_on_every_matrix_product_path(fw_x, fw_r, path):
    # A large gap between the input and recurrent scales shifts the input products far left, pushing the
    # accumulator past 2**53 (int64 products) and past 2**62 (Python ints).
    rng = np.random.default_rng(11)
    n = Numerics()
    layer = random_qlayer(rng, n, 6, 5, None, True, fw_x=fw_x, fw_r=fw_r)
    gate_bound, _ = accumulator_bounds(layer, n)
    expected_path = "float64" if gate_bound < 2 ** 53 else "int64" if gate_bound < 2 ** 62 else "python ints"
    assert expected_path == path
    qmodel = QuantizedModel(n, (layer,))
    x_q = random_words(rng, n, (6, 6), 0.01)
    assert golden_forward(qmodel, x_q).tolist() == spec_forward(qmodel, x_q)
    trace = golden_trace(qmodel, x_q)
    assert all(frame[0]["acc"].shape == (20,) for frame in trace)


def test_trace_holds_the_forward_words_and_is_self_consistent():
    rng = np.random.default_rng(5)
    n = Numerics()
    qmodel = random_qmodel(rng, n, 4, 7, 3, True, 2)
    x_q = random_words(rng, n, (10, 4), 1.0)
    y = golden_forward(qmodel, x_q)
    trace = golden_trace(qmodel, x_q)
    assert len(trace) == 10 and all(len(frame) == 2 for frame in trace)
    tables = activation_tables(n)
    for t, frame in enumerate(trace):
        assert np.array_equal(frame[-1]["y"], y[t])
        assert frame[1]["y"].shape == (3,)
        layer0 = frame[0]
        assert set(layer0) == {"acc", "pre_i", "pre_f", "pre_g", "pre_o", "i", "f", "g", "o", "c", "tc", "m",
                               "proj_acc", "y"}
        assert layer0["acc"].shape == (28,) and layer0["c"].shape == (7,) and layer0["proj_acc"].shape == (3,)
        assert all(v.dtype == np.int64 for v in layer0.values() if v is not None)
        assert np.all(layer0["i"] >= 0) and np.all(layer0["i"] <= n.one)
        # g is tanh_q of pre_g, and pre_g is acc narrowed (no peephole on g).
        pre_g = narrow(layer0["acc"][14:21], qmodel.layers[0].facc, n.pre_frac, n.pre_bits)
        assert np.array_equal(pre_g, layer0["pre_g"])
        assert np.array_equal(tanh_q(pre_g, tables, n), layer0["g"])
    with pytest.raises(ParameterError, match="one sequence"):
        golden_trace(qmodel, x_q[np.newaxis])


# ---------------------------------------------------------------------------------------------------------
# Batches and sequence boundaries


def test_batch_equals_separate_runs_and_starts_reset_the_state():
    rng = np.random.default_rng(8)
    n = Numerics()
    qmodel = random_qmodel(rng, n, 3, 5, 2, True, 2)
    x_q = random_words(rng, n, (3, 12, 3), 1.0)
    batch = golden_forward(qmodel, x_q)
    assert batch.shape == (3, 12, 2) and batch.dtype == np.int64
    for b in range(3):
        assert np.array_equal(batch[b], golden_forward(qmodel, x_q[b]))
    # Stream 0 holds two utterances back to back (frames 0-4, 5-11): equal to running them separately.
    starts = np.zeros((3, 12), dtype=bool)
    starts[0, 5] = True
    starts[2, [3, 7]] = True
    joined = golden_forward(qmodel, x_q, sequence_starts=starts)
    assert np.array_equal(joined[0, :5], golden_forward(qmodel, x_q[0, :5]))
    assert np.array_equal(joined[0, 5:], golden_forward(qmodel, x_q[0, 5:]))
    assert np.array_equal(joined[1], batch[1])
    assert np.array_equal(joined[2, 7:], golden_forward(qmodel, x_q[2, 7:]))
    assert not np.array_equal(joined[0, 5:], batch[0, 5:])     # the reset did change something
    assert golden_forward(qmodel, x_q[2], sequence_starts=starts[2]).tolist() == \
        spec_forward(qmodel, x_q[2], starts[2])


def test_input_validation():
    qmodel = quantize_model(random_model(3, 4, seed=0))
    with pytest.raises(ParameterError, match="integer"):
        golden_forward(qmodel, np.zeros((2, 3)))
    with pytest.raises(ParameterError, match=r"\(T, 3\)"):
        golden_forward(qmodel, np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ParameterError, match="outside"):
        golden_forward(qmodel, np.full((2, 3), 40000))
    with pytest.raises(ParameterError, match="sequence_starts"):
        golden_forward(qmodel, np.zeros((2, 3), dtype=np.int64), sequence_starts=[True])


# ---------------------------------------------------------------------------------------------------------
# Saturation


def test_huge_bias_saturates_pre_activations_and_gates():
    n = Numerics()
    layer = random_qlayer(np.random.default_rng(1), n, 2, 4, None, False)
    facc = layer.facc
    huge = 2 ** (facc + 20)                  # 2**20 in real units: far beyond the pre word's 16
    bias = np.array([huge] * 4 + [-huge] * 4 + [huge] * 4 + [huge] * 4)     # i open, f shut, g = 1, o open
    layer = QuantizedLayer(input_size=2, cell_size=4, recurrent_size=4, w_gates=layer.w_gates, fw_x=layer.fw_x,
                           fw_r=layer.fw_r, facc=facc, bias=bias)
    qmodel = QuantizedModel(n, (layer,))
    trace = golden_trace(qmodel, np.zeros((3, 2), dtype=np.int64))
    top, bottom = 2 ** (n.pre_bits - 1) - 1, -2 ** (n.pre_bits - 1)
    for frame in trace:
        words = frame[0]
        assert np.all(words["pre_i"] == top) and np.all(words["pre_f"] == bottom)
        assert np.all(words["i"] == n.one) and np.all(words["f"] == 0) and np.all(words["g"] == n.one)
    # f = 0, i = g = 1: c is 1.0 each frame; m = o * tanh(1), about 0.7616.
    assert np.all(trace[-1][0]["c"] == 2 ** n.cell_frac)
    assert abs(trace[-1][0]["m"][0] / n.one - math.tanh(1.0)) < 2e-4


def test_cell_saturates_at_the_cell_word_limits():
    # f = 1 and i * g = 1 every frame: c grows by 1.0 per frame until the cell word (range [-32, 32)) is full.
    n = Numerics()
    huge = 2 ** (n.act_frac + 12 + 20)
    bias = np.array([huge] * 4 + [huge] * 4 + [-huge] * 4 + [huge] * 4)     # g = -1: c runs negative
    layer = QuantizedLayer(input_size=1, cell_size=4, recurrent_size=4, w_gates=np.zeros((16, 5), dtype=np.int64),
                           fw_x=12, fw_r=12, facc=n.act_frac + 12, bias=bias)
    qmodel = QuantizedModel(n, (layer,))
    x_q = np.zeros((40, 1), dtype=np.int64)
    trace = golden_trace(qmodel, x_q)
    cells = [int(frame[0]["c"][0]) for frame in trace]
    # Frame k holds c = -(k+1): -32 is the lowest cell word (frames 32.. saturate), -16 the lowest pre word
    # (frames 16.. saturate on the way into tanh); the huge bias saturates every pre-activation.
    saturation = []
    golden_forward(qmodel, x_q, saturation=saturation)
    assert saturation == [dict(pre=640, pre_words=640, cell=32, cell_words=160, tanh_in=96, tanh_in_words=160,
                               y=0, y_words=160)]
    assert cells[:3] == [-2 ** 14, -2 * 2 ** 14, -3 * 2 ** 14]
    assert cells[-1] == -2 ** (n.cell_bits - 1)                # saturated at -32.0 exactly
    assert min(cells) == -2 ** (n.cell_bits - 1)
    # tanh input saturates at the pre word (-16.0); the output is -tanh(16) ~ -1 in unit words.
    assert trace[-1][0]["tc"][0] == -activation_tables(n)["tanh_T"][-1]
    # Positive direction: g = +1 saturates at the top of the cell word.
    layer_up = QuantizedLayer(input_size=1, cell_size=4, recurrent_size=4, w_gates=layer.w_gates, fw_x=12,
                              fw_r=12, facc=layer.facc, bias=np.abs(bias))
    up = golden_trace(QuantizedModel(n, (layer_up,)), np.zeros((40, 1), dtype=np.int64))
    assert int(up[-1][0]["c"][0]) == 2 ** (n.cell_bits - 1) - 1


def test_inputs_beyond_the_act_range_saturate_like_the_largest_word():
    n = Numerics()
    qmodel = quantize_model(random_model(3, 5, 2, seed=4, scale=0.5), n)
    x = np.array([[40.0, -40.0, 0.5], [15.99951171875, -16.0, 0.5]])     # row 1 = row 0 after saturation
    x_q, saturated = quantize_input(x, n)
    assert saturated == 2
    assert np.array_equal(x_q[0], x_q[1])
    y = golden_forward(qmodel, x_q[:, np.newaxis, :])                  # two separate one-frame sequences
    assert np.array_equal(y[0], y[1])


# ---------------------------------------------------------------------------------------------------------
# Against the float reference


def _float_error(weight_bits: int, num_layers: int, proj, seed: int) -> float:
    model = random_model(40, 96, proj, num_layers=num_layers, peephole=True, seed=seed, scale=0.25)
    n = Numerics(weight_bits=weight_bits)
    qmodel = quantize_model(model, n)
    x = np.random.default_rng(seed).normal(size=(2, 60, 40))
    x_q, saturated = quantize_input(x, n)
    assert saturated == 0
    expected = reference_forward(model, x)
    assert np.abs(expected).max() > 0.5                               # outputs are not trivially small
    return float(np.abs(dequantize_output(golden_forward(qmodel, x_q), n) - expected).max())


def test_golden_tracks_the_float_reference():
    # Trained-like scale (pre-activations of order 1); inputs ~ N(0, 1); 60 frames. Measured max |error|:
    # 12-bit weights: 1 layer 1.43e-3, 2 layers with projection 1.04e-3; 8-bit: 1.59e-2 and 8.28e-3.
    # (For scale, outputs reach about 1.0; one act LSB is 4.9e-4.)
    assert _float_error(12, 1, None, seed=3) < 1.8e-3
    assert _float_error(12, 2, 32, seed=4) < 1.4e-3
    assert 5e-3 < _float_error(8, 1, None, seed=3) < 2e-2
    assert 5e-3 < _float_error(8, 2, 32, seed=4) < 1.1e-2


# ---------------------------------------------------------------------------------------------------------
# Through the encoder


def test_golden_forward_encoded_equals_golden_forward(small_model, tmp_path):
    from sparselstm.sw import format as encoder
    qmodel = quantize_model(small_model)
    encoded = encoder.encode(qmodel, 3)
    x_q = random_words(np.random.default_rng(2), qmodel.numerics, (2, 7, 5), 1.0)
    expected = golden_forward(qmodel, x_q)
    assert np.array_equal(golden_forward_encoded(encoded, x_q), expected)
    encoder.write_encoded(encoded, tmp_path / "enc")
    assert np.array_equal(golden_forward_encoded(encoder.load_encoded(tmp_path / "enc"), x_q), expected)


# ---------------------------------------------------------------------------------------------------------
# The `sparselstm golden` command


def test_golden_command_float_and_raw(small_model, tmp_path, capsys):
    from sparselstm.sw import format as encoder
    from sparselstm.cli import main

    qmodel = quantize_model(small_model)
    encoder.write_encoded(encoder.encode(qmodel, 2), tmp_path / "enc")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 9, 5))
    x[1, 4, 2] = 99.0                                        # beyond [-16, 16): saturates, and is reported
    w_input = small_model.layers[0].w_input                  # drive the strongest gate row past +16:
    x[0, 2:5] = 15.9 * np.sign(w_input[np.argmax(np.abs(w_input).sum(axis=1))])   # a saturated pre-activation
    np.save(tmp_path / "x.npy", x)
    x_q, saturated = quantize_input(x, qmodel.numerics)
    assert saturated == 1
    expected = golden_forward(qmodel, x_q)

    assert main(["golden", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    captured = capsys.readouterr()
    assert "1 of 90 input value(s) saturated" in captured.err
    saturation = []
    golden_forward(qmodel, x_q, saturation=saturation)
    assert saturation[0]["pre"] > 0
    for k, counts in enumerate(saturation):       # a note for every layer where something saturated
        assert (f"layer {k}: saturated" in captured.err) == any(counts[key] for key in ("pre", "cell", "tanh_in", "y"))
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float64 and np.array_equal(y, dequantize_output(expected, qmodel.numerics))

    assert main(["golden", str(tmp_path / "enc"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "r.npy"),
                 "--raw"]) == 0
    raw = np.load(tmp_path / "r.npy")
    assert raw.dtype == np.int64 and np.array_equal(raw, expected)

    # With --raw an integer input is taken as act words as they are.
    np.save(tmp_path / "xq.npy", x_q[0].astype(np.int32))
    assert main(["golden", str(tmp_path / "enc"), "-i", str(tmp_path / "xq.npy"), "-o", str(tmp_path / "r0.npy"),
                 "--raw"]) == 0
    assert np.array_equal(np.load(tmp_path / "r0.npy"), expected[0])

    starts = np.zeros(9, dtype=bool)
    starts[5] = True
    np.save(tmp_path / "s.npy", starts)
    assert main(["golden", str(tmp_path / "enc"), "-i", str(tmp_path / "xq.npy"), "-o", str(tmp_path / "r1.npy"),
                 "--raw", "--starts", str(tmp_path / "s.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "r1.npy")[5:], golden_forward(qmodel, x_q[0, 5:]))


def test_golden_command_errors_name_the_file(small_model, tmp_path, capsys):
    from sparselstm.sw import format as encoder
    from sparselstm.cli import main

    encoder.write_encoded(encoder.encode(quantize_model(small_model), 2), tmp_path / "enc")
    np.save(tmp_path / "wide.npy", np.zeros((4, 6)))
    assert main(["golden", str(tmp_path / "enc"), "-i", str(tmp_path / "wide.npy"), "-o", str(tmp_path / "y.npy")]) == 1
    err = capsys.readouterr().err
    assert "wide.npy" in err and "(T, 5)" in err and len(err.strip().splitlines()) == 1
    np.save(tmp_path / "big.npy", np.full((4, 5), 40000))
    assert main(["golden", str(tmp_path / "enc"), "-i", str(tmp_path / "big.npy"), "-o", str(tmp_path / "y.npy"),
                 "--raw"]) == 1
    assert "big.npy" in capsys.readouterr().err
    assert main(["golden", str(tmp_path / "enc"), "-i", str(tmp_path / "none.npy"), "-o", str(tmp_path / "y.npy")]) == 1
    assert "none.npy: input file not found" in capsys.readouterr().err


def test_golden_rejects_an_inconsistent_accumulator_precision():
    n = Numerics()
    layer = random_qlayer(np.random.default_rng(0), n, 2, 3, None, False, fw_x=10, fw_r=12)
    bad = QuantizedLayer(input_size=2, cell_size=3, recurrent_size=3, w_gates=layer.w_gates, fw_x=10, fw_r=12,
                         facc=n.act_frac + 10, bias=layer.bias)
    with pytest.raises(ParameterError, match="facc = 21.*23"):
        golden_forward(QuantizedModel(n, (bad,)), np.zeros((2, 2), dtype=np.int64))


def test_an_empty_batch_gives_an_empty_result_and_no_frames_is_an_error(small_model):
    """B = 0 sequences have no outputs: (0, T, out), as reference_forward gives. T = 0 frames has no
    frame 0 to start the sequences at: an error naming the shape."""
    from sparselstm.sw import format as encoder

    qmodel = quantize_model(small_model)
    empty = golden_forward(qmodel, np.zeros((0, 4, small_model.input_size), dtype=np.int64))
    assert empty.shape == (0, 4, small_model.output_size) and empty.dtype == np.int64
    assert reference_forward(small_model, np.zeros((0, 4, small_model.input_size))).shape == empty.shape
    encoded = encoder.encode(qmodel, 2)
    assert golden_forward_encoded(encoded, np.zeros((0, 4, small_model.input_size), dtype=np.int64)).shape == \
        empty.shape
    with pytest.raises(ParameterError, match=r"T >= 1, got \(2, 0, 5\)"):
        golden_forward(qmodel, np.zeros((2, 0, small_model.input_size), dtype=np.int64))
