"""Parallel jobs of one simulation: the frames split at sequence starts into contiguous shares, each run by
its own process of the one native Verilator build at the same time, the results merged. Plain Python.

A sequence start resets the accelerator's state (the golden model's too), so a share that begins at one
gives the same words run alone, from reset, as in the whole stream; every share is checked word for word
against its slice of the expected words, as a single run is. With S interleaved streams a share must
begin where S frames in a row (one per stream, the first of a group) all start sequences.

The merged result reads like one run's: the outputs and expected words back to back (the outputs up to
the first share that came out incomplete), mismatches summed and the first named by its frame in the whole
run, every share's errors and failed checks prefixed with its job and frames, the DUT's status registers
and counters summed (`busy` the highest), `sim_cycles` the simulated cycles of all shares, and the frame
cycles laid out as if the shares ran one after another. `stream_seconds` is the wall time of the parallel
stream (the first share's start to the last one's end, on the monotonic clock the native main reports),
`stream_cpu_seconds` the CPU of all shares; `jobs` has one summary per share.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np

from ..spec.errors import ParameterError
from .result import SimResult

__all__ = ["check_jobs", "job_shares", "run_jobs", "merge_results"]


def check_jobs(jobs) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ParameterError(f"jobs must be an int >= 1, got {jobs!r}")


def job_shares(starts, jobs: int, streams: int = 1) -> list[tuple[int, int]]:
    """Up to `jobs` contiguous [begin, end) shares of the frames whose `starts` are given, each beginning
    where a share may (every stream starts a sequence there), the largest as small as those places allow
    (the parallel run lasts as long as its largest share)."""
    check_jobs(jobs)
    starts = np.asarray(starts, dtype=bool)
    frames = len(starts)
    if isinstance(streams, bool) or not isinstance(streams, int) or streams < 1 or frames % streams:
        raise ParameterError(f"streams must be an int >= 1 dividing the {frames} frame(s), got {streams!r}")
    groups = starts.reshape(-1, streams).all(axis=1)              # every stream starts a sequence
    ends = np.append(np.flatnonzero(groups[1:]) * streams + streams, frames)   # where a share may end

    def split(largest: int) -> list[int] | None:
        """The bounds of the fewest shares of at most `largest` frames (each as long as it may be)."""
        bounds = [0]
        while bounds[-1] < frames:
            reachable = np.searchsorted(ends, bounds[-1] + largest, side="right")
            if not reachable or ends[reachable - 1] <= bounds[-1]:
                return None
            bounds.append(int(ends[reachable - 1]))
        return bounds

    low, high = 1, frames                                         # split(frames) is one share
    while low < high:
        middle = (low + high) // 2
        bounds = split(middle)
        if bounds is not None and len(bounds) - 1 <= jobs:
            high = middle
        else:
            low = middle + 1
    bounds = split(low)
    return list(zip(bounds[:-1], bounds[1:]))


def run_jobs(shares, run_share, progress=None) -> SimResult:
    """Run `run_share(k, begin, end, on_progress, stop) -> SimResult` for every share at once (one thread
    each, waiting on its simulator process) and merge the results. `progress(dict)` gets the sums over the
    shares of each share's latest progress line. If a share raises (or the wait is interrupted), `stop` is
    set, on which the other shares kill their simulators, and the first error is raised."""
    latest: dict[int, dict] = {}
    lock = threading.Lock()

    def on_progress(k: int):
        def update(line: dict) -> None:
            with lock:
                latest[k] = line
                total = {"frames": 0, "total": 0, "cycles": 0, "mismatches": 0, "wall": 0.0}
                for seen in latest.values():
                    for key in ("frames", "total", "cycles", "mismatches"):
                        total[key] += seen[key]
                    total["wall"] = max(total["wall"], seen["wall"])
                total["total"] = shares[-1][1]
                progress(total)
        return update if progress else None

    started = time.monotonic()
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=len(shares)) as pool:
        futures = [pool.submit(run_share, k, begin, end, on_progress(k), stop) for k, (begin, end) in enumerate(shares)]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((future for future in futures if future in done and future.exception()), None)
            if failed is not None:
                raise failed.exception()
        except BaseException:
            stop.set()
            raise
        results = [future.result() for future in futures]
    return merge_results(results, shares, time.monotonic() - started)


def _label(k: int, share: tuple[int, int]) -> str:
    return f"job {k} (frames {share[0]}-{share[1] - 1})"


def _merge_tests(results, shares) -> dict[str, str]:
    merged = {}
    for name in dict.fromkeys(name for result in results for name in result.tests):
        outcomes = [result.tests.get(name, "missing") for result in results]
        failed = [f"{_label(k, share)}: {outcome}" for k, (share, outcome) in enumerate(zip(shares, outcomes))
                  if outcome not in ("pass", "skipped")]
        merged[name] = "; ".join(failed) if failed else ("pass" if "pass" in outcomes else "skipped")
    return merged


def _merge_status(results) -> dict:
    status = {}
    for key in dict.fromkeys(key for result in results for key in result.status):
        values = [result.status.get(key) for result in results]
        if not all(isinstance(value, int) for value in values):
            status[key] = values[0]
        else:
            status[key] = max(values) if key == "busy" else sum(values)
    return status


def _merge_counters(results) -> dict:
    counters = {}
    for name in dict.fromkeys(name for result in results for name in result.counters):
        per_job = [result.counters.get(name) or [] for result in results]
        counters[name] = [sum(values) if all(isinstance(v, int) for v in values) else values[0]
                          for values in zip(*per_job)]
    return counters


def merge_results(results: list[SimResult], shares, run_seconds: float) -> SimResult:
    """One result from the shares' results, in share order (see the module's docstring); `run_seconds`:
    the wall time of the whole parallel run."""
    outputs = []
    for result in results:
        outputs.append(result.outputs)
        if result.outputs.shape != result.expected.shape:
            break                                  # the outputs stay a prefix of the expected words
    expected = np.concatenate([result.expected for result in results])
    outputs = np.concatenate(outputs)
    offsets = np.cumsum([0] + [result.sim_cycles for result in results])
    starts = [result.stream_started_at for result in results]
    if all(start is not None for start in starts):
        stream_seconds = (max(start + result.stream_seconds for start, result in zip(starts, results))
                          - min(starts))
    else:
        stream_seconds = max(result.stream_seconds for result in results)
    first = next((result.first_mismatch for result in results if result.first_mismatch), None)
    failing = next((result for result in results if not result.passed), None)
    merged = SimResult(
        passed=all(result.passed for result in results) and np.array_equal(outputs, expected),
        simulator=results[0].simulator, outputs=outputs, expected=expected, frames=len(expected),
        frames_received=len(outputs), mismatches=sum(result.mismatches for result in results),
        first_mismatch=first,
        errors=[f"{_label(k, share)}: {error}" for k, (share, result) in enumerate(zip(shares, results))
                for error in result.errors],
        tests=_merge_tests(results, shares), status=_merge_status(results), counters=_merge_counters(results),
        sim_cycles=int(offsets[-1]),
        frame_start_cycles=[int(offset + c) for offset, r in zip(offsets, results) for c in r.frame_start_cycles],
        frame_done_cycles=[int(offset + c) for offset, r in zip(offsets, results) for c in r.frame_done_cycles],
        run_seconds=run_seconds, stream_seconds=stream_seconds,
        stream_cpu_seconds=sum(result.stream_cpu_seconds for result in results),
        stream_started_at=min(starts) if all(start is not None for start in starts) else None,
        build_dir=failing.build_dir if failing else Path(results[0].build_dir).parent,
    )
    merged.jobs = [{"job": k, "frames": list(share), "passed": result.passed,
                    "frames_received": result.frames_received, "mismatches": result.mismatches,
                    "sim_cycles": result.sim_cycles, "stream_seconds": round(result.stream_seconds, 3),
                    "stream_cpu_seconds": round(result.stream_cpu_seconds, 3),
                    "cycles_per_second": result.cycles_per_second,
                    "cycles_per_cpu_second": result.cycles_per_cpu_second, "build_dir": str(result.build_dir)}
                   for k, (share, result) in enumerate(zip(shares, results))]
    return merged
