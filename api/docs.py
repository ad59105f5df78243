"""/docs (Swagger UI) and /redoc, served with no network: their scripts and styles come
from the `fastapi-offline` package (MIT), and a Content-Security-Policy keeps the pages
from fetching anything from another origin (ReDoc's footer logo, Swagger UI's validator)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
# Swagger UI's page starts it with an inline script; both run their workers from blobs.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "worker-src 'self' blob:; font-src 'self' data:; frame-ancestors 'none'"
)


def install(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Serve the assets and the two pages (the app is made with docs_url=redoc_url=None)."""
    assets = files("fastapi_offline").joinpath("static")
    app.mount(ASSETS_PATH, StaticFiles(directory=str(assets)), name="docs-assets")
    swagger_ui = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},
    )
    redoc = get_redoc_html(
        openapi_url=openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )
    for path, page in (("/docs", swagger_ui), ("/redoc", redoc)):
        app.add_route(path, _serving(bytes(page.body)), include_in_schema=False)


def _serving(html: bytes) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def page(_: Request) -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_POLICY})

    return page
