"""Model loaders (sw/loaders/): sparselstm .npz, PyTorch checkpoints, ONNX graphs.

The PyTorch and ONNX tests double as the independent check of the float reference: a model is built in
the foreign framework, run there (torch.nn.LSTM, onnxruntime), saved, loaded by us, run by
reference_forward, and the outputs compared.
"""

from __future__ import annotations

import os
import pickle
import sys
import zipfile

import numpy as np
import pytest

from sparselstm.spec.errors import LoadError
from sparselstm.sw.loaders import NPZ_FORMAT, load_model, save_npz
from sparselstm.sw.model import LSTMPModel, random_model
from sparselstm.sw.reference import reference_forward


pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")


def assert_same_model(a: LSTMPModel, b: LSTMPModel):
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        for name in ("w_input", "w_recurrent", "bias", "peephole", "w_proj"):
            va, vb = getattr(la, name), getattr(lb, name)
            assert (va is None) == (vb is None), name
            if va is not None:
                np.testing.assert_array_equal(va, vb, err_msg=name)


def load_error(path, **kwargs) -> str:
    with pytest.raises(LoadError) as error:
        load_model(path, **kwargs)
    return str(error.value)


# ==== sparselstm .npz ======================================================================================


@pytest.mark.parametrize("proj_size, peephole, num_layers", [(None, False, 1), (3, True, 2), (None, True, 3)])
def test_npz_round_trip(tmp_path, proj_size, peephole, num_layers):
    model = random_model(4, 6, proj_size=proj_size, num_layers=num_layers, peephole=peephole, seed=3)
    save_npz(model, tmp_path / "m.npz")
    assert_same_model(load_model(tmp_path / "m.npz"), model)


def test_npz_keeps_the_given_name_and_is_recognised_without_suffix(tmp_path, small_model):
    save_npz(small_model, tmp_path / "model.weights")
    assert [p.name for p in tmp_path.iterdir()] == ["model.weights"]  # no ".npz" appended, no temp left
    assert_same_model(load_model(tmp_path / "model.weights"), small_model)


def test_npz_layout_is_the_documented_one(tmp_path, small_model):
    save_npz(small_model, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as archive:
        assert str(archive["format"]) == NPZ_FORMAT == "sparselstm-model-v1"
        assert int(archive["num_layers"]) == 2
        assert sorted(archive.files) == sorted(["format", "num_layers"] + [
            f"L{k}.{name}" for k in range(2) for name in ("w_input", "w_recurrent", "bias", "peephole", "w_proj")])
        assert archive["L1.w_input"].shape == (28, 3) and archive["L0.peephole"].shape == (3, 7)


def write_npz(path, arrays):
    np.savez(path, **arrays)
    return path


def npz_arrays(model) -> dict:
    arrays = {"format": np.array(NPZ_FORMAT), "num_layers": np.array(len(model.layers))}
    for k, layer in enumerate(model.layers):
        for name in ("w_input", "w_recurrent", "bias", "peephole", "w_proj"):
            if getattr(layer, name) is not None:
                arrays[f"L{k}.{name}"] = getattr(layer, name)
    return arrays


def _nan_at_0(a):
    a = a.copy()
    a.flat[0] = np.nan
    return a


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("format"), "missing key 'format'"),
    (lambda a: a.update(format=np.array("sparselstm-model-v0")), "format: expected 'sparselstm-model-v1'"),
    (lambda a: a.pop("num_layers"), "missing key 'num_layers'"),
    (lambda a: a.update(num_layers=np.array(0)), "num_layers: expected an integer >= 1"),
    (lambda a: a.update(num_layers=np.array(1.5)), "num_layers: expected an integer >= 1"),
    (lambda a: a.update({"L0.extra": np.zeros(1), "L2.bias": np.zeros(1)}),
     "unexpected key(s) 'L0.extra', 'L2.bias'"),
    (lambda a: a.pop("L1.bias"), "missing key(s) L1.bias"),
    (lambda a: a.update({"L0.w_recurrent": np.zeros((28, 4))}), "L0.w_recurrent: expected shape (28, 3), got (28, 4)"),
    (lambda a: a.update({"L0.w_input": np.zeros((27, 5))}), "L0.w_input: expected a (4*H, columns) matrix"),
    (lambda a: a.update({"L1.w_input": np.zeros((28, 4))}), "L1.w_input: expected 3 columns (layer 0's output"),
    (lambda a: a.update({"L0.bias": np.zeros(27)}), "L0.bias: expected shape (28,), got (27,)"),
    (lambda a: a.update({"L0.peephole": np.zeros((4, 7))}), "L0.peephole: expected shape (3, 7), got (4, 7)"),
    (lambda a: a.update({"L0.w_proj": np.zeros((7, 7))}), "L0.w_proj: expected shape (P, 7) with 1 <= P < 7"),
    (lambda a: a.update({"L1.w_input": _nan_at_0(a["L1.w_input"])}), "L1.w_input: 1 non-finite value(s)"),
    (lambda a: a.update({"L0.bias": np.array(["x"] * 28)}), "L0.bias: expected a real-valued numeric array"),
])
def test_npz_errors_name_file_and_key(tmp_path, small_model, change, message):
    arrays = npz_arrays(small_model)
    change(arrays)
    path = write_npz(tmp_path / "bad.npz", arrays)
    text = load_error(path)
    assert text.startswith(f"{path}: ") and message in text


def test_npz_with_pickled_objects_is_refused(tmp_path, small_model):
    arrays = npz_arrays(small_model)
    arrays["L0.bias"] = np.array([object()] * 28, dtype=object)
    path = write_npz(tmp_path / "obj.npz", arrays)
    assert "corrupted .npz archive" in load_error(path) or "not a readable" in load_error(path)


def test_npz_that_is_a_state_dict_gets_a_hint(tmp_path):
    path = write_npz(tmp_path / "sd.npz", {"weight_ih_l0": np.zeros((4, 1))})
    assert "look like a PyTorch state_dict" in load_error(path)


@pytest.mark.parametrize("content, suffix, message", [
    (b"garbage that is not a zip", ".npz", "not a readable NumPy .npz archive"),
    (b"PK\x03\x04 broken zip", ".npz", "not a readable NumPy .npz archive"),
    (b"PK\x03\x04 broken zip", ".bin", "corrupted zip archive"),
    (b"\x00\x01\x02\x03 who knows", ".bin", "unknown model format"),
    (b"", "", "unknown model format"),
])
def test_unreadable_files(tmp_path, content, suffix, message):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(content)
    text = load_error(path)
    assert text.startswith(str(path)) and message in text


def test_truncated_npz(tmp_path, small_model):
    save_npz(small_model, tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    assert "cut.npz: " in load_error(tmp_path / "cut.npz")


def test_zip_that_is_neither_npz_nor_torch(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.bin", "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert "neither a NumPy .npz" in load_error(tmp_path / "x.bin")


def test_missing_file_and_directory(tmp_path):
    assert load_error(tmp_path / "nope.npz") == f"{tmp_path / 'nope.npz'}: file not found"
    assert "expected a model file" in load_error(tmp_path)


def test_save_npz_rejects_non_models(tmp_path):
    with pytest.raises(TypeError, match="expected an LSTMPModel"):
        save_npz({"w": 1}, tmp_path / "m.npz")


# ==== PyTorch ==============================================================================================

torch = pytest.importorskip("torch")
import torch.nn.utils.prune  # noqa: E402


def torch_lstm(input_size, hidden, proj=0, layers=1, bias=True, seed=0):
    torch.manual_seed(seed)
    return torch.nn.LSTM(input_size, hidden, num_layers=layers, proj_size=proj, bias=bias, batch_first=True)


def torch_outputs(lstm, x: np.ndarray, dtype) -> np.ndarray:
    with torch.no_grad():
        return lstm.to(dtype)(torch.from_numpy(x).to(dtype))[0].double().numpy()


@pytest.mark.parametrize("input_size, hidden, proj, layers, bias", [
    (5, 7, 0, 1, True), (3, 8, 3, 2, True), (1, 6, 5, 3, False), (13, 11, 4, 2, True), (2, 9, 0, 3, True),
])
def test_pytorch_state_dict_matches_torch(tmp_path, rng, input_size, hidden, proj, layers, bias):
    lstm = torch_lstm(input_size, hidden, proj, layers, bias)
    torch.save(lstm.state_dict(), tmp_path / "m.pt")
    model = load_model(tmp_path / "m.pt")
    assert len(model.layers) == layers and model.output_size == (proj or hidden)
    x = rng.normal(size=(3, 12, input_size))
    y = reference_forward(model, x)
    # Same float32 weights, torch computing in float64: only rounding differences remain.
    assert np.max(np.abs(y - torch_outputs(lstm, x, torch.float64))) <= 1e-12
    # What a user running the model in float32 sees.
    assert np.max(np.abs(y - torch_outputs(lstm, x.astype(np.float32), torch.float32))) <= 1e-5


def test_pytorch_checkpoint_forms(tmp_path):
    lstm = torch_lstm(4, 6, 2, 2)
    expected = None
    forms = {
        "plain.pt": lstm.state_dict(),
        "lightning.ckpt": {"state_dict": lstm.state_dict(), "epoch": 3},
        "trainer.pth": {"model_state_dict": lstm.state_dict(), "optimizer_state_dict": {}, "loss": 0.5},
        "module.pt": lstm,
        "sequential.pt": torch.nn.Sequential(lstm, torch.nn.Linear(2, 3)),
        "sequential_sd.pt": torch.nn.Sequential(lstm, torch.nn.Linear(2, 3)).state_dict(),
        "no_suffix": lstm.state_dict(),
    }
    for name, obj in forms.items():
        torch.save(obj, tmp_path / name)
        model = load_model(tmp_path / name)
        expected = expected or model
        assert_same_model(model, expected)
    torch.save(lstm.state_dict(), tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    assert_same_model(load_model(tmp_path / "legacy.bin"), expected)


class OwnModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 4)


class RunsCode:
    """A pickle that would create a directory when unpickled: the loader must never run it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.mkdir, (self.marker,)


def test_pytorch_refuses_unsafe_pickles(tmp_path):
    torch.save(OwnModule(), tmp_path / "own.pt")
    text = load_error(tmp_path / "own.pt")
    assert "unsafe unpickling" in text and "OwnModule" in text and "torch.save(model.state_dict()" in text
    marker = tmp_path / "pwned"
    torch.save(OwnModule(), tmp_path / "own_legacy.pt", _use_new_zipfile_serialization=False)
    assert "unsafe unpickling of test_loaders.OwnModule" in load_error(tmp_path / "own_legacy.pt")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(RunsCode(marker), protocol=2))
    assert f"unsafe unpickling of {os.mkdir.__module__}.mkdir" in load_error(tmp_path / "evil.pt")
    torch.save({"state_dict": lstm_state(), "payload": RunsCode(marker)}, tmp_path / "evil_zip.pt")
    assert f"unsafe unpickling of {os.mkdir.__module__}.mkdir" in load_error(tmp_path / "evil_zip.pt")
    assert not marker.exists()


def test_pytorch_whole_module_in_legacy_format_is_refused(tmp_path):
    # The pre-1.6 format stores a module's source code, which weights_only=True cannot read at all.
    torch.save(torch_lstm(3, 5, 2), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    text = load_error(tmp_path / "old.pt")
    assert "unsafe unpickling of objects that weights_only=True refuses (Only persistent_load of storage" in text
    assert "torch.save(model.state_dict(), 'old.pt')" in text


def lstm_state(**kwargs):
    return torch_lstm(3, 4, **kwargs).state_dict()


def test_pytorch_prefixed_and_several_lstms(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Sequential(torch.nn.LSTM(3, 5, proj_size=2))
            self.decoder = torch.nn.Module()
            self.decoder.lstm = torch.nn.LSTM(2, 4)
            self.fc = torch.nn.Linear(4, 1)

    net = Net()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    text = load_error(tmp_path / "net.pt")
    assert "2 LSTMs found, at 'decoder.lstm', 'encoder.0'" in text and "prefix=" in text
    encoder = load_model(tmp_path / "net.pt", prefix="encoder.0")
    assert encoder.layers[0].proj_size == 2
    np.testing.assert_array_equal(encoder.layers[0].w_input, net.encoder[0].weight_ih_l0.detach().double().numpy())
    assert load_model(tmp_path / "net.pt", prefix="decoder.lstm.").layers[0].cell_size == 4
    assert "prefix 'fc': no LSTM there" in load_error(tmp_path / "net.pt", prefix="fc")
    # a single prefixed LSTM is found without help
    torch.save({"lstm." + k: v for k, v in lstm_state().items()}, tmp_path / "one.pt")
    assert load_model(tmp_path / "one.pt").layers[0].cell_size == 4


def test_pytorch_bias_false_and_peepholes(tmp_path, rng):
    lstm = torch_lstm(3, 4, bias=False)
    state = dict(lstm.state_dict())
    peephole = torch.from_numpy(rng.normal(size=(3, 4)).astype(np.float32))
    state["peephole_l0"] = peephole
    torch.save(state, tmp_path / "peep.pt")
    layer = load_model(tmp_path / "peep.pt").layers[0]
    np.testing.assert_array_equal(layer.bias, np.zeros(16))
    np.testing.assert_array_equal(layer.peephole, peephole.double().numpy())


def test_pytorch_pruned_weights_are_orig_times_mask(tmp_path):
    lstm = torch_lstm(3, 6, 2)
    torch.nn.utils.prune.l1_unstructured(lstm, "weight_hh_l0", amount=0.5)
    torch.save(lstm.state_dict(), tmp_path / "pruned.pt")
    assert "weight_hh_l0_orig" in lstm.state_dict()
    layer = load_model(tmp_path / "pruned.pt").layers[0]
    np.testing.assert_array_equal(layer.w_recurrent, lstm.weight_hh_l0.detach().double().numpy())
    assert np.count_nonzero(layer.w_recurrent) == 24


def _set(state, key, value):
    state[key] = value
    return state


def _without(state, key):
    del state[key]
    return state


@pytest.mark.parametrize("make_state, message", [
    (lambda s: _without(s, "bias_hh_l0"), "missing key bias_hh_l0 (an nn.LSTM has both biases"),
    (lambda s: _without(s, "weight_hh_l1"), "missing key weight_hh_l1"),
    (lambda s: _set(s, "weight_hh_l0", torch.zeros(16, 3)), "weight_hh_l0: expected shape (16, 2), got (16, 3)"),
    (lambda s: _set(s, "weight_ih_l0", torch.zeros(15, 3)), "weight_ih_l0: expected a (4*H, columns) matrix"),
    (lambda s: _set(s, "weight_ih_l1", torch.zeros(16, 3)), "weight_ih_l1: expected 2 columns (layer 0's output"),
    (lambda s: _set(s, "weight_hr_l0", torch.zeros(4, 4)), "weight_hr_l0: expected shape (P, 4) with 1 <= P < 4"),
    (lambda s: _set(s, "bias_ih_l1", torch.zeros(15)), "bias_ih_l1: expected shape (16,), got (15,)"),
    (lambda s: _set(s, "peephole_l0", torch.zeros(4)), "peephole_l0: expected shape (3, 4) (peepholes i, f, o)"),
    (lambda s: _set(s, "weight_ih_l0", torch.full((16, 3), float("nan"))), "weight_ih_l0: 48 non-finite"),
    (lambda s: _set(s, "weight_ih_l0", torch.zeros(16, 3, dtype=torch.int32)), "expected a floating-point tensor"),
    (lambda s: _set(s, "weight_ih_l0_reverse", torch.zeros(16, 3)), "weight_ih_l0_reverse: bidirectional LSTMs"),
    (lambda s: _set(s, "cell.peephole_l0", torch.zeros(3, 4)),
     "cell.peephole_l0: an LSTM parameter with no weight_ih_l* key under the same prefix"),
    (lambda s: _set(_without(s, "weight_hh_l0"), "weight_hh_l0_orig", torch.zeros(16, 2)),
     "weight_hh_l0_orig: found without its pruning mask weight_hh_l0_mask"),
])
def test_pytorch_errors_name_file_and_key(tmp_path, make_state, message):
    state = dict(lstm_state(proj=2, layers=2))
    torch.save(make_state(state), tmp_path / "bad.pt")
    text = load_error(tmp_path / "bad.pt")
    assert text.startswith(f"{tmp_path / 'bad.pt'}: ") and message in text


@pytest.mark.parametrize("obj, message", [
    ([1, 2, 3], "expected a state_dict"),
    ({"state_dict": [1]}, "state_dict: expected a dict of tensors, got list"),
    (torch.nn.Linear(2, 2).state_dict(), "no nn.LSTM weights found (expected keys such as 'weight_ih_l0'"),
    ({"weight_ih_l0": [1.0]}, "weight_ih_l0: expected a tensor, got list"),
])
def test_pytorch_wrong_content(tmp_path, obj, message):
    torch.save(obj, tmp_path / "odd.pt")
    assert message in load_error(tmp_path / "odd.pt")


def test_corrupted_pytorch_file(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint")
    assert "junk.pt: not a readable PyTorch checkpoint" in load_error(tmp_path / "junk.pt")


def test_missing_optional_dependencies(tmp_path, monkeypatch):
    torch.save(lstm_state(), tmp_path / "m.pt")
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "onnx", None)
    pt, onnx_path = tmp_path / "m.pt", tmp_path / "m.onnx"
    assert load_error(pt) == f"reading {pt} needs PyTorch: pip install 'sparselstm[torch]'"
    assert load_error(onnx_path) == f"reading {onnx_path} needs ONNX: pip install 'sparselstm[onnx]'"


# ==== ONNX =================================================================================================

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def onnx_layers(rng, input_size, hidden, num_layers, peephole, bias=True):
    """Random weights in ONNX's own layout (gates i, o, f, c; peepholes i, o, f), float32."""
    layers = []
    for k in range(num_layers):
        columns = input_size if k == 0 else hidden
        f32 = lambda *shape: rng.uniform(-0.6, 0.6, shape).astype(np.float32)  # noqa: E731
        layers.append({"W": f32(1, 4 * hidden, columns), "R": f32(1, 4 * hidden, hidden),
                       "B": f32(1, 8 * hidden) if bias else None, "P": f32(1, 3 * hidden) if peephole else None})
    return layers


def onnx_file(path, layers, *, layout=0, link="squeeze", weights_as="initializer", attrs=None, frames=None,
              extra_inputs=None, constants=None):
    """A graph X -> LSTM -> (Squeeze | Reshape) -> LSTM ... -> output; `link="parallel"` feeds X to every LSTM."""
    attrs = attrs or {}
    extra_inputs = extra_inputs or {}
    nodes, inits, graph_inputs = [], [], []
    input_size = layers[0]["W"].shape[2]
    time_dim = frames if frames is not None else "T"
    x_shape = [time_dim, "N", input_size] if layout == 0 else ["N", time_dim, input_size]
    graph_inputs.append(helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape))

    def constant(name, value):
        if weights_as == "initializer":
            inits.append(numpy_helper.from_array(value, name))
        else:
            nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name)))
        return name

    for name, array in (constants or {}).items():
        inits.append(numpy_helper.from_array(array, name))
    value = "X"
    direction_axis = 1 if layout == 0 else 2
    for k, layer in enumerate(layers):
        hidden = layer["R"].shape[2]
        inputs = ["X" if link == "parallel" else value, constant(f"W{k}", layer["W"]), constant(f"R{k}", layer["R"]),
                  constant(f"B{k}", layer["B"]) if layer["B"] is not None else "", "", "", "",
                  constant(f"P{k}", layer["P"]) if layer["P"] is not None else ""]
        for index, name in extra_inputs.get(k, {}).items():
            inputs[index] = name
        while inputs[-1] == "":
            inputs.pop()
        nodes.append(helper.make_node("LSTM", inputs, [f"Y{k}"], name=f"lstm{k}", hidden_size=hidden,
                                      layout=layout, **attrs.get(k, {})))
        if link == "reshape":
            shape = np.array([0, -1, hidden], dtype=np.int64)
            inits.append(numpy_helper.from_array(shape, f"shape{k}"))
            nodes.append(helper.make_node("Reshape", [f"Y{k}", f"shape{k}"], [f"X{k + 1}"], name=f"reshape{k}"))
        else:
            inits.append(numpy_helper.from_array(np.array([direction_axis], dtype=np.int64), f"axes{k}"))
            nodes.append(helper.make_node("Squeeze", [f"Y{k}", f"axes{k}"], [f"X{k + 1}"], name=f"squeeze{k}"))
        value = f"X{k + 1}"
    outputs = [helper.make_tensor_value_info(f"X{k + 1}", TensorProto.FLOAT, ["d0", "d1", "d2"])
               for k in (range(len(layers)) if link == "parallel" else [len(layers) - 1])]
    for name, value_info in extra_inputs.get("graph", {}).items():
        graph_inputs.append(value_info)
    graph = helper.make_graph(nodes, "lstm_stack", graph_inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def run_onnxruntime(path, x_batch_first: np.ndarray, layout=0) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = x_batch_first.astype(np.float32)
    if layout == 0:
        return session.run(None, {"X": x.transpose(1, 0, 2)})[0].transpose(1, 0, 2)
    return session.run(None, {"X": x})[0]


@pytest.mark.parametrize("input_size, hidden, num_layers, peephole, layout, link, weights_as", [
    (5, 7, 1, False, 0, "squeeze", "initializer"),
    (5, 7, 1, True, 0, "squeeze", "initializer"),
    (3, 9, 2, True, 0, "squeeze", "constant"),
    (1, 5, 3, True, 0, "reshape", "initializer"),
    (11, 6, 2, False, 0, "squeeze", "initializer"),
    (4, 13, 3, True, 0, "reshape", "constant"),
])
def test_onnx_matches_onnxruntime(tmp_path, rng, input_size, hidden, num_layers, peephole, layout, link,
                                  weights_as):
    layers = onnx_layers(rng, input_size, hidden, num_layers, peephole)
    path = onnx_file(tmp_path / "m.onnx", layers, layout=layout, link=link, weights_as=weights_as)
    model = load_model(path)
    assert len(model.layers) == num_layers and all(l.has_peephole == peephole for l in model.layers)
    x = rng.normal(size=(3, 10, input_size))
    error = np.max(np.abs(reference_forward(model, x) - run_onnxruntime(path, x, layout)))
    assert error <= 1e-5


@pytest.mark.parametrize("link", ["squeeze", "reshape"])
def test_onnx_batch_major_layout_gives_the_same_model(tmp_path, rng, link):
    # layout=1 only changes the shapes of X and Y (batch first), not the weights. onnxruntime cannot run
    # layout=1, so check that it reads as exactly the model of the layout=0 graph (checked just above).
    layers = onnx_layers(rng, 4, 5, 3, peephole=True)
    assert_same_model(load_model(onnx_file(tmp_path / "batch_major.onnx", layers, layout=1, link=link)),
                      load_model(onnx_file(tmp_path / "time_major.onnx", layers, layout=0, link=link)))


def test_onnx_without_bias_and_with_full_sequence_lengths(tmp_path, rng):
    layers = onnx_layers(rng, 3, 4, 1, peephole=False, bias=False)
    lengths = np.full(2, 6, dtype=np.int32)
    path = onnx_file(tmp_path / "m.onnx", layers, frames=6, extra_inputs={0: {4: "lens"}},
                     constants={"lens": lengths})
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.layers[0].bias, np.zeros(16))
    x = rng.normal(size=(2, 6, 3))
    assert np.max(np.abs(reference_forward(loaded, x) - run_onnxruntime(path, x))) <= 1e-5


def test_onnx_gate_order_is_converted(tmp_path, rng):
    layers = onnx_layers(rng, 2, 3, 1, peephole=True)
    layer = load_model(onnx_file(tmp_path / "m.onnx", layers)).layers[0]
    w = layers[0]["W"][0].astype(np.float64)
    # ours i, f, g, o  <-  ONNX i, o, f, c
    np.testing.assert_array_equal(layer.gate_block("input", "f"), w[6:9])
    np.testing.assert_array_equal(layer.gate_block("input", "g"), w[9:12])
    np.testing.assert_array_equal(layer.gate_block("input", "o"), w[3:6])
    p = layers[0]["P"][0].astype(np.float64)
    np.testing.assert_array_equal(layer.peephole, np.stack([p[0:3], p[6:9], p[3:6]]))


@pytest.mark.parametrize("kwargs, message", [
    ({"attrs": {0: {"direction": "reverse"}}}, "node 'lstm0': direction 'reverse' is not supported"),
    ({"attrs": {1: {"clip": 3.0}}}, "node 'lstm1': attribute 'clip' is not supported"),
    ({"attrs": {0: {"activations": ["Sigmoid", "Relu", "Tanh"]}}}, "activations ['sigmoid', 'relu', 'tanh']"),
    ({"attrs": {0: {"input_forget": 1}}}, "node 'lstm0': input_forget=1"),
    ({"link": "parallel"}, "node 'lstm1': input X ('X') must come from the previous LSTM 'lstm0'"),
    ({"extra_inputs": {1: {5: "h0"}}, "graph_input": "h0"}, "node 'lstm1': input initial_h ('h0') must be absent"),
    ({"extra_inputs": {0: {4: "lens"}}, "graph_input": "lens"}, "node 'lstm0': input sequence_lens ('lens')"),
    ({"extra_inputs": {0: {1: "Wdyn"}}, "graph_input": "Wdyn"}, "node 'lstm0': input W ('Wdyn') must be a constant"),
])
def test_onnx_unsupported_graphs_are_refused(tmp_path, rng, kwargs, message):
    layers = onnx_layers(rng, 3, 4, 2, peephole=False)
    graph_input = kwargs.pop("graph_input", None)
    if graph_input:
        value_info = {"h0": (TensorProto.FLOAT, [1, "N", 4]), "lens": (TensorProto.INT32, ["N"]),
                      "Wdyn": (TensorProto.FLOAT, [1, 16, 3])}[graph_input]
        kwargs.setdefault("extra_inputs", {})["graph"] = {
            graph_input: helper.make_tensor_value_info(graph_input, *value_info)}
    path = onnx_file(tmp_path / "m.onnx", layers, **kwargs)
    text = load_error(path)
    assert text.startswith(f"{path}: ") and message in text


def test_onnx_bad_weights(tmp_path, rng):
    layers = onnx_layers(rng, 3, 4, 1, peephole=True)
    layers[0]["W"][0, 5, 1] = np.inf
    assert "node 'lstm0' W: 1 non-finite" in load_error(onnx_file(tmp_path / "inf.onnx", layers))
    layers = onnx_layers(rng, 3, 4, 1, peephole=True)
    layers[0]["B"] = layers[0]["B"][:, :-1]
    model = onnx.load(str(onnx_file(tmp_path / "ok.onnx", onnx_layers(rng, 3, 4, 1, peephole=True))))
    model.graph.initializer[2].CopyFrom(numpy_helper.from_array(layers[0]["B"], "B0"))
    onnx.save(model, str(tmp_path / "short_b.onnx"))
    assert "node 'lstm0' B: expected shape [1, 32], got (1, 31)" in load_error(tmp_path / "short_b.onnx")


def test_onnx_squeeze_must_drop_the_direction_axis(tmp_path, rng):
    path = onnx_file(tmp_path / "m.onnx", onnx_layers(rng, 3, 4, 2, peephole=False))
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name == "axes0":
            init.CopyFrom(numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0"))
    onnx.save(model, str(path))
    assert "Squeeze 'squeeze0' between the LSTMs must drop only the direction axis 1, got axes [0]" in load_error(path)


def test_onnx_reshape_must_drop_the_direction_axis(tmp_path, rng):
    path = onnx_file(tmp_path / "m.onnx", onnx_layers(rng, 3, 4, 2, peephole=False), link="reshape")
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name == "shape0":
            init.CopyFrom(numpy_helper.from_array(np.array([-1, 4], dtype=np.int64), "shape0"))
    onnx.save(model, str(path))
    assert "Reshape 'reshape0' between the LSTMs must drop only the direction axis (constant shape [0, -1, 4]), " \
           "got [-1, 4]" in load_error(path)


def test_onnx_sequence_lengths_shorter_than_the_input(tmp_path, rng):
    path = onnx_file(tmp_path / "m.onnx", onnx_layers(rng, 3, 4, 1, peephole=False), frames=6,
                     extra_inputs={0: {4: "lens"}}, constants={"lens": np.array([6, 5], dtype=np.int32)})
    assert "sequence_lens ('lens') = [6, 5] must equal the full, static sequence length of X (6)" in load_error(path)
    path = onnx_file(tmp_path / "dynamic.onnx", onnx_layers(rng, 3, 4, 1, peephole=False),
                     extra_inputs={0: {4: "lens"}}, constants={"lens": np.array([6, 6], dtype=np.int32)})
    assert "static sequence length of X (unknown)" in load_error(path)


def test_onnx_without_lstm_and_corrupted(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "relu.onnx"))
    assert "no LSTM node in the graph (operators present: Relu)" in load_error(tmp_path / "relu.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07\xff\xff\xff garbage")
    assert "junk.onnx: not a readable ONNX model" in load_error(tmp_path / "junk.onnx")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                            "ignore:Converting a tensor to a Python boolean")
def test_onnx_exported_by_pytorch(tmp_path, rng):
    # torch.onnx.export builds the zero initial state from Shape/ConstantOfShape/Slice nodes, adds a Squeeze
    # between the layers and Concats for Y_h/Y_c: the loader must see through all of that.
    lstm = torch_lstm(5, 7, layers=2)
    x = torch.from_numpy(rng.normal(size=(9, 2, 5)).astype(np.float32))
    lstm.batch_first = False
    torch.onnx.export(lstm, (x,), str(tmp_path / "exported.onnx"), dynamo=False, input_names=["X"],
                      dynamic_axes={"X": {0: "T", 1: "N"}})
    model = load_model(tmp_path / "exported.onnx")
    with torch.no_grad():
        expected = lstm(x)[0].numpy().transpose(1, 0, 2)
    assert np.max(np.abs(reference_forward(model, x.numpy().transpose(1, 0, 2)) - expected)) <= 1e-5


def test_onnx_is_recognised_without_suffix(tmp_path, rng):
    path = onnx_file(tmp_path / "model.bin", onnx_layers(rng, 3, 4, 1, peephole=True))
    assert load_model(path).layers[0].has_peephole


# ==== Damaged files and keys a reader would not use ========================================================


def flip_bit_in_member(path, member_suffix: str, byte: int = 5, bit: int = 3) -> str:
    """Flip one bit inside the stored data of the zip member whose name ends with `member_suffix`."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(member_suffix))
    data = bytearray(path.read_bytes())
    name_length, extra_length = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data[info.header_offset + 30 + name_length + extra_length + byte] ^= 1 << bit
    path.write_bytes(bytes(data))
    return info.filename


def test_pytorch_damaged_member_is_refused(tmp_path):
    torch.save(lstm_state(), tmp_path / "m.pt")
    member = flip_bit_in_member(tmp_path / "m.pt", "data/0")
    text = load_error(tmp_path / "m.pt")
    assert text.startswith(f"{tmp_path / 'm.pt'}: damaged PyTorch checkpoint (member {member!r}") and "CRC" in text


def test_pytorch_misspelt_key_is_refused_unless_allowed(tmp_path):
    state = dict(lstm_state())
    state["peephol_l0"] = torch.zeros(3, 4)
    torch.save(state, tmp_path / "typo.pt")
    text = load_error(tmp_path / "typo.pt")
    assert "unexpected key(s) in the LSTM at '' (top level) 'peephol_l0'" in text
    assert "pass allow_extra_keys=True (load_model) or --allow-extra-keys (command line)" in text
    assert load_model(tmp_path / "typo.pt", allow_extra_keys=True).layers[0].peephole is None
    # keys of other modules (a classifier head beside the LSTM) are not the LSTM's and stay allowed
    torch.save({**{"lstm." + k: v for k, v in lstm_state().items()}, "lstm.peepole_l0": torch.zeros(3, 4),
                "head.weight": torch.zeros(2, 4)}, tmp_path / "net.pt")
    assert "'lstm.peepole_l0'" in load_error(tmp_path / "net.pt")
    assert "head.weight" not in load_error(tmp_path / "net.pt")


def test_onnx_input_outside_the_operator_is_refused_unless_allowed(tmp_path, rng):
    layers = onnx_layers(rng, 3, 4, 1, peephole=True)
    path = onnx_file(tmp_path / "m.onnx", layers)
    model = onnx.load(str(path))
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    node.input[7] = ""
    node.input.append("P0")     # slot 8: the operator has no such input
    onnx.save(model, str(path))
    text = load_error(path)
    assert "unexpected input(s) of node 'lstm0' 'P0' (slot 8)" in text
    assert "the LSTM operator has 8 inputs" in text and "allow_extra_keys" in text
    assert load_model(path, allow_extra_keys=True).layers[0].peephole is None


def test_load_model_argument_types(tmp_path):
    with pytest.raises(TypeError, match="expected a path"):
        load_model(3)
    with pytest.raises(TypeError, match="allow_extra_keys"):
        load_model(tmp_path / "m.npz", allow_extra_keys="yes")
