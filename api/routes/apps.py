"""The app catalog as callers see it: hosts, auth style, limits; never secrets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CatalogDep, CurrentTenant
from api.parsing import JSONRoute
from api.schemas import ErrorOut
from api.submission import unknown_app

router = APIRouter(prefix="/apps", tags=["apps"], route_class=JSONRoute)


@router.get("", summary="Every app passthru can call")
def list_apps(_: CurrentTenant, catalog: CatalogDep) -> dict[str, list[dict[str, Any]]]:
    return {"apps": [app.public() for app in catalog]}


@router.get("/{slug}", responses={404: {"model": ErrorOut}}, summary="One app")
def get_app(slug: str, _: CurrentTenant, catalog: CatalogDep) -> dict[str, Any]:
    app = catalog.get(slug)
    if app is None:
        raise unknown_app(slug)
    return app.public()
