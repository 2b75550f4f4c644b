"""report.md from results.json (bench/report.py): every table names the source of its figures."""

from __future__ import annotations

from elsewhere import ELSEWHERE

HEADLINE_PES = (16, 32, 128)   # the accelerator rows set beside the CPU and elsewhere figures


def _table(headers: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _label(results: dict, key: str) -> str:
    return results["models"][key]["label"]


def _headline_rows(results: dict, family: str) -> list[dict]:
    """The main workload of a family (as shipped; the ESE-size model balanced) at the headline PE counts."""
    key = "shipped" if family == "shipped" else "ese"
    rows = [r for r in results["accelerator"]["rows"] if r["model"] == key and r["balanced"]]
    wanted = set(HEADLINE_PES) | {max(r["n_pes"] for r in rows)}
    return [r for r in rows if r["n_pes"] in wanted]


def _intro(results: dict) -> list[str]:
    meta = results["meta"]
    m = meta["machine"]
    sources = sorted({s for s in _sources(results)})
    lines = ["# sparselstm benchmark report", "",
             f"Run {meta['date']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, NumPy {m['numpy']}; "
             f"`{meta['command']}`; {meta['seconds']['total']:.0f} s in all."
             + (" **Tiny configuration (tiny stand-in models): the numbers check the script, they mean nothing.**"
                if meta["tiny"] else ""), "",
             "How to read this report: docs/benchmarks.md. Every table says where its figures come from:", ""]
    lines += [f"- {s}" for s in sources]
    clocks = ", ".join(f"{mhz:g} MHz ({name})" for name, mhz in meta["clocks_mhz"].items())
    lines += ["", f"Clocks: {clocks}. {meta['timing_closure']}", ""]
    lines += ["Models:", ""]
    lines += [f"- `{key}`: {m['label']}: {m['describe']}; {m['dense_macs_per_frame']:,} dense MACs per frame, "
              f"density {m['density']}, {m['index_bits']}-bit relative indices" for key, m in results["models"].items()]
    return lines + [""]


def _sources(results: dict):
    for value in results.values():
        if isinstance(value, dict):
            if "source" in value:
                yield value["source"]
            for item in value.get("rows", []) + value.get("latency", []):
                yield item.get("source", value.get("source"))     # rows without their own take the section's
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and "source" in item:
                    yield item["source"]


def _targets(results: dict) -> list[str]:
    lines = ["## Targets (issue #13)", "", f"Source: {results['accelerator']['source']}, at the stated clock.", ""]
    rows = [[_label(results, t["model"]), t["n_pes"], f"{t['clock_mhz']:g} MHz", t["us_per_frame"],
             f"< {t['limit_us_per_frame']:g}", "not in this sweep" if t["met"] is None else t["met"]]
            for t in results["targets"]]
    lines += _table(["model", "PEs", "clock", "us per frame", "target", "met"], rows)
    return lines + _headline(results)


def _fastest(rows: list[dict], family: str, mode: str) -> dict | None:
    candidates = [r for r in rows if r["family"] == family and r["mode"] == mode and "us_per_frame" in r]
    return min(candidates, key=lambda r: r["us_per_frame"], default=None)


def _headline(results: dict) -> list[str]:
    """Per model size, streaming: the accelerator at the sweep's largest PE count, the fastest CPU row of this
    run and the fastest figure from elsewhere, each with its source."""
    lines = ["## Headline: streaming, batch 1", ""]
    for family, name in (("shipped", "shipped size"), ("ese", "ESE size")):
        row = max(_headline_rows(results, family), key=lambda r: r["n_pes"])
        parts = [f"this accelerator {row['at_clock']['125']['us_per_frame']:,.1f} us at 125 MHz / "
                 f"{row['at_clock']['200']['us_per_frame']:,.1f} us at 200 MHz with {row['n_pes']} PEs (modelled)"]
        cpu = _fastest(results["cpu"]["rows"], family, "streaming")
        if cpu is not None:
            parts.append(f"fastest CPU here {cpu['us_per_frame']:,.0f} us ({cpu['implementation']}, measured here)")
        other = _fastest(results["elsewhere"]["latency"], family, "streaming")
        if other is not None:
            parts.append(f"fastest quoted {other['us_per_frame']:,.1f} us ({other['implementation']}, from elsewhere)")
        lines.append(f"- {name}: " + "; ".join(parts) + ".")
    return lines + [""]


def _sweep(results: dict) -> list[str]:
    acc = results["accelerator"]
    lines = ["## Cycles per frame and PE utilisation", "", f"Source: {acc['source']}.", "",
             "Steady state: frames streamed back to back, each continuing the sequence. *Bound*: the busiest "
             "PE's entries (non-zeros + padding) per frame; no schedule is faster. *PE busy*: mean entries per PE "
             "over the cycles per frame; *busy bound*: mean over busiest entries, the best any schedule reaches "
             "with this split of the work; *MAC use*: non-zeros (useful MACs) per PE-cycle. *First frame*: the "
             "latency of a lone frame that starts a sequence (no recurrent product, nothing to overlap). "
             "*Lanes*: the element-wise lanes the design picks by default (next section).", ""]
    rows = [[r["model"], r["pruning"], r["n_pes"], r["lanes"], r["nonzeros"], r["entries"], r["busiest_pe_entries"],
             r["steady_cycles_per_frame"], r["cycles_over_bound"], r["pe_busy_fraction"], r["busy_bound"],
             r["mac_utilisation"],
             r["at_clock"]["125"]["us_per_frame"], r["at_clock"]["200"]["us_per_frame"],
             r["at_clock"]["200"]["lone_frame_us"]] for r in acc["rows"]]
    lines += _table(["model", "pruning", "PEs", "lanes", "non-zeros", "entries", "bound (busiest PE)", "cycles/frame",
                     "cycles/bound", "PE busy", "busy bound", "MAC use", "us/frame 125 MHz", "us/frame 200 MHz",
                     "first frame us 200 MHz"], rows)
    return lines


def _lanes(results: dict) -> list[str]:
    lanes = results["lanes"]
    lines = ["## Element-wise lanes", "", f"Source: {lanes['source']}.", "",
             "Cycles per frame with 1, 2, 4, 8 element-wise lanes (balanced pruning); *default*: the count the "
             "design picks, the fewest that a doubling does not make more than 2 % faster "
             "(docs/architecture.md, Lanes).", ""]
    rows = [[r["model"], r["n_pes"], r["lanes"], "yes" if r["default"] else "", r["steady_cycles_per_frame"],
             r["busiest_pe_entries"], r["pe_busy_fraction"]] for r in lanes["rows"]]
    return lines + _table(["model", "PEs", "lanes", "default", "cycles/frame", "bound (busiest PE)", "PE busy"],
                          rows) + [""]


def _streams(results: dict) -> list[str]:
    streams = results["streams"]
    lines = ["## Interleaved streams", "", f"Source: {streams['source']}.", "",
             "Frames of S independent streams interleaved (docs/architecture.md, Streams), the design's default "
             "lanes: *cycles/frame* is the period of the interleaved frames (throughput: every PE count's frames "
             "per second = clock / period); *lone frame* is the latency of one frame on its own, which streams "
             "do not shorten.", ""]
    rows = [[r["model"], r["n_pes"], r["streams"], r["lanes"], r["steady_cycles_per_frame"],
             r["first_frame_cycles"], r["busiest_pe_entries"], r["pe_busy_fraction"]] for r in streams["rows"]]
    return lines + _table(["model", "PEs", "streams", "lanes", "cycles/frame", "lone frame", "bound (busiest PE)",
                           "PE busy"], rows) + [""]


def _rtl(results: dict) -> list[str]:
    rtl = results["rtl"]
    lines = ["## RTL against the cycle model", ""]
    if "skipped" in rtl:
        lines += [f"RTL simulation skipped ({rtl['skipped']}); source would be: {rtl['source']}.", ""]
    else:
        lines += [f"Source: {rtl['source']}; the prediction beside it: {results['accelerator']['source']}.", ""]
        lines += _table(["model", "PEs", "lanes", "frames", "simulated cycles/frame", "predicted", "model error",
                         "PE busy (simulated)", "bit-exact vs golden", "simulated cycles per second"],
                        [[rtl["model"], rtl["n_pes"], rtl["lanes"], rtl["frames"], rtl["steady_cycles_per_frame"],
                          rtl["predicted_steady_cycles_per_frame"], f"{100 * rtl['prediction_error']:+.2f} %",
                          rtl["pe_busy_fraction"], rtl["bit_exact_vs_golden"], rtl["simulated_cycles_per_second"]]])
    return lines


def _simulator_speed(results: dict) -> list[str]:
    section = results["simulator_speed"]
    lines = ["## Simulated cycles per second", "", f"Source: {section['source']}. Model: {section['model']}; "
             "one job each (`make sim` runs one per core).", ""]
    rows = [[r["simulator"], r.get("harness", "-"), r["n_pes"], r.get("frames", "-"), r.get("cycles", "-"),
             r.get("simulation_seconds"), r.get("cycles_per_second"), r.get("cycles_per_cpu_second"),
             r.get("build_seconds"), r.get("load_average"),
             "bit-exact" if r["passed"] else r.get("error", f"{r.get('mismatches')} mismatching words")]
            for r in section["rows"]]
    return lines + _table(["simulator", "harness", "PEs", "frames", "cycles", "simulation s (wall)", "cycles/s (wall)",
                           "cycles/s (CPU)", "build s", "load average", "outcome"], rows) + [""]


def routed_markdown(results: dict) -> list[str]:
    section = results["routed"]
    lines = ["## At a routed clock", ""]
    if not section["rows"]:
        return lines + [results["meta"]["timing_closure"], ""]
    lines += [f"Source: {section['source']}.", ""]
    rows = [[r["kind"], r["directory"], r["stage"], r["seed"], r.get("nextpnr_options") or "-", r["n_pes"],
             r["fmax_mhz"], r["target_mhz"], "met" if r["met"] else "NOT met", _late(r),
             r["cycles_per_frame_modelled"], r["us_per_frame"],
             ", ".join(f"{kind} {used}" for kind, used in r["utilisation"].items())] for r in section["rows"]]
    return lines + _table(["build", "directory", "stage", "seed", "nextpnr options", "PEs", "Fmax MHz", "target MHz",
                           "timing", "register inputs late at the target", "cycles/frame (modelled)",
                           "us per frame at Fmax", "utilisation"], rows) + [""]


def _late(build: dict) -> str:
    """bench/fmax.py counts the register inputs that arrive after the target period; a board report does not."""
    late, total = build.get("late_register_inputs"), build.get("register_inputs")
    return "-" if late is None or total is None else f"{late} of {total}"


def _balance(results: dict) -> list[str]:
    lines = ["## Non-zeros per PE, balanced against unbalanced pruning", ""]
    rows = [[_label(results, b["model"]), b["n_pes"], b["matrix"], b["balanced"]["max"],
             b["balanced"]["max_over_mean"], b["unbalanced"]["max"], b["unbalanced"]["max_over_mean"], b["source"]]
            for b in results["load_balance"]]
    lines += _table(["model", "PEs", "matrix", "balanced: busiest PE", "max/mean", "unbalanced: busiest PE",
                     "max/mean", "source"], rows)
    return lines + ["The busiest PE sets the cycles of every sparse product, so max/mean is the slowdown against "
                    "a perfect split (plot: load_balance.png).", ""]


def _latency(results: dict) -> list[str]:
    cpu = results["cpu"]
    lines = ["## Microseconds per frame, side by side", "",
             f"CPU rows: median of the timed passes after a warm-up pass; PyTorch and onnxruntime with "
             f"{cpu['threads']} threads (torch.set_num_threads, intra_op_num_threads); load average "
             f"{cpu['load_average_before'][0]:.2f} before, {cpu['load_average_after'][0]:.2f} after (the machine "
             "is shared: other work inflates these). Streaming: batch 1, one frame per call, state carried; "
             "sequence: the whole sequence in one call.", ""]
    load = max(cpu["load_average_before"][0], cpu["load_average_after"][0])
    cores = results["meta"]["machine"]["cores"]
    if load > cores:
        lines += [f"**The machine was oversubscribed while the CPU rows were timed (load average {load:.1f} on "
                  f"{cores} cores): they are inflated and noisy; the min column is the least disturbed pass.**", ""]
    for family in ("shipped", "ese"):
        rows = []
        for r in _headline_rows(results, family):
            for clock in ("125", "200"):
                at = r["at_clock"][clock]
                rows.append([f"this accelerator, {r['n_pes']} PEs at {clock} MHz", "streaming",
                             at["us_per_frame"], "-", results["accelerator"]["source"]])
        for r in cpu["rows"]:
            if r["family"] == family:
                if "skipped" in r:
                    rows.append([r["implementation"], r["mode"], None, f"skipped: {r['skipped']}", r["source"]])
                else:
                    spread = f"{r['us_per_frame_min']:,.0f} - {r['us_per_frame_max']:,.0f}"
                    rows.append([r["implementation"], r["mode"], r["us_per_frame"], spread, r["source"]])
        for r in results["elsewhere"]["latency"]:
            if r["family"] == family:
                rows.append([r["implementation"], r["mode"], r["us_per_frame"], r["origin"], r["source"]])
        name = "shipped size" if family == "shipped" else "ESE size"
        lines += [f"### {name}", ""]
        lines += _table(["implementation", "mode", "us per frame", "min - max / origin", "source"], rows)
    notes = {r["graph"] for r in cpu["rows"] if "graph" in r}
    if notes:
        lines += ["ONNX: its LSTM operator has no projection and torch's exporter refuses nn.LSTM(proj_size), so "
                  "the graphs timed are the same LSTMP as matrix products: " + "; ".join(sorted(notes)) +
                  ". Both match nn.LSTM's outputs (max abs difference in results.json).", ""]
    lines += ["The golden model carries state only within one call: no streaming row. PyTorch and onnxruntime use "
              "random weights (dense float timing does not depend on the values), without peepholes.", ""]
    return lines


def _efficiency(results: dict) -> list[str]:
    lines = ["## Throughput and efficiency", "",
             f"Source: {results['accelerator']['source']}, at the stated clock; ESE: {ELSEWHERE}. 2 ops per MAC; "
             "sparse counts the non-zeros, dense-equivalent every weight of the dense model. Multipliers: one per "
             "PE plus the element-wise unit's (8, 11 with peepholes); ESE's figure is its DSP slices. ESE's 282 "
             "GOPS cannot be one stream at 82.7 us per frame (that would be 23 M ops per frame, against 1.6 M for "
             "this model at density 0.1): it counts several frames in flight. One stream's rate follows from the "
             "latency (last row, derived here from the quoted figures).", ""]
    rows = []
    for family, clock in (("shipped", "125"), ("ese", "200")):
        for r in results["accelerator"]["rows"]:
            if r["family"] == family and r["balanced"]:
                at = r["at_clock"][clock]
                rows.append([r["model"], r["pruning"], r["n_pes"], f"{clock} MHz", at["gops_sparse"],
                             at["gops_dense_equivalent"], at["multipliers"], at["gops_sparse_per_multiplier"],
                             at["gops_sparse_per_mhz"], results["accelerator"]["source"]])
    ese = results["elsewhere"]["ese_efficiency"]
    rows.append([ese["implementation"], "ESE's own", "32 per channel", f"{ese['clock_mhz']:g} MHz", ese["gops_sparse"],
                 ese["gops_dense_equivalent"], ese["multipliers"], ese["gops_sparse_per_multiplier"],
                 ese["gops_sparse_per_mhz"], f"{ese['origin']}: {ese['source']}"])
    one = results["elsewhere"]["ese_one_stream"]
    rows.append([one["implementation"], "ESE's own", "32 per channel", f"{one['clock_mhz']:g} MHz", one["gops_sparse"],
                 None, None, None, one["gops_sparse_per_mhz"], f"{one['origin']}: {one['source']}"])
    return lines + _table(["model", "pruning", "PEs", "clock", "GOPS sparse", "GOPS dense-equivalent",
                           "multipliers", "GOPS/multiplier", "GOPS/MHz", "source"], rows)


def _encoder_and_size(results: dict) -> list[str]:
    enc, size = results["encoder"], results["model_size"]
    lines = ["## Encoder time and model size", "",
             f"Encoder on the `{enc['model']}` model at {enc['n_pes']} PEs, {enc['what']}: median "
             f"{enc['median_seconds']:.2f} s of {enc['repeats']} (min {enc['min_seconds']:.2f} s). "
             f"Source: {enc['source']}.", ""]
    rows = [[r["model"], r["n_pes"], r["dense_weights"], r["nonzeros"], r["padding"],
             f"{r['dense_float32_bits'] / 8 / 1024:,.0f} KiB", f"{r['compressed_bits'] / 8 / 1024:,.0f} KiB",
             f"{r['compression']:.1f}x", r["source"]] for r in size["rows"]]
    lines += _table(["model", "PEs", "dense weights", "non-zeros", "padding", "dense float32", "encoded "
                     "(entries + pointers)", "compression", "source"], rows)
    return lines + ["Biases and peepholes are left out on both sides.", ""]


def _plots(results: dict) -> list[str]:
    plots = results.get("plots", {})
    if "skipped" in plots:
        return ["## Plots", "", f"Plots skipped: {plots['skipped']}.", ""]
    return ["## Plots", ""] + [f"- [{name}]({name}): {what}" for name, what in plots.items()] + [""]


def _ese_rtl(results: dict) -> list[str]:
    section = results["ese_rtl"]
    lines = ["## ESE-size in RTL (Verilator)", ""]
    if "skipped" in section:
        return lines + [f"Skipped ({section['skipped']}); source would be: {section['source']}.", ""]
    lines += [f"Source: {section['source']}; the predictions beside it: {results['accelerator']['source']}. "
              "Seconds measured here: wall time, stretched by the machine's load (the load average at the start is "
              "beside them), and CPU time of the process and its children (yosys; verilator, the C++ compiler and "
              "the simulation), which is not.", "",
              f"Model: {section['model']} (balanced). Input: {section['input']}. *RTL cycles/frame*: the steady "
              "state, between the last output words of the first and the second-to-last frame. *Cycle model*: "
              "predict_cycles given the zero activations of these frames (the broadcaster drops zeros; the "
              f"target is within {100 * section['agreement']:g} % of the RTL); *all non-zero*: the prediction of "
              "the sweep above, which assumes no zero activation. *Words compared*: every "
              "output word against the golden model.", ""]
    rows = []
    for r in section["rows"]:
        if "error" in r:
            rows.append([r["n_pes"]] + ["-"] * 17 + [f"failed: {r['error']}"])
            continue
        rows.append([r["n_pes"], r["lanes"], r["frames"], r["rtl_steady_cycles_per_frame"],
                     r["predicted_steady_cycles_per_frame"], _percent(r["prediction_error"]),
                     r["predicted_all_nonzero"], _percent(r["all_nonzero_error"]),
                     f"{r['verilog_bytes'] / 1e6:.2f}", r["verilog_seconds"], r["verilog_cpu_seconds"],
                     r["build_seconds"], r["build_and_run_cpu_seconds"], r["simulation_seconds"], r["load_average"],
                     r["words_compared"], r["mismatches"], r["within_agreement"],
                     "bit-exact" if r["passed"] else f"failed: {r['failure']}"])
    return lines + _table(["PEs", "lanes", "frames", "RTL cycles/frame", "cycle model", "difference",
                           "all non-zero", "difference", "Verilog MB", "Verilog s", "Verilog CPU s",
                           "Verilator build s", "build + run CPU s", "simulation s", "load average",
                           "words compared", "mismatches", "within target", "outcome"], rows)


def _percent(fraction) -> str:
    return "-" if fraction is None else f"{100 * fraction:+.2f} %"


def render(results: dict) -> str:
    lines = []
    for section in (_intro, _targets, routed_markdown, _sweep, _lanes, _streams, _rtl, _simulator_speed, _ese_rtl,
                    _balance, _latency, _efficiency, _encoder_and_size, _plots):
        lines += section(results)
    return "\n".join(lines)
