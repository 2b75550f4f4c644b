"""The board top, UART included, verilated and served on a local socket (sim/board_server.cpp): a board
without a board, driven by the host driver through `socket://127.0.0.1:PORT`.

    with VerilatedBoard(board_dir) as board:          # board_dir: from hw/boards/sim_verilog.py
        ... BoardLink.open(board.url) ...

The board directory holds `sparselstm_board.v` and its sidecar `sparselstm_board.json` (top, clocks_per_bit,
rest_cycles, ...; docs/boards.md). The server is built once per directory with `verilator --cc --exe --build`
(no cocotb: the C++ main clocks the board and turns socket bytes into line bits and back) and rebuilt when the
Verilog or the server's source changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from ..spec.errors import ParameterError
from . import tools
from .runner import VERILATOR_BUILD_ARGS, SimulationError

__all__ = ["BOARD_SIDECAR", "VerilatedBoard", "build_board_server", "load_board_sidecar"]

BOARD_SIDECAR = "sparselstm_board.json"
SERVER_SOURCE = Path(__file__).with_name("board_server.cpp")
SERVER_NAME = "board_server"
SIDECAR_KEYS = ("top", "clocks_per_bit", "rest_cycles", "clock_hz", "baud", "timeout_cycles", "quiet_cycles",
                "rx_buffer_bytes")
UNOPTIMISED_MAKE_VARS = ("OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0")
EXIT_SECONDS = 30           # for the server to finish after the host closed the connection


def load_board_sidecar(board_dir) -> dict:
    """The sidecar of a simulated board directory; ParameterError naming the file and the missing key."""
    path = Path(board_dir) / BOARD_SIDECAR
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ParameterError(f"{path}: cannot read the simulated board's description ({error})") from error
    missing = [key for key in SIDECAR_KEYS if key not in sidecar]
    if missing:
        raise ParameterError(f"{path}: missing key(s) {', '.join(missing)} (expected {', '.join(SIDECAR_KEYS)})")
    return sidecar


def _digest(paths) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def build_board_server(board_dir, build_dir=None, *, optimise: bool = True) -> Path:
    """Build (or reuse) the Verilator server of the board in `board_dir`, in `build_dir` (default
    board_dir/verilator); return the executable. SimulationError naming build.log on failure.
    `optimise=False` compiles without C++ optimisation (-O0): a shorter build and a slower simulation, the
    better trade for a few frames (tests)."""
    board_dir = Path(board_dir)
    sidecar = load_board_sidecar(board_dir)
    verilog = board_dir / f"{sidecar['top']}.v"
    build_dir = Path(build_dir) if build_dir is not None else board_dir / "verilator"
    executable = build_dir / SERVER_NAME
    stamp = build_dir / "source.sha256"
    digest = _digest([verilog, SERVER_SOURCE]) + ("" if optimise else " -O0")
    if executable.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return executable
    tools.find_simulator("verilator")
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    command = ["verilator", "--cc", "--exe", "--build", "-j", "2", *VERILATOR_BUILD_ARGS,
               "--top-module", sidecar["top"], "--prefix", "Vboard", "--Mdir", str(build_dir),
               "-o", SERVER_NAME, str(SERVER_SOURCE.resolve()), str(verilog.resolve())]
    environment = {**os.environ, **tools.environment_overrides("verilator")}
    if not optimise:
        environment["MAKEFLAGS"] = " ".join([environment.get("MAKEFLAGS", ""), *UNOPTIMISED_MAKE_VARS])
    with open(log, "w") as output:
        finished = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
    if finished.returncode != 0 or not executable.is_file():
        raise SimulationError(f"building the simulated board's server failed (exit {finished.returncode})", log)
    stamp.write_text(digest)
    return executable


class VerilatedBoard:
    """Serves one connection to the verilated board of `board_dir` on 127.0.0.1 (port chosen by the OS).

    Use as a context manager: entering builds the server if needed (build_board_server: `build_dir`,
    `optimise`) and starts it, `url` is what the host opens; leaving waits for the server, which ends when
    the host closes the connection, and raises SimulationError if it failed. `sidecar` holds the board's numbers
    (clocks_per_bit, rx_buffer_bytes, ...).
    """

    def __init__(self, board_dir, build_dir=None, *, optimise: bool = True):
        self.board_dir = Path(board_dir)
        self.build_dir, self.optimise = build_dir, optimise
        self.sidecar = load_board_sidecar(self.board_dir)
        self.port: int | None = None
        self.report = ""                # the server's last line: cycles simulated, bytes in and out
        self._process: subprocess.Popen | None = None
        self._log: Path | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the simulated board is not running (use it in a `with` block)")
        return f"socket://127.0.0.1:{self.port}"

    def __enter__(self) -> "VerilatedBoard":
        executable = build_board_server(self.board_dir, self.build_dir, optimise=self.optimise)
        self._log = executable.with_name("server.log")
        with open(self._log, "w") as log:
            self._process = subprocess.Popen(
                [str(executable), "--clocks-per-bit", str(self.sidecar["clocks_per_bit"]),
                 "--rest-cycles", str(self.sidecar["rest_cycles"])],
                stdout=subprocess.PIPE, stderr=log, text=True)
        first = self._process.stdout.readline()         # "PORT <n>", or "" if the server died
        if not first.startswith("PORT "):
            self._process.kill()
            self._process.wait()
            raise SimulationError(f"the simulated board's server did not start (said {first.strip()!r})", self._log)
        self.port = int(first.split()[1])
        return self

    def __exit__(self, *exc_info) -> None:
        process = self._process
        if exc_info[0] is not None:
            process.terminate()                 # the host may never have connected
        try:
            process.wait(timeout=EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        lines = self._log.read_text(errors="replace").splitlines()
        self.report = lines[-1] if lines else ""
        if process.returncode != 0 and exc_info[0] is None:
            raise SimulationError(f"the simulated board's server failed (exit {process.returncode})", self._log)
