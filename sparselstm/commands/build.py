"""`sparselstm build`: the accelerator of an encoded model as an FPGA bitstream (ULX3S) or a Vivado build
plan (KCU105), with the host link of docs/host-link.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from ._files_and_checks import add_lanes_argument, check_output_dir

def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build a board bitstream (ULX3S, open tools) or a Vivado build plan (KCU105) for an encoded model",
        description="Build the accelerator of an encoded model for a board, behind the USB-UART host link "
                    "(docs/host-link.md; run it with `sparselstm board`). ulx3s-85f: the bitstream with "
                    "amaranth-boards and the YoWASP tools (Yosys, nextpnr-ecp5, ecppack); OUTDIR/report.json "
                    "holds the clock, timing, utilisation and critical path. kcu105: with --plan-only, the "
                    "Verilog, XDC and TCL for Vivado (docs/boards.md). A build that misses timing exits with 1 "
                    "unless --allow-timing-fail is given.",
    )
    parser.add_argument("encoded", type=Path, metavar="ENCODED_DIR", help="encoded model directory")
    parser.add_argument("--board", required=True, choices=("ulx3s-85f", "kcu105"), help="the target board")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="OUTDIR",
                        help="build directory (created if needed)")
    parser.add_argument("--freq", type=float, default=125.0, metavar="MHZ",
                        help="accelerator clock in MHz (ulx3s-85f: made by the PLL from 25 MHz; default 125)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    parser.add_argument("--placer", choices=("heap", "static"), default="heap",
                        help="nextpnr's placer (default heap; its analytical phase can stall on designs of 32 PEs, "
                             "where static finishes)")
    parser.add_argument("--baud", type=int, default=3_000_000, help="host link baud rate (default 3000000)")
    parser.add_argument("--allow-timing-fail", action="store_true",
                        help="exit with 0 even if the design misses its clock")
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument("--plan-only", action="store_true",
                       help="write the build plan (sources, constraints, scripts) without running any tool")
    steps.add_argument("--synth-only", action="store_true",
                       help="ulx3s-85f: stop after synthesis and print the cell counts")
    parser.add_argument("--fifo-depth", type=int, default=8, metavar="D",
                        help="activation FIFO words per PE (default 8, as in ESE)")
    add_lanes_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hw.boards.flow import ULX3SBuild, prepare_kcu105
    from ..hw.boards.kcu105 import KCU105_CLOCK_HZ
    from ..hw.boards.serial_board import link_frames_per_second
    from ..hw.cycle_model import predict_cycles
    from ..hw.design import AcceleratorDesign
    from ..hw.params import HardwareParams
    from ..spec.errors import ParameterError
    from ..spec.host_link import model_id
    from ..sw.format import load_encoded

    check_output_dir(args.output)
    if args.board == "kcu105" and not (args.plan_only and args.freq * 1e6 == KCU105_CLOCK_HZ):
        raise ParameterError("kcu105: only --plan-only (Vivado is not run here) at --freq 125 (the board "
                             "clock, used as it is)")
    design = AcceleratorDesign.from_encoded(load_encoded(args.encoded), HardwareParams(fifo_depth=args.fifo_depth,
                                                                                   lanes=args.lanes))
    identity = model_id(args.encoded)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ParameterError(f"cannot create output directory {args.output}: {error.strerror}") from None
    progress = lambda line: print(line, flush=True)
    progress(f"model {args.encoded} (id {identity.hex()}): {design.n_pes} PEs, {design.n_layers} layer(s), "
             f"input {design.input_size}, output {design.output_size}")
    link_rate = link_frames_per_second(design.input_size, design.output_size, args.baud)
    cycles = predict_cycles(design).steady_state
    accelerator_rate = args.freq * 1e6 / cycles
    progress(f"host link at {args.baud} baud: at most {link_rate:.0f} frames/s (an input and an output frame "
             f"per frame); the accelerator's {cycles} cycles per frame at {args.freq:g} MHz allow "
             f"{accelerator_rate:.0f}: the {'link' if link_rate < accelerator_rate else 'accelerator'} bounds a "
             f"UART demo")

    if args.board == "kcu105":
        prepare_kcu105(design, identity, args.output, baud=args.baud)
        progress(f"wrote the Vivado build plan to {args.output}: run `sh build_sparselstm_board.sh` there "
                 f"with Vivado on PATH (docs/boards.md)")
        return 0

    try:
        build = ULX3SBuild(design, identity, args.output, freq_hz=args.freq * 1e6, seed=args.seed,
                           baud=args.baud, placer=args.placer, progress=progress)
    except ValueError as error:
        raise ParameterError(str(error)) from None
    progress(f"clock: {args.freq:g} MHz requested, {build.pll.output_hz / 1e6:.3f} MHz achieved by the PLL "
             f"(25 MHz / {build.pll.clki_div} * {build.pll.clkfb_div}, VCO {build.pll.vco_hz / 1e6:.1f} MHz); "
             f"UART {build.top.board.baud:.0f} baud")
    if args.plan_only:
        build.prepare()
        progress(f"wrote the build plan to {args.output}")
        return 0
    if args.synth_only:
        cells = build.synthesize()
        progress("synthesis: " + ", ".join(f"{cell} {count}" for cell, count in cells.items()))
        return 0

    report = build.build()
    for name, clock in report["clocks"].items():
        progress(f"clock {name}: target {clock['target_mhz']:.2f} MHz, achieved {clock['achieved_mhz']:.2f} MHz "
                 f"({'met' if clock['met'] else 'FAILED'})")
    progress("utilisation: " + ", ".join(f"{cell} {u['used']}/{u['available']}"
                                         for cell, u in report["utilisation"].items()))
    path = report["critical_path"]
    if path:
        progress(f"critical path: {path['start']} -> {path['end']} ({path['delay_ns']} ns)")
    progress(f"wrote {args.output / report['bitstream']} and {args.output / 'report.json'} "
             f"(seed {args.seed}, placer {args.placer})")
    if not report["timing_met"]:
        print(f"sparselstm build: TIMING NOT MET at {build.pll.output_hz / 1e6:.3f} MHz: the bitstream may not "
              f"work; try a lower --freq or another --seed", file=sys.stderr)
        return 0 if args.allow_timing_fail else 1
    return 0
