"""Claims the docs make that the code decides: how often old calls are purged, which lanes the
architecture diagram shows, and where the README warns that its tour reaches real APIs."""

from __future__ import annotations

import re
from pathlib import Path

from models.keys import QUEUE_BULK, QUEUE_INTERACTIVE, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS
from worker.app import PURGE_EVERY_S

ROOT = Path(__file__).resolve().parents[2]


def test_the_env_example_says_how_often_the_purge_runs() -> None:
    text = (ROOT / "deploy" / ".env.example").read_text()
    assert "hourly" not in text
    assert f"every {PURGE_EVERY_S / 60:.0f}\n# minutes" in text


def test_the_architecture_diagram_shows_every_lane() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    diagram = doc.split("## Components", 1)[1].split("```")[1]
    for lane in (QUEUE_INTERACTIVE, QUEUE_BULK, QUEUE_WEBHOOKS, QUEUE_MAINTENANCE):
        assert lane in diagram


def test_the_tour_warns_before_its_first_real_call_and_overrides_both_apps() -> None:
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A short tour", 1)[1]
    first_call = tour.index("-passthrough-request")
    override = re.search(r"PASSTHRU_UPSTREAM_OVERRIDES='(\{.*?\})'", tour)
    assert override is not None
    assert override.start() < first_call
    assert '"https://slack.com"' in override[1]
    assert '"https://api.pipedrive.com"' in override[1]
    assert '"calls": [' in tour  # the batch body is shown
