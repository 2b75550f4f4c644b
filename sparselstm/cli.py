"""The `sparselstm` command. Each subcommand lives in its own module under sparselstm/commands/ and
provides `register(subparsers)` (adding a parser whose default `func` runs it) ."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# Order is the order of `sparselstm --help`.
COMMAND_MODULES = (
    "encode",
    "reference",
    "golden",
    "verilog",
    "sim",
    "build", "board",
    "tables",
    "data",
    "train",
    "sensitivity",
    "compress",
    "accuracy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparselstm",
        description="Compress LSTMP models and run them on a sparse FPGA accelerator.",
    )
    parser.add_argument("--version", action="version", version=f"sparselstm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"sparselstm.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"sparselstm.commands.{name}":
                continue  # not written yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .spec.errors import SparseLSTMError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except SparseLSTMError as error:
        print(f"sparselstm {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sparselstm {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
