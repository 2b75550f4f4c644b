"""Malformed model files and encoded directories (issue #11): every one gives a SparseLSTMError naming the file.

Bit flips and truncations are drawn by hypothesis; a damaged file must either be refused with a
SparseLSTMError that names it, or read as exactly the original (a flip in bytes nobody reads). A flip that
parses and changes a number is a failure: the zip CRCs (npz, PyTorch) and the sha256 of the manifest must catch
it. ONNX files carry no checksum, so for them only truncations are drawn (docs/model-files.md, "Damaged files").
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparselstm.spec.errors import EncodedModelError, LoadError, SparseLSTMError
from sparselstm.sw.format import encode, load_encoded, write_encoded
from sparselstm.sw.loaders import load_model, save_npz
from sparselstm.sw.model import LSTMPModel, random_model
from sparselstm.sw.quantize import quantize_model

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

FLIPS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def same_model(a: LSTMPModel, b: LSTMPModel) -> bool:
    names = ("w_input", "w_recurrent", "bias", "peephole", "w_proj")
    return len(a.layers) == len(b.layers) and all(
        (getattr(x, n) is None and getattr(y, n) is None) or np.array_equal(getattr(x, n), getattr(y, n))
        for x, y in zip(a.layers, b.layers) for n in names)


def assert_refused_or_unchanged(path, read, original, error=SparseLSTMError, named=None):
    """`read(path)` raises `error` naming `named` (default: the path's file name), or gives the original."""
    try:
        result = read(path)
    except error as refused:
        assert (named or path.name) in str(refused), str(refused)
        return
    assert original(result), f"{named or path.name} was damaged, read without error and gave a different model"


# ---------------------------------------------------------------------------------------------------------
# The model files


@pytest.fixture(scope="module")
def model() -> LSTMPModel:
    return random_model(input_size=3, cell_size=4, proj_size=2, num_layers=2, peephole=True, seed=5)


def torch_state(model: LSTMPModel) -> dict:
    state = {}
    for k, layer in enumerate(model.layers):
        for key, value in ((f"weight_ih_l{k}", layer.w_input), (f"weight_hh_l{k}", layer.w_recurrent),
                           (f"bias_ih_l{k}", layer.bias), (f"bias_hh_l{k}", np.zeros_like(layer.bias)),
                           (f"peephole_l{k}", layer.peephole), (f"weight_hr_l{k}", layer.w_proj)):
            state[key] = torch.from_numpy(np.array(value, dtype=np.float64))
    return state


def onnx_bytes(model: LSTMPModel, extra_input: str = "", nan: bool = False) -> bytes:
    """One LSTM node (layer 0 without its projection: ONNX LSTMs have none) in ONNX gate order i, o, f, c."""
    layer = model.layers[0]
    order = [0, 3, 1, 2]

    def onnx_gates(matrix):
        return matrix.reshape(4, layer.cell_size, *matrix.shape[1:])[order].reshape(matrix.shape)

    w = onnx_gates(layer.w_input)[None].astype(np.float32)
    if nan:
        w[0, 0, 0] = np.nan
    r = np.zeros((1, 4 * layer.cell_size, layer.cell_size), np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R")]
    inputs = ["X", "W", "R"]
    if extra_input:
        inits.append(numpy_helper.from_array(np.zeros((1, 3 * layer.cell_size), np.float32), extra_input))
        inputs += ["", "", "", "", "", extra_input]   # slot 8: the LSTM operator has only 8 inputs
    node = helper.make_node("LSTM", inputs, ["Y"], name="lstm", hidden_size=layer.cell_size)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["T", 1, 3])],
                              [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


class Intact(tuple):
    """(the intact file's bytes, the model read from it), shown briefly in hypothesis' reports."""

    def __repr__(self):
        return f"<{len(self[0])} bytes>"


@pytest.fixture(scope="module")
def model_files(model, tmp_path_factory) -> dict:
    """suffix -> Intact(bytes, model)."""
    directory = tmp_path_factory.mktemp("models")
    save_npz(model, directory / "m.npz")
    torch.save(torch_state(model), directory / "m.pt")
    (directory / "m.onnx").write_bytes(onnx_bytes(model))
    return {suffix: Intact(((directory / f"m{suffix}").read_bytes(), load_model(directory / f"m{suffix}")))
            for suffix in (".npz", ".pt", ".onnx")}


def damaged_copy(tmp_path, suffix: str, data: bytes):
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(data)
    return path


def damaged(content: bytes, kind: str, data) -> bytes:
    """`content` with one bit flipped or cut short, at a place hypothesis draws."""
    if kind == "truncate":
        return content[:data.draw(st.integers(0, len(content) - 1), label="length")]
    position = data.draw(st.integers(0, 8 * len(content) - 1), label="bit")
    flipped = bytearray(content)
    flipped[position // 8] ^= 1 << (position % 8)
    return bytes(flipped)


@FLIPS
@given(data=st.data())
@pytest.mark.parametrize("suffix, kind", [(".npz", "flip"), (".pt", "flip"), (".npz", "truncate"),
                                          (".pt", "truncate"), (".onnx", "truncate")])
def test_a_damaged_model_file_is_caught_or_harmless(tmp_path, model_files, suffix, kind, data):
    original, reference = model_files[suffix]
    assert_refused_or_unchanged(damaged_copy(tmp_path, suffix, damaged(original, kind, data)), load_model,
                                lambda result: same_model(result, reference))


def test_a_zip64_locator_naming_other_disks_is_a_damaged_checkpoint(tmp_path, model_files):
    """Hypothesis found it: a flip that turns the 20 bytes before the end record into a ZIP64 locator of a
    multi-disk archive made zipfile.is_zipfile itself raise BadZipFile, which escaped as a traceback."""
    import struct

    original, _ = model_files[".pt"]
    end = original.rindex(b"PK\x05\x06")   # the end-of-central-directory record
    locator = b"PK\x06\x07" + struct.pack("<LQL", 0, 0, 2)   # ... on 2 disks
    path = damaged_copy(tmp_path, ".pt", original[:end - len(locator)] + locator + original[end:])
    with pytest.raises(LoadError, match=f"{path.name}: damaged PyTorch checkpoint .*span multiple disks"):
        load_model(path)


def npz_with(model, change):
    def write(path):
        save_npz(model, path)
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files}
        change(arrays)
        np.savez(path, **arrays)
    return write


def pt_with(model, change):
    def write(path):
        state = torch_state(model)
        change(state)
        torch.save(state, path)
    return write


def onnx_with(model, **kwargs):
    return lambda path: path.write_bytes(onnx_bytes(model, **kwargs))


def _put(mapping, key, value):
    mapping[key] = value


MODEL_CASES = {
    "npz: wrong dtype": (".npz", lambda m: npz_with(m, lambda a: _put(a, "L0.bias", a["L0.bias"].astype(complex))),
                         "L0.bias: expected a real-valued numeric array"),
    "npz: wrong shape": (".npz", lambda m: npz_with(m, lambda a: _put(a, "L1.peephole", np.zeros((3, 5)))),
                         "L1.peephole: expected shape (3, 4)"),
    "npz: NaN": (".npz", lambda m: npz_with(m, lambda a: _put(a, "L0.w_input", a["L0.w_input"] * np.nan)),
                 "L0.w_input: 48 non-finite value(s)"),
    "npz: inf": (".npz", lambda m: npz_with(m, lambda a: _put(a, "L1.w_proj", np.full_like(a["L1.w_proj"], np.inf))),
                 "L1.w_proj: 8 non-finite value(s)"),
    "npz: missing key": (".npz", lambda m: npz_with(m, lambda a: a.pop("L1.w_recurrent")),
                         "missing key(s) L1.w_recurrent"),
    "npz: extra key": (".npz", lambda m: npz_with(m, lambda a: _put(a, "L0.peephol", np.zeros((3, 4)))),
                       "unexpected key(s) 'L0.peephol'"),
    "pt: wrong dtype": (".pt", lambda m: pt_with(m, lambda s: _put(s, "bias_ih_l0", torch.zeros(16, dtype=int))),
                        "bias_ih_l0: expected a floating-point tensor"),
    "pt: wrong shape": (".pt", lambda m: pt_with(m, lambda s: _put(s, "weight_hr_l1", torch.zeros(2, 5))),
                        "weight_hr_l1: expected shape (P, 4)"),
    "pt: NaN": (".pt", lambda m: pt_with(m, lambda s: _put(s, "peephole_l1", torch.full((3, 4), float("nan")))),
                "peephole_l1: 12 non-finite value(s)"),
    "pt: inf": (".pt", lambda m: pt_with(m, lambda s: _put(s, "bias_hh_l0", torch.full((16,), float("inf")))),
                "bias_hh_l0: 16 non-finite value(s)"),
    "pt: missing key": (".pt", lambda m: pt_with(m, lambda s: s.pop("weight_ih_l1")), "missing key weight_ih_l1"),
    "pt: extra key": (".pt", lambda m: pt_with(m, lambda s: _put(s, "peephole_l0_", torch.zeros(3, 4))),
                      "unexpected key(s) in the LSTM at '' (top level) 'peephole_l0_'"),
    "onnx: NaN": (".onnx", lambda m: onnx_with(m, nan=True), "node 'lstm' W: 1 non-finite value(s)"),
    "onnx: input outside the operator": (".onnx", lambda m: onnx_with(m, extra_input="P"),
                                         "unexpected input(s) of node 'lstm' 'P' (slot 8)"),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_malformed_model_files(tmp_path, model, case):
    suffix, make, message = MODEL_CASES[case]
    path = tmp_path / f"bad{suffix}"
    make(model)(path)
    with pytest.raises(LoadError) as refused:
        load_model(path)
    assert str(refused.value).startswith(f"{path}: ") and message in str(refused.value), str(refused.value)


# ---------------------------------------------------------------------------------------------------------
# Encoded directories


@pytest.fixture(scope="module")
def encoded_dir(model, tmp_path_factory):
    """An intact encoded directory and the manifest of what it holds."""
    encoded = encode(quantize_model(model), 3)
    directory = write_encoded(encoded, tmp_path_factory.mktemp("encoded") / "enc")
    return directory, encoded


def manifest_of(encoded) -> dict:
    manifest = encoded.manifest()
    manifest.pop("producer")
    return manifest


def same_encoding(a, b) -> bool:
    return manifest_of(a) == manifest_of(b) and all(
        np.array_equal(getattr(x, memory), getattr(y, memory))
        for x, y in zip(a.pes, b.pes) for memory in ("entries", "pointers", "bias", "peephole")) and all(
        np.array_equal(a.tables[name], b.tables[name]) for name in a.tables)


def copy_of(encoded_dir, tmp_path):
    target = tmp_path / "enc"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(encoded_dir[0], target)
    return target


ENCODED_FILES = ("manifest.json", "pe00_entries.hex", "pe01_pointers.npy", "pe02_bias.hex", "pe00_peephole.npy",
                 "tables/tanh_T.hex")


@FLIPS
@given(data=st.data())
@pytest.mark.parametrize("kind", ["flip", "truncate"])
@pytest.mark.parametrize("name", ENCODED_FILES)
def test_a_damaged_file_in_an_encoded_directory_is_caught_or_harmless(encoded_dir, name, kind, data):
    directory, encoded = encoded_dir
    path = directory / name
    intact = path.read_bytes()
    path.write_bytes(damaged(intact, kind, data))
    try:
        # The reader names the manifest for what it states, the damaged memory file for what it holds. Only
        # the manifest's final newline may be cut unnoticed: every memory file has a checksum.
        assert_refused_or_unchanged(directory, load_encoded, lambda result: same_encoding(result, encoded),
                                    EncodedModelError, named="manifest.json" if name == "manifest.json" else None)
    finally:
        path.write_bytes(intact)   # the directory is shared by the module's tests


def edit(change):
    def apply(directory):
        manifest = json.loads((directory / "manifest.json").read_text())
        change(manifest)
        (directory / "manifest.json").write_text(json.dumps(manifest))
    return apply


ENCODED_CASES = {
    "missing memory file": (lambda d: (d / "pe01_bias.npy").unlink(), r"pe01_bias.npy: missing"),
    "missing table": (lambda d: (d / "tables" / "sigmoid_D.hex").unlink(), r"sigmoid_D.hex: missing"),
    "wrong checksum": (edit(lambda m: m["files"]["pe02_entries.hex"].update(sha256="0" * 64)),
                       r"pe02_entries.hex: sha256 checksum mismatch"),
    "inconsistent facc": (edit(lambda m: m["layers"][1].update(facc=0)), r"manifest.json: key 'layers\[1\].facc'"),
    "inconsistent accumulator": (edit(lambda m: m["layers"][0].update(proj_acc_bits=40)),
                                 r"manifest.json: key 'layers\[0\].\(gate_acc_bits, proj_acc_bits\)'"),
    "inconsistent entry width": (edit(lambda m: m["memories"].update(entry_bits=17)),
                                 r"manifest.json: key 'memories.entry_bits'"),
    "inconsistent depth": (edit(lambda m: m["pes"][1].update(bias_depth=3)),
                           r"manifest.json: key 'pes\[1\].bias_depth'"),
    "misspelt key": (edit(lambda m: m["memories"].update(bias_bit=3)), r"manifest.json: memories: unknown key"),
}


@pytest.mark.parametrize("case", sorted(ENCODED_CASES))
def test_malformed_encoded_directories(tmp_path, encoded_dir, case):
    damage, message = ENCODED_CASES[case]
    directory = copy_of(encoded_dir, tmp_path)
    damage(directory)
    with pytest.raises(EncodedModelError, match=message):
        load_encoded(directory)
