"""docs/security.md names, for each protection, the test that proves it: every test it names
exists, so the page cannot drift from the suite."""

from __future__ import annotations

import ast
import re

from tests.deploy.common import ROOT

SECURITY = ROOT / "docs" / "security.md"
# `tests/x/test_y.py::test_name` or `tests/x/test_y.py` (a whole module), then any
# `::test_name` or `test_name` that follows in the same cell, meaning the same module.
MODULE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?")
LATER = re.compile(r"`(?:::)?(test_\w+)")


def _tests_of(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def named_tests() -> list[tuple[str, str | None]]:
    """(module, test or None) for every test the page names."""
    found: list[tuple[str, str | None]] = []
    for line in SECURITY.read_text().splitlines():
        if not line.startswith("|"):
            continue
        for cell in line.split("|"):
            module: str | None = None
            position = 0
            while True:
                m = MODULE.search(cell, position)
                later = LATER.search(cell, position)
                if m and (not later or m.start() <= later.start()):
                    module = m.group(1)
                    found.append((module, m.group(2)))
                    position = m.end()
                elif later and module is not None:
                    found.append((module, later.group(1)))
                    position = later.end()
                else:
                    break
    return found


def test_the_page_names_tests() -> None:
    assert len(named_tests()) > 50


def test_every_test_the_page_names_exists() -> None:
    missing = []
    for module, name in named_tests():
        if not (ROOT / module).exists():
            missing.append(module)
        elif name is not None and name not in _tests_of(module):
            missing.append(f"{module}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
