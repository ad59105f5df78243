"""`AsyncPassthru`: the asynchronous client (httpx.AsyncClient), with `Passthru`'s API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from passthru_client._answers import DEFAULT_MAX_RESPONSE_BYTES, positive_bytes
from passthru_client._http import (
    DEFAULT_TIMEOUT,
    Op,
    T,
    client_headers,
    run_async,
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


class AsyncPassthru:
    """The asynchronous client: every method of `Passthru`, awaited (`iter_calls` and
    `iter_accounts` are async generators). `sleep` replaces `asyncio.sleep` and `clock`
    `time.monotonic` (for tests). Use it as an async context manager, or await `close()`."""

    def __init__(
        self,
        api_key: str,
        base_url: str = "http://localhost:8000",
        user_id: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=client_headers(api_key),
            timeout=timeout,
            transport=transport,
        )
        self._ops = Operations(RetryPolicy(max_retries=max_retries), user_id, clock)
        self._sleep = sleep
        self._max_response_bytes = positive_bytes(max_response_bytes)

    async def _run(self, op: Op[T]) -> T:
        return await run_async(op, self._http, self._sleep, self._max_response_bytes)

    # Lifecycle

    async def close(self) -> None:
        await self._http.aclose()

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Function calls

    async def invoke_function(
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
        """See `Passthru.invoke_function`."""
        return await self._run(
            self._ops.invoke_function(
                name, params, connected_account_id, wait, user_id, idempotency_key, callback_url
            )
        )

    async def get_call(self, call_id: str, *, wait: float | None = None) -> FunctionCall:
        """See `Passthru.get_call`."""
        return await self._run(self._ops.get_call(call_id, wait))

    async def wait_for(self, call_id: str, timeout: float = 60.0) -> FunctionCall:
        """See `Passthru.wait_for`."""
        return await self._run(self._ops.poll(call_id, timeout))

    async def cancel(self, call_id: str) -> FunctionCall:
        """See `Passthru.cancel`."""
        return await self._run(self._ops.cancel(call_id))

    async def list_calls(self, *, cursor: str | None = None, **filters: FilterValue) -> CallPage:
        """See `Passthru.list_calls`."""
        return await self._run(self._ops.list_calls(filters, cursor))

    async def iter_calls(
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
    ) -> AsyncIterator[FunctionCall]:
        """See `Passthru.iter_calls`."""
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
        async for call in self._pages(lambda cursor: self._ops.list_calls(query, cursor)):
            yield call

    async def _pages(
        self, read: Callable[[str | None], Op[CallPage | AccountPage]]
    ) -> AsyncIterator[Any]:
        """The items of every page `read` gives, following `next_cursor` to the last."""
        cursor: str | None = None
        pages = Pages()
        while True:
            page = await self._run(read(cursor))
            for item in page.items:
                yield item
            cursor = pages.next(page.next_cursor)
            if cursor is None:
                return

    # Batches

    async def batch(
        self, calls: Sequence[Call | Mapping[str, Any]], *, user_id: str | None = None
    ) -> BatchResult:
        """See `Passthru.batch`."""
        return await self._run(self._ops.batch(calls, user_id))

    async def get_batch(self, batch_id: str) -> Batch:
        """See `Passthru.get_batch`."""
        return await self._run(self._ops.get_batch(batch_id))

    # Connected accounts

    async def connect_account(
        self,
        app: str,
        credentials: Mapping[str, Any],
        connection_config: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> ConnectedAccount:
        """See `Passthru.connect_account`."""
        return await self._run(
            self._ops.connect_account(app, credentials, connection_config, user_id)
        )

    async def create_connect_session(
        self,
        app: str,
        redirect_url: str,
        *,
        user_id: str | None = None,
        scopes: Sequence[str] | None = None,
        connection_config: Mapping[str, Any] | None = None,
        connected_account_id: str | None = None,
    ) -> ConnectSession:
        """See `Passthru.create_connect_session`."""
        return await self._run(
            self._ops.create_connect_session(
                app, redirect_url, user_id, scopes, connection_config, connected_account_id
            )
        )

    async def list_accounts(
        self,
        *,
        app: str | None = None,
        user_id: str | None = None,
        status: str | None = None,
        page_size: int | None = None,
        **filters: FilterValue,
    ) -> list[ConnectedAccount]:
        """See `Passthru.list_accounts`."""
        query = account_query(app=app, user_id=user_id, status=status, page_size=page_size)
        return await self._run(self._ops.all_accounts({**query, **filters}))

    async def iter_accounts(
        self,
        *,
        app: str | None = None,
        user_id: str | None = None,
        status: str | None = None,
        page_size: int | None = None,
        **filters: FilterValue,
    ) -> AsyncIterator[ConnectedAccount]:
        """See `Passthru.iter_accounts`."""
        query = account_query(app=app, user_id=user_id, status=status, page_size=page_size)
        async for account in self._pages(
            lambda cursor: self._ops.list_accounts({**query, **filters}, cursor)
        ):
            yield account

    async def list_accounts_page(
        self, *, cursor: str | None = None, **filters: FilterValue
    ) -> AccountPage:
        """See `Passthru.list_accounts_page`."""
        return await self._run(self._ops.list_accounts(filters, cursor))

    async def update_account(
        self,
        account_id: str,
        *,
        credentials: Mapping[str, Any] | None = None,
        connection_config: Mapping[str, Any] | None = None,
        status: str | None = None,
    ) -> ConnectedAccount:
        """See `Passthru.update_account`."""
        return await self._run(
            self._ops.update_account(account_id, credentials, connection_config, status)
        )

    async def delete_account(self, account_id: str) -> None:
        """See `Passthru.delete_account`."""
        await self._run(self._ops.delete_account(account_id))

    async def list_functions(
        self,
        type: str | None = "passthrough",
        *,
        category: str | None = None,
        q: str | None = None,
    ) -> list[Function]:
        """See `Passthru.list_functions`."""
        return await self._run(self._ops.list_functions(type, category, q))

    async def rate_limits(self, *, page_size: int | None = None) -> dict[str, Any]:
        """See `Passthru.rate_limits`."""
        return await self._run(self._ops.rate_limits(page_size))

    # Webhooks

    async def set_webhook_endpoint(self, url: str | None) -> WebhookEndpoint:
        """See `Passthru.set_webhook_endpoint`."""
        return await self._run(self._ops.set_webhook_endpoint(url))

    async def get_webhook_endpoint(self) -> WebhookEndpoint:
        """See `Passthru.get_webhook_endpoint`."""
        return await self._run(self._ops.get_webhook_endpoint())

    async def rotate_webhook_secret(self) -> WebhookEndpoint:
        """See `Passthru.rotate_webhook_secret`."""
        return await self._run(self._ops.rotate_webhook_secret())

    async def list_deliveries(self, call_id: str) -> list[Delivery]:
        """See `Passthru.list_deliveries`."""
        return await self._run(self._ops.list_deliveries(call_id))

    async def redeliver(self, call_id: str) -> None:
        """See `Passthru.redeliver`."""
        await self._run(self._ops.redeliver(call_id))
