"""PNG plots of results.json (bench/report.py). Needs matplotlib (the `plots` extra)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

FAMILIES = (("shipped", "shipped size"), ("ese", "ESE size"))


def _series(results: dict, family: str):
    """(label, rows sorted by PEs) per workload and pruning of one model family."""
    groups: dict[str, list] = {}
    for row in results["accelerator"]["rows"]:
        if row["family"] == family:
            groups.setdefault(f"{row['model']}, {row['pruning']}", []).append(row)
    return [(label, sorted(rows, key=lambda r: r["n_pes"])) for label, rows in groups.items()]


def _sweep_plot(results: dict, path: Path, value, bound, ylabel: str, log_y: bool) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (family, title) in zip(axes, FAMILIES):
        for label, rows in _series(results, family):
            pes = [r["n_pes"] for r in rows]
            line, = ax.plot(pes, [value(r) for r in rows], marker="o", label=label)
            ax.plot(pes, [bound(r) for r in rows], linestyle="--", color=line.get_color(), alpha=0.6)
        ax.set_xscale("log", base=2)
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("PEs")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} (dashed: busiest-PE bound)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(f"{results['accelerator']['source']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _balance_plot(results: dict, path: Path) -> None:
    entries = results["load_balance"]
    figure, axes = plt.subplots(1, len(entries), figsize=(5.5 * len(entries), 4.2), squeeze=False)
    for ax, entry in zip(axes[0], entries):
        for offset, (variant, color) in zip((-0.2, 0.2), (("balanced", "tab:blue"), ("unbalanced", "tab:red"))):
            loads = entry[variant]["nonzeros_per_pe"]
            ax.bar([p + offset for p in range(len(loads))], loads, width=0.4, color=color,
                   label=f"{variant} (max/mean {entry[variant]['max_over_mean']:.3f})")
            ax.axhline(max(loads), color=color, linestyle=":", linewidth=1)
        ax.set_xlabel("PE")
        ax.set_ylabel(f"non-zeros of {entry['matrix']}")
        ax.set_title(f"{entry['model']}, density {entry['density']}, {entry['n_pes']} PEs")
        ax.legend(fontsize=8)
    figure.suptitle(entries[0]["source"], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _latency_plot(results: dict, path: Path) -> None:
    figure, axes = plt.subplots(2, 1, figsize=(11, 12))
    for ax, (family, title) in zip(axes, FAMILIES):
        labels, values, colors = [], [], []
        for row in results["accelerator"]["rows"]:
            if row["family"] == family and row["balanced"] and row["model"] in ("shipped", "ese"):
                for clock in ("125", "200"):
                    labels.append(f"accelerator {row['n_pes']} PEs @ {clock} MHz (modelled)")
                    values.append(row["at_clock"][clock]["us_per_frame"])
                    colors.append("tab:blue")
        for row in results["cpu"]["rows"]:
            if row["family"] == family and "skipped" not in row:
                labels.append(f"{row['implementation']}, {row['mode']} (measured here)")
                values.append(row["us_per_frame"])
                colors.append("tab:green")
        for row in results["elsewhere"]["latency"]:
            if row["family"] == family:
                labels.append(f"{row['implementation']}, {row['mode']} (elsewhere)")
                values.append(row["us_per_frame"])
                colors.append("tab:gray")
        ax.barh(range(len(values)), values, color=colors)
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("microseconds per frame (log)")
        ax.set_title(title)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    figure.subplots_adjust(left=0.42, right=0.97, top=0.96, bottom=0.05, hspace=0.2)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_all(results: dict, out: Path) -> dict[str, str]:
    """Write every plot into `out`; returns file name -> what it shows."""
    _sweep_plot(results, out / "cycles.png", lambda r: r["steady_cycles_per_frame"],
                lambda r: r["busiest_pe_entries"], "cycles per frame", log_y=True)
    _sweep_plot(results, out / "utilisation.png", lambda r: r["pe_busy_fraction"], lambda r: r["busy_bound"],
                "PE busy fraction", log_y=False)
    _balance_plot(results, out / "load_balance.png")
    _latency_plot(results, out / "latency.png")
    return {"cycles.png": "cycles per frame against PEs, with the busiest-PE bound (modelled)",
            "utilisation.png": "PE busy fraction against PEs, with its bound (modelled)",
            "load_balance.png": "non-zeros per PE, balanced against unbalanced pruning (counted)",
            "latency.png": "us per frame: accelerator (modelled), CPU (measured here), GPU and ESE (elsewhere)"}
