"""A worker's metrics with its lane process's added in: every sample of the same name and
labels summed, read from a real HTTP exposition on loopback, and a lane that does not
answer left out without failing the scrape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import start_http_server
from prometheus_client.parser import text_string_to_metric_families

from api.dev.embedded_redis import free_port
from worker.lane_metrics import WithLane, merge


def registry(calls: dict[str, int], seconds: list[float]) -> CollectorRegistry:
    reg = CollectorRegistry()
    finished = Counter("passthru_calls_finished", "calls", ["status", "app"], registry=reg)
    for app, n in calls.items():
        finished.labels("completed", app).inc(n)
    upstream = Histogram(
        "passthru_upstream_seconds", "time", ["app"], buckets=(0.1, 1), registry=reg
    )
    for s in seconds:
        upstream.labels("slack").observe(s)
    Counter("passthru_workers_lost", "lost", registry=reg)
    return reg


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def exposition(reg: CollectorRegistry) -> str:
    return generate_latest(reg).decode()


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


def test_counters_and_histograms_add_up_and_labels_only_the_lane_has_appear() -> None:
    own = registry({"slack": 3}, [0.05, 2.0])
    lane = registry({"slack": 4, "hubspot": 1}, [0.5])
    reg = CollectorRegistry()
    reg.register(_Fixed(own, lane))
    got = samples(exposition(reg))
    total = "passthru_calls_finished_total"
    assert got[key(total, status="completed", app="slack")] == 7
    assert got[key(total, status="completed", app="hubspot")] == 1
    assert got[key("passthru_upstream_seconds_bucket", app="slack", le="0.1")] == 1
    assert got[key("passthru_upstream_seconds_bucket", app="slack", le="1.0")] == 2
    assert got[key("passthru_upstream_seconds_bucket", app="slack", le="+Inf")] == 3
    assert got[key("passthru_upstream_seconds_count", app="slack")] == 3
    assert got[key("passthru_upstream_seconds_sum", app="slack")] == pytest.approx(2.55)
    assert got[key("passthru_workers_lost_total")] == 0
    # one family per name: the lane's separate `_created` gauges are not served twice
    names = [f.name for f in text_string_to_metric_families(exposition(reg))]
    assert len(names) == len(set(names))


class _Fixed:
    """`merge` of two registries, as WithLane does with a fetched one."""

    def __init__(self, own: CollectorRegistry, other: CollectorRegistry) -> None:
        self.own, self.other = own, other

    def collect(self) -> Iterator[object]:
        return merge(
            self.own.collect(), list(text_string_to_metric_families(exposition(self.other)))
        )


def test_the_lane_is_read_from_its_port() -> None:
    lane = registry({"slack": 5}, [])
    server, thread = start_http_server(0, addr="127.0.0.1", registry=lane)
    try:
        reg = CollectorRegistry()
        reg.register(WithLane(registry({"slack": 2}, []), lambda: server.server_port))
        got = samples(exposition(reg))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert got[key("passthru_calls_finished_total", status="completed", app="slack")] == 7


@pytest.mark.parametrize("port", [None, "closed"])
def test_a_lane_that_does_not_answer_leaves_the_worker_s_own(port: str | None) -> None:
    closed = free_port()
    reg = CollectorRegistry()
    reg.register(WithLane(registry({"slack": 2}, []), lambda: None if port is None else closed))
    got = samples(exposition(reg))
    assert got[key("passthru_calls_finished_total", status="completed", app="slack")] == 2
