"""What serves a query: the statement a function sends, as sent, and its plan (EXPLAIN on
Postgres, EXPLAIN QUERY PLAN on SQLite). Used by the log's plan tests and by
`bench/console_log.py`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event


@dataclass
class Plan:
    """A query's plan, line by line, whether it reads the whole table or sorts, and (on
    Postgres) how many rows the planner expects its largest sort to take."""

    lines: list[str]
    scans_table: bool
    sorts: bool
    sort_rows: int | None = None

    def uses(self, index: str) -> bool:
        return any(index in line for line in self.lines)

    def bounds_id(self) -> bool:
        """Whether an index is read from an id on (`id < ?` in its condition)."""
        return any(
            re.search(r"\bid\)?(::text)?\s*[<>]", line)
            for line in self.lines
            if "Index Cond" in line or line.startswith("SEARCH")
        )


def statement_of(engine: Engine, run: Callable[[], object], table: str) -> tuple[str, Any]:
    """The last SELECT on `table` that `run` sends, with its parameters as sent."""
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and table in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    return seen[-1]


def explain(engine: Engine, statement: str, parameters: Any, table: str) -> Plan:
    """The plan the database would run `statement` with."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars().all()
            lines = [str(row).strip() for row in rows]
            scans = any(
                _holds_rows(conn, found)
                for line in lines
                if (found := re.search(rf"Seq Scan on ({table}\w*)", line))
            )
            sort_lines = [x for x in lines if x.removeprefix("->").strip().startswith("Sort ")]
            sorts = bool(sort_lines)
            sort_rows = max((_rows(x) for x in sort_lines), default=None)
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            lines = [str(row[-1]) for row in rows]
            scans = any(line.startswith(f"SCAN {table}") for line in lines)
            sorts = any("TEMP B-TREE" in line for line in lines)
            sort_rows = None
    return Plan(lines, scans, sorts, sort_rows)


def _holds_rows(conn: Any, found: re.Match[str]) -> bool:
    """Whether the table a Seq Scan reads holds rows: a day partition not yet written to
    (partitions are created days ahead, models/db/partitions.py) costs nothing to scan."""
    rows = conn.exec_driver_sql(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%(t)s)", {"t": found[1]}
    ).scalar()
    return rows is None or rows != 0


def _rows(line: str) -> int:
    """The rows a Postgres plan line's estimate says (`... rows=65 width=...`)."""
    found = re.search(r"rows=(\d+)", line)
    return int(found[1]) if found else 0


def plan_of(engine: Engine, run: Callable[[], object], table: str) -> Plan:
    """The plan of the last SELECT on `table` that `run` sends."""
    return explain(engine, *statement_of(engine, run, table), table)
