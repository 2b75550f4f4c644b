"""The `sparselstm` entry point: every command registers; a broken command module fails loudly, a missing
optional extra only disables its command with a one-line message."""

import importlib

import pytest

from sparselstm import cli


def test_every_command_is_registered(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in cli.COMMAND_MODULES:
        assert f"    {name} " in out or f"    {name}\n" in out, name


def _failing_import(command: str, error: ImportError):
    real = importlib.import_module

    def import_module(name, *args):
        if name == f"sparselstm.commands.{command}":
            raise error
        return real(name, *args)
    return import_module


def test_a_command_module_that_fails_to_import_is_not_skipped(monkeypatch):
    for missing_name in ("sparselstm.commands.golden", "sparselstm.sw.gone"):
        missing = ModuleNotFoundError(f"No module named {missing_name!r}", name=missing_name)
        monkeypatch.setattr(cli.importlib, "import_module", _failing_import("golden", missing))
        with pytest.raises(ModuleNotFoundError, match=missing_name):
            cli.main(["encode", "--help"])


def test_a_missing_optional_extra_disables_only_its_command(monkeypatch, capsys, tmp_path):
    missing = ModuleNotFoundError("No module named 'torch'", name="torch")
    monkeypatch.setattr(cli.importlib, "import_module", _failing_import("train", missing))
    assert cli.main(["train", "data", "-o", "x.pt"]) == 1
    err = capsys.readouterr().err
    assert err == "sparselstm train: error: needs torch, which is not installed: pip install 'sparselstm[torch]'\n"
    assert cli.main(["tables"]) == 0
