"""What `passthru dev` prints to try it: a curl line in the seed's form (no `Prefer`), answered
in the Integry shape because dev sets a default wait, unless the operator set their own."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from api.dev import state
from api.dev.banner import curl_line
from api.dev.embedded_redis import free_port
from api.dev.environment import environment
from api.dev.ports import DevPorts


def _headers(curl: str) -> list[str]:
    words = shlex.split(curl)
    return [words[i + 1] for i, word in enumerate(words) if word == "-H"]


def test_with_a_default_wait_the_curl_line_sends_no_prefer() -> None:
    curl, answers = curl_line("http://127.0.0.1:8000", "pt_demo", 10.0)
    words = shlex.split(curl)
    assert words[:4] == ["curl", "-s", "-X", "POST"]
    assert words[4] == "http://127.0.0.1:8000/demo-passthrough-request"
    assert not [h for h in _headers(curl) if h.lower().startswith("prefer")]
    assert "Authorization: Bearer pt_demo" in _headers(curl)
    assert json.loads(words[-1])["method"] == "GET"
    assert "200 {id, status, network_code, output, headers}" in answers
    assert "Prefer: respond-async" in answers
    assert "202" in answers


def test_without_a_default_wait_the_curl_line_asks_to_wait() -> None:
    curl, answers = curl_line("http://127.0.0.1:8000", "pt_demo", 0.0)
    assert "Prefer: wait=10" in _headers(curl)
    assert "200 {id, status, network_code, output, headers}" in answers


def test_dev_waits_10_s_by_default_unless_the_operator_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    monkeypatch.delenv("PASSTHRU_DEFAULT_WAIT_S", raising=False)
    ports = DevPorts(api=1, flower=2, metrics=0, worker_metrics=0, demo=free_port())
    given = {"PATH": "/bin"}
    env = environment(given, "redis://127.0.0.1:1/0", ports, tmp_path / "heartbeat")
    assert env["PASSTHRU_DEFAULT_WAIT_S"] == "10"
    given["PASSTHRU_DEFAULT_WAIT_S"] = "0"
    env = environment(given, "redis://127.0.0.1:1/0", ports, tmp_path / "heartbeat")
    assert env["PASSTHRU_DEFAULT_WAIT_S"] == "0"
