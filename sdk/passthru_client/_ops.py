"""What each SDK method does, as operations (see `_http`), shared by both clients: the
function calls and batches here, the other resources in `_resource_ops`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from passthru_client._errors import CallTimeout
from passthru_client._http import ApiRequest, Op, Sleep
from passthru_client._requests import (
    MAX_POLL_PAUSE_S,
    MAX_WAIT_S,
    POLL_PAUSE_S,
    FilterValue,
    Sender,
    path,
    query,
    seconds,
    submission_prefer,
)
from passthru_client._resource_ops import ResourceOperations
from passthru_client._types import Batch, BatchResult, Call, CallPage, FunctionCall


class CallOperations(Sender):
    """The function calls and batches."""

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
                    path("function-calls", call_id),
                    params={"wait": seconds(wait)} if wait > 0 else None,
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
                ApiRequest("POST", path("function-calls", call_id, "cancel")),
                FunctionCall.from_dict,
            )
        )

    def list_calls(self, filters: Mapping[str, FilterValue], cursor: str | None) -> Op[CallPage]:
        params = query({**filters, "cursor": cursor or None})
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
            yield from self._send(ApiRequest("GET", path("batches", batch_id)), Batch.from_dict)
        )


class Operations(CallOperations, ResourceOperations):
    """Builds each request and reads each answer; the clients run what these yield."""
