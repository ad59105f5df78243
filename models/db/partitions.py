"""Day partitions of `function_call` and `call_attempt` on Postgres (SQLite has none): their
bounds, the days kept ready ahead, and the catalog retention reads to drop a whole day.

`function_call` is partitioned by RANGE (id) and `call_attempt` by RANGE (call_id) with the
same bounds, so a call and its attempts live in the same day's pair of partitions. Ids are
time-ordered: `function_call_p20261201` holds the calls made on 2026-12-01 (UTC), ids from
`first_id_at("fc", that day)` to `first_id_at("fc", the next day)`. Beside the days, each
table may have `<table>_legacy` (the table as it was before migration 0013, FROM MINVALUE)
and always has `<table>_default`: an id no day takes (a day not created yet, or already
dropped) lands there, so an insert never fails for want of a partition. Creating a day whose
ids some rows of the default already have moves those rows into it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnClause, Connection, Engine, column, select, text
from sqlalchemy import table as sql_table
from sqlalchemy.exc import OperationalError

from models.db.ids import first_id_at

log = logging.getLogger("passthru.partitions")

# Each partitioned table and its partition key.
KEYS = {"function_call": "id", "call_attempt": "call_id"}
# Days of partitions kept ready after today's.
AHEAD_DAYS = 7
# How long making partitions waits for a lock (a partition attached while a long query
# reads the default one): past it, the next sweep tries again, days before it matters.
LOCK_TIMEOUT = "2s"
# Held (per transaction) while partitions are created: two sweepers never race.
_LOCK_KEY = 0x70617274  # "part"
_BOUND = re.compile(r"FROM \((MINVALUE|'([^']*)')\) TO \((MAXVALUE|'([^']*)')\)")


@dataclass(frozen=True, slots=True)
class Partition:
    """A bounded partition: ids from `lower` (None: MINVALUE) to `upper` (None: MAXVALUE)."""

    name: str
    lower: str | None
    upper: str | None

    def overlaps(self, lower: str, upper: str) -> bool:
        return (self.lower is None or self.lower < upper) and (
            self.upper is None or lower < self.upper
        )


def day_bounds(day: date) -> tuple[str, str]:
    """The ids of the calls made on `day` (UTC): from the first, to the next day's first."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return first_id_at("fc", start), first_id_at("fc", start + timedelta(days=1))


def day_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def partitioned(conn: Connection) -> bool:
    """True on Postgres once migration 0013 made `function_call` a partitioned table."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass('function_call')")
    ).scalar()
    return kind == "p"


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The bounded partitions of `table` (not the default), oldest first."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    )
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match is not None:  # the default's bound is "DEFAULT"
            found.append(Partition(name, match.group(2), match.group(4)))
    return sorted(found, key=lambda p: p.lower or "")


def ensure(conn: Connection, first: date, last: date) -> int:
    """Create, in both tables, each day's partition from `first` to `last` (inclusive) that
    no partition covers yet; return how many were created. Run inside a transaction."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    created = 0
    for table, key in KEYS.items():
        taken = partitions(conn, table)
        day = first
        while day <= last:
            lower, upper = day_bounds(day)
            if not any(p.overlaps(lower, upper) for p in taken):
                _create(conn, table, key, day_name(table, day), (lower, upper))
                created += 1
            day += timedelta(days=1)
    return created


def _create(conn: Connection, table: str, key: str, name: str, bounds: tuple[str, str]) -> None:
    """One day's partition, made apart then attached: ATTACH holds off no read or write of
    the table (CREATE ... PARTITION OF would lock it whole). The rows of that day the
    default already holds move into it first."""
    _standalone(conn, table, name)
    ids: ColumnClause[str] = column(key)
    stray = conn.execute(
        select(ids)
        .select_from(sql_table(default_name(table), ids))
        .where(ids >= bounds[0], ids < bounds[1])
        .limit(1)
    ).first()
    if stray is not None:
        log.warning("partition %s: moving its rows out of %s", name, default_name(table))
        # The names are this module's, the values bound.
        in_day = f"{key} >= :lower AND {key} < :upper"
        moved = f"DELETE FROM {default_name(table)} WHERE {in_day} RETURNING *"  # noqa: S608
        move = f"WITH moved AS ({moved}) INSERT INTO {name} SELECT * FROM moved"  # noqa: S608
        conn.execute(text(move), {"lower": bounds[0], "upper": bounds[1]})
    attach(conn, table, name, f"FOR VALUES FROM ('{bounds[0]}') TO ('{bounds[1]}')")


def make_default(conn: Connection, table: str) -> None:
    """`table`'s default partition: the rows no other partition takes."""
    _standalone(conn, table, default_name(table))
    attach(conn, table, default_name(table), "DEFAULT")


def _standalone(conn: Connection, table: str, name: str) -> None:
    # call_attempt has no primary key across partitions (it would have to hold call_id):
    # each partition keys its own rows by id, which one sequence numbers.
    own_key = ", PRIMARY KEY (id)" if table == "call_attempt" else ""
    conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS{own_key})"))


_INDEX = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON (?:ONLY )?\S+ ")


def attach(conn: Connection, table: str, name: str, values: str) -> None:
    """Attach the table `name` as `table`'s partition for `values` (FOR VALUES ..., or
    DEFAULT), each of the parent's indexes made first as `<name>_<index>`: a plan names the
    index it reads (`function_call_p20261201_ix_call_log_app`), and ATTACH adopts them."""
    indexes = conn.execute(
        text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table}
    )
    for index, definition in list(indexes):
        if index != f"{table}_pkey":  # ATTACH makes the primary key's
            twin = _INDEX.sub(f"CREATE \\1INDEX {name}_{index} ON {name} ", definition)
            conn.execute(text(twin))
    conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} {values}"))


# Per database: the days known to have their partitions (first, last), so a sweep that
# finds them there costs no query.
_ready: dict[str, tuple[date, date]] = {}


def keep_ahead(engine: Engine, now: datetime, days: int = AHEAD_DAYS) -> int:
    """Make sure today's partitions and the next `days` days' exist (Postgres, partitioned);
    return how many were created. Cheap when they are known to be there."""
    if engine.dialect.name != "postgresql":
        return 0
    first = now.astimezone(UTC).date()
    last = first + timedelta(days=days)
    key = engine.url.render_as_string(hide_password=True)
    known = _ready.get(key)
    if known is not None and known[0] <= first and last <= known[1]:
        return 0
    try:
        with engine.begin() as conn:
            if not partitioned(conn):
                return 0
            conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            created = ensure(conn, first, last)
    except OperationalError as exc:  # a lock not had in time: the next sweep tries again
        log.warning("partitions: not created (%s)", type(exc.orig).__name__)
        return 0
    _ready[key] = (first, last)
    if created:
        log.info("partitions: %d created, through %s", created, last)
    return created
