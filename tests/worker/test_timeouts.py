"""Which timeouts one onward request gets: call, else app, else operator; capped."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.catalog.spec import TimeoutSpec
from worker.calls.timeouts import Timeouts, resolve_timeouts

DEFAULTS = Timeouts(connect_s=10.0, read_s=60.0, total_s=60.0)
CAP_S = 90.0


def test_the_operators_defaults_apply_when_nobody_says_otherwise() -> None:
    assert resolve_timeouts(None, TimeoutSpec(), DEFAULTS, CAP_S) == DEFAULTS


def test_the_app_overrides_the_defaults_and_the_call_overrides_the_app() -> None:
    # Given an app with a slow API and a call that wants to fail fast on connecting
    app = TimeoutSpec(read_s=80.0, total_s=85.0)
    call = {"connect_s": 2.0, "total_s": 70.0}
    # When resolved
    got = resolve_timeouts(call, app, DEFAULTS, CAP_S)
    # Then each field comes from the most specific place that set it
    assert got == Timeouts(connect_s=2.0, read_s=70.0, total_s=70.0)


def test_nothing_exceeds_the_operators_cap() -> None:
    # Given an app entry asking for more than the operator allows
    got = resolve_timeouts(None, TimeoutSpec(connect_s=500, read_s=500, total_s=500), DEFAULTS, 30)
    # Then every timeout is cut to the cap
    assert got == Timeouts(connect_s=30, read_s=30, total_s=30)


def test_connect_and_read_never_outlast_the_total() -> None:
    got = resolve_timeouts({"total_s": 5.0}, TimeoutSpec(), DEFAULTS, CAP_S)
    assert got == Timeouts(connect_s=5.0, read_s=5.0, total_s=5.0)


@pytest.mark.parametrize("field", ["connect_s", "read_s", "total_s"])
def test_catalog_timeouts_must_be_positive(field: str) -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        TimeoutSpec.model_validate({field: 0})
