"""What each SDK method does, as operations (see `_http`), shared by both clients."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from passthru_client._errors import CallTimeout, PassthruError
from passthru_client._http import ApiRequest, Op, RetryPolicy, Sleep, T, exchange, parsed
from passthru_client._types import (
    AccountPage,
    Batch,
    BatchResult,
    Call,
    CallPage,
    ConnectedAccount,
    ConnectSession,
    Delivery,
    ErrorDetail,
    Function,
    FunctionCall,
    WebhookEndpoint,
)

MAX_WAIT_S = 60.0
# A wait the API cut short is asked again after this pause, doubling up to the most.
POLL_PAUSE_S = 0.25
MAX_POLL_PAUSE_S = 2.0
"""The longest the API holds a request open (`Prefer: wait` and `?wait=`)."""

FilterValue = str | int | float | bool | datetime | None


def _seconds(value: float) -> str:
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
    return f"wait={_seconds(first_wait)}", first_wait


def _path(*parts: str) -> str:
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


def _as_is(data: Any) -> Any:
    return data


def _page(data: Any) -> dict[str, Any]:
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


class Operations:
    """Builds each request and reads each answer; the clients run what these yield."""

    def __init__(self, policy: RetryPolicy, user_id: str | None, clock: Callable[[], float]):
        self.policy = policy
        if user_id:
            user_header(user_id)  # a bad one is refused now, not at the first call
        self.user_id = user_id
        self.clock = clock

    def _send(self, request: ApiRequest, parse: Callable[[Any], T] = _as_is) -> Op[T]:
        """Send `request`; its answer as `parse` reads it. An answer `parse` cannot read (a
        field missing or of another type) is an `invalid_response` PassthruError."""
        data = yield from exchange(request, self.policy)
        return parsed(request, data, parse)

    def _user(self, user_id: str | None) -> dict[str, str | bytes]:
        user = user_id if user_id is not None else self.user_id
        return user_header(user) if user else {}

    # Function calls

    def invoke_function(
        self,
        name: str,
        params: Mapping[str, Any],
        connected_account_id: str | None,
        wait: float | None,
        user_id: str | None,
        idempotency_key: str | None,
        callback_url: str | None,
    ) -> Op[FunctionCall]:
        if wait is not None and wait < 0:
            raise ValueError("wait must not be negative")
        started = self.clock()
        body: dict[str, Any] = {"function": name, "params": dict(params)}
        if connected_account_id is not None:
            body["connected_account_id"] = connected_account_id
        if callback_url is not None:
            body["callback_url"] = callback_url
        headers = self._user(user_id)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        prefer, held_s = submission_prefer(wait)
        if prefer is not None:
            headers["Prefer"] = prefer
        call = yield from self._send(
            ApiRequest("POST", "/function-calls", json=body, headers=headers, long_poll_s=held_s),
            FunctionCall.from_dict,
        )
        if wait and not call.done:
            # A wait beyond what one request may hold goes on by long-polling.
            left = wait - (self.clock() - started)
            if left > 0:
                call = yield from self.poll(call.id, left, call, raise_on_timeout=False)
        return call

    def get_call(self, call_id: str, wait: float | None = None) -> Op[FunctionCall]:
        wait = min(round(wait, 3), MAX_WAIT_S) if wait else 0.0
        return (
            yield from self._send(
                ApiRequest(
                    "GET",
                    _path("function-calls", call_id),
                    params={"wait": _seconds(wait)} if wait > 0 else None,
                    long_poll_s=wait,
                ),
                FunctionCall.from_dict,
            )
        )

    def poll(
        self,
        call_id: str,
        timeout: float,
        last: FunctionCall | None = None,
        *,
        raise_on_timeout: bool = True,
    ) -> Op[FunctionCall]:
        """Long-poll in chunks of at most MAX_WAIT_S until the call is final or `timeout`
        seconds have passed; then the call, or CallTimeout if `raise_on_timeout`."""
        deadline = self.clock() + timeout
        call = last
        if call is None:
            call = yield from self.get_call(call_id, wait=timeout)
        pause = POLL_PAUSE_S
        while not call.done:
            left = deadline - self.clock()
            if left <= 0:
                if raise_on_timeout:
                    raise CallTimeout(call_id, timeout, call)
                break
            asked_at = self.clock()
            call = yield from self.get_call(call_id, wait=left)
            if not call.done and self.clock() - asked_at < min(left, MAX_WAIT_S) / 2:
                # The API held the wait for less than asked (its PASSTHRU_MAX_WAIT_S may be
                # short): pause before asking again, rather than ask in a tight loop.
                yield Sleep(min(pause, max(0.0, deadline - self.clock())))
                pause = min(pause * 2, MAX_POLL_PAUSE_S)
        return call

    def cancel(self, call_id: str) -> Op[FunctionCall]:
        return (
            yield from self._send(
                ApiRequest("POST", _path("function-calls", call_id, "cancel")),
                FunctionCall.from_dict,
            )
        )

    def list_calls(self, filters: Mapping[str, FilterValue], cursor: str | None) -> Op[CallPage]:
        params = query(filters)
        if cursor:
            params["cursor"] = cursor
        return (
            yield from self._send(
                ApiRequest("GET", "/function-calls", params=params), CallPage.from_dict
            )
        )

    # Batches

    def batch(
        self, calls: Sequence[Call | Mapping[str, Any]], user_id: str | None
    ) -> Op[BatchResult]:
        items = [c.to_dict() if isinstance(c, Call) else dict(c) for c in calls]
        return (
            yield from self._send(
                ApiRequest(
                    "POST",
                    "/function-calls/batch",
                    json={"calls": items},
                    headers=self._user(user_id),
                ),
                BatchResult.from_dict,
            )
        )

    def get_batch(self, batch_id: str) -> Op[Batch]:
        return (
            yield from self._send(ApiRequest("GET", _path("batches", batch_id)), Batch.from_dict)
        )

    # Connected accounts

    def connect_account(
        self,
        app: str,
        credentials: Mapping[str, Any],
        connection_config: Mapping[str, Any] | None,
        user_id: str | None,
    ) -> Op[ConnectedAccount]:
        body: dict[str, Any] = {"app": app, "credentials": dict(credentials)}
        if connection_config is not None:
            body["connection_config"] = dict(connection_config)
        return (
            yield from self._send(
                ApiRequest("POST", "/connected-accounts", json=body, headers=self._user(user_id)),
                ConnectedAccount.from_dict,
            )
        )

    def create_connect_session(
        self,
        app: str,
        redirect_url: str,
        user_id: str | None,
        scopes: Sequence[str] | None,
        connection_config: Mapping[str, Any] | None,
        connected_account_id: str | None,
    ) -> Op[ConnectSession]:
        body: dict[str, Any] = {"app": app, "redirect_url": redirect_url}
        if scopes is not None:
            body["scopes"] = list(scopes)
        if connection_config is not None:
            body["connection_config"] = dict(connection_config)
        if connected_account_id is not None:
            body["connected_account_id"] = connected_account_id
        return (
            yield from self._send(
                ApiRequest("POST", "/connect-sessions", json=body, headers=self._user(user_id)),
                ConnectSession.from_dict,
            )
        )

    def list_accounts(
        self, filters: Mapping[str, FilterValue], cursor: str | None
    ) -> Op[AccountPage]:
        params = query(filters)
        if cursor:
            params["cursor"] = cursor
        return (
            yield from self._send(
                ApiRequest("GET", "/connected-accounts", params=params), AccountPage.from_dict
            )
        )

    def all_accounts(self, filters: Mapping[str, FilterValue]) -> Op[list[ConnectedAccount]]:
        """Every page of the accounts, following `next_cursor` to the last."""
        accounts: list[ConnectedAccount] = []
        cursor: str | None = None
        pages = Pages()
        while True:
            page = yield from self.list_accounts(filters, cursor)
            accounts.extend(page.items)
            cursor = pages.next(page.next_cursor)
            if cursor is None:
                return accounts

    def update_account(
        self,
        account_id: str,
        credentials: Mapping[str, Any] | None,
        connection_config: Mapping[str, Any] | None,
        status: str | None,
    ) -> Op[ConnectedAccount]:
        body: dict[str, Any] = {}
        if credentials is not None:
            body["credentials"] = dict(credentials)
        if connection_config is not None:
            body["connection_config"] = dict(connection_config)
        if status is not None:
            body["status"] = status
        return (
            yield from self._send(
                ApiRequest("PATCH", _path("connected-accounts", account_id), json=body),
                ConnectedAccount.from_dict,
            )
        )

    def delete_account(self, account_id: str) -> Op[None]:
        yield from self._send(ApiRequest("DELETE", _path("connected-accounts", account_id)))
        return None

    # Catalog and limits

    def list_functions(
        self, kind: str | None, category: str | None = None, q: str | None = None
    ) -> Op[list[Function]]:
        params = query({"type": kind, "category": category, "q": q})
        return (
            yield from self._send(
                ApiRequest("GET", "/functions", params=params),
                lambda data: [Function.from_dict(item) for item in data.get("functions") or ()],
            )
        )

    def rate_limits(self, page_size: int | None) -> Op[dict[str, Any]]:
        """Every page of `GET /rate-limits` as one: the items of all, `as_of` and
        `tenant_cap` as the first page read them."""
        merged: dict[str, Any] | None = None
        cursor: str | None = None
        pages = Pages()
        while True:
            params = query({"limit": page_size, "cursor": cursor})
            data = yield from self._send(ApiRequest("GET", "/rate-limits", params=params), _page)
            if merged is None:
                merged = {**data, "items": list(data.get("items") or ())}
            else:
                merged["items"].extend(data.get("items") or ())
            cursor = pages.next(data.get("next_cursor"))
            if cursor is None:
                merged["next_cursor"] = None
                return merged

    # Webhooks

    def set_webhook_endpoint(self, url: str | None) -> Op[WebhookEndpoint]:
        # A PUT: repeatable, so retried like a GET.
        return (
            yield from self._send(
                ApiRequest("PUT", "/webhook-endpoint", json={"url": url}), WebhookEndpoint.from_dict
            )
        )

    def get_webhook_endpoint(self) -> Op[WebhookEndpoint]:
        return (
            yield from self._send(ApiRequest("GET", "/webhook-endpoint"), WebhookEndpoint.from_dict)
        )

    def rotate_webhook_secret(self) -> Op[WebhookEndpoint]:
        # A POST without an Idempotency-Key: never repeated once the API may have acted on it.
        return (
            yield from self._send(
                ApiRequest("POST", "/webhook-endpoint/rotate-secret"), WebhookEndpoint.from_dict
            )
        )

    def list_deliveries(self, call_id: str) -> Op[list[Delivery]]:
        return (
            yield from self._send(
                ApiRequest("GET", _path("function-calls", call_id, "deliveries")),
                lambda data: [Delivery.from_dict(item) for item in data.get("items") or ()],
            )
        )

    def redeliver(self, call_id: str) -> Op[None]:
        yield from self._send(ApiRequest("POST", _path("function-calls", call_id, "redeliver")))
        return None
