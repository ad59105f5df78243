"""One interactive result stored in one statement on Postgres: the call's UPDATE, its attempt,
its webhook event and its account's `last_used_at` as data-modifying CTEs of one statement,
run in autocommit. A statement is atomic on its own, so this is the transaction of
`worker/calls/store.py` without its BEGIN, its two other statements and its COMMIT: four
round trips fewer on a waiting caller's path. It is sent on the driver's cursor
(models/db/direct.py): through a SQLAlchemy connection, running it cost more CPU than the
statement's own conversion and round trip.

Only a call outside any batch goes this way (the UPDATE says so in its WHERE): a batch's last
call also writes the batch's event, counted under a lock (`models/webhooks/outbox.py`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    Engine,
    Select,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from models.db.direct import DirectStatement
from models.db.tables import CallAttempt, ConnectedAccount, WebhookDelivery
from models.webhooks.outbox import FINISHED_COLUMNS
from models.webhooks.signing import EVENT_OF_STATUS, message_id
from models.webhooks.states import DeliveryStatus
from worker.calls.results import Attempted

_attempts = CallAttempt.__table__  # type: ignore[attr-defined]
_deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]

# The statement's columns: the stored call's id, then its event's target.
_TARGET = 1
# The attempt's row but its id and its call, which the INSERT takes from the stored call.
_ATTEMPT_COLUMNS = tuple(c.name for c in _attempts.c if c.name not in ("id", "call_id"))


def _param(table: Any, column: str, prefix: str) -> Any:
    """A parameter typed as `column` (Postgres must know the type of a bare parameter)."""
    return bindparam(f"{prefix}{column}", type_=table.c[column].type)


def _statement(store: Any, *, final: bool, touch: bool) -> Select[Any]:
    """The statement for `store` (worker/calls/store.py's UPDATE of one call): it returns
    the call's id and its event's target, if the call is stored. `final`: the result ends
    the call, so its webhook event is written; `touch`: the account's `last_used_at` too."""
    *call_columns, endpoint_url = FINISHED_COLUMNS
    stored = (
        store.where(store.table.c.batch_id.is_(None))
        .returning(*call_columns, endpoint_url.label("endpoint_url"))
        .cte("stored")
    )
    target = func.coalesce(
        func.nullif(stored.c.callback_url, ""), func.nullif(stored.c.endpoint_url, "")
    )
    attempt = insert(_attempts).from_select(
        ["call_id", *_ATTEMPT_COLUMNS],
        select(stored.c.id, *[_param(_attempts, c, "a_") for c in _ATTEMPT_COLUMNS]),
    )
    query = select(stored.c.id, target.label("target")).add_cte(attempt.cte("attempt"))
    if final:
        query = query.add_cte(_event(stored, target))
    if touch:
        query = query.add_cte(_account_used(stored))
    return query


def _event(stored: Any, target: Any) -> CTE:
    """The call's webhook event, to its callback URL or else its tenant's endpoint (the
    same row `models.webhooks.outbox.enqueue_deliveries` writes), when it has either."""
    now = _param(_deliveries, "created_at", "d_")
    return (
        pg_insert(_deliveries)
        .from_select(
            [
                "id",
                "tenant_id",
                "call_id",
                "event",
                "url",
                "to_endpoint",
                "status",
                "attempt_count",
                "next_attempt_at",
                "published_at",
                "created_at",
            ],
            select(
                _param(_deliveries, "id", "d_"),
                stored.c.tenant_id,
                stored.c.id,
                _param(_deliveries, "event", "d_"),
                target,
                stored.c.callback_url.is_(None),
                literal(DeliveryStatus.PENDING, _deliveries.c.status.type),
                literal(0),
                now,
                now,
                now,
            ).where(target.is_not(None)),
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .cte("event")
    )


def _account_used(stored: Any) -> CTE:
    """The account's `last_used_at`, when older than the cutoff and the call was stored."""
    last_used = _accounts.c.last_used_at
    return (
        update(_accounts)
        .where(
            _accounts.c.id == bindparam("u_account"),
            or_(last_used.is_(None), last_used < bindparam("u_cutoff", type_=last_used.type)),
            exists(select(stored.c.id)),
        )
        .values(last_used_at=bindparam("u_now", type_=last_used.type))
        .cte("used")
    )


class OneStatement:
    """The four statements (final or not, account touched or not) built once from the
    store's UPDATE: building a statement costs more CPU than running it."""

    def __init__(self, store: Any) -> None:
        self._statements = {
            (final, touch): DirectStatement(_statement(store, final=final, touch=touch))
            for final in (False, True)
            for touch in (False, True)
        }

    def run(
        self,
        engine: Engine,
        item: Attempted,
        row: dict[str, Any],
        now: datetime,
        touch_before: datetime | None,
    ) -> tuple[bool, str | None]:
        """Store `item` (`row`: the UPDATE's parameters) if its call is still ours and in no
        batch; return whether it was, and the id of the webhook event written for it, if
        any. `touch_before`: write the account's `last_used_at` if older (None: leave it)."""
        r = item.result
        final = r.status.is_final
        statement = self._statements[(final, touch_before is not None)]
        params = dict(row)
        params.update({f"a_{k}": v for k, v in item.attempt_row().items() if k != "call_id"})
        if final:
            params.update(
                {
                    "d_id": message_id(item.call_id),
                    "d_event": EVENT_OF_STATUS[str(r.status)],
                    "d_created_at": now,
                }
            )
        if touch_before is not None:
            params.update({"u_account": item.account_id, "u_cutoff": touch_before, "u_now": now})
        found = statement.rows(engine, params)  # one statement, committed as it runs
        if not found:
            return False, None
        return True, (params["d_id"] if final and found[0][_TARGET] else None)


def touch_before(
    account_id: str | None, now: datetime, touched: dict[str, datetime] | None, every: timedelta
) -> datetime | None:
    """When an account's `last_used_at` is due a write: the time before which it is
    rewritten (None when this process wrote it within `every`)."""
    if account_id is None:
        return None
    if touched is not None and account_id in touched and touched[account_id] >= now - every:
        return None
    return now - every


# The most accounts a process remembers writing `last_used_at` for: past it, all are
# forgotten at once, and each account's next result writes it again (a guarded UPDATE that
# does nothing within the resolution), so a tenant with a million accounts costs no memory.
MAX_TOUCHED = 10_000


def remember_touched(
    touched: dict[str, datetime] | None, account_ids: list[str], now: datetime
) -> None:
    """Note that this process wrote `last_used_at` of `account_ids` at `now`."""
    if touched is None:
        return
    if len(touched) + len(account_ids) > MAX_TOUCHED:
        touched.clear()
    touched.update(dict.fromkeys(account_ids, now))
