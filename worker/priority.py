"""CPU priority per thread (Linux schedules threads, and lets any thread lower its own
priority): the threads that run Celery's messages (bulk batches, retries, webhooks, the
sweeper) and the bulk sender's loop run behind the interactive lane's, so that on a worker
busy with a batch a waiting caller's call still gets a core at once."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("passthru.worker")

# The nice value of background threads: they still get every core no one else wants.
BACKGROUND_NICE = 10

_lowered = threading.local()


def run_in_background() -> None:
    """Lower the calling thread's CPU priority to BACKGROUND_NICE (once per thread; a
    no-op where the platform has no per-thread priority)."""
    if getattr(_lowered, "done", False):
        return
    _lowered.done = True
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < BACKGROUND_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: stay as is
        log.debug("thread priority unchanged: %s", exc)
