"""The `--delta-threshold` option shared by encode, golden and reference (docs/numerics.md, "Delta mode")."""

from __future__ import annotations

from pathlib import Path



def add_delta_argument(parser, effect: str) -> None:
    parser.add_argument("--delta-threshold", default=None, metavar="T|FILE.json",
                        help="delta mode (docs/numerics.md, 'Delta mode'): a column is sent only when its value "
                             "moved by more than the threshold since it was last sent. T: one real threshold (in "
                             "the units of the activations, e.g. 0.05) for every layer and side; FILE.json: a "
                             'list with one {"x": .., "y": .., "m": ..} per layer (real units; a missing side is 0). '
                             + effect)


def real_thresholds_argument(value: str | None):
    """The option's value as real_thresholds takes it: None, a float, or the list read from FILE.json."""
    from ..spec.errors import ParameterError

    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    from ..sw.delta import load_real_thresholds

    if Path(value).suffix != ".json":
        raise ParameterError(f"--delta-threshold: expected a number or a .json file, got {value!r}")
    return load_real_thresholds(value)


def word_thresholds(value: str | None, numerics, has_projection):
    """The option as DeltaThresholds (words) per layer, or None; errors in a file name the file."""
    from ..spec.errors import ParameterError
    from ..sw.delta import thresholds_from_real

    real = real_thresholds_argument(value)
    if real is None:
        return None
    try:
        return thresholds_from_real(real, numerics, has_projection)
    except (ParameterError, TypeError) as error:
        if isinstance(real, list):
            raise ParameterError(f"{value}: {error}") from None
        raise ParameterError(f"--delta-threshold: {error}") from None


def format_thresholds(thresholds) -> str:
    return "; ".join(f"layer {k}: x {t.x}, y {t.y}, m {t.m}" for k, t in enumerate(thresholds))


def format_delta_counts(counts: list[dict]) -> list[str]:
    """One line per layer: the share of columns skipped per side and the MACs per frame."""
    from ..sw.delta import skipped_fraction

    lines = []
    for k, layer in enumerate(counts):
        sides = [f"{side} {skipped_fraction(layer, side):.1%} of {layer[f'{side}_columns']}"
                 for side in ("x", "y", "m") if layer[f"{side}_columns"]]
        macs = sum(layer[f"{side}_macs"] for side in ("x", "y", "m"))
        dense = sum(layer[f"{side}_dense_macs"] for side in ("x", "y", "m"))
        share = f" ({macs / dense:.1%})" if dense else ""
        lines.append(f"layer {k}: columns skipped: {', '.join(sides)} column-frames; MACs {macs} of {dense}{share}")
    return lines
