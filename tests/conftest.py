"""Shared pytest fixtures. Keep this small and generic: fixtures used by one test file belong in that file."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sparselstm.sw.model import LSTMPModel, random_model


@pytest.fixture
def yosys() -> list[str]:
    """The command of a Yosys with its Verilog frontend (system or YoWASP: hw/boards/flow.py); the test is skipped
    where the board tools (.[boards], part of .[dev]) are not installed. Amaranth's built-in Yosys has none."""
    flow = pytest.importorskip("sparselstm.hw.boards.flow")
    from sparselstm.spec.errors import ParameterError
    try:
        return flow.tool_command("yosys")
    except ParameterError as error:
        pytest.skip(str(error))


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every failure reproduces."""
    return np.random.default_rng(20170222)  # ESE was presented at FPGA on 2017-02-22


@pytest.fixture
def small_model() -> LSTMPModel:
    """Two layers, odd sizes, peepholes and a projection: every feature of an LSTMP, still tiny."""
    return random_model(input_size=5, cell_size=7, proj_size=3, num_layers=2, peephole=True, seed=1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI every tool is installed (make install), so a skipped test means a missing install step: fail it."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where `make install` provides every tool: {report.longrepr}"


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory):
    """(root, corpus directory, checkpoint): a tiny keyword classifier trained on a synthetic corpus (4
    words), its checkpoint root/dense.pt with its exports; for the compression commands' tests."""
    torch = pytest.importorskip("torch")
    from sparselstm.sw import train as training
    from sparselstm.sw.speech.task import Task, synthetic_task

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained-classifier")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, split in synthetic_task(num_classes=4, per_class=40, steps=8, width=6).splits.items():
        split.save(corpus / f"{name}.npz")
    data = Task.load(corpus)
    classifier = training.build_classifier(data, cells=16, proj=6, layers=1)
    training.train(classifier, data, 6, lr=0.01, batch_size=32, progress=False, log=None)
    training.save_checkpoint(classifier, root / "dense.pt")
    return root, corpus, root / "dense.pt"
