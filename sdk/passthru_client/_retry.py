"""When the SDK sends a request again, and how long it waits first: the statuses and
errors worth another try, `Retry-After` read strictly, and backoff with jitter."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from passthru_client._http import ApiRequest

# Statuses worth another try: for any request, the server says it did nothing (429, 503)...
RETRY_ALWAYS = frozenset({429, 503})
# ...and for a repeatable one, a gateway may have lost the answer of a request it passed on.
RETRY_IF_IDEMPOTENT = frozenset({502, 504})
# httpx errors raised before the request left: repeating it is always safe.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# httpx errors after the request may have reached the API (a read timeout, a dropped
# connection): the API may have acted on it, so only a repeatable request is sent again.
MAYBE_SENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def retry_after_s(response: httpx.Response, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` in seconds (a number of seconds or an HTTP date), if given and valid."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None  # negative, fractional, `inf` or junk: no answer (the backoff decides)
        if when.tzinfo is None:  # `-0000`: a time in UTC whose zone is unknown
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a request again.

    Exponential backoff with jitter (`backoff_s` doubling up to `max_backoff_s`, each delay
    drawn between half and all of it); a `Retry-After` answer is honored instead, unless it
    asks for more than `max_retry_after_s`, which ends the retries."""

    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0
    jitter: Callable[[], float] = random.random  # a draw in [0, 1)

    def backoff(self, retries_done: int) -> float:
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0**retries_done)
        return ceiling / 2 + self.jitter() * ceiling / 2

    def after_response(
        self, request: ApiRequest, response: httpx.Response, retries_done: int
    ) -> float | None:
        """Seconds to wait before sending again, or None to take this answer."""
        if retries_done >= self.max_retries:
            return None
        status = response.status_code
        if status not in RETRY_ALWAYS and not (
            status in RETRY_IF_IDEMPOTENT and request.repeatable
        ):
            return None
        asked = retry_after_s(response)
        if asked is None:
            return self.backoff(retries_done)
        return asked if asked <= self.max_retry_after_s else None

    def after_error(
        self, request: ApiRequest, error: httpx.TransportError, retries_done: int
    ) -> float | None:
        """Seconds to wait before sending again, or None to give up on this error."""
        if retries_done >= self.max_retries:
            return None
        if isinstance(error, NOT_SENT) or (isinstance(error, MAYBE_SENT) and request.repeatable):
            return self.backoff(retries_done)
        return None
