"""The JavaScript SDK (`sdk-js/`, the package `passthru-client`) against the live stack: API,
worker, Redis and the stand-in Slack and Pipedrive, from Node, importing the built package by
its name. Builds it first (`npm ci`, `npm run build`) when `sdk-js/dist` is missing or older
than its sources."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import WAIT_S, Stack, new_caller
from tests.e2e.upstream import SLACK_CONVERSATIONS

# What it tests is the JavaScript client; the API's queries run on Postgres in other tests.
pytestmark = pytest.mark.once

SDK_JS = Path(__file__).resolve().parents[2] / "sdk-js"
SCRIPT = Path(__file__).with_name("sdk_js_client.mjs")
# Written last by `npm run build`: the build is complete when it is there.
BUILT = SDK_JS / "dist" / "cjs" / "package.json"
INSTALLED = SDK_JS / "node_modules" / ".package-lock.json"
SLACK_TOKEN = "xoxb-e2e-js-slack-5b1c"
PIPEDRIVE_TOKEN = "pd-e2e-js-oauth-90d2"


def _newest_source() -> float:
    sources = [
        *SDK_JS.glob("*.json"),
        *SDK_JS.glob("src/**/*.ts"),
        *SDK_JS.glob("scripts/*"),
    ]
    return max(p.stat().st_mtime for p in sources)


def _run_visibly(config: pytest.Config, what: str, command: list[str]) -> None:
    """Run an npm step with its output on the terminal (not captured), or fail the tests."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nsdk-js: {what} ({' '.join(command)})", flush=True)
        done = subprocess.run(command, cwd=SDK_JS, check=False)
    if done.returncode != 0:
        pytest.fail(f"sdk-js: `{' '.join(command)}` failed (exit {done.returncode})")


@pytest.fixture(scope="session")
def sdk_js_package(pytestconfig: pytest.Config) -> Path:
    """The built package, built now if it is missing or stale. Skipped where node is
    missing, except in CI (whose .ci/run installs it), where that fails."""
    if shutil.which("node") is None:
        message = "node is not installed: the JavaScript SDK's test needs Node 18+ and npm"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if BUILT.exists() and BUILT.stat().st_mtime >= _newest_source():
        return SDK_JS
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("sdk-js/dist is missing or stale and npm is not installed to build it")
    lock = SDK_JS / "package-lock.json"
    if not INSTALLED.exists() or INSTALLED.stat().st_mtime < lock.stat().st_mtime:
        _run_visibly(pytestconfig, "installing the dev dependencies", [npm, "ci"])
    _run_visibly(pytestconfig, "building dist/ (ESM and CommonJS)", [npm, "run", "build"])
    return SDK_JS


@pytest.fixture(scope="module")
def report(
    sdk_js_package: Path, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """What the Node script saw, as one JSON report: the package is imported by its name
    from a folder whose node_modules/passthru-client is sdk-js/."""
    home = tmp_path_factory.mktemp("sdk-js-user")
    (home / "node_modules").mkdir()
    (home / "node_modules" / "passthru-client").symlink_to(sdk_js_package)
    script = home / SCRIPT.name
    shutil.copyfile(SCRIPT, script)
    with new_caller(stack, "js") as caller:
        env = {
            **os.environ,
            "PASSTHRU_URL": stack.base_url,
            "PASSTHRU_API_KEY": caller.api_key,
            "PASSTHRU_USER": f"u-js-{secrets.token_hex(3)}",
            "SLACK_TOKEN": SLACK_TOKEN,
            "PIPEDRIVE_TOKEN": PIPEDRIVE_TOKEN,
        }
        done = subprocess.run(
            ["node", str(script)],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=4 * WAIT_S,
            check=False,
        )
        assert done.returncode == 0, f"node exited {done.returncode}:\n{done.stderr}"
        yield dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_seeds_slack_example(stack: Stack, report: dict[str, Any]) -> None:
    # invokeFunction(...).then(result => ...) without a wait: accepted, then waited for
    submitted, done = report["slack"]["submitted"], report["slack"]["done"]
    assert submitted["status"] == "queued"
    assert submitted["function"] == "slack-passthrough-request"
    assert done["id"] == submitted["id"]
    assert (done["status"], done["network_code"]) == ("completed", "200")
    assert done["output"] == SLACK_CONVERSATIONS
    assert done["headers"]["content-type"] == "application/json"
    # with a wait, the Integry shape plus id in one answer
    waited = report["slackWaited"]
    assert set(waited) >= {"id", "status", "network_code", "output", "headers"}
    assert (waited["status"], waited["network_code"]) == ("completed", "200")
    assert waited["output"] == SLACK_CONVERSATIONS
    # and the stand-in Slack saw the user's token and the query
    seen = [
        s
        for s in stack.upstream.requests_to("/api/conversations.list")
        if s.headers.get("authorization") == f"Bearer {SLACK_TOKEN}"
    ]
    assert len(seen) == 3  # the two examples and the webhook's call
    assert seen[0].query == {"limit": ["2"]}


def test_the_seeds_pipedrive_example(stack: Stack, report: dict[str, Any]) -> None:
    result = report["pipedrive"]
    assert (result["status"], result["network_code"]) == ("completed", "200")
    assert result["output"]["data"]["name"] == "Ada Lovelace"
    sent = [
        s
        for s in stack.upstream.requests_to("/api/v2/persons")
        if s.headers.get("authorization") == f"Bearer {PIPEDRIVE_TOKEN}"
    ]
    assert len(sent) == 1
    assert sent[0].json() == {"name": "Ada Lovelace", "emails": [{"value": "ada@example.com"}]}


def test_a_refusal_rejects_with_error_details(report: dict[str, Any]) -> None:
    refusal = report["refusal"]
    assert "resolved" not in refusal, refusal
    assert refusal["isPassthruError"] is True
    assert (refusal["name"], refusal["status"], refusal["error"]) == (
        "BadRequest",
        400,
        "invalid_params",
    )
    assert {d["field"] for d in refusal["error_details"]} == {"method", "url"}
    assert all(d["message"] for d in refusal["error_details"])
    assert "evil.example.com" in refusal["message"]


def test_a_webhook_verified_by_verify_webhook(report: dict[str, Any]) -> None:
    hook = report["webhook"]
    assert hook["secretShown"] is True
    assert hook["call"]["status"] == "completed"
    [got] = hook["delivered"]
    assert "error" not in got, got["error"]
    assert got["event"]["type"] == "function_call.completed"
    assert got["event"]["data"]["id"] == hook["call"]["id"]
    assert got["event"]["data"]["output"] == SLACK_CONVERSATIONS
    assert got["tampered"] == "no matching signature"
    assert got["wrongSecret"] == "no matching signature"
    # the API recorded the delivery under the webhook-id the receiver saw
    [delivery] = hook["deliveries"]
    assert delivery["id"] == got["headers"]["webhook-id"]
    assert delivery["url"] == hook["callbackUrl"]


def test_the_log_and_the_commonjs_build(report: dict[str, Any]) -> None:
    ids = {report["slack"]["done"]["id"], report["slackWaited"]["id"]}
    ids |= {report["pipedrive"]["id"], report["webhook"]["call"]["id"]}
    assert sorted(report["logged"]) == sorted(ids)  # the refusal was not logged
    assert report["cjsExports"] == "function"
