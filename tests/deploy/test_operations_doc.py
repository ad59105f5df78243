"""docs/operations.md agrees with the code: its settings table lists every setting of
`models.settings.Settings` (and nothing else) with its default, it names only metrics
`api/prometheus.py` exports, and its process table shows the Procfile's lines."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from models.settings import Settings
from tests.deploy.common import DEPLOY, ROOT, settings_aliases

OPERATIONS = ROOT / "docs" / "operations.md"
METRICS_SOURCE = ROOT / "api" / "prometheus.py"


def settings_table() -> dict[str, tuple[str, str]]:
    """env name -> (meaning, default) from the table under `## Settings`."""
    lines = OPERATIONS.read_text().splitlines()
    start = lines.index("## Settings")
    rows: dict[str, tuple[str, str]] = {}
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if not line.startswith("|"):
            if in_table:
                break
            continue
        in_table = True
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] in {"env", ""} or set(cells[0]) <= set("-: "):
            continue
        assert len(cells) == 3, f"a settings row needs 3 cells: {line}"
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        assert len(names) == 1, f"one setting per row: {line}"
        assert names[0] not in rows, f"{names[0]} is listed twice"
        rows[names[0]] = (cells[1], cells[2])
    return rows


def expected_default(value: Any) -> str | None:
    """How the default is written in the table (None: the cell says `none`)."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_the_settings_table_lists_every_setting_and_no_other() -> None:
    table = set(settings_table())
    aliases = set(settings_aliases())
    assert not aliases - table, f"settings missing from docs/operations.md: {aliases - table}"
    assert not table - aliases, f"docs/operations.md lists unknown settings: {table - aliases}"


def test_the_settings_table_shows_each_default() -> None:
    table = settings_table()
    for env, field_name in settings_aliases().items():
        meaning, default_cell = table[env]
        assert meaning, f"{env} has no meaning"
        wanted = expected_default(
            Settings.model_fields[field_name].get_default(call_default_factory=True)
        )
        if wanted is None:
            assert default_cell.lower().startswith("none"), f"{env}: default is none"
        else:
            assert f"`{wanted}`" in default_cell, f"{env}: default `{wanted}`, doc: {default_cell}"


# A metric made by prometheus_client: `Counter("passthru_...", ...)`, `GaugeMetricFamily(...`.
METRIC = re.compile(
    r"\b(?:Counter|Gauge|Histogram|Summary|Info|Enum|GaugeMetricFamily|CounterMetricFamily|"
    r"HistogramMetricFamily|SummaryMetricFamily)\(\s*\"(passthru_[a-z0-9_]+)\""
)
# What Prometheus' text format appends to a metric's name.
SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum")


def exported_metrics() -> set[str]:
    """Every passthru metric the code defines (the API's and the workers')."""
    names: set[str] = set()
    for package in ("api", "worker", "models"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(METRIC.findall(path.read_text()))
    return names


def named_metrics(text: str, exported: set[str]) -> set[str]:
    named = set()
    for token in re.findall(r"\bpassthru_[a-z0-9_]+[a-z0-9]\b", text):
        base = next((token[: -len(s)] for s in SUFFIXES if token.endswith(s)), token)
        named.add(token if token in exported else base)
    return named


def test_metrics_are_found_where_they_are_defined() -> None:
    assert "passthru_queue_messages" in exported_metrics()
    assert set(METRIC.findall(METRICS_SOURCE.read_text())) <= exported_metrics()


def test_the_docs_name_every_metric_and_invent_none() -> None:
    exported = exported_metrics()
    for path in (OPERATIONS, DEPLOY / "README.md"):
        named = named_metrics(path.read_text(), exported)
        assert named <= exported, f"{path.name} names metrics that do not exist: {named - exported}"
    documented = named_metrics(OPERATIONS.read_text(), exported)
    assert exported <= documented, f"metrics not in operations.md: {exported - documented}"


def test_the_process_table_shows_the_procfile() -> None:
    text = OPERATIONS.read_text()
    shown = set()
    for line in Path(ROOT / "Procfile").read_text().splitlines():
        if line.strip():
            name, _, command = line.partition(":")
            assert f"`{command.strip()}`" in text, f"docs/operations.md does not show: {command}"
            shown.add(name.strip())
    assert shown >= {"release", "web", "worker", "beat", "flower"}, shown
