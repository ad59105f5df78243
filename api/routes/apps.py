"""The app catalog as callers see it: hosts, auth style, limits; never secrets."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CatalogDep, CurrentTenant, MatchingApps
from api.parsing import JSONRoute
from api.schemas.apps import AppList, AppOut
from api.schemas.common import ErrorOut
from api.suggestions import unknown_app

router = APIRouter(prefix="/apps", tags=["apps"], route_class=JSONRoute)


@router.get(
    "",
    responses={400: {"model": ErrorOut}},
    summary="Every app passthru can call, or those of one category or matching a search",
)
def list_apps(_: CurrentTenant, apps: MatchingApps) -> AppList:
    return AppList(apps=[AppOut.of(app) for app in apps])


@router.get("/{slug}", responses={404: {"model": ErrorOut}}, summary="One app")
def get_app(slug: str, _: CurrentTenant, catalog: CatalogDep) -> AppOut:
    app = catalog.get(slug)
    if app is None:
        raise unknown_app(slug, catalog, lists_them="GET /apps")
    return AppOut.of(app)
