"""How the SDK's methods become requests: paths, headers, query parameters, the `Prefer`
of a submission, the cursors of a walk over pages, and `Sender`, which sends one request
and reads its answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from passthru_client._errors import PassthruError
from passthru_client._http import ApiRequest, Op, T, exchange, parsed
from passthru_client._retry import RetryPolicy
from passthru_client._types import ErrorDetail

MAX_WAIT_S = 60.0
"""The longest the API holds a request open (`Prefer: wait` and `?wait=`)."""
# A wait the API cut short is asked again after this pause, doubling up to the most.
POLL_PAUSE_S = 0.25
MAX_POLL_PAUSE_S = 2.0

FilterValue = str | int | float | bool | datetime | None


def seconds(value: float) -> str:
    return f"{round(value, 3):g}"


def submission_prefer(wait: float | None) -> tuple[str | None, float]:
    """The `Prefer` header of a submission, and how long the API may hold it: none without
    `wait` (the server's PASSTHRU_DEFAULT_WAIT_S applies, which may hold it up to
    MAX_WAIT_S), `respond-async` for 0, else `wait=N` (at most MAX_WAIT_S)."""
    if wait is None:
        return None, MAX_WAIT_S
    if wait == 0:
        return "respond-async", 0.0
    first_wait = min(wait, MAX_WAIT_S)
    return f"wait={seconds(first_wait)}", first_wait


def path(*parts: str) -> str:
    for part in parts:
        if part in ("", ".", ".."):  # would name another resource once the URL is resolved
            raise ValueError(f"{part!r} is not an id")
    return "/" + "/".join(quote(p, safe="") for p in parts)


def user_header(user_id: str) -> dict[str, str | bytes]:
    """`X-User-ID` as the API reads it: UTF-8. A control character is refused here, without
    repeating the value (the API refuses it too)."""
    if any(c < " " or c == "\x7f" for c in user_id):
        raise ValueError("user_id holds a control character (a line break, a tab, ...)")
    return {"X-User-ID": user_id.encode()}


def as_is(data: Any) -> Any:
    return data


def items_page(data: Any) -> dict[str, Any]:
    """A page of `GET /rate-limits`: an object whose `items` is a list."""
    if not isinstance(data, dict) or not isinstance(data.get("items") or [], list):
        raise TypeError("not an object with a list of items")
    return data


class Pages:
    """The cursors one walk over a list has followed: a cursor given twice would loop."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def next(self, cursor: str | None) -> str | None:
        if cursor and cursor in self._seen:
            raise PassthruError(
                "repeated_cursor",
                [ErrorDetail("next_cursor", "the API gave a cursor it gave before; stopped")],
            )
        if cursor:
            self._seen.add(cursor)
        return cursor or None


def query(filters: Mapping[str, FilterValue]) -> dict[str, str]:
    """Filters as query parameters: None dropped, datetimes in ISO 8601, booleans lower."""
    params: dict[str, str] = {}
    for name, value in filters.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            params[name] = value.isoformat()
        elif isinstance(value, bool):
            params[name] = "true" if value else "false"
        else:
            params[name] = str(value)
    return params


def log_query(
    *,
    app: str | None,
    status: str | None,
    user_id: str | None,
    batch_id: str | None,
    since: FilterValue,
    until: FilterValue,
    page_size: int | None,
    **extra: FilterValue,
) -> dict[str, FilterValue]:
    """The Function Calls log's filters; unknown ones are passed through as they are."""
    return {
        "app": app,
        "status": status,
        "user_id": user_id,
        "batch_id": batch_id,
        "since": since,
        "until": until,
        "limit": page_size,
        **extra,
    }


def account_query(
    *,
    app: str | None,
    user_id: str | None,
    status: str | None,
    page_size: int | None,
    **extra: FilterValue,
) -> dict[str, FilterValue]:
    """The connected accounts' filters; unknown ones are passed through as they are."""
    return {"app": app, "user_id": user_id, "status": status, "limit": page_size, **extra}


class Sender:
    """What every operation starts from: the retry policy, the default end user, a clock;
    `_send` runs one request and reads its answer."""

    def __init__(self, policy: RetryPolicy, user_id: str | None, clock: Callable[[], float]):
        self.policy = policy
        if user_id:
            user_header(user_id)  # a bad one is refused now, not at the first call
        self.user_id = user_id
        self.clock = clock

    def _send(self, request: ApiRequest, parse: Callable[[Any], T] = as_is) -> Op[T]:
        """Send `request`; its answer as `parse` reads it. An answer `parse` cannot read (a
        field missing or of another type) is an `invalid_response` PassthruError."""
        data = yield from exchange(request, self.policy)
        return parsed(request, data, parse)

    def _user(self, user_id: str | None) -> dict[str, str | bytes]:
        user = user_id if user_id is not None else self.user_id
        return user_header(user) if user else {}
