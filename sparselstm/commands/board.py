"""`sparselstm board`: run input frames through the accelerator on a board over the host link."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from ._files_and_checks import (add_frame_arguments, check_output_file, load_frames, load_sequence_starts,
                                quantize_frames, save_npy)

SIM_ENGINES = ("auto", "verilator", "amaranth")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "board",
        help="run frames through the accelerator on a board (host link over a serial port)",
        description="Send the frames of --input to a board built by `sparselstm build` over its host link "
                    "(docs/host-link.md) and write the outputs like `sparselstm golden`. The board must run "
                    "the encoded model given here (its manifest checksum is baked into the bitstream). "
                    "Sequences of a (B, T, I) input run back to back, each starting a new sequence.",
    )
    parser.add_argument("encoded", type=Path, metavar="ENCODED_DIR", help="the encoded model the board was built for")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="URL",
                       help="a pyserial URL: /dev/ttyUSB0, COM3, socket://HOST:PORT (e.g. a simulated board)")
    where.add_argument("--sim", nargs="?", const="auto", choices=SIM_ENGINES, metavar="ENGINE",
                       help="no board: a simulated board served on a local socket and driven exactly like one. "
                            "verilator: the board top, UART included, verilated (built once per model under "
                            "--sim-dir: minutes for 16 PEs; then tens of thousands of cycles per second); "
                            "amaranth: the host link and accelerator without the UART in the Amaranth "
                            "simulator (no C++ build, about a thousand cycles per second: tiny models). Bare "
                            "--sim: verilator when it is installed, else amaranth")
    parser.add_argument("--sim-dir", type=Path, default=None, metavar="DIR",
                        help="where --sim verilator writes the board's Verilog and builds it (default: "
                             "sparselstm-board-sim/MODEL_ID under the system's temporary directory, reused while "
                             "the Verilog is unchanged)")
    add_frame_arguments(parser)
    parser.add_argument("--check", action="store_true",
                        help="compare every output word with the golden model; exit 1 if any differs")
    parser.add_argument("--baud", type=int, default=3_000_000, help="serial baud rate (default 3000000)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds to wait for an answer before giving up (default 5, with --sim 120)")
    parser.set_defaults(func=run)


def _simulated_board(engine: str, encoded, board_id: bytes, sim_dir: Path | None):
    """The context manager of a simulated board for `engine` (SIM_ENGINES)."""
    from ..hw.design import AcceleratorDesign
    from ..sim.tools import available_simulators

    if engine == "auto":
        engine = "verilator" if "verilator" in available_simulators() else "amaranth"
        if engine == "amaranth":
            print("board: Verilator not found, simulating the board without its UART in the Amaranth "
                  "simulator", file=sys.stderr)
    design = AcceleratorDesign.from_encoded(encoded)
    if engine == "amaranth":
        from ..hw.boards.simulated import SimulatedBoard
        return SimulatedBoard(design, board_id)

    from ..hw.boards.sim_verilog import write_simulation_board
    from ..sim.board_server import VerilatedBoard

    directory = sim_dir or Path(tempfile.gettempdir()) / "sparselstm-board-sim" / board_id.hex()
    print(f"board: the board's Verilog and its Verilator build (reused while the Verilog is unchanged) under "
          f"{directory}", file=sys.stderr)
    write_simulation_board(design, board_id, directory)
    return VerilatedBoard(directory)


def _sequences(x_q: np.ndarray, starts):
    """x_q as a batch (B, T, I) and its sequence starts (B, T)."""
    batch = x_q[None] if x_q.ndim == 2 else x_q
    starts = np.zeros(batch.shape[:2], dtype=bool) if starts is None else np.asarray(starts, dtype=bool)
    return batch, starts.reshape(batch.shape[:2])


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..spec.errors import ParameterError
    from ..spec.host_link import model_id
    from ..sw.format import load_encoded
    from ..sw.fixedpoint import dequantize_output
    from ..sw.golden import golden_forward_encoded
    from ..sw.hostlink.driver import BoardLink

    check_output_file(args.output)
    encoded = load_encoded(args.encoded)
    expected_id = model_id(args.encoded)
    x = load_frames(args.input, encoded.layers[0].input_size)
    starts = None if args.starts is None else load_sequence_starts(args.starts, x.shape[:-1])
    x_q, _ = quantize_frames(x, encoded.numerics, args.raw, "board", args.input)
    batch, batch_starts = _sequences(x_q, starts)

    with contextlib.ExitStack() as stack:
        port = args.port
        if args.sim:
            port = stack.enter_context(_simulated_board(args.sim, encoded, expected_id,
                                                        args.sim_dir)).url
        timeout = args.timeout if args.timeout is not None else (120.0 if args.sim else 5.0)
        with BoardLink.open(port, args.baud, timeout=timeout) as link:
            identity = link.identify()
            if identity.model_id != expected_id:
                raise ParameterError(f"the board at {port} runs the model {identity.model_id.hex()}, not "
                                     f"{args.encoded} ({expected_id.hex()}): rebuild the bitstream for this model")
            link.reset()
            outputs, statistics = [], []
            with tqdm(total=batch.shape[0] * batch.shape[1], unit="frame", desc="board", file=sys.stderr) as bar:
                for sequence, sequence_starts in zip(batch, batch_starts):
                    done = bar.n
                    y, stats = link.run(sequence, sequence_starts, identity,
                                        progress=lambda received: bar.update(done + received - bar.n))
                    outputs.append(y)
                    statistics.append(stats)

    y_q = np.stack(outputs) if x_q.ndim == 3 else outputs[0]
    frames = sum(s.frames for s in statistics)
    wall = sum(s.wall_seconds for s in statistics)
    cycles = sum(s.cycles for s in statistics)
    on_chip = cycles / identity.clock_hz
    print(f"{frames} frame(s) in {wall:.3f} s: {frames / wall:.1f} frames/s; on chip {cycles / frames:.0f} cycles "
          f"per frame at {identity.clock_hz / 1e6:g} MHz ({on_chip * 1e6 / frames:.1f} us); the link and the "
          f"host take {100 * max(0.0, 1 - on_chip / wall):.1f} % of the wall time")

    result = 0
    if args.check:
        expected = golden_forward_encoded(encoded, x_q, sequence_starts=batch_starts.reshape(x_q.shape[:-1]))
        differing = int(np.count_nonzero(y_q != expected))
        print(f"check against the golden model: {differing} of {y_q.size} words differ")
        result = 1 if differing else 0
    y = y_q if args.raw else dequantize_output(y_q, encoded.numerics)
    save_npy(args.output, y)
    print(f"wrote {args.output}: shape {y.shape}")
    return result
