"""A worker's metrics with its interactive lane's (worker/lane_process.py) added in, so
PASSTHRU_WORKER_METRICS_PORT still counts every call the worker's pair of processes ran.

At each scrape the worker reads the lane's exposition from its loopback port and adds each
of its samples to the worker's sample of the same name and labels (counters, histogram
buckets, counts and sums all add up). A lane that does not answer within a second is left
out of that scrape, never failing it.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger("passthru.worker")

FETCH_TIMEOUT_S = 1.0

Labels = frozenset[tuple[str, str]]


class WithLane(Collector):
    """`own`'s metrics plus those the lane serves on the port `lane_port()` names."""

    def __init__(self, own: CollectorRegistry, lane_port: Callable[[], int | None]) -> None:
        self._own = own
        self._lane_port = lane_port

    def collect(self) -> Iterator[Metric]:
        return merge(self._own.collect(), self._lane_families())

    def _lane_families(self) -> list[Metric]:
        port = self._lane_port()
        if port is None:
            return []
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer:
                text = answer.read().decode()
        except OSError as exc:
            log.debug("interactive lane's metrics not read: %s", exc)
            return []
        return list(text_string_to_metric_families(text))


def merge(own: Iterable[Metric], other: Iterable[Metric]) -> Iterator[Metric]:
    """Every family of `own`, each sample increased by `other`'s sample of the same name
    and labels. Families only `other` has (the text format's separate `_created` gauges)
    and its `_created` samples are left out: they are start times, not counts."""
    added: dict[str, dict[tuple[str, Labels], tuple[dict[str, str], float]]] = {}
    for family in other:
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                key = (sample.name, frozenset(sample.labels.items()))
                samples = added.setdefault(family.name, {})
                before = samples.get(key, (sample.labels, 0.0))[1]
                samples[key] = (sample.labels, before + sample.value)
    for family in own:
        extra = dict(added.get(family.name, {}))
        merged = Metric(family.name, family.documentation, family.type, family.unit)
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            value = sample.value + extra.pop(key, (sample.labels, 0.0))[1]
            merged.add_sample(sample.name, sample.labels, value, sample.timestamp)
        for (name, _), (labels, value) in extra.items():
            merged.add_sample(name, labels, value)
        yield merged
