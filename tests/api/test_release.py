"""An API that stops closes every connection it opened: its Redis clients' (the limiter, the
quotas, the console's sessions, the lane's pushes), its broker's and its subscription's. None is
left for the garbage collector to find open."""

from __future__ import annotations

from collections.abc import Callable

import redis

from api.app import create_app
from api.dev.embedded_redis import EmbeddedRedis
from models.keys import QUEUE_BULK, QUEUE_INTERACTIVE
from models.ratelimit.store import Ask
from models.settings import Settings
from tests.console.conftest import TestClient


def connected_besides(client: redis.Redis) -> list[str]:
    """The names (or addresses) of the other clients connected to the Redis `client` is on."""
    me = client.client_id()
    return [c["name"] or c["addr"] for c in client.client_list() if int(c["id"]) != me]


def test_the_apps_connections_are_closed_when_it_stops(
    own_redis: EmbeddedRedis, settings_of: Callable[..., Settings]
) -> None:
    settings = settings_of(redis_url=own_redis.url, metrics_port=0, tenant_redeliveries_per_min=5)
    app = create_app(settings)  # its own broker publisher
    watcher = redis.Redis.from_url(own_redis.url)
    try:
        with TestClient(app) as client:
            # Given an app that used each of its Redis clients
            assert client.get("/healthz").status_code == 200
            state = app.state
            assert state.publisher.publish_calls(["fc_bulk"], QUEUE_BULK)
            assert state.publisher.publish_calls(["fc_now"], QUEUE_INTERACTIVE)
            state.console.sessions.open("0" * 64)
            state.limiter.pause("release-test", 1_000)
            state.limiter.book_many([Ask([], "release-test")], near_ms=1, horizon_ms=1)
            state.quotas.admit_redelivery("tenant-release")
            assert len(connected_besides(watcher)) >= 5

        # When it stops, then no connection of its own is left
        assert connected_besides(watcher) == []
        # and it opens them again when it serves again
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            assert state.publisher.publish_calls(["fc_again"], QUEUE_BULK)
        assert connected_besides(watcher) == []
    finally:
        watcher.close()
