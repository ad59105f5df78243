""" "Did you mean": an unknown app or function is answered with the closest names."""

from __future__ import annotations

import pytest

from api.suggestions import did_you_mean, function_problem, unknown_app
from models.catalog.apps import Catalog
from tests.api.conftest import CALL, Caller, submit
from tests.api.test_errors import assert_error_shape


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("slak", "; did you mean 'slack'?"),
        ("Slack", "; did you mean 'slack'?"),
        ("hubspt", "; did you mean 'hubspot'?"),
        ("zzzzzz", ""),
        ("s" * 500, ""),
    ],
)
def test_did_you_mean(name: str, hint: str) -> None:
    assert did_you_mean(name, ["slack", "hubspot", "pipedrive"]) == hint


def test_an_unknown_app_suggests_the_closest(catalog: Catalog) -> None:
    err = unknown_app("slak", catalog)
    assert (err.status_code, err.error) == (404, "unknown_app")
    assert "did you mean 'slack'" in err.details[0].message


@pytest.mark.parametrize(
    ("function", "status", "suggested"),
    [
        ("slak-passthrough-request", 404, "'slack-passthrough-request'"),
        ("slack-passthrough", 400, "'slack-passthrough-request'"),
        ("slack", 400, "'slack-passthrough-request'"),
        ("slack_passthrough_request", 400, "'slack-passthrough-request'"),
    ],
)
def test_an_unknown_function_suggests_the_closest(
    catalog: Catalog, function: str, status: int, suggested: str
) -> None:
    err = function_problem(function, catalog)
    assert err.status_code == status
    assert err.details[0].field == "function"
    assert f"did you mean {suggested}" in err.details[0].message


def test_through_http_every_unknown_app_gets_a_suggestion(caller: Caller) -> None:
    answers = [
        submit(caller, app="slak"),
        caller.client.get("/apps/slak", headers=caller.headers()),
        caller.client.post(
            "/function-calls",
            json={"function": "slak-passthrough-request", "params": CALL},
            headers=caller.headers(),
        ),
        caller.client.post(
            "/connected-accounts",
            json={"app": "slak", "credentials": {"access_token": "x"}},
            headers=caller.headers(),
        ),
    ]
    for response in answers:
        assert_error_shape(response.json(), "unknown_app")
        assert "did you mean 'slack" in response.json()["error_details"][0]["message"]
