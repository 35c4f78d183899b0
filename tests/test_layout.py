"""House rules of the test tree that a reader relies on: a test module imports no other test module
(shared helpers live in plain modules or conftest.py), and bench/ imports nothing from tests/."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "tests").rglob("test_*.py")), ids=lambda p: p.name)
def test_a_test_module_imports_no_other_test_module(path):
    imports_tests = {m for m in imported_modules(path)
                     if m.startswith("tests.") and m.rsplit(".", 1)[-1].startswith("test_")}
    assert not imports_tests, f"{path.relative_to(ROOT)} imports {sorted(imports_tests)}: share a helper module"


def test_bench_imports_nothing_from_tests():
    offenders = {p.name: sorted(m for m in imported_modules(p) if m == "tests" or m.startswith("tests."))
                 for p in (ROOT / "bench").glob("*.py")}
    assert not {name: found for name, found in offenders.items() if found}
