"""`sparselstm tables`: the sigmoid/tanh tables of a numerics setting, and (--check) their error.

Also home of the `--weight-bits`... flags shared by commands that take a Numerics (add_numerics_arguments,
numerics_from_args).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_numerics_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per Numerics field (e.g. --weight-bits 8), defaulting to docs/numerics.md's defaults."""
    from ..sw.fixedpoint import Numerics

    group = parser.add_argument_group("numerics (docs/numerics.md)")
    for field in dataclasses.fields(Numerics):
        flag = "--" + field.name.replace("_", "-")
        group.add_argument(flag, type=int, default=None, metavar="N",
                           help=f"default {field.default}")


def numerics_from_args(args: argparse.Namespace):
    """The Numerics the flags of add_numerics_arguments ask for (ParameterError names a bad field)."""
    from ..sw.fixedpoint import Numerics

    given = {field.name: getattr(args, field.name) for field in dataclasses.fields(Numerics)
             if getattr(args, field.name, None) is not None}
    return Numerics(**given)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tables",
        help="show the sigmoid/tanh lookup tables and (--check) their error",
        description="Describe the sigmoid/tanh interpolation tables of a numerics setting (docs/numerics.md) "
                    "and, with --check, measure their largest error against float64 sigmoid/tanh over every "
                    "pre-activation word.",
    )
    parser.add_argument("--check", action="store_true",
                        help="evaluate sigmoid_q and tanh_q on all 2**pre_bits input words and print the "
                             "largest absolute error")
    parser.add_argument("--encoded", type=Path, default=None, metavar="OUTDIR",
                        help="use the numerics and the tables of an encoded model directory instead of the "
                             "flags below")
    add_numerics_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..spec.errors import ParameterError
    from ..sw.fixedpoint import activation_tables, table_error

    if args.encoded is not None:
        from ..sw.format import load_encoded

        flags = [f.replace("_", "-") for f, v in vars(args).items()
                 if v is not None and f in _numerics_field_names()]
        if flags:
            raise ParameterError(f"--encoded takes the numerics from {args.encoded}; do not also give "
                                 f"--{', --'.join(flags)}")
        encoded = load_encoded(args.encoded)
        numerics, tables, source = encoded.numerics, encoded.tables, str(args.encoded)
    else:
        numerics = numerics_from_args(args)
        tables, source = activation_tables(numerics), "numerics flags"
    n = numerics
    entries = (1 << n.table_log2) + 1
    print(f"sigmoid/tanh tables ({source}): T and D of {entries} signed {n.unit_bits}-bit words each, "
          f"{4 * entries * n.unit_bits} bits in all")
    print(f"  input:  pre-activation ({n.pre_bits}, {n.pre_frac}), range [{-2.0 ** (n.pre_bits - 1 - n.pre_frac):g}, "
          f"{2.0 ** (n.pre_bits - 1 - n.pre_frac):g}); {n.table_log2} index bits, {n.interp_bits} interpolation bits "
          f"(segment width {2.0 ** (n.interp_bits - n.pre_frac):g})")
    print(f"  output: unit ({n.unit_bits}, {n.unit_frac}), 1.0 = {n.one}, LSB {2.0 ** -n.unit_frac:.4g}")
    if args.check:
        errors = table_error(n, tables)
        lsb = 2.0 ** -n.unit_frac
        for fn in ("sigmoid", "tanh"):
            print(f"  max |{fn}_q - {fn}| over all {2 ** n.pre_bits} input words: {errors[fn]:.4e} "
                  f"({errors[fn] / lsb:.3f} LSB)")
    return 0


def _numerics_field_names() -> set[str]:
    from ..sw.fixedpoint import Numerics

    return {field.name for field in dataclasses.fields(Numerics)}
