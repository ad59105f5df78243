"""Every exception the SDK raises derives from `PassthruError`.

PassthruError
├── BadRequest               400: the API will not do it (bad params, no account, ...)
├── AuthenticationError      401: missing or wrong API key
├── PermissionDenied         403
├── NotFound                 404: no such call, batch, account or app
├── Conflict                 409: Idempotency-Key reused, call not cancellable or
│                                 not finished (redeliver)
├── RateLimited              429
├── ServerError              5xx (after the SDK's own retries)
├── APIConnectionError       the API could not be reached or did not answer
├── CallTimeout              also a TimeoutError: `wait_for` saw no end in time
└── WebhookVerificationError a webhook's signature, timestamp or body is not valid
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from passthru_client._types import ErrorDetail

if TYPE_CHECKING:
    from passthru_client._types import FunctionCall


class PassthruError(Exception):
    """Base of every SDK error: `error` (a code such as "invalid_params"), `error_details`
    (field and message pairs) and, for API answers, `status_code` and `headers`."""

    def __init__(
        self,
        error: str,
        error_details: Iterable[ErrorDetail] = (),
        status_code: int | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        self.error = error
        self.error_details: list[ErrorDetail] = list(error_details)
        self.status_code = status_code
        self.headers: dict[str, str] = dict(headers or {})
        self.body = body
        super().__init__(self._text())

    def _text(self) -> str:
        head = self.error if self.status_code is None else f"{self.error} (HTTP {self.status_code})"
        if not self.error_details:
            return head
        return head + ": " + "; ".join(f"{d.field}: {d.message}" for d in self.error_details)

    def __str__(self) -> str:
        return self._text()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(error={self.error!r}, status_code={self.status_code!r}, "
            f"error_details={self.error_details!r})"
        )


class BadRequest(PassthruError):
    """400: the request is invalid, or the call cannot be made (see `error_details`)."""


class AuthenticationError(PassthruError):
    """401: the API key is missing or not valid."""


class PermissionDenied(PassthruError):
    """403."""


class NotFound(PassthruError):
    """404: no such resource for this tenant (or no such app, or no webhook endpoint yet)."""


class Conflict(PassthruError):
    """409: an Idempotency-Key reused for another request, a call that can no longer be
    cancelled, or a redelivery of a call that has not finished."""


class RateLimited(PassthruError):
    """429: too many requests, after the SDK's own retries."""


class ServerError(PassthruError):
    """5xx: the API failed, after the SDK's own retries."""


class APIConnectionError(PassthruError):
    """The API could not be reached, or the connection failed before an answer (after the
    SDK's own retries where retrying was safe). `__cause__` is the httpx exception."""


class CallTimeout(PassthruError, TimeoutError):
    """`wait_for` gave up: the call was not final when the timeout passed. `call` is the
    call as last seen (it goes on running on the server)."""

    def __init__(self, call_id: str, timeout_s: float, call: FunctionCall | None) -> None:
        self.call_id = call_id
        self.timeout_s = timeout_s
        self.call = call
        status = call.status if call is not None else "unknown"
        super().__init__(
            "call_timeout",
            [
                ErrorDetail(
                    "id", f"call {call_id} is still {status} after {timeout_s:g} s of waiting"
                )
            ],
        )


class WebhookVerificationError(PassthruError):
    """A webhook could not be verified: a header is missing or malformed, the timestamp is
    outside the tolerance, no signature matches, or the body is not JSON."""

    def __init__(self, message: str) -> None:
        super().__init__("webhook_verification_failed", [ErrorDetail("webhook", message)])


_BY_STATUS: dict[int, type[PassthruError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: BadRequest,
    429: RateLimited,
}


def error_class(status_code: int) -> type[PassthruError]:
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    return ServerError if status_code >= 500 else PassthruError


def error_from_body(status_code: int, body: Any, headers: Mapping[str, str]) -> PassthruError:
    """The exception for an error answer; `body` is the decoded JSON or the raw text."""
    error = f"http_{status_code}"
    details: list[ErrorDetail] = []
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        error = body["error"]
        for item in body.get("error_details") or ():
            if isinstance(item, Mapping):
                details.append(
                    ErrorDetail(str(item.get("field", "")), str(item.get("message", "")))
                )
    elif isinstance(body, str) and body.strip():
        details.append(ErrorDetail("body", body.strip()[:300]))
    return error_class(status_code)(error, details, status_code, headers=headers, body=body)
