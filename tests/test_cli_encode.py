"""`sparselstm encode` end to end: files written, numbers reported, and every documented user error."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sparselstm.cli import main
from sparselstm.sw.format import decode, load_encoded
from sparselstm.sw.fixedpoint import Numerics
from sparselstm.sw.loaders import save_npz
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode


@pytest.fixture(scope="module")
def model():
    return random_model(input_size=6, cell_size=11, proj_size=5, num_layers=2, peephole=True, seed=7)


@pytest.fixture
def checkpoint(model, tmp_path):
    path = tmp_path / "model.npz"
    save_npz(model, path)
    return path


def run_cli(capsys, *args):
    code = main(["encode", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_encode_writes_a_loadable_model_and_a_report(model, checkpoint, tmp_path, capsys):
    outdir = tmp_path / "enc"
    code, out, err = run_cli(capsys, checkpoint, "-o", outdir, "--pes", 3, "--density", 0.25, "--index-bits", 3,
                             "--weight-bits", 10, "--act-frac", 10)
    assert code == 0, err
    expected = compress_and_encode(model, 3, 0.25, numerics=Numerics(weight_bits=10, index_bits=3, act_frac=10))
    loaded = load_encoded(outdir)
    assert loaded.numerics == expected.qmodel.numerics
    decoded = decode(loaded)
    for a, b in zip(decoded.layers, expected.qmodel.layers):
        np.testing.assert_array_equal(a.w_gates, b.w_gates)
        np.testing.assert_array_equal(a.w_proj, b.w_proj)

    report = json.loads((outdir / "report.json").read_text())
    names = [m["name"] for m in report["matrices"]]
    assert names == list(model.matrices())
    for m in report["matrices"]:
        assert m["target_density"] == 0.25
        assert m["name"] in out
    totals = report["totals"]
    assert totals["nonzeros"] == sum(np.count_nonzero(w) for layer in expected.qmodel.layers
                                     for w in (layer.w_gates, layer.w_proj))
    assert totals["entries"] == loaded.total_entries == totals["nonzeros"] + totals["padding"]
    assert sum(m["padding"] for m in report["matrices"]) == totals["padding"]
    assert totals["compressed_bits"] == (totals["entries"] * 13 + totals["pointer_words"]
                                         * report["memories"]["pointer_bits"])
    assert totals["compression"] == pytest.approx(totals["dense_float32_bits"] / totals["compressed_bits"])
    assert f"compression {totals['compression']:.1f}x" in out
    gates = next(h for h in report["hardware"] if h["name"] == "L1.gates")
    assert gates["max_entries_per_pe"] == max(loaded.segment(p, 1, "gates").entry_count for p in range(3))
    # The index-width table: its own row is this encoding; the others are what a re-encode would give.
    options = {o["index_bits"]: o for o in report["index_width_options"]}
    assert sorted(options) == [2, 3, 4, 5]
    assert options[3]["entries"] == totals["entries"] and options[3]["padding"] == totals["padding"]
    assert options[3]["memory_bits"] == totals["compressed_bits"]
    assert options[3]["max_entries_per_pe_per_frame"] == totals["max_entries_per_pe_per_frame"]
    assert all(options[b]["padding"] >= options[b + 1]["padding"] for b in (2, 3, 4))
    wider = compress_and_encode(model, 3, 0.25, numerics=Numerics(weight_bits=10, index_bits=5, act_frac=10))
    assert options[5]["entries"] == wider.encoded.total_entries
    assert "index bits" in out and "4 (this)" not in out and "3 (this)" in out


def test_index_width_hint_on_a_very_sparse_model(tmp_path, capsys):
    """Long runs of zeros overflow a narrow index into padding entries: the command suggests a wider one."""
    sparse = random_model(input_size=64, cell_size=32, proj_size=16, seed=3)
    path = tmp_path / "sparse.npz"
    save_npz(sparse, path)
    code, out, err = run_cli(capsys, path, "-o", tmp_path / "enc", "--pes", 2, "--density", 0.03, "--index-bits", 2)
    assert code == 0, err
    report = json.loads((tmp_path / "enc" / "report.json").read_text())
    best = min(report["index_width_options"], key=lambda o: (o["max_entries_per_pe_per_frame"], o["memory_bits"]))
    assert best["index_bits"] > 2
    assert f"hint: --index-bits {best['index_bits']} gives the busiest PE" in out
    this = next(o for o in report["index_width_options"] if o["index_bits"] == 2)
    # Fewer padding entries outweigh the wider word here: less memory as well.
    assert best["memory_bits"] < this["memory_bits"]
    assert f"in {100 * (1 - best['memory_bits'] / this['memory_bits']):.1f} % less memory" in out
    code, out, err = run_cli(capsys, path, "-o", tmp_path / "enc2", "--pes", 2, "--density", 0.03,
                             "--index-bits", best["index_bits"])
    assert code == 0
    again = json.loads((tmp_path / "enc2" / "report.json").read_text())["index_width_options"]
    # Re-encoded at the suggested width, the table looks further out: never back to a narrower width.
    assert min(again, key=lambda o: (o["max_entries_per_pe_per_frame"], o["memory_bits"]))["index_bits"] >= \
        best["index_bits"]


def test_index_width_hint_for_the_same_cycles_in_less_memory(tmp_path, capsys):
    """A dense model has no zero runs: a narrower index costs no padding, so the hint offers the memory."""
    path = tmp_path / "dense.npz"
    save_npz(random_model(input_size=10, cell_size=20, proj_size=5, seed=1), path)
    code, out, err = run_cli(capsys, path, "-o", tmp_path / "enc", "--pes", 4, "--density", 1.0)
    assert code == 0, err
    report = json.loads((tmp_path / "enc" / "report.json").read_text())
    best = min(report["index_width_options"], key=lambda o: (o["max_entries_per_pe_per_frame"], o["memory_bits"]))
    assert best["index_bits"] < 4
    assert f"hint: --index-bits {best['index_bits']} gives the same entries (cycles) per frame, in " in out
    assert " % less memory" in out


def test_density_one_keeps_every_weight_and_balanced_is_the_default(checkpoint, tmp_path, capsys):
    code, _, err = run_cli(capsys, checkpoint, "-o", tmp_path / "dense", "--pes", 4)
    assert code == 0, err
    report = json.loads((tmp_path / "dense" / "report.json").read_text())
    assert report["balanced"] is True
    # Random float weights almost never quantise to 0: nearly everything is kept.
    assert report["totals"]["density"] > 0.99


def test_densities_file_and_unbalanced(checkpoint, tmp_path, capsys):
    densities = tmp_path / "densities.json"
    densities.write_text(json.dumps({"L0.proj": 0.0, "L1.input.g": 1.0, "default": 0.4}))
    code, _, err = run_cli(capsys, checkpoint, "-o", tmp_path / "enc", "--pes", 2, "--densities", densities,
                           "--unbalanced")
    assert code == 0, err
    report = json.loads((tmp_path / "enc" / "report.json").read_text())
    by_name = {m["name"]: m for m in report["matrices"]}
    assert report["balanced"] is False
    assert by_name["L0.proj"]["nonzeros"] == 0
    assert by_name["L0.input.i"]["target_density"] == 0.4
    assert by_name["L0.input.i"]["nonzeros"] == round(0.4 * 11 * 6)


BAD_INPUTS = {
    "missing checkpoint": (lambda d, ckpt: [d / "nope.npz", "-o", d / "out"], "nope.npz: file not found"),
    "density above 1": (lambda d, ckpt: [ckpt, "-o", d / "out", "--density", "1.5"], "density must be in [0, 1]"),
    "density below 0": (lambda d, ckpt: [ckpt, "-o", d / "out", "--density=-0.1"], "density must be in [0, 1]"),
    "densities file missing": (lambda d, ckpt: [ckpt, "-o", d / "out", "--densities", d / "none.json"],
                               "none.json: densities file not found"),
    "densities not JSON": (lambda d, ckpt: [ckpt, "-o", d / "out", "--densities", write(d, "{0.1")],
                           "bad.json: not valid JSON"),
    "densities not an object": (lambda d, ckpt: [ckpt, "-o", d / "out", "--densities", write(d, "[0.1]")],
                                "bad.json: expected a JSON object mapping matrix names"),
    "unknown matrix name": (lambda d, ckpt: [ckpt, "-o", d / "out", "--densities",
                                             write(d, '{"L0.input.x": 0.1, "default": 0.2}')],
                            "bad.json: densities: unknown matrix name(s) ['L0.input.x']"),
    "matrix without density": (lambda d, ckpt: [ckpt, "-o", d / "out", "--densities",
                                                write(d, '{"L0.input.i": 0.1}')],
                               "bad.json: densities: no density for ['L0.input.f'"),
    "density in file out of range": (lambda d, ckpt: [ckpt, "-o", d / "out", "--densities",
                                                      write(d, '{"default": 0.5, "L1.proj": 2}')],
                                     "bad.json: densities['L1.proj']: density must be in [0, 1], got 2.0"),
    "density in file not a number": (lambda d, ckpt: [ckpt, "-o", d / "out", "--densities",
                                                      write(d, '{"default": "half"}')],
                                     "bad.json: densities['default']: expected a number in [0, 1], got 'half'"),
    "zero PEs": (lambda d, ckpt: [ckpt, "-o", d / "out", "--pes", "0"], "the number of PEs must be an integer >= 1"),
    "bad index width": (lambda d, ckpt: [ckpt, "-o", d / "out", "--index-bits", "0"], "Numerics.index_bits = 0"),
    "output is a file": (lambda d, ckpt: [ckpt, "-o", ckpt], "exists and is not a directory"),
    "prefix on an npz": (lambda d, ckpt: [ckpt, "-o", d / "out", "--prefix", "lstm"],
                         "only selects an LSTM inside a PyTorch checkpoint"),
}


def write(directory, text):
    path = directory / "bad.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_1_with_one_line(checkpoint, tmp_path, capsys, case):
    make_args, message = BAD_INPUTS[case]
    code, out, err = run_cli(capsys, *make_args(tmp_path, checkpoint))
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("sparselstm encode: error: "), err
    assert message in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_the_installed_command_exits_1(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sparselstm", "encode", str(tmp_path / "missing.npz"), "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("missing.npz: file not found")


def test_encode_a_pytorch_checkpoint(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from sparselstm.sw.loaders import load_model

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(input_size=5, hidden_size=8, proj_size=3, num_layers=2)
    torch.save(lstm.state_dict(), tmp_path / "lstm.pt")
    code, out, err = run_cli(capsys, tmp_path / "lstm.pt", "-o", tmp_path / "enc", "--pes", 3, "--density", 0.5)
    assert code == 0, err
    expected = compress_and_encode(load_model(tmp_path / "lstm.pt"), 3, 0.5)
    decoded = decode(load_encoded(tmp_path / "enc"))
    for a, b in zip(decoded.layers, expected.qmodel.layers):
        np.testing.assert_array_equal(a.w_gates, b.w_gates)
        np.testing.assert_array_equal(a.bias, b.bias)
    assert "L1.proj" in out
