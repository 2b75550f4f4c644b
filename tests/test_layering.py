"""The layers of sparselstm/__init__.py do not reach into each other: checked on every import statement.

spec imports nothing else of sparselstm; sw and hw depend only on spec (hw is elaborated from the frozen
description in spec, never from sw's code); sim checks the generated Verilog against sw's golden model and
imports sw only in sim/reference.py (the checker's model) and hw's code only in its Amaranth stand-in DUT.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYER_DIRECTORIES = {"spec": ROOT / "sparselstm" / "spec", "sw": ROOT / "sw", "hw": ROOT / "hw", "sim": ROOT / "sim"}

# layer -> the other layers it may import
ALLOWED = {"spec": set(), "sw": {"spec"}, "hw": {"spec"}, "sim": {"spec"}}
# files allowed one more layer, and why
EXCEPTIONS = {
    ("sim", "reference.py"): {"sw"},   # the checker's model: sw's bit-exact golden model
    ("sim", "standin.py"): {"hw"},     # a stand-in DUT written in Amaranth, converted with hw's Verilog helpers
}


def _module_name(layer: str, path: Path) -> list[str]:
    relative = path.relative_to(LAYER_DIRECTORIES[layer]).with_suffix("")
    parts = ["sparselstm", layer, *relative.parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported_modules(layer: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    package = _module_name(layer, path)
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "sparselstm" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYER_DIRECTORIES else None


def _layer_files() -> list:
    return [pytest.param(layer, path, id=f"{layer}/{path.relative_to(directory)}")
            for layer, directory in LAYER_DIRECTORIES.items() for path in sorted(directory.rglob("*.py"))]


@pytest.mark.parametrize("layer, path", _layer_files())
def test_layer_imports_only_what_it_may(layer, path):
    allowed = ALLOWED[layer] | EXCEPTIONS.get((layer, path.name), set()) | {layer}
    reaching = [(line, module) for line, module in _imported_modules(layer, path)
                if _layer_of(module) is not None and _layer_of(module) not in allowed]
    assert not reaching, (f"{path.relative_to(ROOT)} ({layer}) imports another layer's code: "
                          + ", ".join(f"line {line}: {module}" for line, module in reaching))


def test_the_checker_sees_a_violation(tmp_path):
    """The check resolves relative imports: an hw file importing sw through '..sw' is caught."""
    probe = tmp_path / "probe.py"
    probe.write_text("from ..sw.fixedpoint import round_shift\nfrom .design import bits_for\n")
    original = LAYER_DIRECTORIES["hw"]
    LAYER_DIRECTORIES["hw"] = tmp_path
    try:
        modules = [module for _, module in _imported_modules("hw", probe)]
    finally:
        LAYER_DIRECTORIES["hw"] = original
    assert "sparselstm.sw.fixedpoint" in modules
    assert "sparselstm.hw.design" in modules
    assert _layer_of("sparselstm.sw.fixedpoint") == "sw"
