"""The float64 reference forward pass of a stacked LSTMP (Sak et al. 2014, with peepholes).

This is the "what the model means" baseline: the fixed-point golden model (golden.py) and the hardware are
judged by how far they drift from it, and it is itself checked against PyTorch and onnxruntime in the tests.

Per layer and frame (gate order i, f, g, o; `*` is element-wise):

    i_t = sigmoid(W_ix x_t + W_ir y_{t-1} + p_i * c_{t-1} + b_i)
    f_t = sigmoid(W_fx x_t + W_fr y_{t-1} + p_f * c_{t-1} + b_f)
    g_t = tanh   (W_gx x_t + W_gr y_{t-1} + b_g)
    c_t = f_t * c_{t-1} + i_t * g_t
    o_t = sigmoid(W_ox x_t + W_or y_{t-1} + p_o * c_t + b_o)      # o peeps at the *new* cell
    m_t = o_t * tanh(c_t)
    y_t = W_p m_t   (or y_t = m_t without a projection)

Delta mode (docs/numerics.md, "Delta mode"; `delta=` real thresholds) multiplies, per matrix, the last
values sent instead of x_t, y_{t-1} and m_t: a column's value is sent when it moved by more than the
threshold since it was last sent. Threshold 0 gives the normal outputs exactly.
"""

from __future__ import annotations

import numpy as np

from ..spec.errors import ParameterError
from .delta import DeltaColumns, new_delta_counts, real_thresholds
from .model import LSTMPLayer, LSTMPModel


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings for large |x| (exp only ever sees -|x|)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _check_input(model: LSTMPModel, x) -> tuple[np.ndarray, bool]:
    """x as float64 (B, T, I) and whether the caller gave a single (T, I) sequence."""
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ParameterError(f"input: expected a float array of shape (T, {model.input_size}) or "
                             f"(B, T, {model.input_size}), got something that is not numeric ({error})") from None
    if array.ndim not in (2, 3):
        raise ParameterError(f"input: expected shape (T, {model.input_size}) or (B, T, {model.input_size}), "
                             f"got {array.ndim} dimension(s) {array.shape}")
    if array.shape[-1] != model.input_size:
        raise ParameterError(f"input: last dimension is {array.shape[-1]}, the model's input size is "
                             f"{model.input_size}")
    if array.shape[-2] == 0:
        raise ParameterError(f"input: expected at least one frame, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ParameterError(f"input: {bad} non-finite value(s) (NaN or Inf)")
    single = array.ndim == 2
    return (array[np.newaxis] if single else array), single


def _check_starts(sequence_starts, batch: int, frames: int, single: bool) -> np.ndarray:
    """sequence_starts as bool (B, T) with frame 0 always a start."""
    starts = np.zeros((batch, frames), dtype=bool)
    if sequence_starts is not None:
        given = np.asarray(sequence_starts)
        expected = (frames,) if single else (batch, frames)
        if given.shape != expected:
            raise ParameterError(f"sequence_starts: expected shape {expected} (one flag per frame), "
                                 f"got {given.shape}")
        if given.dtype.kind not in "biu" or (given.dtype.kind != "b" and not np.all((given == 0) | (given == 1))):
            raise ParameterError(f"sequence_starts: expected booleans (or 0/1), got dtype {given.dtype}")
        starts[:] = given.astype(bool)
    starts[:, 0] = True
    return starts


def reference_forward(model: LSTMPModel, x, sequence_starts=None, delta=None,
                      delta_counts: list | None = None) -> np.ndarray:
    """Run the float64 forward pass of `model` over `x`.

    x: (T, I) one sequence, or (B, T, I) a batch of B independent streams (vectorised over B).
    sequence_starts: optional bool (T,) or (B, T); where True the state of every layer is cleared
        (c = 0, y = 0) before that frame, so one stream can hold several utterances back to back.
        Frame 0 always starts a sequence.
    delta: optional real thresholds (in the units of the activations): one number for every layer and
        side, or a list with one {"x": .., "y": .., "m": ..} per layer (delta.real_thresholds).
    delta_counts: optional empty list, only with `delta`: per layer the columns sent (as golden_forward).
    Returns float64 (T, out) or (B, T, out) with out = model.output_size.
    """
    if not isinstance(model, LSTMPModel):
        raise TypeError(f"model: expected an LSTMPModel, got {type(model).__name__}")
    inputs, single = _check_input(model, x)
    batch, frames, _ = inputs.shape
    starts = _check_starts(sequence_starts, batch, frames, single)
    if delta is None:
        if delta_counts is not None:
            raise ParameterError("delta_counts: columns are only counted in delta mode (give delta=...)")
        thresholds = [None] * len(model.layers)
    else:
        thresholds = real_thresholds(delta, (layer.w_proj is not None for layer in model.layers))

    # Layer by layer over the whole sequence: layer k's outputs for all frames are layer k+1's inputs, and
    # the input-side products of a layer can be done for all frames in one matrix product.
    signal = inputs
    for layer, layer_thresholds in zip(model.layers, thresholds):
        counts = None if delta_counts is None else new_delta_counts()
        signal = _layer_forward(layer, signal, starts, layer_thresholds, counts)
        if delta_counts is not None:
            delta_counts.append(counts)
    return signal[0] if single else signal


def _layer_forward(layer: LSTMPLayer, x: np.ndarray, starts: np.ndarray, thresholds: dict | None = None,
                   counts: dict | None = None) -> np.ndarray:
    batch, frames, _ = x.shape
    h = layer.cell_size
    columns = {}
    if thresholds is not None:
        # The matrices multiply the last values sent (the invariant acc = b + W * last of the fixed point).
        for side, w in (("x", layer.w_input), ("y", layer.w_recurrent), ("m", layer.w_proj)):
            if w is not None:
                columns[side] = DeltaColumns(batch, np.count_nonzero(w, axis=0), thresholds[side], np.float64)
        x_last = np.empty_like(x)
        for t in range(frames):   # the input side's deltas depend on x alone
            columns["x"].reset(starts[:, t])
            columns["x"].deltas(x[:, t])
            x_last[:, t] = columns["x"].last_sent
        x = x_last
    input_part = x @ layer.w_input.T + layer.bias          # (B, T, 4H), independent of the state
    w_recurrent_t = layer.w_recurrent.T
    w_proj_t = None if layer.w_proj is None else layer.w_proj.T
    peep_i, peep_f, peep_o = layer.peephole if layer.peephole is not None else (None, None, None)

    c = np.zeros((batch, h))
    y = np.zeros((batch, layer.output_size))
    out = np.empty((batch, frames, layer.output_size))
    for t in range(frames):
        keep = ~starts[:, t, np.newaxis]                  # (B, 1): False where a new sequence starts
        c = c * keep
        y = y * keep
        if columns:
            columns["y"].reset(starts[:, t])
            columns["y"].deltas(y)
        pre = input_part[:, t] + (columns["y"].last_sent if columns else y) @ w_recurrent_t
        pre_i, pre_f, pre_g, pre_o = pre[:, :h], pre[:, h:2 * h], pre[:, 2 * h:3 * h], pre[:, 3 * h:]
        if peep_i is not None:
            pre_i = pre_i + peep_i * c
            pre_f = pre_f + peep_f * c
        c = sigmoid(pre_f) * c + sigmoid(pre_i) * np.tanh(pre_g)
        if peep_o is not None:
            pre_o = pre_o + peep_o * c
        m = sigmoid(pre_o) * np.tanh(c)
        if "m" in columns:
            columns["m"].reset(starts[:, t])
            columns["m"].deltas(m)
            m = columns["m"].last_sent
        y = m @ w_proj_t if w_proj_t is not None else m
        out[:, t] = y
    if counts is not None:
        for side, state in columns.items():
            state.add_counts(counts, side)
    return out
