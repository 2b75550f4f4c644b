"""The bit-exact golden model: docs/numerics.md's forward pass in integers, vectorised over a batch.

The hardware is checked against this word for word. Every narrowing step is `narrow` (sat of align) from
fixedpoint.py; the sums of products are exact because the accumulators are bounded (quantize.py):

- bound < 2**53: the products run as float64 matrix products (BLAS), exact because every partial sum is
  an integer below 2**53 whatever order BLAS adds in;
- bound < 2**62: int64 matrix products;
- otherwise (extreme scale differences between W_x and W_r): NumPy object arrays of Python ints.

Delta mode (docs/numerics.md, "Delta mode"; `delta=` one DeltaThresholds per layer) multiplies the deltas of
the sent columns into accumulators that persist from frame to frame; with every threshold 0 its outputs are
those of the normal mode, bit for bit.
"""

from __future__ import annotations

import numpy as np

from ..spec.encoded import check_delta_thresholds
from ..spec.errors import ParameterError
from .delta import DeltaColumns, new_delta_counts
from .format import decode
from .fixedpoint import Numerics, activation_tables, align, narrow, sigmoid_q, tanh_q, word_range
from .quantize import accumulator_bounds
from .quantized import QuantizedLayer, QuantizedModel

_FLOAT_EXACT = 1 << 53
_INT64_SAFE = 1 << 62


def golden_forward(qmodel: QuantizedModel, x_q, tables=None, sequence_starts=None,
                   saturation: list | None = None, delta=None, delta_counts: list | None = None) -> np.ndarray:
    """Run the fixed-point forward pass over input words x_q.

    x_q: integer (T, I) one sequence, or (B, T, I) a batch of B independent streams, act words; T >= 1
        (frame 0 starts the sequences), B = 0 gives an empty (0, T, out) result.
    tables: the sigmoid/tanh tables (default activation_tables(qmodel.numerics)); pass an encoded model's
        tables to run exactly what the hardware reads.
    sequence_starts: optional bool (T,) or (B, T): where True every layer's state is cleared before that
        frame; frame 0 always starts a sequence.
    saturation: optional empty list; if given, one dict per layer is appended counting the words that
        saturated at each narrowing step: "pre" (the four pre-activations), "cell" (c_t), "tanh_in" (c_t
        to the pre word for tanh), "y" (the layer output), each with its total as "<key>_words".
    delta: optional, one DeltaThresholds per layer: run delta mode (docs/numerics.md, "Delta mode").
    delta_counts: optional empty list, only with `delta`; one dict per layer is appended (delta.new_delta_counts):
        per side x, y, m the columns sent, the column-frames, the MACs of the sent columns and of all columns.
    Returns int64 (T, out) or (B, T, out) act words.
    """
    words, single, starts, tables = _prepare(qmodel, x_q, tables, sequence_starts)
    thresholds = _thresholds(qmodel, delta, delta_counts)
    if words.shape[0] == 0:
        # No sequences, no outputs (as reference_forward): an empty batch is a valid batch.
        if saturation is not None:
            saturation.extend(_new_counts() for _ in qmodel.layers)
        if delta_counts is not None:
            delta_counts.extend(new_delta_counts() for _ in qmodel.layers)
        return np.zeros((0, words.shape[1], qmodel.output_size), dtype=np.int64)
    signal = words
    for layer, layer_thresholds in zip(qmodel.layers, thresholds):
        counts = None if saturation is None else _new_counts()
        sent = None if delta_counts is None else new_delta_counts()
        signal = _layer_forward(layer, qmodel.numerics, tables, signal, starts, counts=counts,
                                thresholds=layer_thresholds, delta_counts=sent)
        if saturation is not None:
            saturation.append(counts)
        if delta_counts is not None:
            delta_counts.append(sent)
    return signal[0] if single else signal


def golden_trace(qmodel: QuantizedModel, x_q, tables=None, sequence_starts=None, delta=None) -> list[list[dict]]:
    """Every intermediate word of one sequence x_q (T, I): trace[frame][layer] is a dict of int64 arrays
    acc (4H, gate products + bias, before peepholes), pre_i, pre_f, pre_g, pre_o, i, f, g, o, c, tc, m (H,),
    proj_acc (P, before narrowing) or None, y (R,). For hardware unit tests. In delta mode (`delta` as in
    golden_forward) also last_x (I,), last_y (R,), last_m (H,) or None: the last values sent after the frame."""
    if np.ndim(x_q) != 2:
        raise ParameterError(f"golden_trace: expected one sequence of shape (T, {qmodel.input_size}), "
                             f"got shape {np.shape(x_q)}")
    words, _, starts, tables = _prepare(qmodel, x_q, tables, sequence_starts)
    thresholds = _thresholds(qmodel, delta, None)
    per_layer = []
    signal = words
    for layer, layer_thresholds in zip(qmodel.layers, thresholds):
        record: list[dict] = []
        signal = _layer_forward(layer, qmodel.numerics, tables, signal, starts, record, thresholds=layer_thresholds)
        per_layer.append(record)
    return [list(frame) for frame in zip(*per_layer)]


_FROM_MODEL = object()   # golden_forward_encoded's default: the encoded model's own thresholds


def golden_forward_encoded(encoded, x_q, sequence_starts=None, saturation: list | None = None,
                           delta=_FROM_MODEL, delta_counts: list | None = None) -> np.ndarray:
    """golden_forward of an encoded model as the hardware sees it: its decoded words and its own tables; in
    delta mode with the encoded model's thresholds unless `delta` is given (None: delta mode off)."""
    if delta is _FROM_MODEL:
        delta = encoded.delta_thresholds
    # the cells as the PEs hold them: the same outputs, and per-column delta counts in the hardware's columns
    return golden_forward(decode(encoded, hardware_order=True), x_q, tables=encoded.tables,
                          sequence_starts=sequence_starts, saturation=saturation, delta=delta,
                          delta_counts=delta_counts)


# ----------------------------------------------------------------------------------------------------------


def _prepare(qmodel, x_q, tables, sequence_starts):
    if not isinstance(qmodel, QuantizedModel):
        raise TypeError(f"qmodel: expected a QuantizedModel, got {type(qmodel).__name__}")
    if not isinstance(qmodel.numerics, Numerics):
        raise TypeError(f"qmodel.numerics: expected a Numerics, got {type(qmodel.numerics).__name__}")
    numerics = qmodel.numerics
    for k, layer in enumerate(qmodel.layers):
        # The products W * x * 2**(FW - fw) land at act_frac + FW fractional bits; the bias must be there too.
        if layer.facc != numerics.act_frac + layer.fw:
            raise ParameterError(f"layer {k}: facc = {layer.facc}, but act_frac + max(fw_x, fw_r) = "
                                 f"{numerics.act_frac + layer.fw} (docs/numerics.md, 'One layer, one frame')")
    size = qmodel.input_size
    array = np.asarray(x_q)
    if array.dtype.kind not in "iu":
        raise ParameterError(f"input words: expected an integer array (quantise floats with quantize_input), "
                             f"got dtype {array.dtype}")
    if array.ndim not in (2, 3) or array.shape[-1] != size or array.shape[-2] == 0:
        raise ParameterError(f"input words: expected shape (T, {size}) or (B, T, {size}) with T >= 1, "
                             f"got {array.shape}")
    low, high = word_range(numerics.act_bits)
    if array.size and (int(array.min()) < low or int(array.max()) > high):
        raise ParameterError(f"input words: values outside the {numerics.act_bits}-bit act word [{low}, {high}]")
    single = array.ndim == 2
    words = array.astype(np.int64)
    if single:
        words = words[np.newaxis]
    batch, frames, _ = words.shape
    starts = np.zeros((batch, frames), dtype=bool)
    if sequence_starts is not None:
        given = np.asarray(sequence_starts)
        expected = (frames,) if single else (batch, frames)
        if given.shape != expected:
            raise ParameterError(f"sequence_starts: expected shape {expected} (one flag per frame), got {given.shape}")
        if given.dtype.kind not in "biu" or not np.all((given == 0) | (given == 1)):
            raise ParameterError(f"sequence_starts: expected booleans (or 0/1), got dtype {given.dtype}")
        starts[:] = given.astype(bool)
    starts[:, 0] = True
    if tables is None:
        tables = activation_tables(numerics)
    return words, single, starts, tables


def _thresholds(qmodel: QuantizedModel, delta, delta_counts) -> tuple:
    """One DeltaThresholds or None per layer."""
    if delta is None:
        if delta_counts is not None:
            raise ParameterError("delta_counts: columns are only counted in delta mode (give delta=...)")
        return (None,) * len(qmodel.layers)
    return check_delta_thresholds(delta, qmodel.numerics, (layer.w_proj is not None for layer in qmodel.layers))


class _ExactProduct:
    """v @ weights_t in exact integers, given that every partial sum is bounded by `bound` in magnitude."""

    def __init__(self, weights_t: np.ndarray, bound: int):
        if bound < _FLOAT_EXACT:
            self.dtype = np.float64
        elif bound < _INT64_SAFE:
            self.dtype = np.int64
        else:
            self.dtype = object
        self.weights_t = weights_t.astype(self.dtype)

    def __call__(self, v: np.ndarray) -> np.ndarray:
        product = v.astype(self.dtype) @ self.weights_t
        return product.astype(np.int64) if self.dtype is np.float64 else product


def _words(v) -> np.ndarray:
    """A narrowed value (at most 32 bits) as int64, whatever dtype it was computed in."""
    return np.asarray(v).astype(np.int64)


_SATURATION_KEYS = ("pre", "cell", "tanh_in", "y")


def _new_counts() -> dict[str, int]:
    return {name: 0 for key in _SATURATION_KEYS for name in (key, f"{key}_words")}


def _saturated(v: np.ndarray, from_frac: int, to_frac: int, bits: int) -> int:
    """How many words of v saturate in narrow(v, from_frac, to_frac, bits) (decided without overflow)."""
    low, high = word_range(bits)
    shift = to_frac - from_frac
    if shift <= 0:
        aligned = align(v, from_frac, to_frac)
        return int(np.count_nonzero((aligned > high) | (aligned < low)))
    # v * 2**shift > high  <=>  v > high >> shift;   v * 2**shift < low  <=>  v < -((-low) >> shift)
    return int(np.count_nonzero((v > (high >> shift)) | (v < -((-low) >> shift))))


def _layer_forward(layer: QuantizedLayer, n: Numerics, tables, x: np.ndarray, starts: np.ndarray,
                   record: list | None = None, counts: dict | None = None, thresholds=None,
                   delta_counts: dict | None = None) -> np.ndarray:
    batch, frames, _ = x.shape
    h = layer.cell_size
    gate_bound, proj_bound = accumulator_bounds(layer, n)
    delta = thresholds is not None
    if delta:
        # A delta is one bit wider than a word, so its products need twice the bound; the persistent sums
        # do not (docs/numerics.md, "Delta mode"), but acc plus two such products, added, may pass it.
        gate_bound, proj_bound = 2 * gate_bound, None if proj_bound is None else 2 * proj_bound
    peephole_product = 0 if layer.peephole is None else \
        int(np.max(np.abs(layer.peephole))) << (n.cell_bits - 1)
    wide = max(gate_bound * (4 if delta else 1), proj_bound or 0, peephole_product) >= _INT64_SAFE
    # Element-wise work in int64 unless some intermediate could pass 2**62 (then exact Python ints).
    dtype = object if wide else np.int64

    # The products' alignment shifts folded into the weights (exact; they fit whenever the bound does).
    w_input = layer.w_input.astype(dtype) * (1 << layer.shift_x)
    w_recurrent = layer.w_recurrent.astype(dtype) * (1 << layer.shift_r)
    bias = layer.bias.astype(dtype)
    if delta:
        x_columns = DeltaColumns(batch, np.count_nonzero(layer.w_input, axis=0), thresholds.x)
        y_columns = DeltaColumns(batch, np.count_nonzero(layer.w_recurrent, axis=0), thresholds.y)
        m_columns = None if layer.w_proj is None else \
            DeltaColumns(batch, np.count_nonzero(layer.w_proj, axis=0), thresholds.m)
        x_sent, x_last = np.empty_like(x), np.empty_like(x)
        for t in range(frames):   # the input side's deltas depend on x alone
            x_columns.reset(starts[:, t])
            x_sent[:, t] = x_columns.deltas(x[:, t])
            x_last[:, t] = x_columns.last_sent
        x, acc_state, proj_state = x_sent, 0, 0
    # Layer-major: the input-side products (or deltas) of every frame in one matrix product.
    input_part = _ExactProduct(w_input.T, gate_bound)(x.reshape(batch * frames, -1)).reshape(batch, frames, 4 * h)
    recurrent_product = _ExactProduct(w_recurrent.T, gate_bound)
    proj_product = None if layer.w_proj is None else _ExactProduct(layer.w_proj.T, proj_bound)
    if layer.peephole is not None:
        peep_i, peep_f, peep_o = (layer.peephole[k].astype(dtype) for k in range(3))
        peep_frac = layer.fp + n.cell_frac
    unit_cell_shift = n.cell_sum_frac - n.unit_frac - n.cell_frac
    unit_unit_shift = n.cell_sum_frac - 2 * n.unit_frac

    def narrow_counted(v, from_frac: int, to_frac: int, bits: int, key: str) -> np.ndarray:
        if counts is not None:
            counts[key] += _saturated(v, from_frac, to_frac, bits)
            counts[f"{key}_words"] += v.size
        return _words(narrow(v, from_frac, to_frac, bits))

    c = np.zeros((batch, h), dtype=np.int64)
    y = np.zeros((batch, layer.recurrent_size), dtype=np.int64)
    out = np.empty((batch, frames, layer.recurrent_size), dtype=np.int64)
    for t in range(frames):
        keep = ~starts[:, t, np.newaxis]
        c = np.where(keep, c, 0)
        y = np.where(keep, y, 0)
        if delta:
            y_columns.reset(starts[:, t])
            acc_state = np.where(keep, acc_state, bias) + input_part[:, t] + recurrent_product(y_columns.deltas(y))
            acc = acc_state
        else:
            acc = input_part[:, t] + recurrent_product(y) + bias
        sums = [acc[:, k * h:(k + 1) * h] for k in range(4)]          # i, f, g, o
        if layer.peephole is not None:
            sums[0] = sums[0] + align(peep_i * c.astype(dtype), peep_frac, layer.facc)
            sums[1] = sums[1] + align(peep_f * c.astype(dtype), peep_frac, layer.facc)
        pre_i, pre_f, pre_g = (narrow_counted(s, layer.facc, n.pre_frac, n.pre_bits, "pre") for s in sums[:3])
        i = sigmoid_q(pre_i, tables, n)
        f = sigmoid_q(pre_f, tables, n)
        g = tanh_q(pre_g, tables, n)
        # One rounding for the whole cell sum (FS fractional bits), not one per product.
        cell_sum = ((f * c) << unit_cell_shift) + ((i * g) << unit_unit_shift)
        c = narrow_counted(cell_sum, n.cell_sum_frac, n.cell_frac, n.cell_bits, "cell")
        if layer.peephole is not None:
            sums[3] = sums[3] + align(peep_o * c.astype(dtype), peep_frac, layer.facc)   # o peeps at the new c
        pre_o = narrow_counted(sums[3], layer.facc, n.pre_frac, n.pre_bits, "pre")
        o = sigmoid_q(pre_o, tables, n)
        tc = tanh_q(narrow_counted(c, n.cell_frac, n.pre_frac, n.pre_bits, "tanh_in"), tables, n)
        # |o * tc| <= ONE * ONE, so m never saturates (unit_frac <= unit_bits - 2).
        m = _words(narrow(o * tc, 2 * n.unit_frac, n.unit_frac, n.unit_bits))
        proj_acc = None
        if proj_product is not None:
            if delta:
                m_columns.reset(starts[:, t])
                proj_state = np.where(keep, proj_state, 0) + proj_product(m_columns.deltas(m))
                proj_acc = proj_state
            else:
                proj_acc = proj_product(m)
            y = narrow_counted(proj_acc, layer.fw_p + n.unit_frac, n.act_frac, n.act_bits, "y")
        else:
            y = narrow_counted(m, n.unit_frac, n.act_frac, n.act_bits, "y")
        out[:, t] = y
        if record is not None:
            record.append(dict(
                acc=_exact(acc[0]), pre_i=pre_i[0], pre_f=pre_f[0], pre_g=pre_g[0], pre_o=pre_o[0],
                i=i[0], f=f[0], g=g[0], o=o[0], c=c[0], tc=tc[0], m=m[0],
                proj_acc=None if proj_acc is None else _exact(proj_acc[0]), y=y[0],
            ))
            if delta:
                record[-1].update(last_x=x_last[0, t], last_y=y_columns.last_sent[0].copy(),
                                  last_m=None if m_columns is None else m_columns.last_sent[0].copy())
    if delta_counts is not None:
        for side, columns in (("x", x_columns), ("y", y_columns), ("m", m_columns)):
            if columns is not None:
                columns.add_counts(delta_counts, side)
    return out


def _exact(v: np.ndarray) -> np.ndarray:
    """Accumulator values for a trace: int64 when they fit, else the object array of Python ints."""
    if v.dtype == object and any(abs(int(e)) >= _INT64_SAFE for e in v):
        return v
    return v.astype(np.int64)
