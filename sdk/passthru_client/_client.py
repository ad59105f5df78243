"""`Passthru`: the synchronous client (httpx.Client)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from passthru_client._answers import DEFAULT_MAX_RESPONSE_BYTES, positive_bytes
from passthru_client._http import (
    DEFAULT_TIMEOUT,
    Op,
    T,
    client_headers,
    run_sync,
)
from passthru_client._ops import Operations
from passthru_client._requests import FilterValue, Pages, account_query, log_query
from passthru_client._resources import (
    AccountPage,
    ConnectedAccount,
    ConnectSession,
    Delivery,
    Function,
    WebhookEndpoint,
)
from passthru_client._retry import RetryPolicy
from passthru_client._types import (
    Batch,
    BatchResult,
    Call,
    CallPage,
    FunctionCall,
)


class Passthru:
    """A client of the passthru API.

    `api_key` is the tenant's key; `user_id` the default end user (the `X-User-ID` header)
    of calls and accounts, overridable per method. `max_retries` bounds the SDK's own
    retries (on 429/503, on 502/504 and dropped connections for repeatable requests, and
    on connection failures). `max_response_bytes` bounds what one answer may hold once
    decoded (128 MiB by default): a longer one is a `response_too_large` PassthruError.
    `sleep` and `clock` replace `time.sleep` and `time.monotonic`
    (for tests). Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = "http://localhost:8000",
        user_id: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers=client_headers(api_key),
            timeout=timeout,
            transport=transport,
        )
        self._ops = Operations(RetryPolicy(max_retries=max_retries), user_id, clock)
        self._sleep = sleep
        self._max_response_bytes = positive_bytes(max_response_bytes)

    def _run(self, op: Op[T]) -> T:
        return run_sync(op, self._http, self._sleep, self._max_response_bytes)

    # Lifecycle

    def close(self) -> None:
        self._http.close()

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Function calls

    def invoke_function(
        self,
        name: str,
        params: Mapping[str, Any],
        connected_account_id: str | None = None,
        wait: float | None = None,
        *,
        user_id: str | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> FunctionCall:
        """Invoke a function such as "slack-passthrough-request" with `params`
        (`{"method", "url", "body"?, "headers"?, "retry"?, "timeout"?}`).

        Without `wait`, no `Prefer` is sent and the call is returned as the API answers:
        at once ("queued"), or finished when the operator set a default wait
        (PASSTHRU_DEFAULT_WAIT_S) and the call ended within it. `wait=0` asks for the
        answer at once whatever the default (`Prefer: respond-async`). With `wait` seconds,
        it is returned when it ends or when `wait` has passed, whichever comes first (up to
        60 s in the request itself, `Prefer: wait`; longer waits go on by long-polling).
        Check `.done` in every case. `idempotency_key` makes the submission idempotent and
        safe to retry; it also tells passthru the call is safe to send twice, so a POST or
        PATCH whose first attempt may have arrived is sent again. The key is not forwarded:
        where the upstream dedupes on a header of its own, put that header in the params'
        `headers`.
        """
        return self._run(
            self._ops.invoke_function(
                name, params, connected_account_id, wait, user_id, idempotency_key, callback_url
            )
        )

    def get_call(self, call_id: str, *, wait: float | None = None) -> FunctionCall:
        """One call, with every attempt; `wait` long-polls up to that many seconds (max 60)
        for its end."""
        return self._run(self._ops.get_call(call_id, wait))

    def wait_for(self, call_id: str, timeout: float = 60.0) -> FunctionCall:
        """The call once it is final (completed, failed or cancelled), long-polling in
        chunks of at most 60 s; raise CallTimeout (a TimeoutError) after `timeout`."""
        return self._run(self._ops.poll(call_id, timeout))

    def cancel(self, call_id: str) -> FunctionCall:
        """Cancel a call that has not started (queued or retrying); Conflict otherwise."""
        return self._run(self._ops.cancel(call_id))

    def list_calls(self, *, cursor: str | None = None, **filters: FilterValue) -> CallPage:
        """One page of the Function Calls log, newest first (see `iter_calls`)."""
        return self._run(self._ops.list_calls(filters, cursor))

    def iter_calls(
        self,
        *,
        app: str | None = None,
        status: str | None = None,
        user_id: str | None = None,
        batch_id: str | None = None,
        since: FilterValue = None,
        until: FilterValue = None,
        page_size: int | None = None,
        **filters: FilterValue,
    ) -> Iterator[FunctionCall]:
        """Every call of the log matching the filters, newest first, page after page.
        Other keyword arguments are sent as query parameters too."""
        query = log_query(
            app=app,
            status=status,
            user_id=user_id,
            batch_id=batch_id,
            since=since,
            until=until,
            page_size=page_size,
            **filters,
        )
        yield from self._pages(lambda cursor: self._ops.list_calls(query, cursor))

    def _pages(self, read: Callable[[str | None], Op[CallPage | AccountPage]]) -> Iterator[Any]:
        """The items of every page `read` gives, following `next_cursor` to the last."""
        cursor: str | None = None
        pages = Pages()
        while True:
            page = self._run(read(cursor))
            yield from page.items
            cursor = pages.next(page.next_cursor)
            if cursor is None:
                return

    # Batches

    def batch(
        self, calls: Sequence[Call | Mapping[str, Any]], *, user_id: str | None = None
    ) -> BatchResult:
        """Submit up to 1,000 calls at once (`Call`s or dicts in the `POST /function-calls`
        form); each is accepted or rejected on its own."""
        return self._run(self._ops.batch(calls, user_id))

    def get_batch(self, batch_id: str) -> Batch:
        """A batch's progress: its calls counted per status, and whether all are done."""
        return self._run(self._ops.get_batch(batch_id))

    # Connected accounts

    def connect_account(
        self,
        app: str,
        credentials: Mapping[str, Any],
        connection_config: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> ConnectedAccount:
        """Store an end user's credentials for `app` (encrypted; never shown again)."""
        return self._run(self._ops.connect_account(app, credentials, connection_config, user_id))

    def create_connect_session(
        self,
        app: str,
        redirect_url: str,
        *,
        user_id: str | None = None,
        scopes: Sequence[str] | None = None,
        connection_config: Mapping[str, Any] | None = None,
        connected_account_id: str | None = None,
    ) -> ConnectSession:
        """A single-use link for an end user to connect `app` (OAuth2, or an API key or
        password they type), valid for 10 minutes; their browser then goes to `redirect_url`
        with `connected_account_id` and `app` (or `error`). `connected_account_id`
        reconnects that account (one in `needs_reauth`)."""
        return self._run(
            self._ops.create_connect_session(
                app, redirect_url, user_id, scopes, connection_config, connected_account_id
            )
        )

    def list_accounts(
        self,
        *,
        app: str | None = None,
        user_id: str | None = None,
        status: str | None = None,
        page_size: int | None = None,
        **filters: FilterValue,
    ) -> list[ConnectedAccount]:
        """Every connected account matching the filters (app, user, status), newest first:
        the API's pages (`page_size` each, 100 unless given, at most 500) read to the last."""
        query = account_query(app=app, user_id=user_id, status=status, page_size=page_size)
        return self._run(self._ops.all_accounts({**query, **filters}))

    def iter_accounts(
        self,
        *,
        app: str | None = None,
        user_id: str | None = None,
        status: str | None = None,
        page_size: int | None = None,
        **filters: FilterValue,
    ) -> Iterator[ConnectedAccount]:
        """`list_accounts` one page at a time: the next page is read once this one is used."""
        query = account_query(app=app, user_id=user_id, status=status, page_size=page_size)
        yield from self._pages(lambda cursor: self._ops.list_accounts({**query, **filters}, cursor))

    def list_accounts_page(
        self, *, cursor: str | None = None, **filters: FilterValue
    ) -> AccountPage:
        """One page of the connected accounts, newest first (`limit=` sets its size)."""
        return self._run(self._ops.list_accounts(filters, cursor))

    def update_account(
        self,
        account_id: str,
        *,
        credentials: Mapping[str, Any] | None = None,
        connection_config: Mapping[str, Any] | None = None,
        status: str | None = None,
    ) -> ConnectedAccount:
        """New credentials (which also clear `needs_reauth`), config, or status
        ("active"/"disabled")."""
        return self._run(
            self._ops.update_account(account_id, credentials, connection_config, status)
        )

    def delete_account(self, account_id: str) -> None:
        """Remove a connected account."""
        self._run(self._ops.delete_account(account_id))

    # Catalog and limits

    def list_functions(
        self,
        type: str | None = "passthrough",
        *,
        category: str | None = None,
        q: str | None = None,
    ) -> list[Function]:
        """The functions that can be invoked, with their parameters' JSON Schema: those of the
        apps in `category` and matching the search `q` (slug, name, description), if given."""
        return self._run(self._ops.list_functions(type, category, q))

    def rate_limits(self, *, page_size: int | None = None) -> dict[str, Any]:
        """Your accounts' rate limits, their use and pauses (`GET /rate-limits`): every page
        of accounts (`page_size` each) read, their `items` in one list."""
        return self._run(self._ops.rate_limits(page_size))

    # Webhooks

    def set_webhook_endpoint(self, url: str | None) -> WebhookEndpoint:
        """Set (or, with None, clear) the tenant's default webhook URL, and enable the
        endpoint again if a 410 disabled it (`PUT /webhook-endpoint`; safe to retry). The
        first time, `.secret` holds the `whsec_...` signing secret: store it, as it is never
        shown again (`rotate_webhook_secret` makes a new one)."""
        return self._run(self._ops.set_webhook_endpoint(url))

    def get_webhook_endpoint(self) -> WebhookEndpoint:
        """The tenant's webhook endpoint, without its secret; NotFound if none was set."""
        return self._run(self._ops.get_webhook_endpoint())

    def rotate_webhook_secret(self) -> WebhookEndpoint:
        """A new signing secret, in `.secret` (shown once); webhooks are signed with the old
        one too for 24 hours. NotFound if no endpoint was set."""
        return self._run(self._ops.rotate_webhook_secret())

    def list_deliveries(self, call_id: str) -> list[Delivery]:
        """The webhook deliveries of a call, oldest first, each with every attempt."""
        return self._run(self._ops.list_deliveries(call_id))

    def redeliver(self, call_id: str) -> None:
        """Send a finished call's webhook again now, with the same `webhook-id` (202).
        Conflict (`not_finished`) if the call has not ended; BadRequest
        (`no_webhook_target`) if it has no `callback_url` and no endpoint URL is set."""
        self._run(self._ops.redeliver(call_id))
