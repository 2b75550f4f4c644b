"""Every command on bad arguments and inputs, in-process: a non-zero exit, one line on stderr naming the
file or argument and the problem, no traceback, and no output written. Nothing here starts a simulator:
the `sim` cases all fail before the simulation."""

import json

import numpy as np
import pytest

from sparselstm.cli import main
from sparselstm.sw.format import write_encoded
from sparselstm.sw.loaders import save_npz
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode
from sparselstm.sw.pruning import MAX_PES
from sparselstm.sw.speech.task import ClassifierHead, FeatureSet

INPUT, CELLS, OUTPUT = 4, 6, 3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model, its encoding for 2 PEs, inputs good and bad, a classifier head and feature set."""
    d = tmp_path_factory.mktemp("bad_inputs")
    model = random_model(input_size=INPUT, cell_size=CELLS, proj_size=OUTPUT, num_layers=1, seed=5)
    save_npz(model, d / "model.npz")
    write_encoded(compress_and_encode(model, 2, 0.5).encoded, d / "enc")
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.normal(size=(2, 3, INPUT)),
        "x_wide": rng.normal(size=(2, 3, INPUT + 1)),
        "x_1d": rng.normal(size=INPUT),
        "x_b0": np.zeros((0, 3, INPUT)),
        "x_t0": np.zeros((2, 0, INPUT)),
        "x_nan": np.where(np.arange(INPUT) == 1, np.nan, rng.normal(size=(3, INPUT))),
        "x_inf": np.full((3, INPUT), np.inf),
        "x_text": np.array([["a"] * INPUT] * 3),
        "x_complex": np.ones((3, INPUT), dtype=complex),
        "x_words_too_big": np.full((3, INPUT), 1 << 20, dtype=np.int64),
        "starts_short": np.ones(2, dtype=bool),
        "starts_float": np.full((2, 3), 0.5),
    }
    for name, array in arrays.items():
        np.save(d / f"{name}.npy", array)
    np.savez(d / "archive.npz", x=arrays["x"])
    (d / "garbage.npy").write_bytes(b"not an array")
    (d / "a_file").write_text("")
    (d / "densities_bad.json").write_text("{not json")
    vocabulary = ("yes", "no")
    features = FeatureSet(rng.normal(size=(4, 3, INPUT)).astype(np.float32), np.arange(4) % 2, vocabulary)
    features.save(d / "features.npz")
    ClassifierHead(np.zeros(INPUT), np.ones(INPUT), rng.normal(size=(2, OUTPUT)), np.zeros(2),
                   vocabulary).save(d / "head.npz")
    ClassifierHead(np.zeros(INPUT), np.ones(INPUT), rng.normal(size=(2, OUTPUT + 2)), np.zeros(2),
                   vocabulary).save(d / "head_wide.npz")
    ClassifierHead(np.zeros(INPUT + 1), np.ones(INPUT + 1), rng.normal(size=(2, OUTPUT)), np.zeros(2),
                   vocabulary).save(d / "head_other_input.npz")
    return d


# A directory in which nothing can be created, even by root.
UNWRITABLE = "/proc/sparselstm-test"

# name: (arguments, with {d} the fixture directory and {out} a fresh directory; words the error must hold)
CASES = {
    # reference
    "reference: missing model": ("reference {d}/none.npz -i {d}/x.npy -o {out}/y.npy", ["none.npz", "not found"]),
    "reference: missing input": ("reference {d}/model.npz -i {d}/none.npy -o {out}/y.npy", ["none.npy", "not found"]),
    "reference: input is a directory": ("reference {d}/model.npz -i {d} -o {out}/y.npy", ["is a directory"]),
    "reference: input not .npy": ("reference {d}/model.npz -i {d}/garbage.npy -o {out}/y.npy",
                                  ["garbage.npy", "not a readable .npy"]),
    "reference: input is .npz": ("reference {d}/model.npz -i {d}/archive.npz -o {out}/y.npy", [".npz archive"]),
    "reference: text input": ("reference {d}/model.npz -i {d}/x_text.npy -o {out}/y.npy", ["x_text.npy", "dtype"]),
    "reference: complex input": ("reference {d}/model.npz -i {d}/x_complex.npy -o {out}/y.npy", ["complex"]),
    "reference: wrong width": ("reference {d}/model.npz -i {d}/x_wide.npy -o {out}/y.npy",
                               ["x_wide.npy", f"(B, T, {INPUT})", "(2, 3, 5)"]),
    "reference: 1-D input": ("reference {d}/model.npz -i {d}/x_1d.npy -o {out}/y.npy", ["x_1d.npy", "(4,)"]),
    "reference: B = 0": ("reference {d}/model.npz -i {d}/x_b0.npy -o {out}/y.npy", ["x_b0.npy", "B, T >= 1"]),
    "reference: NaN": ("reference {d}/model.npz -i {d}/x_nan.npy -o {out}/y.npy", ["x_nan.npy", "non-finite"]),
    "reference: output is a directory": ("reference {d}/model.npz -i {d}/x.npy -o {d}", ["--output", "is a directory"]),
    "reference: output under a file": ("reference {d}/model.npz -i {d}/x.npy -o {d}/a_file/y.npy",
                                       ["a_file", "is not a directory"]),
    "reference: unwritable output": ("reference {d}/model.npz -i {d}/x.npy -o " + UNWRITABLE + "/y.npy",
                                     ["--output", "cannot write"]),
    # golden
    "golden: missing encoded model": ("golden {d}/none -i {d}/x.npy -o {out}/y.npy", ["none"]),
    "golden: B = 0": ("golden {d}/enc -i {d}/x_b0.npy -o {out}/y.npy", ["x_b0.npy", "B, T >= 1"]),
    "golden: T = 0": ("golden {d}/enc -i {d}/x_t0.npy -o {out}/y.npy", ["x_t0.npy", "(2, 0, 4)"]),
    "golden: inf": ("golden {d}/enc -i {d}/x_inf.npy -o {out}/y.npy", ["x_inf.npy", "non-finite"]),
    "golden: wrong width": ("golden {d}/enc -i {d}/x_wide.npy -o {out}/y.npy", ["x_wide.npy", "(2, 3, 5)"]),
    "golden: starts of the wrong shape": ("golden {d}/enc -i {d}/x.npy -o {out}/y.npy --starts {d}/starts_short.npy",
                                          ["starts_short.npy", "(2, 3)"]),
    "golden: starts not boolean": ("golden {d}/enc -i {d}/x.npy -o {out}/y.npy --starts {d}/starts_float.npy",
                                   ["starts_float.npy", "booleans"]),
    "golden: raw words beyond the act word": ("golden {d}/enc -i {d}/x_words_too_big.npy -o {out}/y.npy --raw",
                                              ["x_words_too_big.npy", "--raw", "16-bit"]),
    "golden: output is a directory": ("golden {d}/enc -i {d}/x.npy -o {d}", ["--output", "is a directory"]),
    "golden: unwritable output": ("golden {d}/enc -i {d}/x.npy -o " + UNWRITABLE + "/y.npy", ["cannot write"]),
    # encode
    "encode: --pes above the hardware maximum": (f"encode {{d}}/model.npz -o {{out}}/e --pes {MAX_PES + 1}",
                                                 [f"at most {MAX_PES}"]),
    "encode: --pes 100000": ("encode {d}/model.npz -o {out}/e --pes 100000", [f"at most {MAX_PES}"]),
    "encode: --pes beyond the model's rows": ("encode {d}/model.npz -o {out}/e --pes 7",
                                              ["7 PEs", f"at most {CELLS} rows", "PE 6 would hold no rows"]),
    "encode: --pes 0": ("encode {d}/model.npz -o {out}/e --pes 0", ["number of PEs", ">= 1"]),
    "encode: --pes not a number": ("encode {d}/model.npz -o {out}/e --pes many", ["--pes", "'many'"]),
    "encode: density above 1": ("encode {d}/model.npz -o {out}/e --pes 2 --density 1.5", ["density", "1.5"]),
    "encode: density NaN": ("encode {d}/model.npz -o {out}/e --pes 2 --density nan", ["density", "nan"]),
    "encode: densities not JSON": ("encode {d}/model.npz -o {out}/e --pes 2 --densities {d}/densities_bad.json",
                                   ["densities_bad.json", "not valid JSON"]),
    "encode: densities a directory": ("encode {d}/model.npz -o {out}/e --pes 2 --densities {d}",
                                      ["is a directory"]),
    "encode: output is a file": ("encode {d}/model.npz -o {d}/a_file --pes 2", ["a_file", "not a directory"]),
    "encode: unwritable output": ("encode {d}/model.npz -o " + UNWRITABLE + "/e --pes 2", ["cannot write"]),
    # build (checks that fail before any tool runs)
    "build: missing encoded model": ("build {d}/none --board ulx3s-85f -o {out}/b --plan-only", ["none"]),
    "build: output is a file": ("build {d}/enc --board ulx3s-85f -o {d}/a_file --plan-only",
                                ["a_file", "not a directory"]),
    "build: kcu105 is a plan only": ("build {d}/enc --board kcu105 -o {out}/b", ["--plan-only"]),
    # board (checks that fail before the port is opened)
    "board: missing encoded model": ("board {d}/none --port loop:// -i {d}/x.npy -o {out}/y.npy", ["none"]),
    "board: wrong width": ("board {d}/enc --port loop:// -i {d}/x_wide.npy -o {out}/y.npy",
                           ["x_wide.npy", "(2, 3, 5)"]),
    "board: output is a directory": ("board {d}/enc --port loop:// -i {d}/x.npy -o {d}",
                                     ["--output", "is a directory"]),
    "board: NaN": ("board {d}/enc --port loop:// -i {d}/x_nan.npy -o {out}/y.npy", ["x_nan.npy", "non-finite"]),
    # verilog
    "verilog: output is a file": ("verilog {d}/enc -o {d}/a_file", ["a_file", "not a directory"]),
    "verilog: unwritable output": ("verilog {d}/enc -o " + UNWRITABLE + "/v", ["cannot write"]),
    "verilog: --lanes 3": ("verilog {d}/enc -o {out}/v --lanes 3", ["lanes", "power of two"]),
    "verilog: more lanes than PEs": ("verilog {d}/enc -o {out}/v --lanes 64", ["lanes = 64", "divide"]),
    # sim: every case fails before the simulator starts
    "sim: --input without --output": ("sim {d}/enc -i {d}/x.npy --simulator icarus", ["--output is required"]),
    "sim: output is a directory": ("sim {d}/enc -i {d}/x.npy -o {d} --simulator icarus", ["--output", "directory"]),
    "sim: report is a directory": ("sim {d}/enc -i {d}/x.npy -o {out}/y.npy --report {d} --simulator icarus",
                                   ["--report", "is a directory"]),
    "sim: unwritable report": ("sim {d}/enc -i {d}/x.npy -o {out}/y.npy --report " + UNWRITABLE + "/r.json "
                               "--simulator icarus", ["--report", "cannot write"]),
    "sim: build dir is a file": ("sim {d}/enc -i {d}/x.npy -o {out}/y.npy --build-dir {d}/a_file --simulator icarus",
                                 ["--build-dir", "not a directory"]),
    "sim: wrong width": ("sim {d}/enc -i {d}/x_wide.npy -o {out}/y.npy --simulator icarus",
                         ["x_wide.npy", "(2, 3, 5)"]),
    "sim: B = 0": ("sim {d}/enc -i {d}/x_b0.npy -o {out}/y.npy --simulator icarus", ["x_b0.npy", "B, T >= 1"]),
    "sim: raw words beyond the act word": ("sim {d}/enc -i {d}/x_words_too_big.npy -o {out}/y.npy --raw "
                                           "--simulator icarus", ["x_words_too_big.npy", "16-bit"]),
    "sim: NaN": ("sim {d}/enc -i {d}/x_nan.npy -o {out}/y.npy --simulator icarus", ["x_nan.npy", "non-finite"]),
    "sim: starts of the wrong shape": ("sim {d}/enc -i {d}/x.npy -o {out}/y.npy --starts {d}/starts_short.npy "
                                       "--simulator icarus", ["starts_short.npy", "(2, 3)"]),
    "sim: features without a head": ("sim {d}/enc --features {d}/features.npz --simulator icarus", ["--head"]),
    "sim: head of another width": ("sim {d}/enc --features {d}/features.npz --head {d}/head_wide.npz "
                                   "--simulator icarus", ["head_wide.npz", "takes 5 LSTM outputs", "gives 3"]),
    "sim: head of another input": ("sim {d}/enc --features {d}/features.npz --head {d}/head_other_input.npz "
                                   "--simulator icarus", ["head_other_input.npz", "the LSTM takes 4"]),
    "sim: --count 0": ("sim {d}/enc --features {d}/features.npz --head {d}/head.npz --count 0 --simulator icarus",
                       ["--count must be at least 1"]),
    "sim: float model of another size": ("sim {d}/enc --features {d}/features.npz --head {d}/head.npz "
                                         "--float-model {d}/other.npz --simulator icarus", ["other.npz", "input 5"]),
    "sim: stall probability 1": ("sim {d}/enc -i {d}/x.npy -o {out}/y.npy --stall-in 1", ["--stall-in", "[0, 1)"]),
    # tables
    "tables: --encoded and a numerics flag": ("tables --encoded {d}/enc --weight-bits 8", ["--weight-bits"]),
    "tables: bad numerics": ("tables --weight-bits 0", ["weight_bits"]),
    # accuracy, sensitivity, compress: argument checks before any task is loaded
    "accuracy: output is a directory": ("accuracy -o {d} --pes 2", ["--output", "is a directory"]),
    "accuracy: --pes above the maximum": (f"accuracy -o {{out}}/a.json --pes {MAX_PES + 1}", [f"at most {MAX_PES}"]),
    "accuracy: density 0": ("accuracy -o {out}/a.json --density 0", ["density"]),
    "sensitivity: output is a file": ("sensitivity {d}/model.npz --task {d}/features.npz -o {d}/a_file",
                                      ["a_file", "not a directory"]),
    "sensitivity: --pes above the maximum": ("sensitivity {d}/model.npz --task {d}/none.py -o {out}/s "
                                                   "--pes 100000", [f"at most {MAX_PES}"]),
    "compress: output is a file": ("compress {d}/model.npz --task {d}/features.npz --target-density 0.5 "
                                   "-o {d}/a_file", ["a_file", "not a directory"]),
    "compress: unwritable output": ("compress {d}/model.npz --task {d}/features.npz --target-density 0.5 "
                                    "-o " + UNWRITABLE + "/c", ["cannot write"]),
    "compress: bad density": ("compress {d}/model.npz --task {d}/features.npz --target-density 2 -o {out}/c",
                              ["target density"]),
    "compress: --steps 0": ("compress {d}/model.npz --task {d}/features.npz --target-density 0.5 --steps 0 "
                            "-o {out}/c", ["--steps must be at least 1"]),
    # data, train
    "data: --workers 0": ("data -o {out}/corpus --workers 0", ["--workers must be at least 1"]),
    "data: output is a file": ("data -o {d}/a_file", ["a_file", "not a directory"]),
    "data: subset output not .npz": ("data --subset-of {d} -o {out}/x.txt", [".npz"]),
    "train: --epochs 0": ("train {d} -o {out}/m.pt --epochs 0", ["--epochs must be at least 1"]),
    "train: output is a directory": ("train {d} -o {d}", ["--output", "is a directory"]),
}


@pytest.fixture(scope="module")
def other_model(files):
    save_npz(random_model(input_size=INPUT + 1, cell_size=CELLS, proj_size=OUTPUT, seed=6), files / "other.npz")


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_writes_nothing(files, other_model, tmp_path, capsys, case):
    template, words = CASES[case]
    out = tmp_path / "out"
    argv = template.format(d=files, out=out).split()
    try:
        code = main(argv)
    except SystemExit as exit_:           # argparse: a usage error
        code = exit_.code
    stdout, stderr = capsys.readouterr()
    assert code not in (0, None), stdout
    assert "Traceback" not in stderr + stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"sparselstm {argv[0]}: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not out.exists() or not any(out.rglob("*")), "an output was written"


def test_the_suite_covers_every_command():
    from sparselstm.cli import COMMAND_MODULES

    assert {template.split()[0] for template, _ in CASES.values()} == set(COMMAND_MODULES)


def test_a_good_run_of_the_same_fixtures_succeeds(files, tmp_path, capsys):
    """The fixtures are fine apart from the one defect each case gives them."""
    assert main(["golden", str(files / "enc"), "-i", str(files / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape == (2, 3, OUTPUT)
    assert json.loads((files / "enc" / "manifest.json").read_text())


def test_allow_extra_keys_lets_a_model_with_an_unread_key_through(tmp_path, capsys):
    """An unread key is an error that names it and the flag; with --allow-extra-keys the model is used."""
    model = random_model(input_size=INPUT, cell_size=CELLS, proj_size=OUTPUT, num_layers=1, seed=5)
    save_npz(model, tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz") as archive:
        arrays = dict(archive)
    arrays["L0.peephol"] = np.zeros((3, CELLS))
    np.savez(tmp_path / "misspelt.npz", **arrays)
    np.save(tmp_path / "x.npy", np.random.default_rng(1).normal(size=(3, INPUT)))

    command = ["reference", str(tmp_path / "misspelt.npz"), "-i", str(tmp_path / "x.npy")]
    assert main(command + ["-o", str(tmp_path / "refused.npy")]) != 0
    error = capsys.readouterr().err
    assert "L0.peephol" in error and "--allow-extra-keys" in error and "Traceback" not in error
    assert not (tmp_path / "refused.npy").exists()

    assert main(command + ["-o", str(tmp_path / "y.npy"), "--allow-extra-keys"]) == 0
    assert main(["reference", str(tmp_path / "model.npz"), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y_clean.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "y_clean.npy"))
