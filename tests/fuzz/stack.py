"""What the fuzz run talks to: its own redis-server, a migrated SQLite database in a temp dir,
one tenant with connected accounts, and the real API under uvicorn on a free port. No worker,
so accepted calls stay queued and nothing leaves the machine."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from api.dev.embedded_redis import start_embedded_redis
from api.dev.harness import Processes, environment
from models.accounts.tenants import create_tenant
from models.db.engine import create_db_engine
from models.db.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
# Longest `Prefer: wait` / `?wait=` the API honours here: with no worker, every wait runs to
# its end, so a long one would only slow the run down.
MAX_WAIT_S = 0.2
USER = "fuzz-user"  # the end user whose accounts submissions reach
SPARE_USER = "fuzz-spare"  # accounts that PATCH and DELETE may disable or remove

# (app, credentials, connection_config): an OAuth2 app, a second one, a templated host and a
# basic-auth app, so that submissions get past account selection into URL and host checks.
ACCOUNTS: tuple[tuple[str, dict[str, Any], dict[str, Any] | None], ...] = (
    ("slack", {"access_token": "xoxb-fuzz"}, None),
    ("pipedrive", {"access_token": "pd-fuzz"}, None),
    ("zendesk", {"access_token": "zd-fuzz"}, {"subdomain": "acme"}),
    ("freshdesk", {"api_key": "fd-fuzz"}, {"domain": "acme"}),
)


@dataclass
class Target:
    """The running API and what the fuzzer needs to reach deep into it."""

    base_url: str
    api_key: str
    log: Path
    accounts: dict[str, str] = field(default_factory=dict)  # app -> account id of USER
    spare_accounts: list[str] = field(default_factory=list)  # accounts of SPARE_USER
    call_id: str = ""  # one queued call of USER
    process: subprocess.Popen[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "X-User-ID": USER}

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def connect(
        self, user: str, app: str, credentials: dict[str, Any], config: dict[str, Any] | None
    ) -> str:
        """A new connected account of `user` for `app` (the newest is the one calls use)."""
        body: dict[str, Any] = {"app": app, "credentials": credentials}
        if config is not None:
            body["connection_config"] = config
        r = httpx.post(
            f"{self.base_url}/connected-accounts",
            json=body,
            headers={**self.headers, "X-User-ID": user},
            timeout=30,
        )
        r.raise_for_status()
        account_id: str = r.json()["id"]
        return account_id

    def new_call(self) -> str:
        """Submit one call for USER (it stays queued: no worker runs); its id."""
        r = httpx.post(
            f"{self.base_url}/slack-passthrough-request",
            json={"method": "GET", "url": "conversations.list"},
            headers={**self.headers, "Prefer": "respond-async"},
            timeout=30,
        )
        r.raise_for_status()
        call_id: str = r.json()["id"]
        return call_id

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")


def api_env(workdir: Path, database_url: str, redis_url: str) -> dict[str, str]:
    return environment(
        database_url,
        redis_url,
        Fernet.generate_key().decode(),
        PASSTHRU_MAX_WAIT_S=str(MAX_WAIT_S),
        PASSTHRU_ALLOW_PRIVATE_NETWORKS="false",
        PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS="false",
        PASSTHRU_METRICS_PORT="0",
        PASSTHRU_LOG_FORMAT="json",
        PASSTHRU_HEARTBEAT_FILE=str(workdir / "heartbeat"),
    )


@contextmanager
def running_api(workdir: Path | None = None) -> Iterator[Target]:
    """The API with its own Redis and database, seeded; everything stops on exit."""
    with tempfile.TemporaryDirectory(prefix="passthru-fuzz-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{work / 'fuzz.db'}"
        engine = create_db_engine(database_url)
        upgrade(engine)
        _, api_key = create_tenant(engine, "fuzz")
        engine.dispose()
        redis = start_embedded_redis()
        try:
            with Processes(work, api_env(work, database_url, redis.url)) as processes:
                url = processes.start_api("--no-access-log", "--timeout-graceful-shutdown", "3")
                api = processes.procs["api"]
                target = Target(url, api_key, api.log, process=api.process)
                _seed(target)
                yield target
        finally:
            redis.stop()


def _seed(target: Target) -> None:
    """Connected accounts for USER (and spares for SPARE_USER), and one queued call."""
    for app, credentials, config in ACCOUNTS:
        target.accounts[app] = target.connect(USER, app, credentials, config)
        target.spare_accounts.append(target.connect(SPARE_USER, app, credentials, config))
    target.call_id = target.new_call()
