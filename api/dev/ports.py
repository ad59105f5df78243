"""The ports `passthru dev` binds, checked before it starts anything: a port given by the
operator (PORT or --port, FLOWER_PORT, PASSTHRU_METRICS_PORT, PASSTHRU_WORKER_METRICS_PORT)
that another process holds is a one-line error naming it; one left at its default moves
to a free port instead (Flower, metrics), except the API's, which the README promises."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from api.dev.embedded_redis import free_port
from models.errors import ConfigError
from models.settings import Settings

LOOPBACK = "127.0.0.1"  # the API, Flower and the demo upstream listen here in dev
ANY = "0.0.0.0"  # noqa: S104 - the metrics servers (prometheus_client) listen here


@dataclass(frozen=True)
class DevPorts:
    """Every port of one `passthru dev` run (0: that server is off)."""

    api: int
    flower: int
    metrics: int
    worker_metrics: int
    demo: int


def taken(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could not listen on `host:port` now (as uvicorn, Flower and
    prometheus_client do, with SO_REUSEADDR: a closed connection's TIME_WAIT is no bar)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _refuse(port: int, variable: str) -> ConfigError:
    return ConfigError(
        f"port {port} is taken (another passthru dev, or another server, listens there): "
        f"set {variable} to a free port"
    )


def _port(source: Mapping[str, str], variable: str, default: int, host: str) -> int:
    """The operator's port for `variable`, refused if taken; else `default`, or a free port
    when the default is taken."""
    if source.get(variable):
        port = int(source[variable])
        if port and taken(port, host):
            raise _refuse(port, variable)
        return port
    return default if default and not taken(default, host) else free_port()


def plan_ports(api_port: int, api_variable: str, source: Mapping[str, str]) -> DevPorts:
    """The ports of this run, from `source` (the environment over `.env`), each checked."""
    if taken(api_port):
        raise _refuse(api_port, api_variable)
    defaults = Settings.model_fields
    return DevPorts(
        api=api_port,
        flower=_port(source, "FLOWER_PORT", defaults["flower_port"].default, LOOPBACK),
        metrics=_port(source, "PASSTHRU_METRICS_PORT", defaults["metrics_port"].default, ANY),
        worker_metrics=_port(
            source, "PASSTHRU_WORKER_METRICS_PORT", defaults["worker_metrics_port"].default, ANY
        ),
        demo=free_port(),
    )
