"""The board top, UART included, as Verilog for a cycle-based simulation that serves the serial line on a
socket (sim/board_server.py, docs/boards.md): SerialBoard without PLL and pins, clocked by the simulation.

Written into OUTDIR: `sparselstm_board.v` (memories inline) and `sparselstm_board.json`, which tells the
simulation what it cannot see in the Verilog:

    top              the top module; its ports are clk, rst, rx, tx (and the LEDs, left alone)
    clocks_per_bit   the UART's bit time in clock cycles (8N1: ten bits a byte)
    rest_cycles      after this many cycles without a bit on either line, nothing in the board changes until
                     the next bit arrives (every link timer has expired, the last frame has been computed and
                     sent), so the simulation may wait for the host instead of clocking
    clock_hz, baud, timeout_cycles, quiet_cycles, rx_buffer_bytes   as the board reports or uses them

A small clocks_per_bit keeps the simulation fast: with 4 (the least the receiver allows) the link is ten
times faster, counted in accelerator cycles, than the 3 Mbaud UART of a 125 MHz board. The link's timeout
and quiet times are given in byte times on the line rather than the board's milliseconds, for the same reason.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from amaranth.back import verilog as amaranth_verilog

from ..cycle_model import predict_cycles
from ..design import AcceleratorDesign
from ..verilog import portable_verilog
from .serial_board import SerialBoard
from .uart import BITS_PER_BYTE

__all__ = ["SIM_BOARD_TOP", "SIM_BAUD", "DEFAULT_CLOCKS_PER_BIT", "SimulationBoard", "write_simulation_board"]

SIM_BOARD_TOP = "sparselstm_board"
SIM_BAUD = 3_000_000                # nominal: the clock is clocks_per_bit x SIM_BAUD
DEFAULT_CLOCKS_PER_BIT = 4
TIMEOUT_BYTE_TIMES = 1000           # a frame that stops this long is an error
QUIET_BYTE_TIMES = 50               # after an error, the line must be quiet this long
LATENCY_MARGIN = 4                  # rest only after this many lone-frame latencies without a bit


@dataclass(frozen=True)
class SimulationBoard:
    """What `write_simulation_board` wrote: the Verilog file and the numbers of its sidecar JSON."""

    verilog: Path
    top: str
    clocks_per_bit: int
    clock_hz: int
    baud: int
    timeout_cycles: int
    quiet_cycles: int
    rest_cycles: int
    rx_buffer_bytes: int


def write_simulation_board(design: AcceleratorDesign, model_id: bytes, outdir, *,
                           clocks_per_bit: int = DEFAULT_CLOCKS_PER_BIT,
                           rx_buffer_bytes: int | None = None) -> SimulationBoard:
    """Write OUTDIR/sparselstm_board.v and .json for `design` answering with `model_id`; return what was
    written. `rx_buffer_bytes`: the link's receive buffer (default: the board's)."""
    if not isinstance(clocks_per_bit, int) or isinstance(clocks_per_bit, bool):
        raise TypeError(f"clocks_per_bit must be an int, got {type(clocks_per_bit).__name__}")
    byte_time = BITS_PER_BYTE * clocks_per_bit
    board = SerialBoard(design, model_id, clock_hz=clocks_per_bit * SIM_BAUD, baud=SIM_BAUD,
                        timeout_cycles=TIMEOUT_BYTE_TIMES * byte_time, quiet_cycles=QUIET_BYTE_TIMES * byte_time,
                        rx_buffer_bytes=rx_buffer_bytes)
    link = board.core.link
    latency = predict_cycles(design).first_frame
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = SimulationBoard(
        verilog=outdir / f"{SIM_BOARD_TOP}.v", top=SIM_BOARD_TOP, clocks_per_bit=board.divisor,
        clock_hz=board.clock_hz, baud=SIM_BAUD, timeout_cycles=link.timeout_cycles, quiet_cycles=link.quiet_cycles,
        rest_cycles=link.timeout_cycles + link.quiet_cycles + LATENCY_MARGIN * latency,
        rx_buffer_bytes=link.rx_buffer_bytes)
    text = amaranth_verilog.convert(board, name=SIM_BOARD_TOP, emit_src=False)
    written.verilog.write_text(portable_verilog(text))
    sidecar = {key: value for key, value in asdict(written).items() if key != "verilog"}
    (outdir / f"{SIM_BOARD_TOP}.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    return written
