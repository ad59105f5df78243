"""An upstream that asks for quiet (429 / Retry-After, or its remaining count at zero)
pauses the call's key for every worker."""

from __future__ import annotations

import logging
from datetime import datetime

from redis import RedisError

from models.catalog.apps import App
from models.catalog.spec import RetrySpec
from models.ratelimit.store import Limiter
from worker.calls.retry import pause_asked_s
from worker.net.send import Answer, Outcome

log = logging.getLogger("passthru.worker")


def learn_pause(
    limiter: Limiter,
    pause_key: str | None,
    outcome: Outcome,
    app: App | None,
    *,
    now: datetime,
    max_wait_s: float,
) -> None:
    """Pause `pause_key` for as long as the answer asks, at most `max_wait_s` (the longest
    wait a call would accept, PASSTHRU_RETRY_MAX_WAIT_S). A Redis error is logged: the
    call's own retry still waits."""
    if pause_key is None or not isinstance(outcome, Answer):
        return
    asked_s = pause_asked_s(outcome, app.retry if app else RetrySpec(), now)
    if asked_s is None:
        return
    asked_s = min(asked_s, max_wait_s)
    try:
        limiter.pause(pause_key, int(asked_s * 1000))
    except RedisError as exc:
        log.warning("could not pause %s: %s", pause_key, exc)
    log.info("%s paused for %.1f s: upstream answered %d", pause_key, asked_s, outcome.status)
