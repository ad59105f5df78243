"""The ports `passthru dev` checks before it starts anything, and the banner's line about
where calls really go."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from api.dev.banner import override_lines
from api.dev.demo_upstream import DEMO_ORIGIN
from api.dev.embedded_redis import free_port
from api.dev.ports import plan_ports, taken
from models.catalog.apps import get_catalog
from models.errors import ConfigError


@pytest.fixture
def busy() -> Iterator[int]:
    """A port another socket listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_given_by_the_operator_and_taken_is_refused_naming_its_variable(busy: int) -> None:
    assert taken(busy)
    with pytest.raises(ConfigError, match=rf"port {busy} is taken.*set FLOWER_PORT"):
        plan_ports(free_port(), "PORT", {"FLOWER_PORT": str(busy)})
    with pytest.raises(ConfigError, match=rf"port {busy} is taken.*set --port"):
        plan_ports(busy, "--port", {})


def test_a_default_port_that_is_taken_moves_to_a_free_one(
    busy: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.settings import Settings

    monkeypatch.setattr(Settings.model_fields["metrics_port"], "default", busy)
    ports = plan_ports(free_port(), "PORT", {"PASSTHRU_WORKER_METRICS_PORT": "0"})
    assert ports.metrics not in (busy, 0)
    assert ports.worker_metrics == 0  # 0: off, not checked


def test_the_banner_names_each_override_and_the_apps_it_catches() -> None:
    lines = override_lines(
        {"https://slack.com": "http://127.0.0.1:9000", DEMO_ORIGIN: "http://127.0.0.1:1"},
        get_catalog(),
    )
    assert len(lines) == 1
    assert lines[0].startswith("https://slack.com -> http://127.0.0.1:9000   (apps: slack")
    assert override_lines({}, get_catalog()) == []


def test_an_app_whose_host_has_a_default_is_caught_by_its_default_host() -> None:
    # Pipedrive's host is {company}.pipedrive.com, with `api` when the account gives none;
    # Zendesk's needs a subdomain, so no override catches it by itself
    lines = override_lines(
        {
            "https://api.pipedrive.com": "http://127.0.0.1:9000",
            "https://acme.zendesk.com": "http://127.0.0.1:9001",
        },
        get_catalog(),
    )
    assert lines[0].endswith("(apps: none in the catalog)")
    assert lines[1].startswith("https://api.pipedrive.com -> http://127.0.0.1:9000   (apps: pip")
