"""State machines over status columns: one table of allowed moves, enforced in code and in SQL.

A machine refuses an illegal move in two places. Code that knows a row's status calls
`check(current, target)`. A status UPDATE is built by `update(...)` (or carries `guard(...)`),
whose `WHERE status IN (sources)` names only the statuses the table lets move to the target:
a row that is in any other status (moved meanwhile by another process) is left as it is,
and the UPDATE counts one row fewer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Table, Update, update
from sqlmodel import SQLModel

from models.errors import IllegalTransition

S = TypeVar("S", bound=StrEnum)


def by_key(status: ColumnElement[Any]) -> ColumnElement[Any]:
    """The status column as an expression no index matches, for the guard of a statement
    that finds its rows by primary key (a claim, a store). Postgres would otherwise plan it
    on an index whose leading or partial condition is the status (`ix_call_status_due`,
    `ix_call_tenant_open`), whose entries for each call's earlier statuses stay until the
    partition is vacuumed: such a plan reads every one of them, more with each call of the
    day, where the primary key reads one page (docs/performance.md)."""
    return status.concat("")


def _states(value: S | Iterable[S]) -> tuple[S, ...]:
    # A StrEnum member is itself an iterable (of characters): test for it first.
    return (value,) if isinstance(value, StrEnum) else tuple(value)  # type: ignore[return-value]


class StateMachine(Generic[S]):
    """The allowed moves between the statuses of one kind of row (`what`, for messages)."""

    def __init__(self, what: str, moves: Mapping[S, Iterable[S]]) -> None:
        self.what = what
        self.moves: dict[S, frozenset[S]] = {s: frozenset(to) for s, to in moves.items()}
        states = set(type(next(iter(self.moves))))
        missing = states - set(self.moves)
        if missing:
            raise ValueError(f"{what}: no moves given for {sorted(missing)}")
        # Statuses nothing leaves.
        self.final: frozenset[S] = frozenset(s for s, to in self.moves.items() if not to)

    def allows(self, current: S, target: S) -> bool:
        return target in self.moves[current]

    def check(self, current: S, target: S) -> S:
        """Return `target` if a row may move there from `current`, else raise
        IllegalTransition."""
        if not self.allows(current, target):
            raise IllegalTransition(self.what, current, target)
        return target

    def sources_of(self, target: S) -> tuple[S, ...]:
        """The statuses a row may be in to move to `target`, in the table's order."""
        return tuple(s for s, to in self.moves.items() if target in to)

    def sources(
        self, to: S | Iterable[S], *, current: S | Iterable[S] | None = None
    ) -> tuple[S, ...]:
        """The statuses from which a statement may move a row to each of `to`: those the
        table allows, or, when the code knows where the rows are, `current` (each move from
        it checked)."""
        targets = _states(to)
        if current is None:
            found = [s for s in self.moves if all(self.allows(s, t) for t in targets)]
            if not found:
                raise ValueError(f"{self.what}: no status may move to all of {list(targets)}")
            return tuple(found)
        froms = _states(current)
        for source in froms:
            for target in targets:
                self.check(source, target)
        return froms

    def guard(
        self,
        column: ColumnElement[Any],
        to: S | Iterable[S],
        *,
        current: S | Iterable[S] | None = None,
    ) -> ColumnElement[bool]:
        """`column` holds a status from which the table allows a move to each of `to`
        (see `sources`). One source is written `=`, which an executemany accepts."""
        froms = self.sources(to, current=current)
        return column == froms[0] if len(froms) == 1 else column.in_(froms)

    def update(
        self,
        table: Table | type[SQLModel],
        to: S,
        *where: ColumnElement[bool],
        current: S | Iterable[S] | None = None,
        keyed: bool = False,
    ) -> Update:
        """`UPDATE table SET status = to WHERE status IN (sources) AND where...`; add other
        columns with `.values(...)`. `keyed`: `where` names the rows by primary key, and the
        guard is written so that only that key's index serves it (`by_key`)."""
        columns = table.c if isinstance(table, Table) else table.__table__.c  # type: ignore[attr-defined]
        status = by_key(columns.status) if keyed else columns.status
        guard = self.guard(status, to, current=current)
        return update(table).where(guard, *where).values(status=to)
