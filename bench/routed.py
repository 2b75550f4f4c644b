"""Routed builds in `make bench`: the Fmax that nextpnr reports for a build of bench/fmax.py (the accelerator in
its timing wrapper) or of `sparselstm build` (the board top), and the accelerator's microseconds per frame at
that clock, so that the report's latency is not only at stated clocks.

A build directory is read as it is left: `fmax.json` (bench/fmax.py) or `report.json` (`sparselstm build`; the
register inputs arriving late are counted from nextpnr's report beside it, as bench/fmax.py counts them). The
PE count and the modelled cycles per frame come from the JSON (both tools write them), or, for runs of older
code, from the encoded model in DIR/encoded (bench/fmax.py --pes keeps it there).

Also a command, to compare routed builds without a whole `make bench` (prints report.md's table for them):

    .venv/bin/python bench/routed.py DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fmax import late_endpoints
from sparselstm.hw.boards.flow import TOP_NAME
from sparselstm.hw.cycle_model import predict_cycles
from sparselstm.hw.design import AcceleratorDesign
from sparselstm.hw.params import HardwareParams
from sparselstm.sw.format import load_encoded

ROUTED = "routed (nextpnr's report of the build named; microseconds: modelled cycles per frame at its Fmax)"
KINDS = {"fmax.json": "accelerator in bench/fmax.py's timing wrapper", "report.json": "board top (sparselstm build)"}


def _model_figures(directory: Path, data: dict, name: str) -> tuple[int, int]:
    if isinstance(data.get("n_pes"), int) and isinstance(data.get("cycles_per_frame_modelled"), int):
        return data["n_pes"], data["cycles_per_frame_modelled"]
    encoded = directory / "encoded"
    if not encoded.is_dir():
        raise ValueError(f"{directory / name}: no 'n_pes' and 'cycles_per_frame_modelled', and no {encoded} to "
                         "read them from")
    design = AcceleratorDesign.from_encoded(load_encoded(encoded), HardwareParams())
    return design.n_pes, predict_cycles(design).steady_state


def load_routed(directory) -> dict:
    """One build: its kind, stage (routed or placed), seed, Fmax, target, whether it met it, PEs, modelled
    cycles per frame and utilisation. ValueError names the file and what is missing."""
    directory = Path(directory)
    name = next((n for n in KINDS if (directory / n).is_file()), None)
    if name is None:
        raise ValueError(f"{directory}: neither fmax.json (bench/fmax.py) nor report.json (sparselstm build)")
    path = directory / name
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if name == "fmax.json":
        if not data.get("fmax_mhz"):
            raise ValueError(f"{path}: 'fmax_mhz' missing or empty (did nextpnr finish?)")
        fmax = min(data["fmax_mhz"].values())
        target, stage = float(data["target_mhz"]), data.get("stage", "routed")
        utilisation = data.get("utilisation", {})
        late = {"late_register_inputs": data.get("late_total"), "register_inputs": data.get("endpoint_total"),
                "nextpnr_options": " ".join(data.get("nextpnr_tuning") or [])}
    else:
        if "board" not in data or not data.get("clocks"):
            raise ValueError(f"{path}: not a `sparselstm build` report ('board' and 'clocks' expected)")
        fmax = min(clock["achieved_mhz"] for clock in data["clocks"].values())
        target, stage = min(clock["target_mhz"] for clock in data["clocks"].values()), "routed"
        utilisation = {kind: f"{u['used']}/{u['available']}" for kind, u in data.get("utilisation", {}).items()}
        late = {"nextpnr_options": f"--placer {data['placer']}" if data.get("placer") else ""}
        nextpnr_report = directory / f"{TOP_NAME}.report.json"
        if nextpnr_report.is_file():
            try:
                timings = json.loads(nextpnr_report.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{nextpnr_report}: not JSON ({error})") from None
            _, late["late_register_inputs"], late["register_inputs"] = late_endpoints(timings, 1000 / target, 0)
    n_pes, cycles = _model_figures(directory, data, name)
    return {"directory": str(directory), "kind": KINDS[name], "stage": stage, "seed": data.get("seed"),
            "fmax_mhz": fmax, "target_mhz": target, "met": fmax >= target, "n_pes": n_pes,
            "cycles_per_frame_modelled": cycles, "us_per_frame": cycles / fmax, "utilisation": utilisation, **late}


def routed_section(builds: list[dict]) -> dict:
    return {"source": ROUTED, "rows": builds}


def main(argv=None) -> int:
    from report_markdown import routed_markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", type=Path, nargs="+", metavar="DIR",
                        help="output directories of bench/fmax.py or `sparselstm build`")
    args = parser.parse_args(argv)
    try:
        builds = [load_routed(directory) for directory in args.directories]
    except ValueError as error:
        parser.error(str(error))
    print("\n".join(routed_markdown({"routed": routed_section(builds)})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
