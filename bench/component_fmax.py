"""Fmax of one accelerator component alone on an ECP5 (LFE5U-85F, CABGA381, speed 6): every input fed from a
shift chain of flip-flops, every output registered and XOR-reduced by a registered tree, so the component's own
paths (not the chip's pins) set the clock. Yosys synth_ecp5 + nextpnr-ecp5, router1 by default (router2 does
not converge on the accelerator's memories); prints Fmax, utilisation and the critical paths.

    nice .venv/bin/python bench/component_fmax.py pe -o build/component/pe
    nice .venv/bin/python bench/component_fmax.py cellreader --encoded build/sim/encoded -o build/component/cr
    nice .venv/bin/python bench/component_fmax.py deltafilter --encoded build/sim/encoded-delta -o build/component/df

Used to find where a component limits the whole design's clock (bench/fmax.py) without routing the whole
design, which takes far longer. A component: a few minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, Const, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

from fmax import DEVICE_ARGS, SHIPPED_MODEL, TARGET_MHZ, critical_paths
from sparselstm.hw.boards.flow import tool_command
from sparselstm.hw.broadcast import Broadcaster
from sparselstm.hw.delta_filter import DeltaFilter
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.interfaces import design_broadcast_layout
from sparselstm.hw.lane_unpacker import LaneUnpacker
from sparselstm.hw.lanes import LaneElementwise
from sparselstm.hw.mask_address import unpacker_word_layout
from sparselstm.hw.params import HardwareParams
from sparselstm.hw.pe import SparsePE
from sparselstm.hw.readout import CellReader, ProjReader
from sparselstm.hw.scheduler import Scheduler
from sparselstm.hw.verilog import FamilyPlatform
from sparselstm.sw.format import load_encoded

COMPONENTS = {
    "pe": lambda design, pe: SparsePE(design, pe),
    "cellreader": lambda design, pe: CellReader(design),
    "projreader": lambda design, pe: ProjReader(design),
    "unpacker": lambda design, pe: LaneUnpacker(design, pe),
    "elementwise": lambda design, pe: LaneElementwise.from_design(design),
    "scheduler": lambda design, pe: Scheduler(design),
    "deltafilter": lambda design, pe: DeltaFilter(design),   # an encoded model with delta thresholds
    "broadcaster": lambda design, pe: Broadcaster(
        unpacker_word_layout(design) if design.lanes > 1 else design_broadcast_layout(design), design.n_pes),
}


class Harness(Elaboratable):
    """Inputs from a shift chain fed by one pin, outputs registered and XOR-reduced (registered tree)."""

    def __init__(self, dut):
        self.dut = dut
        self.pin_in = Signal()
        self.pin_out = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        inputs, outputs = [], []
        for path, member, value in dut.signature.flatten(dut):
            (inputs if member.flow == wiring.In else outputs).append(Value.cast(value))
        feed = self.pin_in
        for n, v in enumerate(inputs):
            if isinstance(v, Const):
                continue
            chain = Signal(len(v), name=f"chain{n}")
            m.d.sync += chain.eq(Cat(feed, chain[:-1]))
            m.d.comb += v.eq(chain)
            feed = self.pin_in ^ chain[0]
        regs = []
        for n, v in enumerate(outputs):
            r = Signal(len(v), name=f"oreg{n}")
            m.d.sync += r.eq(v)
            regs.append(r)
        level = Cat(*regs)
        while len(level) > 1:
            n = (len(level) + 3) // 4
            nxt = Signal(n)
            m.d.sync += [nxt[i].eq(level[4 * i:4 * i + 4].xor()) for i in range(n)]
            level = nxt
        m.d.comb += self.pin_out.eq(level[0])
        return m


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=sorted(COMPONENTS))
    p.add_argument("--encoded", help="encoded model directory (default: the shipped words model for --pes)")
    p.add_argument("--pes", type=int, default=16, help="PEs when re-encoding the shipped model (default 16)")
    p.add_argument("--pe", type=int, default=0, help="which PE, for pe and unpacker (default 0)")
    p.add_argument("--lanes", type=int, default=None, help="element-wise lanes (default: the design's choice)")
    p.add_argument("-o", "--out", required=True, help="work directory")
    p.add_argument("--paths", type=int, default=8, help="critical paths to print (default 8)")
    p.add_argument("--router", default="router1", choices=["router1", "router2"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--portable", action="store_true",
                   help="portable Verilog (multiplier registers in the fabric) instead of the ECP5 form")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoded = args.encoded
    if encoded is None:
        encoded = str(out / "encoded")
        subprocess.run([sys.executable, "-m", "sparselstm", "encode", SHIPPED_MODEL, "-o", encoded, "--pes",
                        str(args.pes), "--density", "1.0", "--index-bits", "6"], check=True, stdout=subprocess.DEVNULL)
    design = AcceleratorDesign.from_encoded(load_encoded(encoded), HardwareParams(lanes=args.lanes))
    top = Harness(COMPONENTS[args.kind](design, args.pe))
    platform = None if args.portable else FamilyPlatform("ecp5")
    text = verilog.convert(top, name="ctop", platform=platform, ports=[top.pin_in, top.pin_out], emit_src=False)
    (out / "ctop.v").write_text(text)
    subprocess.run([*tool_command("yosys"), "-q", "-l", "yosys.log", "-p",
                    "read_verilog ctop.v; synth_ecp5 -abc9 -top ctop -json synth.json; stat"],
                   cwd=out, check=True, stdout=subprocess.DEVNULL)
    (out / "c.lpf").write_text(f'FREQUENCY PORT "clk" {TARGET_MHZ} MHZ;\n')
    with open(out / "nextpnr.log", "w") as log:
        subprocess.run([*tool_command("nextpnr-ecp5"), *DEVICE_ARGS, "--json", "synth.json", "--lpf", "c.lpf",
                        "--lpf-allow-unconstrained", "--timing-allow-fail", "--freq", str(TARGET_MHZ),
                        "--router", args.router, "--seed", str(args.seed), "--report", "report.json"],
                       cwd=out, check=True, stdout=log, stderr=subprocess.STDOUT)
    report = json.loads((out / "report.json").read_text())
    print(f"{args.kind}: Fmax {({c: round(v['achieved'], 1) for c, v in report.get('fmax', {}).items()})} MHz "
          f"(routed, {args.router}, seed {args.seed}, target {TARGET_MHZ})")
    print({k: v["used"] for k, v in report["utilization"].items() if v["used"]})
    for path in critical_paths(report, args.paths):
        print(f"  {path['delay_ns']:6.2f} ns ({path['routing_ns']:.2f} routing) {path['from']} -> {path['to']}")
        print("      via " + " > ".join(path["cells"][:14]) + (" ..." if len(path["cells"]) > 14 else ""))


if __name__ == "__main__":
    main()
