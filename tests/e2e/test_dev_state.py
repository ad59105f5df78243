"""`passthru dev` keeps its state coherent across runs: after `passthru tenants rotate-key` on
its demo tenant, the next run re-keys that same tenant (its earlier calls stay visible); after
the encryption key changes (here through `.env`, which dev reads like every command), it says
which stored credentials it cannot open and where the keys come from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.dev.demo_data import DEMO_USER
from api.dev.demo_upstream import DEMO_ORIGIN
from api.dev.embedded_redis import free_port
from models.crypto.secrets import generate_encryption_key
from tests.e2e.dev_runs import DevRun, dev_env, dev_running

# `once` (SQLite pass only): `passthru dev` always uses a SQLite database of its own.
pytestmark = [
    pytest.mark.once,
    pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="dev uses SQLite"),
    pytest.mark.timeout(400),
]
WAIT_S = 60


def _call(dev: DevRun) -> str:
    """A demo call, finished; its id."""
    answer = httpx.post(
        dev.url("/demo-passthrough-request"),
        json={"method": "GET", "url": f"{DEMO_ORIGIN}/api/hello"},
        headers={**dev.auth(), "X-User-ID": DEMO_USER, "Prefer": "respond-async"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    call_id: str = answer.json()["id"]
    done = httpx.get(
        dev.url(f"/function-calls/{call_id}"),
        params={"wait": WAIT_S},
        headers=dev.auth(),
        timeout=WAIT_S + 30,
    ).json()
    assert done["status"] == "completed", done
    return call_id


def test_after_rotate_key_the_next_dev_rekeys_the_same_demo_tenant(tmp_path: Path) -> None:
    # Given a dev run that made a call, then `passthru tenants rotate-key` on its demo tenant
    env = dev_env(free_port())
    with dev_running(tmp_path, env) as dev:
        call_id = _call(dev)
        old_key = dev.api_key
    tenant_id = (tmp_path / ".passthru" / "demo-tenant-id").read_text().strip()
    rotated = subprocess.run(
        [sys.executable, "-m", "api.cli", "tenants", "rotate-key", tenant_id],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr
    # When dev starts again
    with dev_running(tmp_path, env) as dev:
        # Then it says it issued a new key to the same tenant, and prints that key
        assert f"the demo tenant {tenant_id} has another API key" in dev.banner
        assert dev.api_key not in (old_key, json.loads(rotated.stdout)["api_key"])
        assert (tmp_path / ".passthru" / "demo-tenant-id").read_text().strip() == tenant_id
        # And the earlier call is visible with it
        seen = httpx.get(dev.url(f"/function-calls/{call_id}"), headers=dev.auth(), timeout=30)
        assert seen.status_code == 200, seen.text
        # And the demo call works
        _call(dev)


def test_dev_warns_about_credentials_the_keys_in_env_cannot_open(tmp_path: Path) -> None:
    # Given a dev run where a user connected an account (under dev's generated key)
    env = dev_env(free_port())
    with dev_running(tmp_path, env) as dev:
        made = httpx.post(
            dev.url("/connected-accounts"),
            json={"app": "demo", "credentials": {"api_key": "theirs"}},
            headers={**dev.auth(), "X-User-ID": "someone"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
    # When the next run is given another key in `.env`
    (tmp_path / ".env").write_text(f"PASSTHRU_ENCRYPTION_KEYS={generate_encryption_key()}\n")
    with dev_running(tmp_path, env) as dev:
        # Then it warns, naming that account and the file the keys come from
        warning = next(line for line in dev.output.lines if "cannot be decrypted" in line)
        assert made.json()["id"] in warning
        assert str(tmp_path / ".env") in warning
        assert "passthru rotate-keys" in warning
        # And the banner's demo call still works (dev re-encrypted its own demo account)
        _call(dev)
