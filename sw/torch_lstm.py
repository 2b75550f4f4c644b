"""The LSTMP modules of the PyTorch training (sw/train.py): our peephole LSTMP, and the delta-mode forward pass.

`PeepholeLSTMP`: a stacked LSTMP with diagonal peepholes, with nn.LSTM's parameter names.

`delta_lstm_forward` (issue #14; docs/numerics.md, "Delta mode"): the forward pass with delta-mode thresholds,
straight-through. Forward: every matrix multiplies the last values sent, as the float reference's delta
mode computes them (sw/reference.py): a column is sent when its value moved by more than the threshold
since it was last sent, and a sequence starts with every last value at 0. Backward: the gradient passes as
if every column had been sent (d last / d value = 1). "last" is a step function of the value, whose own
gradient is zero almost everywhere; the straight-through estimator is what DeltaRNN and EdgeDRNN train
with. Threshold 0 leaves the forward values unchanged (a column that did not move adds nothing either way).
It works on nn.LSTM(proj_size=...) and PeepholeLSTMP alike, through their common parameter names.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PeepholeLSTMP", "straight_through", "delta_lstm_forward"]


class PeepholeLSTMP(nn.Module):
    """A stacked LSTMP with diagonal peepholes (Sak et al. 2014), batch first, zero initial state.

        i = sigmoid(W_ii x + b_ii + W_hi y + b_hi + p_i * c_prev)
        f = sigmoid(W_if x + b_if + W_hf y + b_hf + p_f * c_prev)
        g = tanh(W_ig x + b_ig + W_hg y + b_hg)
        c = f * c_prev + i * g
        o = sigmoid(W_io x + b_io + W_ho y + b_ho + p_o * c)
        y = W_hr (o * tanh(c))            (no projection when proj_size == 0)

    Parameters are named exactly as nn.LSTM's (plus peephole_l{k}) and initialised the same way,
    U(-1/sqrt(H), 1/sqrt(H)).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, proj_size: int = 0):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.proj_size = num_layers, proj_size
        out = proj_size or hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        for k in range(num_layers):
            layer_in = input_size if k == 0 else out
            shapes = {f"weight_ih_l{k}": (4 * hidden_size, layer_in), f"weight_hh_l{k}": (4 * hidden_size, out),
                      f"bias_ih_l{k}": (4 * hidden_size,), f"bias_hh_l{k}": (4 * hidden_size,),
                      f"peephole_l{k}": (3, hidden_size)}
            if proj_size:
                shapes[f"weight_hr_l{k}"] = (proj_size, hidden_size)
            for name, shape in shapes.items():
                self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor):
        batch, steps, _ = x.shape
        H = self.hidden_size
        for k in range(self.num_layers):
            w_hh, peephole = getattr(self, f"weight_hh_l{k}"), getattr(self, f"peephole_l{k}")
            w_hr = getattr(self, f"weight_hr_l{k}") if self.proj_size else None
            # The input part of every gate for all steps at once; only the recurrence is sequential.
            from_input = (x @ getattr(self, f"weight_ih_l{k}").T + getattr(self, f"bias_ih_l{k}")
                          + getattr(self, f"bias_hh_l{k}"))
            y = x.new_zeros(batch, w_hh.shape[1])
            c = x.new_zeros(batch, H)
            outputs = []
            for t in range(steps):
                gates = from_input[:, t] + y @ w_hh.T
                i = torch.sigmoid(gates[:, :H] + peephole[0] * c)
                f = torch.sigmoid(gates[:, H:2 * H] + peephole[1] * c)
                g = torch.tanh(gates[:, 2 * H:3 * H])
                c = f * c + i * g
                o = torch.sigmoid(gates[:, 3 * H:] + peephole[2] * c)
                m = o * torch.tanh(c)
                y = m @ w_hr.T if w_hr is not None else m
                outputs.append(y)
            x = torch.stack(outputs, dim=1)
        return x, None



def straight_through(value: torch.Tensor, last: torch.Tensor, threshold: float):
    """(what the matrix multiplies, the new last values) for one frame of one side: the value where it moved
    by more than `threshold` since `last`, else `last`; its gradient flows to `value` unchanged."""
    send = (value - last).abs() > threshold
    sent = torch.where(send, value, last).detach()
    return value + (sent - value).detach(), sent


def delta_lstm_forward(lstm: torch.nn.Module, x: torch.Tensor, thresholds: list[dict]) -> torch.Tensor:
    """The outputs (B, T, out) of the stacked `lstm` on batch-first `x` (B, T, I), every sequence starting at
    frame 0, in delta mode with real `thresholds`, one {"x", "y", "m"} per layer (sw/delta.py:
    real_thresholds; "m" is unused without a projection)."""
    batch, steps, _ = x.shape
    cells = lstm.hidden_size
    for k, layer in enumerate(thresholds):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")
        w_hr = getattr(lstm, f"weight_hr_l{k}", None)
        peephole = getattr(lstm, f"peephole_l{k}", None)
        # The input side depends on x alone: its sent values for every frame, then one matrix product.
        last = x.new_zeros(batch, x.shape[2])
        sent_inputs = []
        for t in range(steps):
            sent, last = straight_through(x[:, t], last, layer["x"])
            sent_inputs.append(sent)
        from_input = torch.stack(sent_inputs, dim=1) @ w_ih.T + getattr(lstm, f"bias_ih_l{k}") \
            + getattr(lstm, f"bias_hh_l{k}")
        y = x.new_zeros(batch, w_hh.shape[1])
        last_y = torch.zeros_like(y)
        c = x.new_zeros(batch, cells)
        last_m = torch.zeros_like(c)
        outputs = []
        for t in range(steps):
            sent_y, last_y = straight_through(y, last_y, layer["y"])
            gates = from_input[:, t] + sent_y @ w_hh.T
            pre_i, pre_f = gates[:, :cells], gates[:, cells:2 * cells]
            if peephole is not None:
                pre_i, pre_f = pre_i + peephole[0] * c, pre_f + peephole[1] * c
            c = torch.sigmoid(pre_f) * c + torch.sigmoid(pre_i) * torch.tanh(gates[:, 2 * cells:3 * cells])
            pre_o = gates[:, 3 * cells:] + (peephole[2] * c if peephole is not None else 0.0)
            m = torch.sigmoid(pre_o) * torch.tanh(c)
            if w_hr is not None:
                sent_m, last_m = straight_through(m, last_m, layer["m"])
                y = sent_m @ w_hr.T
            else:
                y = m
            outputs.append(y)
        x = torch.stack(outputs, dim=1)
    return x
