"""/openapi.json (what /docs shows) names a schema for every JSON answer, and the response
models write exactly what the API wrote before it had them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi import FastAPI

from api.schemas.apps import AppOut
from api.schemas.common import IDEMPOTENCY_KEY_CHARS, USER_ID_CHARS
from models.catalog.apps import Catalog

# Each JSON answer and the schema /docs shows for it.
ANSWERS = [
    ("/apps", "get", "200", "AppList"),
    ("/apps/{slug}", "get", "200", "AppOut"),
    ("/rate-limits", "get", "200", "RateLimits"),
    ("/webhook-endpoint", "get", "200", "WebhookEndpointOut"),
    ("/webhook-endpoint", "put", "200", "WebhookEndpointOut"),
    ("/webhook-endpoint/rotate-secret", "post", "200", "WebhookEndpointOut"),
    ("/function-calls/{call_id}/deliveries", "get", "200", "DeliveryList"),
    ("/healthz", "get", "200", "HealthOut"),
    ("/readyz", "get", "200", "HealthOut"),
    ("/readyz", "get", "503", "ErrorOut"),
]


@pytest.fixture
def openapi(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


@pytest.mark.parametrize(("path", "method", "status", "schema"), ANSWERS)
def test_the_openapi_document_names_the_answer_s_schema(
    openapi: dict[str, Any], path: str, method: str, status: str, schema: str
) -> None:
    answer = openapi["paths"][path][method]["responses"][status]
    assert answer["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{schema}"
    }
    assert schema in openapi["components"]["schemas"]


def test_every_json_answer_has_a_named_schema(openapi: dict[str, Any]) -> None:
    unnamed = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema")
                if schema is not None and not _named(schema):
                    unnamed.append(f"{method.upper()} {path} {status}")
    assert not unnamed, unnamed


def _named(schema: dict[str, Any]) -> bool:
    if "$ref" in schema:
        return True
    return all(_named(s) for s in schema.get("anyOf", [])) and "anyOf" in schema


def test_the_signing_secret_is_not_required(openapi: dict[str, Any]) -> None:
    endpoint = openapi["components"]["schemas"]["WebhookEndpointOut"]
    assert "secret" in endpoint["properties"]
    assert "secret" not in endpoint["required"]


def test_an_app_is_shown_as_app_public_shows_it(app: FastAPI) -> None:
    catalog: Catalog = app.state.catalog
    for entry in catalog:
        shown = orjson.loads(AppOut.of(entry).model_dump_json())
        assert shown == orjson.loads(orjson.dumps(entry.public())), entry.slug
        assert list(shown) == list(entry.public()), entry.slug


@pytest.mark.parametrize("path", ["/{app}-passthrough-request", "/function-calls"])
def test_a_submission_documents_its_headers_and_their_limits(
    openapi: dict[str, Any], path: str
) -> None:
    """The submission routes read their headers in one dependency; /docs still shows them."""
    params = {p["name"]: p for p in openapi["paths"][path]["post"]["parameters"]}
    assert params["X-User-ID"]["schema"]["maxLength"] == USER_ID_CHARS
    assert params["Idempotency-Key"]["schema"]["maxLength"] == IDEMPOTENCY_KEY_CHARS
    assert "respond-async" in params["Prefer"]["description"]
    assert all(params[name]["in"] == "header" for name in ("X-User-ID", "Prefer"))
