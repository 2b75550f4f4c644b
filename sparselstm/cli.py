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


class _OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors as one line naming the argument (the usage is one --help away), like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Top-level modules of the optional extras (pyproject.toml) -> the extra that installs them.
OPTIONAL_MODULES = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnx", "matplotlib": "plots"}


def _unavailable(name: str, module: str, subparsers) -> None:
    """A command whose module needs a missing optional extra: it parses anything and reports the extra,
    so that every other command still works."""
    from .spec.errors import SparseLSTMError

    message = f"needs {module}, which is not installed: pip install 'sparselstm[{OPTIONAL_MODULES[module]}]'"
    parser = subparsers.add_parser(name, help=f"(unavailable: {message})", description=message)
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def report(args):
        raise SparseLSTMError(message)

    parser.set_defaults(func=report)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; a command module that fails to import is a bug and raises, unless what
    is missing is an optional extra (then that command alone reports it when used)."""
    parser = _OneLineErrorParser(
        prog="sparselstm",
        description="Compress LSTMP models and run them on a sparse FPGA accelerator.",
    )
    parser.add_argument("--version", action="version", version=f"sparselstm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"sparselstm.commands.{name}")
        except ModuleNotFoundError as error:
            missing = (error.name or "").partition(".")[0]
            if missing not in OPTIONAL_MODULES:
                raise
            _unavailable(name, missing, subparsers)
            continue
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
