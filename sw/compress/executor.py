"""Where the independent pieces of compression run: here, one after the other, or on a Ray cluster.

The sensitivity analysis scores one model per (matrix, density) point and the compression experiment runs
one compression per variant; none depends on another. An `Executor` maps a function over such tasks and
returns the results in task order, whatever order they finished in:

    results = executor.map(function, tasks, shared=(model, task), labels=[...])

calls `function(shared, task)` once per task. `shared` (the model, the CompressionTask, the data) is sent
to each Ray node once (`ray.put`), not once per task. Before each call the global random generators
(random, NumPy, PyTorch if loaded) are seeded from `seed` and the task's index, so a Ray run returns what a
serial run returns. Ray is optional (`pip install 'sparselstm[cluster]'`); docs/compression.md says how to
start a cluster.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import time
import warnings
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import numpy as np

from ...spec.errors import ParameterError, SparseLSTMError
from .task import USER_TASK_MODULE_PREFIX

EXECUTORS = ("serial", "ray")
INSTALL_RAY = "pip install 'sparselstm[cluster]'"


class ExecutorError(SparseLSTMError):
    """A task failed for good (after its retry), a worker died, or the cluster cannot be reached."""


def run_seeded(function: Callable, shared: Any, task: Any, seed: int) -> Any:
    """function(shared, task) with the global random generators seeded: the same draws on any worker."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:   # only a task that uses PyTorch has loaded it
        sys.modules["torch"].manual_seed(seed)
    return function(shared, task)


def run_on_worker(function: Callable, shared: Any, task: Any, seed: int) -> Any:
    """run_seeded on a Ray worker, where `shared` comes from the object store as read-only arrays."""
    # PyTorch warns on every read-only array it wraps; the tasks only read them (a write would raise).
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    return run_seeded(function, shared, task, seed)


class ProgressLine:
    """Tasks done, running, queued and failed: one line rewritten in place on a terminal, a plain line per
    change otherwise (a log file). Disabled: silent."""

    def __init__(self, description: str, total: int, enabled: bool = True, stream=None):
        self.description, self.total, self.enabled = description, total, enabled
        self.stream = stream if stream is not None else sys.stderr
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = None
        self._started = time.time()

    def update(self, done: int, running: int, queued: int = 0, failed: int = 0) -> None:
        if not self.enabled or (done, running, queued, failed) == self._last:
            return
        self._last = (done, running, queued, failed)
        line = (f"{self.description}: {done}/{self.total} done, {running} running, {queued} queued, "
                f"{failed} failed ({time.time() - self._started:.0f} s)")
        self.stream.write(f"\r{line}\x1b[K" if self._tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._tty and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()


class Executor(ABC):
    """Runs independent tasks. Contract of `map(function, tasks, shared, labels, seed, description)`:
    returns [function(shared, task) for task in tasks] in task order; task k runs with the random
    generators seeded from seed + k (`run_seeded`); `labels[k]` names task k in progress and errors;
    a task that fails for good raises ExecutorError naming it (the serial executor lets the task's own
    error through unchanged). Usable as a context manager (close() releases what it started)."""

    name = "executor"

    def __init__(self, progress: bool = True):
        self.progress = progress

    @abstractmethod
    def map(self, function: Callable, tasks: Sequence, shared: Any = None, labels: Sequence[str] | None = None,
            seed: int = 0, description: str = "tasks") -> list:
        ...

    def close(self) -> None:
        """Release what the executor started (nothing by default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @staticmethod
    def _labels(tasks: Sequence, labels: Sequence[str] | None) -> list[str]:
        if labels is None:
            return [f"task {k}" for k in range(len(tasks))]
        if len(labels) != len(tasks):
            raise ParameterError(f"{len(labels)} labels for {len(tasks)} tasks")
        return [str(label) for label in labels]


class SerialExecutor(Executor):
    """The tasks one after the other in this process (the default; no extra dependency)."""

    name = "serial"

    def map(self, function, tasks, shared=None, labels=None, seed=0, description="tasks"):
        tasks = list(tasks)
        self._labels(tasks, labels)
        line = ProgressLine(description, len(tasks), self.progress)
        results = []
        try:
            for index, task in enumerate(tasks):
                line.update(index, 1, len(tasks) - index - 1)
                results.append(run_seeded(function, shared, task, seed + index))
            line.update(len(tasks), 0)
        finally:
            line.close()
        return results


class RayExecutor(Executor):
    """The tasks as Ray tasks (one CPU each) on a cluster.

    address: None starts a local Ray for this machine's cores (`num_cpus`, default all); otherwise any
        address `ray.init` accepts ("auto", "HOST:6379", "ray://HOST:10001"). If Ray is already initialised
        in this process (e.g. by a test), that session is used and left running.
    max_retries: how often a failed task (exception or dead worker) is run again before it counts as failed.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, max_retries: int = 1,
                 progress: bool = True):
        super().__init__(progress)
        if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int)):
            raise TypeError(f"num_cpus: expected an int, got {type(num_cpus).__name__}")
        if num_cpus is not None and num_cpus < 1:
            raise ParameterError(f"num_cpus must be at least 1, got {num_cpus}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise TypeError(f"max_retries: expected an int, got {type(max_retries).__name__}")
        if max_retries < 0:
            raise ParameterError(f"max_retries must be >= 0, got {max_retries}")
        self.ray = import_ray()
        self.address, self.num_cpus, self.max_retries = address, num_cpus, max_retries
        self._started_here = False

    def _connect(self):
        ray = self.ray
        if self.address:
            check_reachable(self.address)
        if not ray.is_initialized():
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            try:
                if self.address:
                    ray.init(address=self.address)
                else:
                    ray.init(num_cpus=self.num_cpus or os.cpu_count(), include_dashboard=False)
            except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
                raise ExecutorError(f"cannot start or reach {where} ({type(error).__name__}: {_first_line(error)}); "
                                    f"start one with `ray start --head` (docs/compression.md)") from None
            self._started_here = True
        for name, module in list(sys.modules.items()):
            if name.startswith(USER_TASK_MODULE_PREFIX):
                ray.cloudpickle.register_pickle_by_value(module)
        return ray

    def map(self, function, tasks, shared=None, labels=None, seed=0, description="tasks"):
        tasks = list(tasks)
        labels = self._labels(tasks, labels)
        ray = self._connect()
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=True)(run_on_worker)
        try:
            shared_ref = ray.put(shared)   # once into the object store; each node fetches it once
        except Exception as error:  # noqa: BLE001 - cloudpickle raises TypeError, PicklingError, ...
            raise ExecutorError(f"the model and task cannot be sent to Ray workers ({type(error).__name__}: "
                                f"{_first_line(error)}); a task of your own must be picklable") from None
        futures = [remote.remote(function, shared_ref, task, seed + index) for index, task in enumerate(tasks)]
        index_of = {future: index for index, future in enumerate(futures)}
        line = ProgressLine(description, len(tasks), self.progress)
        pending, done, cpus = list(futures), 0, max(1, int(ray.cluster_resources().get("CPU", 1)))
        try:
            while pending:
                # Ray does not say which tasks have started: unfinished ones fill the cluster's CPUs first.
                running = min(len(pending), cpus)
                line.update(done, running, len(pending) - running)
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for future in ready:
                    try:
                        ray.get(future)
                    except Exception as error:  # noqa: BLE001 - any failure of a task is reported the same way
                        line.update(done, 0, 0, 1)
                        for other in pending:
                            ray.cancel(other)
                        raise ExecutorError(self._describe_failure(labels[index_of[future]], error)) from None
                    done += 1
            line.update(done, 0)
            return ray.get(futures)
        finally:
            line.close()

    def _describe_failure(self, label: str, error: Exception) -> str:
        attempts = f"{self.max_retries + 1} attempt(s)"
        exceptions = self.ray.exceptions
        if isinstance(error, exceptions.RayTaskError):
            cause = error.cause if getattr(error, "cause", None) is not None else error
            return f"{label} failed after {attempts}: {type(cause).__name__}: {_first_line(cause)}"
        if isinstance(error, (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError)):
            return (f"{label}: its worker died after {attempts} ({type(error).__name__}: {_first_line(error)}); "
                    f"check the node's memory and `ray status`")
        return f"{label} failed after {attempts}: {type(error).__name__}: {_first_line(error)}"

    def close(self) -> None:
        if self._started_here and self.ray.is_initialized():
            self.ray.shutdown()
        self._started_here = False


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """An ExecutorError unless HOST:PORT (or ray://HOST:PORT) accepts a connection: Ray itself retries an
    unreachable address for minutes before it gives up."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return   # "auto", "local" or another form only Ray knows: ray.init reports those itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ExecutorError(f"cannot reach the Ray cluster at {address} ({error.strerror or error}); is "
                            f"`ray start --head` running there, and is the port open? (docs/compression.md)") from None


def import_ray():
    """The ray module, or an ExecutorError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed: {INSTALL_RAY}") from None
    return ray


def make_executor(kind: str = "serial", address: str | None = None, progress: bool = True) -> Executor:
    """The executor the command line names: "serial", or "ray" at `address` (None: a local Ray)."""
    if kind == "serial":
        if address is not None:
            raise ParameterError("--ray-address needs --executor ray")
        return SerialExecutor(progress)
    if kind == "ray":
        return RayExecutor(address, progress=progress)
    raise ParameterError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")

