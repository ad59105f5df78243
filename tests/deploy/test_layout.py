"""The code's shape, checked: small modules with short functions, and an architecture map
(docs/architecture.md) that names every module, so a newcomer can find each one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "worker", "models", "sdk/passthru_client")
# Migrations are a frozen record of the schema, not code anyone works in.
FROZEN = ROOT / "models" / "db" / "migrations"
MAX_MODULE_LINES = 300
# The SDK's two clients: each is one public class whose documented methods are the API's,
# the same in both; split, a reader would look for a method in two places.
ONE_PUBLIC_CLASS = {"sdk/passthru_client/_client.py", "sdk/passthru_client/_async.py"}
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    found = [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if FROZEN not in path.parents
    ]
    assert len(found) > 80, found  # the walk found the packages
    return found


def name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_no_module_is_longer_than_300_lines() -> None:
    lengths = {name(p): len(p.read_text().splitlines()) for p in modules()}
    assert max(lengths.values()) > 100  # lines were counted
    too_long = {n: k for n, k in lengths.items() if k > MAX_MODULE_LINES}
    assert {n: k for n, k in too_long.items() if n not in ONE_PUBLIC_CLASS} == {}
    assert all(lengths[n] <= 2 * MAX_MODULE_LINES for n in ONE_PUBLIC_CLASS)


def test_no_function_is_longer_than_60_lines() -> None:
    lengths: dict[str, int] = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                end = node.end_lineno or node.lineno
                lengths[f"{name(path)}:{node.lineno} {node.name}"] = end - node.lineno + 1
    assert len(lengths) > 500  # functions were found
    assert {n: k for n, k in lengths.items() if k > MAX_FUNCTION_LINES} == {}


def test_the_architecture_map_names_every_module() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [name(p) for p in modules() if p.name != "__init__.py" and f"`{name(p)}`" not in doc]
    assert missing == []


def test_every_module_says_what_it_is_for() -> None:
    undocumented = [name(p) for p in modules() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert undocumented == []
