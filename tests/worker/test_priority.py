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


LOWER_PROCESS = """
import os, threading
from worker.priority import lower_process

def nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

stop = threading.Event()
seen = {}

def kept() -> None:
    stop.wait()
    def child() -> None:
        seen["started by the kept thread"] = nice()
    t = threading.Thread(target=child); t.start(); t.join()

def other() -> None:
    stop.wait()
    seen["other"] = nice()

keeper = threading.Thread(target=kept); keeper.start()
lowered = threading.Thread(target=other); lowered.start()
count = lower_process(keep={keeper.native_id})
def child() -> None:
    seen["started by a lowered thread"] = nice()
t = threading.Thread(target=child); t.start(); t.join()
stop.set(); keeper.join(); lowered.join()
seen["main"] = nice()
print(count, seen["main"], seen["other"], seen["started by a lowered thread"],
      seen["started by the kept thread"])
"""


def test_lower_process_lowers_every_thread_but_the_kept_ones() -> None:
    """In a process of its own (the test's process keeps its priority): every thread but the
    kept one is lowered, and the threads they start later inherit it."""
    import subprocess

    before = nice_of(threading.get_native_id())
    out = subprocess.run(
        [sys.executable, "-c", LOWER_PROCESS], capture_output=True, text=True, check=True
    ).stdout.split()
    count, main, other, from_lowered, from_kept = map(int, out)
    low = max(before, BACKGROUND_NICE)
    assert count == (2 if before < BACKGROUND_NICE else 0)  # the main thread and `other`
    assert (main, other, from_lowered) == (low, low, low)
    assert from_kept == before
