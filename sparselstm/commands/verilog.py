"""`sparselstm verilog`: generate the accelerator's Verilog and its sidecar for an encoded model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._files_and_checks import add_lanes_argument, check_output_dir


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "verilog",
        help="generate the accelerator (sparselstm_top.v) and its sidecar JSON for an encoded model",
        description="Elaborate the Amaranth accelerator for an encoded model directory (`sparselstm encode`) "
                    "and write OUTDIR/sparselstm_top.v and OUTDIR/sparselstm_top.json (ports, stream "
                    "layouts, sizes, counters, the model's manifest checksum, the predicted cycles per frame; "
                    "docs/verification.md).",
    )
    parser.add_argument("encoded", type=Path, metavar="ENCODED_DIR", help="encoded model directory")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="OUTDIR",
                        help="directory to write to (created if needed)")
    parser.add_argument("--fifo-depth", type=int, default=8, metavar="D",
                        help="activation FIFO words per PE (default 8, as in ESE)")
    add_lanes_argument(parser)
    parser.add_argument("--streams", type=int, default=1, metavar="S",
                        help="interleaved independent sequences, each with its own state (default 1; "
                             "docs/architecture.md, Streams)")
    parser.add_argument("--acc-bits", type=int, default=None, metavar="B",
                        help="accumulator width (default: the narrowest the model needs)")
    parser.add_argument("--max-entry-depth", type=int, default=1 << 20, metavar="WORDS",
                        help="reject models whose largest PE entry memory exceeds this (default 1048576)")
    parser.add_argument("--inline-memories", action="store_true",
                        help="write memory contents into the Verilog instead of $readmemh images under "
                             "OUTDIR/memory_images/ (slow and large for big models)")
    parser.add_argument("--family", choices=["ecp5"], default=None,
                        help="synthesis for this device family: its DSP blocks with their own pipeline registers "
                             "(the Verilog then needs the vendor's primitives: for synthesis, not for simulators; "
                             "default: portable Verilog)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hw.params import HardwareParams
    from ..hw.verilog import generate
    from ..sw.format import load_encoded

    check_output_dir(args.output)
    params = HardwareParams(fifo_depth=args.fifo_depth, acc_bits=args.acc_bits,
                            max_entry_depth=args.max_entry_depth, lanes=args.lanes,
                            streams=args.streams)
    encoded = load_encoded(args.encoded)
    info = generate(encoded, params, args.output, encoded_dir=args.encoded,
                    memory_images=not args.inline_memories, family=args.family)
    model = info.get("cycle_model", {})
    print(f"wrote {args.output / (info['top'] + '.v')} and {args.output / (info['top'] + '.json')}"
          + (f", {len(info['memory_images'])} memory images" if info["memory_images"] else ""))
    print(f"  {info['n_pes']} PEs, {info['n_layers']} layer(s), input {info['input_size']}, output "
          f"{info['output_size']}, {info['acc_bits']}-bit accumulators, FIFO depth {params.fifo_depth}, "
          f"{info['lanes']} element-wise lane(s)"
          + (f", {params.streams} interleaved streams" if params.streams > 1 else ""))
    print(f"  {info['work']['total_entries']} entries (max {max(info['work']['entries_per_pe'])} per PE); "
          f"predicted {model.get('cycles_per_frame')} cycles/frame "
          f"({model.get('first_frame_cycles')} latency of a lone frame)")
    memory = info["resources"]["memory_bits"]
    print(f"  memory {memory['total'] / 8192:.1f} KiB: entries {memory['entries'] / 8192:.1f}, pointers "
          f"{memory['pointers'] / 8192:.1f}, accumulators "
          f"{(memory['gate_accumulators'] + memory['gate_accumulator_copy'] + memory['proj_accumulators']) / 8192:.1f}"
          " KiB; "
          f"{info['resources']['multipliers']} multipliers")
    return 0
