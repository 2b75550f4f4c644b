"""Fmax of the accelerator on an ECP5 (LFE5U-85F, CABGA381, speed 6): Yosys synth_ecp5 + nextpnr-ecp5.

Generates the Verilog of an encoded model (or of the shipped words model re-encoded for `--pes N`), wraps
`sparselstm_top` in a timing wrapper (every top-level input and output goes through a register to or from a
pin, the wide counters are XOR-reduced to one pin in three registered levels, so no logic is optimised away and the pins
fit the package), synthesises it (`sparselstm verilog --family ecp5`: multipliers in MULT18X18D blocks with their own
registers) with `synth_ecp5 -abc9`, moves the registers that only follow a block RAM's read data into the block
(hw/boards/bram_registers.py, as the board builds do; `--no-bram-registers` leaves them) and places and routes it at
125 MHz (placer timing weight 40 as in the board builds, hw/boards/flow.py; router1 by default: router2 does not
converge on the 16-PE design). Prints and saves (OUT/fmax.json) Fmax, utilisation and the top critical paths of
nextpnr's JSON report.

    nice .venv/bin/python bench/fmax.py --pes 8 --seed 1 -o build/fmax8
    nice .venv/bin/python bench/fmax.py --encoded build/sim/encoded -o build/fmax16

Synthesis of 16 PEs takes a few minutes, placement about ten, routing with router1 about 40 (2 cores).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from sparselstm.hw.boards.bram_registers import absorb_output_registers_in_file
from sparselstm.hw.boards.flow import PLACER_TIMING_WEIGHT, PLACERS, tool_command
from sparselstm.hw.cycle_model import predict_cycles
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.sw.format import load_encoded

SHIPPED_MODEL = "models/words-lstmp-sparse.npz"
TOP = "sparselstm_top"
WRAPPER = "fmax_wrapper"
DEVICE_ARGS = ["--85k", "--package", "CABGA381", "--speed", "6"]
TARGET_MHZ = 125
# the clock on a clock-capable pin (G2, the 25 MHz input of ULX3S boards), so it reaches the global network
CONSTRAINTS = f'''LOCATE COMP "clk" SITE "G2";
IOBUF PORT "clk" IO_TYPE=LVCMOS33;
FREQUENCY PORT "clk" {TARGET_MHZ} MHZ;
'''


def run(command: list[str], log: Path) -> float:
    """Run a tool inside the log's directory (YoWASP tools see only the working directory's tree)."""
    start = time.time()
    with open(log, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent)
    if result.returncode != 0:
        raise SystemExit(f"fmax: {' '.join(command[:2])} failed (exit {result.returncode}), see {log}")
    return time.time() - start


def top_ports(verilog: str) -> list[tuple[str, str, int]]:
    """(direction, name, width) of every port of the top module."""
    body = verilog[verilog.index(f"module {TOP}("):]
    body = body[:body.index("endmodule")]
    ports = []
    for direction, width, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        ports.append((direction, name, int(width) + 1 if width else 1))
    return ports


PARITY_GROUP = 6        # counters whose byte parities are XORed per register of the wrapper's second level
PARITY_BYTE = 8         # counter bits XORed per register of the wrapper's first level


def wrapper_verilog(ports: list[tuple[str, str, int]]) -> str:
    """Registered pins around the top: stream ports and busy one pin per bit, counters XOR-reduced (each
    counter's byte parities registered, then the XOR of groups of PARITY_GROUP of them, then theirs)."""
    stream_inputs = [(n, w) for d, n, w in ports if d == "input" and n not in ("clk", "rst")]
    stream_outputs = [(n, w) for d, n, w in ports if d == "output" and (n.startswith(("i__", "o__")) or n == "busy")]
    counters = [(n, w) for d, n, w in ports if d == "output" and (n, w) not in stream_outputs]
    lines = [f"module {WRAPPER}(input clk, input rst_pin,"]
    pins = [f"  input [{w - 1}:0] pin_{n}" for n, w in stream_inputs]
    pins += [f"  output reg [{w - 1}:0] pin_{n}" for n, w in stream_outputs]
    pins.append("  output reg pin_counters")
    lines.append(",\n".join(pins) + ");")
    lines.append("  reg rst;")
    lines.append("  always @(posedge clk) rst <= rst_pin;")
    for n, w in stream_inputs:
        lines.append(f"  reg [{w - 1}:0] r_{n};")
        lines.append(f"  always @(posedge clk) r_{n} <= pin_{n};")
    for n, w in stream_outputs + counters:
        lines.append(f"  wire [{w - 1}:0] w_{n};")
    connections = [".clk(clk)", ".rst(rst)"] + [f".{n}(r_{n})" for n, _ in stream_inputs]
    connections += [f".{n}(w_{n})" for n, _ in stream_outputs + counters]
    lines.append(f"  {TOP} dut(" + ", ".join(connections) + ");")
    for n, _ in stream_outputs:
        lines.append(f"  always @(posedge clk) pin_{n} <= w_{n};")
    # three registered levels: each counter's byte parities in flip-flops of their own (near the counter), the
    # XOR of groups of PARITY_GROUP counters, then theirs. One XOR of every counter bit in one cycle (over a
    # thousand inputs from all over the chip) was the wrapper's own path and the worst of a routed run (9.47 ns at
    # 1285b73), not the accelerator's; so was the XOR of the 30-odd parities in one (9.27 ns at c38ea10, seed 2),
    # and, at 32 PEs, a whole 32-bit counter's XOR in one register (session 33)
    for n, w in counters:
        byte_ranges = [(low, min(low + PARITY_BYTE, w) - 1) for low in range(0, w, PARITY_BYTE)]
        lines.append(f"  reg [{len(byte_ranges) - 1}:0] parity_{n};")
        lines.append(f"  always @(posedge clk) parity_{n} <= {{" +
                     ", ".join(f"^w_{n}[{high}:{low}]" for low, high in reversed(byte_ranges)) + "};")
    groups = [counters[k:k + PARITY_GROUP] for k in range(0, len(counters), PARITY_GROUP)]
    for g, group in enumerate(groups):
        lines.append(f"  reg parity_group_{g};")
        lines.append(f"  always @(posedge clk) parity_group_{g} <= " + " ^ ".join(f"(^parity_{n})" for n, _ in group)
                     + ";")
    reduced = " ^ ".join(f"parity_group_{g}" for g in range(len(groups))) or "1'b0"
    lines.append(f"  always @(posedge clk) pin_counters <= {reduced};")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def critical_paths(report: dict, count: int) -> list[dict]:
    """The `count` worst paths: endpoints, total delay, routing share and the cells passed."""
    paths = []
    for path in report.get("critical_paths", []):
        steps = path.get("path", [])
        total = sum(step.get("delay", 0.0) for step in steps)
        routing = sum(step.get("delay", 0.0) for step in steps if step.get("type") == "routing")
        cells = []
        for step in steps:
            if step.get("type") != "routing":
                cell = step.get("from", {}).get("cell", "?")
                if not cells or cells[-1] != cell:
                    cells.append(cell)
        paths.append({"from": path.get("from"), "to": path.get("to"), "delay_ns": round(total, 2),
                      "routing_ns": round(routing, 2), "cells": cells,
                      "end": steps[-1].get("to", {}).get("cell") if steps else None})
    paths.sort(key=lambda p: -p["delay_ns"])
    return paths[:count]


def module_of(cell: str) -> str:
    """The design instance a packed cell came from: `dut.pe3.fifo.x_TRELLIS_FF_Q` -> `dut.pe3.fifo`."""
    parts = cell.split(".")
    return ".".join(parts[:-1]) if len(parts) > 1 else "(top)"


def late_endpoints(report: dict, period_ns: float, count: int) -> tuple[list[dict], int, int]:
    """Where the late paths end, by design instance: nextpnr's --detailed-timing-report gives each register
    input's arrival time (the whole path up to it, setup not included; newer nextpnr gives [min, max]); the instances
    with the most endpoints arriving after `period_ns` come first. A routed design's failing paths are mostly routing,
    so this names the logic that needs a register, not one path. Returns (the first `count` instances, late endpoints in
    all, endpoints in all)."""
    by_instance: dict[str, dict] = {}
    for net in report.get("detailed_net_timings", []):
        for endpoint in net.get("endpoints", []):
            arrival = endpoint.get("delay", 0.0)
            arrival = float(max(arrival) if isinstance(arrival, list) else arrival)     # [min, max] in nextpnr 0.7+
            entry = by_instance.setdefault(module_of(endpoint.get("cell", "?")),
                                           {"late": 0, "endpoints": 0, "worst_ns": 0.0, "worst_net": None})
            entry["endpoints"] += 1
            entry["late"] += arrival > period_ns
            if arrival > entry["worst_ns"]:
                entry.update(worst_ns=round(arrival, 2), worst_net=net.get("net"),
                             worst_driver=module_of(net.get("driver", "?")))
    ranked = sorted(({"instance": name, **entry} for name, entry in by_instance.items() if entry["late"]),
                    key=lambda e: (-e["late"], -e["worst_ns"]))
    return ranked[:count], sum(entry["late"] for entry in ranked), sum(e["endpoints"] for e in by_instance.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--encoded", help="encoded model directory (sparselstm encode)")
    source.add_argument("--pes", type=int, default=8, help="re-encode the shipped words model for N PEs (default 8)")
    parser.add_argument("--index-bits", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--streams", type=int, default=1, help="interleaved streams (hardware parameter, default 1)")
    parser.add_argument("--lanes", type=int, default=None,
                        help="element-wise lanes (hardware parameter; default: the design's, default_lanes)")
    parser.add_argument("--output", "-o", default="build/fmax", help="work directory (default build/fmax)")
    parser.add_argument("--paths", type=int, default=5, help="critical paths to print (default 5)")
    parser.add_argument("--instances", type=int, default=40,
                        help="instances with late endpoints to save in OUT/fmax.json (default 40; 12 printed)")
    parser.add_argument("--skip-synth", action="store_true", help="reuse OUT/synth.json")
    parser.add_argument("--reread", action="store_true",
                        help="run nothing: read OUT/report.json of a finished run again (give its --seed and "
                             "--no-route)")
    parser.add_argument("--router", choices=("router1", "router2"), default="router1",
                        help="nextpnr's router (default router1; router2 does not converge on 16 PEs)")
    parser.add_argument("--portable", action="store_true",
                        help="portable Verilog (no `--family ecp5`: multipliers with their registers in the "
                             "fabric), to compare with the default ECP5 form")
    parser.add_argument("--placer-timing-weight", type=int, default=PLACER_TIMING_WEIGHT,
                        help=f"nextpnr's --placer-heap-timingweight: the board builds' {PLACER_TIMING_WEIGHT} by "
                             "default (nextpnr's own is 10, which runs before session 15 used)")
    parser.add_argument("--placer", choices=(*PLACERS, "sa"), default="heap",
                        help="nextpnr's placer (default heap; its analytical phase stalls on some netlists of 32 PEs, "
                             "YosysHQ/nextpnr#1062)")
    parser.add_argument("--no-ctrl-set", action="store_true",
                        help="nextpnr's --placer-heap-no-ctrl-set: the placer ignores which flip-flops may share a "
                             "slice's clock enable and reset")
    parser.add_argument("--tmg-ripup", action="store_true",
                        help="nextpnr's --tmg-ripup: the router rips up and reroutes timing-critical nets")
    parser.add_argument("--no-bram-registers", action="store_true",
                        help="leave the block RAMs' output registers unused (the netlist as Yosys writes it; "
                             "hw/boards/bram_registers.py moves the registers after them in by default)")
    parser.add_argument("--no-route", action="store_true",
                        help="stop after placement: Fmax is nextpnr's estimate before routing (for designs that "
                             "router2 does not route in reasonable time)")
    args = parser.parse_args(argv)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    timings = {}
    if not (args.skip_synth or args.reread):
        encoded = args.encoded
        if encoded is None:
            encoded = str(out / "encoded")
            subprocess.run([python, "-m", "sparselstm", "encode", SHIPPED_MODEL, "-o", encoded, "--pes",
                            str(args.pes), "--density", "1.0", "--index-bits", str(args.index_bits)],
                           check=True, stdout=subprocess.DEVNULL)
        subprocess.run([python, "-m", "sparselstm", "verilog", encoded, "-o", str(out / "verilog"),
                        "--streams", str(args.streams), *(() if args.lanes is None else ("--lanes", str(args.lanes))),
                        *(() if args.portable else ("--family", "ecp5"))],
                       check=True, stdout=subprocess.DEVNULL)
        design = AcceleratorDesign.from_encoded(load_encoded(encoded),
                                                HardwareParams(streams=args.streams, lanes=args.lanes))
        # kept beside the netlist, so that --skip-synth and --reread report the model they route
        (out / "model.json").write_text(json.dumps({
            "encoded": str(Path(encoded).resolve()), "n_pes": design.n_pes, "streams": args.streams,
            "lanes": design.lanes,
            "cycles_per_frame_modelled": predict_cycles(design).steady_state}, indent=1) + "\n")
        verilog = (out / "verilog" / f"{TOP}.v").read_text()
        (out / "wrapper.v").write_text(wrapper_verilog(top_ports(verilog)))
        script = (f"read_verilog verilog/{TOP}.v wrapper.v; "
                  f"synth_ecp5 -abc9 -top {WRAPPER} -json synth.json; stat")
        timings["synth_s"] = run([*tool_command("yosys"), "-q", "-l", "yosys.log", "-p", script],
                                 out / "yosys.out")
    stage = ["--no-route"] if args.no_route else ["--router", args.router]
    tuning = ["--placer-heap-timingweight", str(args.placer_timing_weight),
              *(("--tmg-ripup",) if args.tmg_ripup else ()),
              *(("--placer", args.placer) if args.placer != "heap" else ()),
              *(("--placer-heap-no-ctrl-set",) if args.no_ctrl_set else ())]
    if not (args.reread or args.no_bram_registers):
        # idempotent: a netlist already rewritten (--skip-synth) has no such port left
        timings["bram_output_registers"] = len(absorb_output_registers_in_file(out / "synth.json"))
    if not args.reread:
        (out / "fmax.lpf").write_text(CONSTRAINTS)
        timings["pnr_s"] = run([*tool_command("nextpnr-ecp5"), *DEVICE_ARGS, "--json", "synth.json",
                               "--lpf", "fmax.lpf", "--lpf-allow-unconstrained", "--timing-allow-fail",
                               "--freq", str(TARGET_MHZ), *stage, *tuning, "--seed", str(args.seed),
                               "--report", "report.json", "--detailed-timing-report"], out / "nextpnr.log")

    report = json.loads((out / "report.json").read_text())
    fmax = {clock: round(v["achieved"], 2) for clock, v in report.get("fmax", {}).items()}
    if not fmax:    # without routing the JSON report has no Fmax section: the log has the placement estimate
        log = (out / "nextpnr.log").read_text()
        fmax = {clock: float(mhz) for clock, mhz in re.findall(r"Max frequency for clock '([^']+)': ([\d.]+) MHz", log)}
    utilisation = {kind: f"{v['used']}/{v['available']}" for kind, v in report.get("utilization", {}).items()
                   if v["used"]}
    result = {"seed": args.seed, "nextpnr_tuning": tuning, "stage": "placed" if args.no_route else "routed",
              "fmax_mhz": fmax, "target_mhz": TARGET_MHZ, "utilisation": utilisation,
              "critical_paths": critical_paths(report, args.paths),
              **timings}
    if (out / "model.json").is_file():
        result.update(json.loads((out / "model.json").read_text()))
    result["late_endpoints"], result["late_total"], result["endpoint_total"] = late_endpoints(
        report, 1000.0 / TARGET_MHZ, args.instances)
    (out / "fmax.json").write_text(json.dumps(result, indent=1))
    stage = "estimated after placement, not routed" if args.no_route else "routed"
    print(f"Fmax ({stage}): {fmax} MHz (target {TARGET_MHZ}, seed {args.seed}{', ' if tuning else ''}"
          f"{' '.join(tuning)})")
    print("utilisation: " + ", ".join(f"{k} {v}" for k, v in utilisation.items()))
    for path in result["critical_paths"]:
        print(f"  {path['delay_ns']:6.2f} ns ({path['routing_ns']:.2f} routing) {path['from']} -> {path['to']}")
        print("      via " + " > ".join(path["cells"][:12]) + (" ..." if len(path["cells"]) > 12 else ""))
    if result["late_endpoints"]:
        print(f"{result['late_total']} of {result['endpoint_total']} register inputs arrive after "
              f"{1000.0 / TARGET_MHZ:.2f} ns; by instance (late / all, worst arrival, its last net's driver):")
    for entry in result["late_endpoints"][:12]:
        print(f"  {entry['instance']}: {entry['late']} / {entry['endpoints']}, {entry['worst_ns']:.2f} ns from "
              f"{entry['worst_driver']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
