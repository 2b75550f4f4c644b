"""The compression pipeline as one call: prune -> quantise -> encode, and the numbers that describe the result.

`sparselstm encode` is this plus file I/O; tests and other commands use it so that nobody repeats the steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..spec.encoded import GATES_MATRIX, PROJ_MATRIX, EncodedModel
from .format import encode, pe_gate_rows, segment_entries
from .fixedpoint import Numerics
from .model import GATES, LSTMPModel
from .pruning import check_pe_count_for_model, load_imbalance, prune_model, resolve_densities
from .quantize import quantize_model
from .quantized import QuantizedModel

DENSE_FLOAT_BITS = 32


@dataclass(frozen=True, eq=False)
class CompressedModel:
    """Every stage of one compression run."""

    model: LSTMPModel        # as given
    densities: dict          # requested density per matrix name
    balanced: bool
    pruned: LSTMPModel
    masks: dict              # matrix name -> bool mask of the kept positions
    qmodel: QuantizedModel
    encoded: EncodedModel
    column_balanced: bool = False


def compress_and_encode(model: LSTMPModel, n_pes: int, density=1.0, balanced: bool = True,
                        numerics: Numerics | None = None, columns: bool = False,
                        balance_cells: bool = True) -> CompressedModel:
    """Prune (`density`: a number or a mapping per matrix name, see pruning.prune_model), quantise with
    `numerics` (default Numerics()) and encode for `n_pes` PEs (at most the largest matrix's rows, see
    pruning.check_pe_count_for_model). Density 1.0 keeps the model's own zeros. `columns`: column-balanced
    pruning (pruning.prune_matrix). `balance_cells`: the encoder's cell reordering (docs/format.md, "Cell
    order")."""
    if not isinstance(model, LSTMPModel):
        raise TypeError(f"compress_and_encode: expected an LSTMPModel, got {type(model).__name__}")
    numerics = Numerics() if numerics is None else numerics
    densities = resolve_densities(density, model.matrices())
    check_pe_count_for_model(n_pes, model)
    pruned, masks = prune_model(model, densities, n_pes, balanced, columns)
    qmodel = quantize_model(pruned, numerics)
    return CompressedModel(model=model, densities=densities, balanced=bool(balanced), pruned=pruned,
                           masks=masks, qmodel=qmodel, encoded=encode(qmodel, n_pes, balance_cells),
                           column_balanced=bool(columns))


# ----------------------------------------------------------------------------------------------------------
# Report


def _padding_per_matrix(encoded: EncodedModel) -> dict[str, int]:
    """Padding entries charged to the matrix of the non-zero they lead to (padding precedes a real entry)."""
    padding: dict[str, int] = {}
    for k, info in enumerate(encoded.layers):
        names = [f"L{k}.{side}.{gate}" for side in ("input", "recurrent") for gate in GATES]
        counts = np.zeros(len(names), dtype=np.int64)
        for image in encoded.pes:
            walked = segment_entries(encoded, image.pe, k, GATES_MATRIX)
            pad = walked.padding
            if not pad.any():
                continue
            model_rows = pe_gate_rows(info.cell_size, encoded.n_pes, image.pe)[walked.target_row[pad]]
            side = (walked.column[pad] >= info.input_size).astype(np.int64)  # 0 input, 1 recurrent
            counts += np.bincount(side * len(GATES) + model_rows // info.cell_size, minlength=len(names))
        padding.update(zip(names, (int(c) for c in counts)))
        if info.proj_size is not None:
            padding[f"L{k}.proj"] = sum(encoded.segment(p, k, PROJ_MATRIX).padding for p in range(encoded.n_pes))
    return padding


def _hardware_rows(encoded: EncodedModel) -> list[dict]:
    """Per hardware matrix (each layer's gates, and its projection): entries, padding, the busiest PE's
    entries and the entry and pointer memory, summed over the PEs."""
    entry_bits, pointer_bits = encoded.memories["entry_bits"], encoded.memories["pointer_bits"]
    hardware = []
    for k, info in enumerate(encoded.layers):
        for matrix in (GATES_MATRIX, PROJ_MATRIX) if info.proj_size is not None else (GATES_MATRIX,):
            segments = [encoded.segment(p, k, matrix) for p in range(encoded.n_pes)]
            entries = np.array([s.entry_count for s in segments])
            pointer_words = sum(s.columns + 1 for s in segments)
            hardware.append({
                "name": f"L{k}.{matrix}", "nonzeros": sum(s.nonzeros for s in segments),
                "padding": sum(s.padding for s in segments), "entries": int(entries.sum()),
                # One entry per PE per cycle: the busiest PE sets the cycles of the product.
                "max_entries_per_pe": int(entries.max()), "mean_entries_per_pe": float(entries.mean()),
                "imbalance": float(entries.max() / entries.mean()) if entries.sum() else 1.0,
                "entry_memory_bits": int(entries.sum()) * entry_bits,
                "pointer_words": pointer_words, "pointer_memory_bits": pointer_words * pointer_bits,
            })
    return hardware


def compression_report(result: CompressedModel) -> dict:
    """The numbers `sparselstm encode` prints and writes to report.json (plain JSON types)."""
    encoded = result.encoded
    memories = encoded.memories
    entry_bits, pointer_bits = memories["entry_bits"], memories["pointer_bits"]
    n_pes = encoded.n_pes
    loads = load_imbalance(result.qmodel, n_pes)
    padding = _padding_per_matrix(encoded)
    dense_shapes = {name: w.shape for name, w in result.model.matrices().items()}

    matrices = []
    for name, load in loads.matrices.items():
        rows, cols = dense_shapes[name]
        nonzeros = load.total
        matrices.append({
            "name": name, "shape": [rows, cols], "target_density": result.densities[name],
            "density": nonzeros / (rows * cols), "nonzeros": nonzeros, "padding": padding[name],
            "padding_overhead": padding[name] / nonzeros if nonzeros else 0.0,
            "max_per_pe": load.max, "mean_per_pe": load.mean, "imbalance": load.imbalance,
            "memory_bits": (nonzeros + padding[name]) * entry_bits,
        })

    hardware = _hardware_rows(encoded)

    dense_weights = sum(rows * cols for rows, cols in dense_shapes.values())
    total_entries = sum(h["entries"] for h in hardware)
    total_pointer_words = sum(h["pointer_words"] for h in hardware)
    compressed_bits = total_entries * entry_bits + total_pointer_words * pointer_bits
    nonzeros = sum(m["nonzeros"] for m in matrices)
    totals = {
        "dense_weights": dense_weights, "nonzeros": nonzeros, "density": nonzeros / dense_weights,
        "padding": sum(h["padding"] for h in hardware), "entries": total_entries,
        "pointer_words": total_pointer_words,
        "dense_float32_bits": dense_weights * DENSE_FLOAT_BITS,
        "entry_memory_bits": total_entries * entry_bits,
        "pointer_memory_bits": total_pointer_words * pointer_bits,
        "compressed_bits": compressed_bits,
        "compression": dense_weights * DENSE_FLOAT_BITS / compressed_bits if compressed_bits else float("inf"),
        "max_entries_per_pe_per_frame": sum(h["max_entries_per_pe"] for h in hardware),
    }
    return {"n_pes": n_pes, "balanced": result.balanced, "column_balanced": result.column_balanced,
            "reordered_layers": [k for k, info in enumerate(encoded.layers) if info.cell_order is not None],
            "numerics": encoded.numerics.to_dict(),
            "memories": dict(memories), "matrices": matrices, "hardware": hardware, "totals": totals}


def index_width_options(qmodel: QuantizedModel, n_pes: int, widths=None, balance_cells: bool = True) -> list[dict]:
    """What other relative-index widths would cost for this model: per width, padding entries, the busiest
    PE's entries per frame (the cycles of the sparse products) and the entry + pointer memory. A wider
    index means fewer padding entries over long runs of zeros (very sparse matrices) but wider entry
    words. Re-encodes the model once per width (the encoder is the one implementation of the format).
    `widths`: default the model's own width and two either side, within 2..8; `balance_cells` as encode's."""
    own = qmodel.numerics.index_bits
    widths = sorted({w for w in range(own - 2, own + 3) if 2 <= w <= 8} | {own}) if widths is None else widths
    options = []
    for bits in widths:
        encoded = encode(replace(qmodel, numerics=replace(qmodel.numerics, index_bits=bits)), n_pes, balance_cells)
        rows = _hardware_rows(encoded)
        options.append({"index_bits": bits, "entry_bits": encoded.memories["entry_bits"],
                        "padding": sum(h["padding"] for h in rows), "entries": sum(h["entries"] for h in rows),
                        "max_entries_per_pe_per_frame": sum(h["max_entries_per_pe"] for h in rows),
                        "memory_bits": sum(h["entry_memory_bits"] + h["pointer_memory_bits"] for h in rows)})
    return options


def best_index_width(options: list[dict]) -> dict:
    """The option with the fewest busiest-PE entries per frame (cycles); the smaller memory on a tie."""
    return min(options, key=lambda o: (o["max_entries_per_pe_per_frame"], o["memory_bits"]))


def _bits(bits: int) -> str:
    return f"{bits / 8 / 1024:.1f} KiB" if bits >= 8 * 1024 else f"{bits} b"


def _balance_name(report: dict) -> str:
    if report.get("column_balanced"):
        return "column-balanced"
    return "balanced" if report["balanced"] else "unbalanced"


def format_report(report: dict) -> str:
    """The human-readable tables of a compression report."""
    lines = [f"{'matrix':<16} {'shape':>10} {'density':>8} {'non-zeros':>10} {'padding':>8} {'pad %':>6} "
             f"{'max/PE':>7} {'mean/PE':>8} {'max/mean':>8} {'memory':>11}"]
    for m in report["matrices"]:
        shape = f"{m['shape'][0]}x{m['shape'][1]}"
        lines.append(f"{m['name']:<16} {shape:>10} {m['density']:>8.4f} {m['nonzeros']:>10} {m['padding']:>8} "
                     f"{100 * m['padding_overhead']:>6.1f} {m['max_per_pe']:>7} {m['mean_per_pe']:>8.1f} "
                     f"{m['imbalance']:>8.3f} {_bits(m['memory_bits']):>11}")
    lines.append("")
    lines.append(f"{'hardware':<16} {'entries':>10} {'padding':>8} {'max/PE':>7} {'mean/PE':>8} {'max/mean':>8} "
                 f"{'entries mem':>11} {'pointer mem':>11}")
    for h in report["hardware"]:
        lines.append(f"{h['name']:<16} {h['entries']:>10} {h['padding']:>8} {h['max_entries_per_pe']:>7} "
                     f"{h['mean_entries_per_pe']:>8.1f} {h['imbalance']:>8.3f} {_bits(h['entry_memory_bits']):>11} "
                     f"{_bits(h['pointer_memory_bits']):>11}")
    t, mem = report["totals"], report["memories"]
    lines += [
        "",
        f"PEs: {report['n_pes']} ({_balance_name(report)} pruning); entry word "
        f"{mem['entry_bits']} bits (weight {report['numerics']['weight_bits']} + index "
        f"{report['numerics']['index_bits']}), pointer word {mem['pointer_bits']} bits",
        f"non-zeros {t['nonzeros']} of {t['dense_weights']} weights (density {t['density']:.4f}), padding "
        f"{t['padding']} ({100 * t['padding'] / max(t['nonzeros'], 1):.1f} %)",
        f"memory: entries {_bits(t['entry_memory_bits'])} + pointers {_bits(t['pointer_memory_bits'])} = "
        f"{_bits(t['compressed_bits'])} vs dense float32 {_bits(t['dense_float32_bits'])}: compression "
        f"{t['compression']:.1f}x (biases and peepholes excluded on both sides)",
        f"busiest-PE entries per frame (cycles of the sparse products): {t['max_entries_per_pe_per_frame']}",
    ]
    if report.get("reordered_layers"):
        lines.append(f"cells reordered to balance the PEs (docs/format.md, 'Cell order'): layer(s) "
                     f"{', '.join(str(k) for k in report['reordered_layers'])}")
    options = report.get("index_width_options")
    if options:
        own = report["numerics"]["index_bits"]
        lines += ["", f"{'index bits':<16} {'entry bits':>10} {'padding %':>10} {'busiest PE':>11} {'memory':>11}"]
        for o in options:
            lines.append(f"{str(o['index_bits']) + (' (this)' if o['index_bits'] == own else ''):<16} "
                         f"{o['entry_bits']:>10} {100 * o['padding'] / max(t['nonzeros'], 1):>10.1f} "
                         f"{o['max_entries_per_pe_per_frame']:>11} {_bits(o['memory_bits']):>11}")
        best, this = best_index_width(options), next(o for o in options if o["index_bits"] == own)
        # Without entries (nothing survived pruning) no width saves anything: no hint.
        if best["index_bits"] != own and this["max_entries_per_pe_per_frame"]:
            saved = 1 - best["max_entries_per_pe_per_frame"] / this["max_entries_per_pe_per_frame"]
            memory = best["memory_bits"] / this["memory_bits"] - 1
            cycles = (f"the busiest PE {100 * saved:.1f} % fewer entries (cycles) per frame" if saved > 0
                      else "the same entries (cycles) per frame")
            if saved > 0 or memory < 0:   # a width that gains nothing is no hint
                lines.append(f"hint: --index-bits {best['index_bits']} gives {cycles}, in "
                             f"{abs(100 * memory):.1f} % {'less' if memory < 0 else 'more'} memory")
    return "\n".join(lines)
