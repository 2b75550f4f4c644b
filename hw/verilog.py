"""Verilog generation: `sparselstm_top.v`, its memory images (hw/memory_images.py) and the sidecar
`sparselstm_top.json` (docs/verification.md)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from amaranth.back import verilog as amaranth_verilog

from .. import __version__
from ..spec.errors import ParameterError
from .accelerator import Accelerator
from .cycle_model import predict_cycles
from .design import AcceleratorDesign
from .memory_images import IMAGE_DIR, MemoryImage, convert_with_images, write_images
from .params import HardwareParams
from .shared_pe import shared_modules
from .sidecar import SIDECAR_VERSION, describe_top

__all__ = ["TOP_NAME", "FAMILIES", "SIDECAR_VERSION", "IMAGE_DIR", "generate", "convert", "sidecar",
           "LINT_WAIVERS", "lint_command", "FamilyPlatform", "check_family"]

TOP_NAME = "sparselstm_top"
FAMILIES = (None, "ecp5")      # None: portable Verilog (simulators, any synthesis tool)

# Verilator -Wall warnings that Yosys-generated Verilog raises by construction, each with the reason it is
# benign. `lint_command` and tests/test_verilog.py lint with exactly these waivers; anything else fails.
LINT_WAIVERS = {
    "UNUSEDSIGNAL": "Amaranth keeps named intermediate signals and struct-view slices (e.g. the fields of a "
                    "packed word that a stage does not use) as wires for debugging; they drive nothing.",
    "PROCASSINIT": "Yosys declares every register with its reset value as initial value (`reg x = 0`) and "
                   "then assigns it in an always block; this is Amaranth's init value, intended.",
    "CASEINCOMPLETE": "Yosys emits `x = default; casez (sel) ... endcase` without a default arm; the "
                      "assignment before the case covers the missing values.",
    "WIDTHEXPAND": "Yosys' backend leaves operand extension implicit in arithmetic and comparisons; widths "
                   "are exact in the Amaranth source, which is simulated bit for bit against sw.",
    "WIDTHTRUNC": "the same for truncating assignments and for FSM state tests such as `!state`.",
    "DECLFILENAME": "one file holds the top and its Yosys-named submodules (`sparselstm_top.pe`, ...).",
}


def lint_command(verilog_path, verilator="verilator") -> list[str]:
    """`verilator --lint-only -Wall` with the documented waivers (LINT_WAIVERS)."""
    return [verilator, "--lint-only", "-Wall", *(f"-Wno-{rule}" for rule in sorted(LINT_WAIVERS)),
            "--top-module", TOP_NAME, str(verilog_path)]


# Yosys' Verilog makes every `always @*` block sensitive to a dummy register declared `reg \$auto$... = 0;`
# so that the block runs once at time 0. Icarus 11 performs that declaration assignment before the blocks
# wait on it, so a block whose real inputs never change after time 0 (e.g. a per-layer constant table
# indexed by a register that stays 0) never runs and its output stays X: the accelerator then hangs.
# Flipping the dummy register once after every process has started (`#0`) gives the intended kick; the
# guard keeps the delay away from synthesis tools and Verilator, which do not need it.
_YOSYS_TIME_ZERO_REGISTER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S*)\s+= 0;$", re.MULTILINE)


def portable_verilog(text: str) -> str:
    """Yosys-written Verilog made to start correctly on Icarus Verilog too (see above)."""
    return _YOSYS_TIME_ZERO_REGISTER.sub(
        lambda m: f"{m.group(0)}\n`ifdef __ICARUS__\n{m.group(1)}initial #0 {m.group(2)} = 1;\n`endif", text)


class FamilyPlatform:
    """The elaboration platform of plain Verilog for one device family: components that have a vendor form
    (hw/multiplier.py) look at `family` only."""

    def __init__(self, family: str):
        self.family = family


def check_family(family: str | None) -> None:
    if family not in FAMILIES:
        raise ParameterError(f"unknown device family {family!r}: expected one of "
                             f"{', '.join(str(f) for f in FAMILIES)} (None: portable Verilog, for simulators)")


def convert(design: AcceleratorDesign, memory_images: bool = False, family: str | None = None
            ) -> tuple[str, Accelerator, list[MemoryImage]]:
    """The Verilog text of an Accelerator with top module `sparselstm_top`, the Accelerator, and the memory
    images the text reads (hw/memory_images.py; none when `memory_images` is false: all contents inline).
    `family` "ecp5": vendor primitives where they matter for timing (MULT18X18D with their own registers,
    hw/multiplier.py); such Verilog is for synthesis, not for simulators without those primitives."""
    check_family(family)
    top = Accelerator(design)
    if memory_images:
        text, images = convert_with_images(top, TOP_NAME, shared_modules(design, TOP_NAME), family)
    else:
        platform = FamilyPlatform(family) if family is not None else None
        text, images = amaranth_verilog.convert(top, name=TOP_NAME, platform=platform, emit_src=False), []
    return portable_verilog(text), top, images


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecar(design: AcceleratorDesign, top: Accelerator, encoded=None, encoded_dir=None,
            images: list[MemoryImage] = (), family: str | None = None) -> dict:
    """The sidecar dictionary (docs/verification.md)."""
    n_pes = design.n_pes
    params = design.params
    encoded_info = {"path": None, "manifest_sha256": None}
    if encoded_dir is not None:
        encoded_dir = Path(encoded_dir).resolve()
        encoded_info = {"path": str(encoded_dir), "manifest_sha256": _sha256(encoded_dir / "manifest.json")}
    dimensions = {"input_size": design.input_size, "output_size": design.output_size,
                  "n_layers": design.n_layers, "n_pes": n_pes, "act_bits": design.act_bits,
                  "act_frac": design.act_frac, "acc_bits": design.acc_bits, "lanes": design.lanes}
    details = {
        "encoded": encoded_info,
        "hardware_params": params.to_dict(),
        "work": {"total_entries": design.total_entries,
                 "entries_per_pe": [len(pe.entries) for pe in design.pes]},
        "resources": {"multipliers": design.n_pes, "memory_bits": design.memory_bits()},
        "memory_images": [image.describe() for image in images],
        "family": family,
    }
    result = describe_top(top, TOP_NAME, f"sparselstm {__version__}", dimensions, details)
    if encoded is not None:
        prediction = predict_cycles(design)
        result["cycle_model"] = {"cycles_per_frame": prediction.steady_state,
                                 "first_frame_cycles": prediction.first_frame}
    return result


def generate(encoded, params: HardwareParams | None = None, outdir=".", encoded_dir=None,
             memory_images: bool = True, family: str | None = None) -> dict:
    """Write OUTDIR/sparselstm_top.v, its memory images under OUTDIR/memory_images/ and
    OUTDIR/sparselstm_top.json; return the sidecar dictionary.

    `encoded_dir`: the directory `encoded` was loaded from, recorded (with its manifest's sha256) in the
    sidecar so a testbench can check it runs the model the Verilog was generated from; the entry and
    pointer images are copied from it. `memory_images=False` writes every memory's contents inline.
    `family`: see `convert` (recorded in the sidecar)."""
    check_family(family)
    design = AcceleratorDesign.from_encoded(encoded, params or HardwareParams())
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ParameterError(f"cannot create output directory {outdir}: {error.strerror}") from error
    text, top, images = convert(design, memory_images, family)
    write_images(images, outdir, encoded_dir)
    (outdir / f"{TOP_NAME}.v").write_text(text)
    info = sidecar(design, top, encoded, encoded_dir, images, family)
    (outdir / f"{TOP_NAME}.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
