"""The HDL harness (sim/harness.py) run by a Verilator C++ main instead of cocotb: the fast path of
`sparselstm sim` on Verilator. Plain Python, no cocotb.

cocotb's VPI/GPI layer (a VPI-enabled build, a C-level clock calling back every half period) cost about a
third of the CPU of a Verilator run in which the harness already moves every word; the main written here
toggles the clock itself, so Verilator evaluates nothing but the design. It runs the same case files as the
cocotb test (sim/runner.py writes them), in the same order: a reset and the idle check, a reset and the
stream, with the watchdog counted in cycles; Python follows the event log while it runs and checks the
words through `CaseCheck`, as the cocotb harness bench does, so a case is judged the same way.

The main reads its settings from plusargs (`+sparselstm_<setting>=<decimal>`, see `_SETTINGS`) and writes
`native.json`: {"idle": {...}, "stream": {...}} with the status registers and counters read after each,
the cycle it stopped at, whether the watchdog stopped it, and the wall and CPU seconds of the stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from ..spec.errors import SparseLSTMError
from . import tools
from .case import CaseConfig
from .case_check import CaseCheck
from .dut import DutSpec
from .harness import HarnessEvents, HarnessPorts, harness_module, stall_threshold, stream_seed

__all__ = ["NativeError", "NATIVE_VERILATOR_ARGS", "NATIVE_OPT_FAST", "verilator_name", "write_native_main",
           "build_native", "run_native"]

MAIN_FILE = "native_main.cpp"
BINARY = "native_sim"
RESULT_FILE = "native.json"
OBJECT_DIR = "native"                    # under the build directory, apart from a cocotb build's objects
# Measured with bench/sim_speed.py on the shipped model (docs/verification.md, Speed): Verilator's own
# optimisation at its highest, X resolved the cheap way (the harness logs no X on Verilator anyway: it is
# two-state), and the model compiled with -O1 instead of verilated.mk's -Os: as fast as -O2 (its straight-line
# code leaves GCC's costlier passes nothing to gain) and compiled in a third of the time. One thread.
# -fno-inline: the modules stay classes, so the 16 PEs (and unpackers) run one copy of their code instead of
# 16 inlined ones: 9 % more instructions per cycle but about 8 % less time, the per-cycle code no longer
# overflowing the instruction cache (docs/verification.md, Speed). Profile-guided GCC builds gained nothing.
NATIVE_VERILATOR_ARGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--no-timing", "-fno-inline")
NATIVE_OPT_FAST = "-O1"
_RESET_CYCLES = 3                         # as CaseBench.reset
_IDLE_CYCLES = 16                         # as CaseBench.idle_check
_WATCHDOG_STRIDE = 1024                   # cycles between two looks of the watchdog
_PROGRESS_SECONDS = 0.25
_SETTINGS = ("stall_in", "stall_out", "seed_in", "seed_out", "input_words", "output_words", "drain_cycles",
             "watchdog")


class NativeError(SparseLSTMError):
    """The native main cannot be written for this DUT (a status or counter port wider than 64 bits)."""


def verilator_name(name: str) -> str:
    """The C++ name Verilator gives a Verilog identifier (its AstNode::encodeName): `__` becomes `___05F`,
    characters that C++ does not allow (and a leading digit) `__0<hex>`."""
    out, k = [], 0
    while k < len(name):
        char = name[k]
        if char.isascii() and (char.isalpha() or (k > 0 and char.isdigit())):
            out.append(char)
        elif char == "_":
            if name[k + 1:k + 2] == "_":
                out.append("___05F")
                k += 1
            else:
                out.append("_")
        else:
            out.append(f"__0{ord(char) & 0xff:02x}")
        k += 1
    return "".join(out)


def _readings(spec: DutSpec) -> str:
    """C++ printing {"status": {...}, "counters": {...}} of the DUT's registers to `out`."""
    widths = {port.name: port.width for port in spec.ports}
    wide = sorted(name for name in [*spec.status.values(), *(p for ps in spec.counters.values() for p in ps)]
                  if widths.get(name, 0) > 64)
    if wide:
        raise NativeError(f"{spec.top}: the native main reads registers of up to 64 bits; {wide} are wider")

    def value(port: str) -> str:
        return f"(unsigned long long)top.{verilator_name(port)}"

    status = ", ".join(f'\\"{key}\\": %llu' for key in spec.status)
    lines = [f'    std::fprintf(out, "{{\\"status\\": {{{status}}}", '
             f'{", ".join(value(port) for port in spec.status.values())});' if spec.status else
             '    std::fprintf(out, "{\\"status\\": {}");',
             '    std::fprintf(out, ", \\"counters\\": {");']
    for k, (name, ports) in enumerate(spec.counters.items()):
        values = ", ".join("%llu" for _ in ports)
        arguments = "".join(f", {value(port)}" for port in ports)
        lines.append(f'    std::fprintf(out, "{", " if k else ""}\\"{name}\\": [{values}]"{arguments});')
    lines.append('    std::fprintf(out, "}}");')
    return "\n".join(lines)


def write_native_main(spec: DutSpec, path) -> None:
    """Write the C++ main that runs `spec`'s HDL harness (module `harness_module(spec)`) to `path`."""
    clock, reset = verilator_name(spec.clock), verilator_name(spec.reset)
    active, inactive = ("1", "0") if spec.reset_active_high else ("0", "1")

    def port(name: str) -> str:
        return "top." + verilator_name(name)

    settings = "\n".join(f'    top.{verilator_name(getattr(HarnessPorts, name))} = setting(context, "{name}");'
                         for name in _SETTINGS if name != "watchdog")
    text = f"""\
// Generated by sparselstm.sim.native from the sidecar of `{spec.top}`: runs its HDL harness
// ({harness_module(spec)}) without cocotb (see sim/native.py). Do not edit.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include "Vtop.h"
#include "verilated.h"

namespace {{

unsigned long long setting(VerilatedContext& context, const char* name) {{
    const std::string prefix = std::string("sparselstm_") + name + "=";
    const char* match = context.commandArgsPlusMatch(prefix.c_str());
    if (!match[0]) {{
        std::fprintf(stderr, "native main: missing plusarg +%s<value>\\n", prefix.c_str());
        std::exit(2);
    }}
    return std::strtoull(match + 1 + prefix.size(), nullptr, 10);
}}

void tick(Vtop& top) {{
    top.{clock} = 1;
    top.eval();
    top.{clock} = 0;
    top.eval();
}}

void reset(Vtop& top, bool stream) {{
    {port(HarnessPorts.enable)} = 0;
    top.{reset} = {active};
    for (int k = 0; k < {_RESET_CYCLES}; ++k) tick(top);
    top.{reset} = {inactive};
    {port(HarnessPorts.enable)} = stream;
    tick(top);
}}

void write_readings(std::FILE* out, Vtop& top) {{
{_readings(spec)}
}}

}}  // namespace

int main(int argc, char** argv) {{
    VerilatedContext context;
    context.commandArgs(argc, argv);
    Vtop top{{&context}};
    const char* result_arg = context.commandArgsPlusMatch("sparselstm_result=");
    if (!result_arg[0]) {{
        std::fprintf(stderr, "native main: missing plusarg +sparselstm_result=<path>\\n");
        return 2;
    }}
    const std::string result_path = result_arg + std::string("+sparselstm_result=").size();
{settings}
    const unsigned long long watchdog = setting(context, "watchdog");
    const unsigned long long output_size = {spec.output_size};
    std::FILE* out = std::fopen(result_path.c_str(), "w");
    if (!out) {{
        std::fprintf(stderr, "native main: cannot write %s\\n", result_path.c_str());
        return 2;
    }}
    top.{clock} = 0;

    // The idle check: no input, so no output word; then every register reads zero.
    reset(top, false);
    bool valid_seen = false;
    for (int k = 0; k < {_IDLE_CYCLES} && !valid_seen; ++k) {{
        valid_seen = {port(spec.output.valid)};
        if (!valid_seen) tick(top);
    }}
    std::fprintf(out, "{{\\"idle\\": {{\\"output_valid_seen\\": %s, \\"readings\\": ", valid_seen ? "true" : "false");
    write_readings(out, top);

    // The stream, until `done`, $finish, or the watchdog: no output frame for its cycles (plus the drain
    // once every word came). It looks every {_WATCHDOG_STRIDE} cycles: the harness's counters are exact.
    reset(top, true);
    const auto wall_start = std::chrono::steady_clock::now();
    const std::clock_t cpu_start = std::clock();
    unsigned long long frames = 0, since = 0, ticks = 0;
    bool timeout = false;
    while (!{port(HarnessPorts.done)} && !context.gotFinish()) {{
        tick(top);
        if (++ticks % {_WATCHDOG_STRIDE} == 0) {{
            const unsigned long long now = {port(HarnessPorts.cycle)};
            const unsigned long long taken = {port(HarnessPorts.outputs_taken)};
            if (taken / output_size != frames) {{
                frames = taken / output_size;
                since = now;
            }}
            const bool complete = taken >= {port(HarnessPorts.output_words)};
            if (now - since > watchdog + (complete ? {port(HarnessPorts.drain_cycles)} : 0)) {{
                timeout = true;
                break;
            }}
        }}
    }}
    const auto wall_end = std::chrono::steady_clock::now();
    const double wall = std::chrono::duration<double>(wall_end - wall_start).count();
    // The steady clock is CLOCK_MONOTONIC, Python's time.monotonic(): parallel jobs' streams line up on it.
    const double started_at = std::chrono::duration<double>(wall_start.time_since_epoch()).count();
    const double cpu = double(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    std::fprintf(out, "}}, \\"stream\\": {{\\"done\\": %s, \\"finished\\": %s, \\"timeout\\": %s, \\"cycle\\": %llu, "
                 "\\"inputs_accepted\\": %llu, \\"wall_seconds\\": %.6f, \\"cpu_seconds\\": %.6f, "
                 "\\"started_at\\": %.6f, \\"readings\\": ",
                 {port(HarnessPorts.done)} ? "true" : "false", context.gotFinish() ? "true" : "false",
                 timeout ? "true" : "false", (unsigned long long){port(HarnessPorts.cycle)},
                 (unsigned long long){port(HarnessPorts.inputs_accepted)}, wall, cpu, started_at);
    write_readings(out, top);
    std::fprintf(out, "}}}}\\n");
    std::fclose(out);
    top.final();
    return 0;
}}
"""
    Path(path).write_text(text)


def build_native(sources, spec: DutSpec, build_dir: Path, threads: int = 1) -> float:
    """Write the main and build it with the Verilog `sources` (the DUT's and the harness's) into
    `build_dir`/native_sim; return the seconds it took. SimulationError (naming build.log) if it fails.
    `threads` > 1 splits the model's evaluation over that many threads (Verilator `--threads`): they
    synchronise at every clock edge, so on a loaded machine, where one waits for a core, it is far slower
    (docs/verification.md, Speed)."""
    from .runner import VERILATOR_BUILD_ARGS, SimulationError

    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    tools.find_simulator("verilator")
    build_dir.mkdir(parents=True, exist_ok=True)
    main = build_dir / MAIN_FILE
    write_native_main(spec, main)
    log = build_dir / "build.log"
    command = ["verilator", "--cc", "--exe", "--build", "-j", str(os.cpu_count() or 1),
               *VERILATOR_BUILD_ARGS, *NATIVE_VERILATOR_ARGS, *(("--threads", str(threads)) if threads > 1 else ()),
               "--top-module", harness_module(spec),
               "--prefix", "Vtop", "-Mdir", str(build_dir / OBJECT_DIR), "-o", str(build_dir / BINARY),
               "-MAKEFLAGS", f"OPT_FAST={NATIVE_OPT_FAST}", str(main), *map(str, sources)]
    cache = tools.VerilatorRuntimeCache(None, "native")

    def build(make_vars: tuple[str, ...]) -> bool:
        with tools.simulator_environment("verilator", make_vars), open(log, "w") as handle:
            handle.write(" ".join(command) + "\n")
            handle.flush()
            return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode == 0

    started = time.monotonic()
    cached = cache.make_vars()
    built = build(cached)
    if not built and cached:
        cached = ()
        built = build(())                      # a stale runtime cache must never fail a build
    if not built:
        raise SimulationError(f"verilator build of {', '.join(map(str, sources))} failed", log)
    if not cached:
        cache.store(build_dir / OBJECT_DIR)
    return time.monotonic() - started


def run_native(spec: DutSpec, case: CaseConfig, case_dir: Path, plusargs: list[str],
               binary: Path | None = None, stop: threading.Event | None = None) -> dict[str, str]:
    """Run the case in `case_dir` with the native main built there, or the `binary` built elsewhere
    (`plusargs` name the harness's files); write its result and outputs as the cocotb test does. Returns
    the outcome of the two checks, like cocotb's: {"idle_after_reset": ..., "stream_frames": ...}, each
    "pass" or the failure message. Once `stop` is set the simulation is killed and SimulationError raised
    (another parallel job failed, or the run was interrupted)."""
    from .runner import SimulationError

    check = CaseCheck(spec, case, case_dir)
    check.start_progress()
    events = HarnessEvents(case_dir / case.events)
    check.frame_start_cycles = events.frame_starts
    watchdog = check.watchdog_cycles()
    values = {"stall_in": stall_threshold(case.stall_in), "stall_out": stall_threshold(case.stall_out),
              "seed_in": stream_seed(case.seed, "in"), "seed_out": stream_seed(case.seed, "out"),
              "input_words": check.inputs.size, "output_words": check.expected.size,
              "drain_cycles": case.drain_cycles, "watchdog": watchdog}
    result_path = case_dir / RESULT_FILE
    result_path.unlink(missing_ok=True)
    command = [str(binary or case_dir / BINARY), *plusargs, f"+sparselstm_result={result_path}",
               *(f"+sparselstm_{name}={values[name]}" for name in _SETTINGS)]
    log = case_dir / "sim.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=case_dir, stdout=handle, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                time.sleep(_PROGRESS_SECONDS)
                if stop is not None and stop.is_set():
                    raise SimulationError("stopped: another parallel job failed or the run was interrupted", log)
                check.take_logged(events.read_outputs())
                check.report_progress(check.word_cycle)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    check.take_logged(events.read_outputs())
    try:
        report = json.loads(result_path.read_text())
    except (OSError, ValueError):
        raise SimulationError(f"the native simulation exited with status {process.returncode} without a "
                              "complete result", log) from None
    idle, stream = report["idle"], report["stream"]
    idle_errors = check.idle_errors(idle["output_valid_seen"], idle["readings"]["status"],
                                    idle["readings"]["counters"])
    result = check.result
    complete = len(check.frames.frames) >= len(check.expected)
    check.frames_sent = stream["inputs_accepted"] // spec.input_size
    result.sim_cycles = check.frame_done_cycles[len(check.expected) - 1] if complete else stream["cycle"]
    result.status, result.counters = stream["readings"]["status"], stream["readings"]["counters"]
    result.started_at = stream["started_at"]
    if stream["timeout"] and not complete:
        result.errors.append(check.timeout_error(watchdog))
    if stream["finished"]:
        result.errors.append(f"the harness stopped the simulation ($finish): see {log}")
    check.report_progress(stream["cycle"])
    check.finish((stream["wall_seconds"], stream["cpu_seconds"]))
    try:
        check.verdict()
        outcome = "pass"
    except AssertionError as error:
        outcome = str(error)
    return {"idle_after_reset": "; ".join(idle_errors) or "pass", "stream_frames": outcome}
