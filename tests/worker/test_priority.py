"""Background threads (Celery's messages, the bulk sender's loop) run at a lower CPU
priority than the interactive lane's; only the calling thread is lowered."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from worker.priority import BACKGROUND_NICE, run_in_background

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread priority: Linux")


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_only_the_calling_thread_is_lowered() -> None:
    seen: dict[str, int] = {}

    def background() -> None:
        tid = threading.get_native_id()
        run_in_background()
        run_in_background()  # once is enough; a second call changes nothing
        seen["background"] = nice_of(tid)

    before = nice_of(threading.get_native_id())
    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen["background"] == max(before, BACKGROUND_NICE)
    assert nice_of(threading.get_native_id()) == before  # this thread is as it was
