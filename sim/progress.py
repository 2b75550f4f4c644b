"""Following a simulation's progress file from the runner's process. Plain Python."""

from __future__ import annotations

import json
import threading
from pathlib import Path

__all__ = ["ProgressTail"]


class ProgressTail(threading.Thread):
    """Follows the progress file the cocotb test appends to and calls `callback(dict)` per new line."""

    def __init__(self, path: Path, callback, period: float = 0.25):
        super().__init__(daemon=True)
        self._path, self._callback, self._period = path, callback, period
        self._stop_event = threading.Event()
        self._offset = 0

    def run(self) -> None:
        while not self._stop_event.wait(self._period):
            self.poll()

    def poll(self) -> None:
        try:
            with open(self._path) as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return
        complete, _, _ = chunk.rpartition("\n")
        if not complete:
            return
        self._offset += len(complete) + 1
        for line in complete.splitlines():
            try:
                self._callback(json.loads(line))
            except json.JSONDecodeError:
                continue

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.poll()
