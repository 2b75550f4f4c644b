"""Size and generation time of the accelerator's Verilog, with memory images and with contents inline.

Default workload: the ESE-size model (2 layers, input 153, 1024 cells, projection 512, peepholes, random
weights), density 0.1, balanced for 32 PEs. Targets (issue #12): with memory images the Verilog is under
2 MB and generated in under 15 s. Prints wall and CPU seconds (CPU includes yosys, a child process): on a
shared machine the CPU time is the fairer figure.

    .venv/bin/python bench/verilog_size.py [--pes 32] [--density 0.1] [--inline] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from sparselstm.hw.params import HardwareParams
from sparselstm.hw.verilog import TOP_NAME, generate
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode

SIZE_TARGET_BYTES = 2_000_000
TIME_TARGET_SECONDS = 15.0


def cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children (yosys, verilator, the compiler) so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(encoded, outdir: Path, memory_images: bool) -> dict:
    wall, cpu = time.perf_counter(), cpu_seconds()
    generate(encoded, HardwareParams(), outdir, memory_images=memory_images)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    image_dir = outdir / "memory_images"
    images = sorted(image_dir.iterdir()) if image_dir.is_dir() else []
    return {
        "memory_images": memory_images,
        "verilog_bytes": (outdir / f"{TOP_NAME}.v").stat().st_size,
        "image_files": len(images),
        "image_bytes": sum(path.stat().st_size for path in images),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pes", type=int, default=32)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--inline", action="store_true", help="also measure the inline form (about a minute)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    model = random_model(153, 1024, 512, num_layers=2, peephole=True, seed=0)
    encoded = compress_and_encode(model, args.pes, density=args.density).encoded
    print(f"ESE-size model, density {args.density}, {args.pes} PEs: {encoded.total_entries} entries; "
          f"load average {os.getloadavg()[0]:.1f}")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for memory_images in ([True, False] if args.inline else [True]):
            result = measure(encoded, Path(scratch) / ("images" if memory_images else "inline"), memory_images)
            results.append(result)
            form = "memory images" if memory_images else "inline contents"
            print(f"  {form:16s} Verilog {result['verilog_bytes'] / 1e6:6.2f} MB, {result['image_files']} image "
                  f"file(s) {result['image_bytes'] / 1e6:.2f} MB; generated in {result['wall_seconds']:.1f} s wall, "
                  f"{result['cpu_seconds']:.1f} s CPU")
    best = results[0]
    print(f"targets (memory images): Verilog < {SIZE_TARGET_BYTES / 1e6:g} MB: "
          f"{'met' if best['verilog_bytes'] < SIZE_TARGET_BYTES else 'MISSED'}; generated in < "
          f"{TIME_TARGET_SECONDS:g} s of CPU: {'met' if best['cpu_seconds'] < TIME_TARGET_SECONDS else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"pes": args.pes, "density": args.density, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
