"""The functions a tenant can invoke: one passthrough function per catalog app."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import CurrentTenant, MatchingApps
from api.parsing import JSONRoute
from api.schemas.calls import METHODS
from api.schemas.functions import FunctionList, FunctionOut
from models.catalog.apps import App
from models.errors import invalid

router = APIRouter(tags=["functions"], route_class=JSONRoute)


def _parameters(app: App) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["method", "url"],
        "properties": {
            "method": {"type": "string", "enum": list(METHODS)},
            "url": {
                "type": "string",
                "description": f"absolute on {', '.join(app.allowed_hosts)}, "
                f"or a path relative to {app.base_url}",
            },
            "body": {"description": "any JSON value, sent as the request body"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }


def _functions(apps: list[App], kind: str | None) -> FunctionList:
    if kind is not None and kind.lower() != "passthrough":
        raise invalid("type", "only 'passthrough' functions exist")
    return FunctionList(
        functions=[
            FunctionOut(
                name=f"{app.slug}-passthrough-request",
                app=app.slug,
                type="passthrough",
                description=f"Make an authenticated request to the {app.name} API as the "
                "end user's connected account.",
                parameters=_parameters(app),
            )
            for app in apps
        ]
    )


TypeQuery = Annotated[str | None, Query(alias="type", description="passthrough")]


@router.get("/functions", summary="List functions")
def list_functions(_: CurrentTenant, apps: MatchingApps, kind: TypeQuery = None) -> FunctionList:
    return _functions(apps, kind)


@router.post("/functions/list", summary="List functions (the SDK's form)")
def list_functions_post(
    _: CurrentTenant, apps: MatchingApps, kind: TypeQuery = None
) -> FunctionList:
    return _functions(apps, kind)
