"""CPU baselines for `make bench`, measured on this machine in the same run as the accelerator's figures.

Every figure is the median of `repeats` timed passes over `frames` frames, after `warmup` untimed passes,
divided by the frames: microseconds per frame. Streaming = batch 1, one frame per call, the state carried
from call to call (the speech case); sequence = the whole sequence in one call.

PyTorch and onnxruntime are optional: a missing one gives a row with "skipped" and the reason. ONNX's LSTM
operator has no projection (and torch's exporter refuses nn.LSTM with proj_size), so the ONNX graphs are
the same LSTMP written out as matrix products: one frame's step (streaming), and the step unrolled over the
sequence with the input products of all frames in one product per layer (sequence), as nn.LSTM computes it.
"""

from __future__ import annotations

import io
import statistics
import time
import warnings

import numpy as np

from sparselstm.sw.golden import golden_forward

MEASURED = "measured here (this machine, this run)"


def time_per_frame(run, frames: int, repeats: int, warmup: int = 1) -> dict:
    """Median (and spread) of `repeats` timed calls of `run` (one pass over `frames` frames), per frame."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    per_frame = [1e6 * s / frames for s in seconds]
    return {"us_per_frame": statistics.median(per_frame), "us_per_frame_min": min(per_frame),
            "us_per_frame_max": max(per_frame), "repeats": repeats, "warmup": warmup, "frames": frames}


def _skipped(family: str, implementation: str, reason: str) -> list[dict]:
    return [{"family": family, "implementation": implementation, "mode": mode, "skipped": reason,
             "source": MEASURED} for mode in ("streaming", "sequence")]


def _torch_lstm(torch, sizes: dict, threads: int):
    torch.set_num_threads(threads)
    torch.manual_seed(0)   # dense float timing does not depend on the weights' values
    return torch.nn.LSTM(sizes["input"], sizes["cells"], num_layers=sizes["layers"],
                         proj_size=sizes["proj"]).eval()


def torch_baselines(family: str, sizes: dict, frames: int, repeats: int, threads: int) -> list[dict]:
    """nn.LSTM(input, cells, num_layers, proj_size): streaming and whole sequence."""
    try:
        import torch
    except ImportError as error:
        return _skipped(family, "PyTorch nn.LSTM(proj_size)", f"PyTorch not installed ({error})")
    lstm = _torch_lstm(torch, sizes, threads)
    x = torch.randn(frames, 1, sizes["input"])

    def streaming():
        state = None
        for t in range(frames):
            _, state = lstm(x[t:t + 1], state)

    rows = []
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "LSTM with projections is not supported with oneDNN")
        for mode, run in (("streaming", streaming), ("sequence", lambda: lstm(x))):
            rows.append({"family": family, "implementation": f"PyTorch {torch.__version__} nn.LSTM(proj_size)",
                         "mode": mode, "threads": torch.get_num_threads(),
                         **time_per_frame(run, frames, repeats), "source": MEASURED})
    return rows


def _lstmp_modules(torch, lstm):
    """One frame's step of `lstm` and the unrolled sequence, as modules ONNX can express. The weights are
    buffers, so the exported graph holds each once (an unrolled graph would repeat captured constants)."""

    class Weights(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k in range(lstm.num_layers):
                tensor = {name: getattr(lstm, f"{name}_l{k}").detach()
                          for name in ("weight_ih", "weight_hh", "weight_hr", "bias_ih", "bias_hh")}
                self.register_buffer(f"w_ih{k}", tensor["weight_ih"].T.contiguous())
                self.register_buffer(f"w_hh{k}", tensor["weight_hh"].T.contiguous())
                self.register_buffer(f"w_hr{k}", tensor["weight_hr"].T.contiguous())   # (cells, proj)
                self.register_buffer(f"bias{k}", tensor["bias_ih"] + tensor["bias_hh"])

        def layer(self, k):
            return (getattr(self, f"{name}{k}") for name in ("w_ih", "w_hh", "w_hr", "bias"))

        def cell(self, k, pre, h, c):
            _, w_hh, w_hr, _ = self.layer(k)
            i, f, g, o = (pre + h @ w_hh).chunk(4, dim=1)    # nn.LSTM's gate order
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return (torch.sigmoid(o) * torch.tanh(c)) @ w_hr, c

    class Step(Weights):
        def forward(self, x, h, c):            # x (1, in); h (layers, 1, proj); c (layers, 1, cells)
            hs, cs = [], []
            for k in range(lstm.num_layers):
                w_ih, _, _, bias = self.layer(k)
                x, c_k = self.cell(k, x @ w_ih + bias, h[k], c[k])
                hs.append(x)
                cs.append(c_k)
            return x, torch.stack(hs), torch.stack(cs)

    class Sequence(Weights):
        def forward(self, xs):                 # xs (frames, in), state starting at zero
            for k in range(lstm.num_layers):
                w_ih, _, w_hr, bias = self.layer(k)
                pre = xs @ w_ih + bias
                h, c = torch.zeros(1, w_hr.shape[1]), torch.zeros(1, w_hr.shape[0])
                outputs = []
                for t in range(xs.shape[0]):   # unrolled by the tracer
                    h, c = self.cell(k, pre[t:t + 1], h, c)
                    outputs.append(h)
                xs = torch.cat(outputs)
            return xs

    return Step().eval(), Sequence().eval()


def onnx_baselines(family: str, sizes: dict, frames: int, repeats: int, threads: int) -> list[dict]:
    """onnxruntime on ONNX exports of the same LSTMP (see the module docstring), checked against nn.LSTM."""
    try:
        import onnxruntime
        import torch
    except ImportError as error:
        return _skipped(family, "onnxruntime", f"onnxruntime or PyTorch (its exporter) not installed ({error})")
    lstm = _torch_lstm(torch, sizes, threads)
    step, sequence = _lstmp_modules(torch, lstm)
    layers, proj, cells = sizes["layers"], sizes["proj"], sizes["cells"]
    x = torch.randn(frames, sizes["input"])
    h0, c0 = torch.zeros(layers, 1, proj), torch.zeros(layers, 1, cells)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1

    def session(module, args, inputs, outputs):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")    # the TorchScript exporter's deprecation notice
            torch.onnx.export(module, args, buffer, input_names=inputs, output_names=outputs, dynamo=False)
        return onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    step_session = session(step, (x[:1], h0, c0), ["x", "h", "c"], ["y", "h_out", "c_out"])
    sequence_session = session(sequence, (x,), ["xs"], ["ys"])
    x_np, h0_np, c0_np = x.numpy(), h0.numpy(), c0.numpy()

    def streaming():
        h, c, ys = h0_np, c0_np, []
        for t in range(frames):
            y, h, c = step_session.run(None, {"x": x_np[t:t + 1], "h": h, "c": c})
            ys.append(y)
        return np.concatenate(ys)

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "LSTM with projections is not supported with oneDNN")
        expected = lstm(x[:, None, :])[0][:, 0, :].numpy()
    deviation = {"streaming": float(np.abs(streaming() - expected).max()),
                 "sequence": float(np.abs(sequence_session.run(None, {"xs": x_np})[0] - expected).max())}
    graphs = {"streaming": "one LSTMP step as MatMul/Sigmoid/Tanh (state fed back by the host)",
              "sequence": f"the step unrolled over {frames} frames (input products batched per layer)"}
    runs = {"streaming": streaming, "sequence": lambda: sequence_session.run(None, {"xs": x_np})}
    return [{"family": family, "implementation": f"onnxruntime {onnxruntime.__version__}", "mode": mode,
             "threads": threads, "graph": graphs[mode], "max_abs_difference_vs_torch": deviation[mode],
             **time_per_frame(runs[mode], frames, repeats), "source": MEASURED} for mode in ("streaming", "sequence")]


def golden_baseline(family: str, qmodel, x_q: np.ndarray, repeats: int) -> list[dict]:
    """The bit-exact golden model (sw/golden.py) over one sequence; it carries state only inside one call,
    so it has no streaming row."""
    frames = x_q.shape[0]
    return [{"family": family, "implementation": "sparselstm golden model (bit-exact integers, NumPy)",
             "mode": "sequence", "threads": "NumPy BLAS default",
             **time_per_frame(lambda: golden_forward(qmodel, x_q), frames, repeats), "source": MEASURED}]
