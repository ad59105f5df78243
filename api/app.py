"""The FastAPI application factory (`uvicorn --factory api.app:create_app`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.routes import accounts, calls, functions, health, passthrough
from api.waiter import CallWaiter
from models.catalog import get_catalog
from models.db import get_engine
from models.secrets import vault_for
from models.settings import Settings, get_settings

DESCRIPTION = """
Call third-party APIs as your end users. passthru stores their credentials, validates
each call, answers at once, and runs the call from a pool of workers; poll, long-poll
or wait for the result. Errors always look like
`{"error": str, "error_details": [{"field": str, "message": str}]}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    waiter = CallWaiter(settings.redis_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await waiter.start()
        try:
            yield
        finally:
            await waiter.stop()

    app = FastAPI(title="passthru", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = get_engine()
    app.state.catalog = get_catalog()
    app.state.vault = vault_for(tuple(settings.encryption_key_list))
    app.state.waiter = waiter
    errors.install(app)
    for module in (health, passthrough, calls, functions, accounts):
        app.include_router(module.router)
    return app
