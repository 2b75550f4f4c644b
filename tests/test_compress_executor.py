"""The executors of sw/compress/executor.py: results in task order, seeded tasks, progress, errors; and a
local Ray run of the sensitivity analysis that equals the serial run (skipped only without Ray)."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

from sparselstm.cli import main
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.compress.density import allocate
from sparselstm.sw.compress.executor import (ExecutorError, ProgressLine, RayExecutor, SerialExecutor,
                                             make_executor)
from sparselstm.sw.compress.sensitivity import sensitivity_analysis
from sparselstm.sw.compress.task import CallableTask
from sparselstm.sw.model import random_model
from sparselstm.sw.reference import reference_forward

# One pytest worker runs the whole file (`make test` distributes with --dist loadgroup): one local Ray
# cluster, started once, instead of one per worker competing for the cores.
pytestmark = [pytest.mark.filterwarnings("ignore:LSTM with projections is not supported"),
              pytest.mark.xdist_group("ray")]


def draw(shared, task):
    """A task whose result depends on the seeded global generator."""
    return shared + task + float(np.random.random())


def small_problem():
    """A two-layer model and a task scoring how close its outputs stay to the dense model's."""
    dense = random_model(input_size=5, cell_size=8, proj_size=3, num_layers=2, seed=7, scale=0.8)
    inputs = {"val": np.random.default_rng(1).normal(size=(12, 6, dense.input_size))}
    target = reference_forward(dense, inputs["val"])
    task = CallableTask(inputs, lambda outputs, split: -float(np.mean((outputs - target) ** 2)), name="distance")
    return dense, task


def test_serial_executor_keeps_task_order_and_seeds_each_task():
    executor = SerialExecutor(progress=False)
    first = executor.map(draw, [0.0, 10.0, 20.0], shared=1.0, seed=5)
    again = executor.map(draw, [0.0, 10.0, 20.0], shared=1.0, seed=5)
    assert first == again
    assert [int(v) for v in first] == [1, 11, 21]
    assert len({v % 1 for v in first}) == 3          # seed + index: a different draw per task
    with pytest.raises(ParameterError, match="2 labels for 3 tasks"):
        executor.map(draw, [0.0, 1.0, 2.0], shared=0.0, labels=["a", "b"])


def test_progress_line_rewrites_one_line_on_a_terminal_and_prints_lines_otherwise():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    log, terminal = io.StringIO(), Terminal()
    for stream in (log, terminal):
        line = ProgressLine("sensitivity", 4, stream=stream)
        line.update(1, 2, 1)
        line.update(1, 2, 1)     # no change, nothing written
        line.update(4, 0, 0, 0)
        line.close()
    assert log.getvalue().count("\n") == 2
    assert log.getvalue().startswith("sensitivity: 1/4 done, 2 running, 1 queued, 0 failed")
    assert terminal.getvalue().count("\r") == 2 and terminal.getvalue().endswith("\n")


def test_make_executor_checks_its_arguments():
    assert isinstance(make_executor("serial"), SerialExecutor)
    with pytest.raises(ParameterError, match="--ray-address needs --executor ray"):
        make_executor("serial", "localhost:6379")
    with pytest.raises(ParameterError, match="executor must be one of serial, ray"):
        make_executor("dask")


def load_experiment():
    """bench/compression_experiment.py as a module (registered: Ray pickles its functions by value)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "compression_experiment.py"
    spec = importlib.util.spec_from_file_location("compression_experiment_under_test", script)
    experiment = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = experiment
    spec.loader.exec_module(experiment)
    return experiment


def test_without_ray_the_option_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)     # import ray -> ImportError
    with pytest.raises(ExecutorError, match=r"pip install 'sparselstm\[cluster\]'"):
        make_executor("ray")
    assert main(["sensitivity", str(tmp_path / "dense.pt"), "--task", str(tmp_path), "--executor", "ray",
                 "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Ray, which is not installed: pip install 'sparselstm[cluster]'" in err[0], err
    experiment = load_experiment()
    try:
        with pytest.raises(SystemExit) as exit_info:
            experiment.parse_arguments(["--executor", "ray", "-o", str(tmp_path / "out")])
    finally:
        del sys.modules[experiment.__name__]
    assert exit_info.value.code == 2
    assert "pip install 'sparselstm[cluster]'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# A local Ray (CI installs the [cluster] extra)


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sparselstm[cluster]')")
    # Ray workers cannot import this test module by name: ship its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    if started:
        ray.shutdown()


def test_sensitivity_on_ray_equals_the_serial_run(ray_session):
    dense, task = small_problem()
    options = dict(densities=(0.2, 0.5), n_pes=2, balanced=True, split="val")
    serial = sensitivity_analysis(dense, task, executor=SerialExecutor(progress=False), **options)
    distributed = sensitivity_analysis(dense, task, executor=RayExecutor(progress=False), **options)
    assert {**serial.to_dict(), "seconds": 0} == {**distributed.to_dict(), "seconds": 0}
    assert allocate(serial, 0.4).densities == allocate(distributed, 0.4).densities
    assert RayExecutor(progress=False).map(draw, [0.0, 10.0], shared=1.0, seed=5) == \
        SerialExecutor(progress=False).map(draw, [0.0, 10.0], shared=1.0, seed=5)


def test_a_task_that_fails_once_is_retried_and_kept(ray_session, tmp_path):
    attempts = tmp_path / "attempts"
    attempts.mkdir()

    def fail_first_time(shared, task):
        marker = attempts / f"{task}.{len(list(attempts.glob(f'{task}.*')))}"
        marker.touch()
        if task == 1 and marker.name.endswith(".0"):
            raise RuntimeError("injected failure")
        return shared * task

    assert RayExecutor(progress=False).map(fail_first_time, [0, 1, 2], shared=3) == [0, 3, 6]
    assert sorted(p.name for p in attempts.iterdir()) == ["0.0", "1.0", "1.1", "2.0"]


def test_a_task_that_keeps_failing_names_itself(ray_session):
    def fail_on_two(shared, task):
        if task == 2:
            raise RuntimeError("bad point")
        return task

    with pytest.raises(ExecutorError, match=r"L0\.proj at density 0\.1 failed after 2 attempt\(s\): "
                                            r"RuntimeError: bad point"):
        RayExecutor(progress=False).map(fail_on_two, [0, 1, 2], labels=["a", "b", "L0.proj at density 0.1"])


def test_an_address_that_cannot_be_reached_is_one_clear_error(ray_session):
    import socket

    with socket.socket() as probe:   # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ExecutorError, match=rf"cannot reach the Ray cluster at 127\.0\.0\.1:{port} .*ray start --head"):
        RayExecutor(f"127.0.0.1:{port}", progress=False).map(draw, [0.0], shared=0.0)


def test_a_worker_that_dies_is_one_clear_error(ray_session):
    def die(shared, task):
        import os

        os._exit(1)

    with pytest.raises(ExecutorError, match=r"the dense baseline: its worker died after 2 attempt\(s\)"):
        RayExecutor(progress=False).map(die, [0], labels=["the dense baseline"])


def test_the_commands_on_ray_write_what_the_serial_commands_write(ray_session, trained_classifier, tmp_path,
                                                                  capsys):
    _, corpus, checkpoint = trained_classifier
    outputs = {}
    for executor in ("serial", "ray"):
        sensitivity = tmp_path / executor / "sensitivity"
        assert main(["sensitivity", str(checkpoint), "--task", str(corpus), "--densities", "0.2,0.5", "--pes", "2",
                     "--executor", executor, "-o", str(sensitivity), "-q"]) == 0
        compressed = tmp_path / executor / "compressed"
        assert main(["compress", str(checkpoint), "--task", str(corpus), "--target-density", "0.4", "--pes", "2",
                     "--sensitivity", str(sensitivity), "--steps", "1", "--epochs", "1", "--force-target",
                     "--compare", "--narrow-weight-bits", "0", "--executor", executor,
                     "-o", str(compressed), "-q"]) == 0
        curves = json.loads((sensitivity / "sensitivity.json").read_text())
        report = json.loads((compressed / "report.json").read_text())
        outputs[executor] = ({**curves, "seconds": 0},
                             {name: {key: run[key] for key in ("float_score", "golden_score", "matrix_density")}
                              for name, run in report["runs"].items()},
                             json.loads((compressed / "densities.json").read_text()))
    assert set(outputs["ray"][1]) == {"primary", "unbalanced", "uniform"}
    assert outputs["ray"] == outputs["serial"]


USER_TASK = '''
import numpy as np
from sparselstm.sw.compress.task import CallableTask
from sparselstm.sw.loaders import load_model
from sparselstm.sw.reference import reference_forward

def distance(outputs, target):
    return -float(np.mean((outputs - target) ** 2))

def make_task(checkpoint):
    dense = load_model(checkpoint)
    inputs = {"val": np.random.default_rng(3).normal(size=(6, 5, dense.input_size))}
    target = reference_forward(dense, inputs["val"])
    return CallableTask(inputs, lambda outputs, split: distance(outputs, target), name="distance")
'''


def test_a_task_file_of_the_users_own_runs_on_ray(ray_session, tmp_path):
    """The task file's module exists in the driver only: its functions travel by value."""
    from sparselstm.sw.loaders import save_npz

    save_npz(random_model(5, 8, 3, seed=2), tmp_path / "model.npz")
    (tmp_path / "mytask.py").write_text(USER_TASK)
    curves = {}
    for executor in ("serial", "ray"):
        assert main(["sensitivity", str(tmp_path / "model.npz"), "--task", str(tmp_path / "mytask.py"),
                     "--densities", "0.3,0.6", "--pes", "2", "--executor", executor,
                     "-o", str(tmp_path / executor), "-q"]) == 0
        curves[executor] = {**json.loads((tmp_path / executor / "sensitivity.json").read_text()), "seconds": 0}
    assert curves["ray"] == curves["serial"]


def test_the_experiment_ships_its_files_to_ray_and_brings_the_reports_back(ray_session, trained_classifier,
                                                                          tmp_path, capsys):
    """bench/compression_experiment.py --executor ray: every variant runs in a worker's scratch directory
    from shipped files; its report and log land in OUTDIR as in a local run."""
    experiment = load_experiment()
    ray_session.cloudpickle.register_pickle_by_value(experiment)
    _, corpus, checkpoint = trained_classifier
    out = tmp_path / "experiment"
    # Curves computed beforehand (serially), so that the experiment's own Ray session is the only one.
    assert main(["sensitivity", str(checkpoint), "--task", str(corpus), "--densities", "0.2,0.5", "--pes", "2",
                 "-o", str(out / "sensitivity"), "-q"]) == 0
    assert experiment.main(["--quick", "--checkpoint", str(checkpoint), "--data", str(corpus), "--pes", "2",
                            "--target-density", "0.4", "--reuse-sensitivity", "--executor", "ray",
                            "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    for variant in ("primary", "unbalanced", "uniform"):
        assert f"[{variant}] done" in printed
        assert (out / f"{variant}.log").read_text().split()[3] == "compress"
    targets = json.loads((out / "targets.json").read_text())
    primary = json.loads((out / "primary" / "report.json").read_text())
    assert targets["task"] == primary["task"] == corpus.name   # the corpus travels under its own name
    assert targets["compressed_golden_accuracy"] == primary["runs"]["primary"]["golden_score"]["w12"]
    assert (out / "primary" / "encoded").is_dir()
    ray_session.cloudpickle.unregister_pickle_by_value(experiment)
    del sys.modules[experiment.__name__]


def test_a_task_that_cannot_be_pickled_is_one_clear_error(ray_session):
    import threading

    with pytest.raises(ExecutorError, match="cannot be sent to Ray workers .*must be picklable"):
        RayExecutor(progress=False).map(draw, [0.0], shared=threading.Lock())
