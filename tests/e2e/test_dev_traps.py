"""The traps of `passthru dev`'s first hour, each closed: a taken port is a one-line error that
names it and starts nothing; a second dev never claims to be running; a bad setting is one
line and leaves no Redis behind; the banner, printed once the API and a worker are ready,
shows where calls really go."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.dev.children import NotReady, own_api_ready
from api.dev.embedded_redis import free_port
from tests.e2e.dev_runs import dev_env, dev_exits, dev_running, redis_servers

# `once` (SQLite pass only): `passthru dev` always uses a SQLite database of its own.
pytestmark = [
    pytest.mark.once,
    pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="dev uses SQLite"),
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc"),
    pytest.mark.timeout(300),
]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "variable", ["PORT", "FLOWER_PORT", "PASSTHRU_METRICS_PORT", "PASSTHRU_WORKER_METRICS_PORT"]
)
def test_a_taken_port_is_one_line_naming_it_and_starts_nothing(
    tmp_path: Path, taken_port: int, variable: str
) -> None:
    # Given a port another process listens on, given to dev through `variable`
    env = dev_env(free_port(), **{variable: str(taken_port)})
    before = redis_servers()
    # When dev starts
    done = dev_exits(tmp_path, env)
    # Then it exits 2 with one line naming the port and the variable, having started nothing
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1, done.stderr
    assert str(taken_port) in done.stderr
    assert variable in done.stderr
    assert "passthru is running" not in done.stdout
    assert "embedded Redis" not in done.stdout
    assert redis_servers() - before == set()


@pytest.mark.parametrize("with_port", [False, True], ids=["PORT", "--port"])
@pytest.mark.parametrize(
    "overrides",
    ['{"https://slack.com": ', '{"slack.com": "http://127.0.0.1:9"}'],
    ids=["not-json", "not-an-origin"],
)
def test_a_bad_setting_is_one_line_and_leaves_no_redis(
    tmp_path: Path, overrides: str, with_port: bool
) -> None:
    # Given a malformed PASSTHRU_UPSTREAM_OVERRIDES (and the port given as an option, which
    # skips the settings `passthru` reads before it runs dev)
    port = free_port()
    env = dev_env(port, PASSTHRU_UPSTREAM_OVERRIDES=overrides)
    before = redis_servers()
    # When dev starts / Then it exits 2 with one line, no traceback, and no Redis left
    done = dev_exits(tmp_path, env, *(["--port", str(port)] if with_port else []))
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert redis_servers() - before == set()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    return free_port()


def test_an_error_after_redis_started_stops_it(tmp_path: Path) -> None:
    # Given a setting dev finds wrong only once its Redis runs: a database that does not
    # answer (every setting that can be checked without opening it is checked earlier)
    env = dev_env(free_port(), DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed_port()}/x")
    before = redis_servers()
    # When dev starts / Then it exits 2 with one line, and its Redis is gone
    done = dev_exits(tmp_path, env)
    assert done.returncode == 2, done
    assert "embedded Redis (redis-server)" in done.stdout, done
    assert done.stderr.count("\n") == 1, done.stderr
    assert "cannot open the database at DATABASE_URL" in done.stderr
    assert redis_servers() - before == set()


def test_a_second_dev_never_claims_to_be_running(tmp_path: Path) -> None:
    # Given `passthru dev` serving on a port, with an override for Slack
    port = free_port()
    first = tmp_path / "first"
    first.mkdir()
    overrides = '{"https://slack.com": "http://127.0.0.1:9"}'
    with dev_running(first, dev_env(port, PASSTHRU_UPSTREAM_OVERRIDES=overrides)) as dev:
        # Then its banner came after its worker was ready, and shows the override
        lines = dev.output.lines
        ready = next(i for i, line in enumerate(lines) if line.rstrip().endswith(" ready."))
        running = next(i for i, line in enumerate(lines) if "passthru is running" in line)
        assert ready < running, dev.banner
        assert "https://slack.com -> http://127.0.0.1:9   (apps: slack" in dev.banner
        assert "Inspect method" not in dev.output.text()
        # When a second dev starts on the same port, in another folder
        second = tmp_path / "second"
        second.mkdir()
        before = redis_servers()
        if shutil.which("redis-server"):
            assert before, "the running dev's redis-server is not found: the orphan checks see none"
        done = dev_exits(second, dev_env(port))
        # Then it says the port is taken, exits 2, and never that it is running
        assert done.returncode == 2, done
        assert f"port {port} is taken" in done.stderr
        assert "PORT" in done.stderr
        assert "passthru is running" not in done.stdout
        assert redis_servers() - before == set()
        # And a probe that is not the first dev's own is told the API is another's
        with pytest.raises(NotReady, match="another process"):
            own_api_ready(port, "not-its-token")


def test_a_second_ctrl_c_while_stopping_leaves_nothing_running(tmp_path: Path) -> None:
    # Given `passthru dev` running
    port = free_port()
    before = redis_servers()
    with dev_running(tmp_path, dev_env(port)) as dev:
        # When Ctrl-C comes twice in a row (an impatient user)
        dev.process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        dev.process.send_signal(signal.SIGINT)
        # Then dev still stops everything it started: its API's port is free again, and no
        # redis-server of its own is left
        dev.process.wait(60)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the API outlived dev"
        assert redis_servers() - before == set()
