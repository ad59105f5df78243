"""The FastAPI application factory (`uvicorn --factory api.app:create_app`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import FastAPI
from starlette.datastructures import State

from api import baseline_headers, docs, errors, transport_security
from api.account_cap import AccountCap
from api.auth import Authenticator
from api.baseline_headers import AddedHeaders
from api.batch_intake import BatchProcess, BatchTaker, BatchThreads
from api.connect.service import Connect
from api.console.pages import no_such_page
from api.console.visitor import Console
from api.limits import RequestLimits
from api.prometheus import ApiMetrics, PassthruCollector, serve_metrics
from api.quotas import Quotas
from api.redis_rates import quotas_client
from api.routes import (
    accounts,
    apps,
    batches,
    calls,
    connect,
    console,
    functions,
    health,
    metrics,
    passthrough,
    ratelimits,
    webhooks,
)
from api.tenant_cache import TenantCache
from api.validation import CallLimits
from api.waiter import CallWaiter
from models.broker import Publisher, sending_publisher
from models.catalog.apps import catalog_for
from models.crypto.secrets import vault_for
from models.db.engine import engine_for
from models.gc import freeze_startup_objects
from models.logs import configure_logging
from models.ratelimit.store import RedisLimiter
from models.settings import Settings
from models.startup import config_errors_exit, startup_settings

# Every resource's routes, in the order they are matched and /docs lists them.
ROUTE_MODULES = (
    health,
    passthrough,
    batches,
    calls,
    functions,
    accounts,
    apps,
    ratelimits,
    metrics,
    webhooks,
    console,
    connect,
)

DESCRIPTION = """
Call third-party APIs as your end users. passthru stores their credentials, validates
each call, answers at once, and runs the call from a pool of workers; poll, long-poll
or wait for the result. Errors always look like
`{"error": str, "error_details": [{"field": str, "message": str}]}`.
"""


def create_app(settings: Settings | None = None, *, publisher: Publisher | None = None) -> FastAPI:
    """The API, built from `settings` alone (the environment's when None): its own engine,
    catalog, vault and Redis clients. `publisher` hands accepted calls and webhook
    deliveries to the broker; by default a send-only client of the broker at REDIS_URL.
    Built from the environment, a configuration problem stops the process (one line, exit 2)."""
    if settings is None:
        with config_errors_exit():
            return create_app(startup_settings(), publisher=publisher)
    configure_logging(settings.log_format, settings.log_level)
    app = FastAPI(
        title="passthru",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # served offline by api/docs.py
        redoc_url=None,
    )
    docs.install(app)
    _set_up_state(app.state, settings, publisher)
    errors.install(app, pages={"/console": no_such_page})
    app.add_middleware(
        RequestLimits,
        max_request_bytes=settings.max_request_bytes,
        max_batch_request_bytes=settings.max_batch_request_bytes,
        authenticate=app.state.auth.check,
    )
    headers = {**baseline_headers.HEADERS, **transport_security.headers_for(settings.public_origin)}
    app.add_middleware(AddedHeaders, headers=headers)
    for module in ROUTE_MODULES:
        app.include_router(module.router)
    _document_errors(app)
    return app


def _set_up_state(state: State, settings: Settings, publisher: Publisher | None) -> None:
    """What the routes and dependencies take from `app.state`; `state.closers` let go of the
    connections the app opens itself (see `release`)."""
    state.settings = settings
    state.engine = engine_for(settings)
    state.catalog = catalog_for(settings)
    state.vault = vault_for(tuple(settings.encryption_key_list))
    state.waiter = CallWaiter(settings.redis_url)
    state.closers = []
    # A publisher given to create_app (tests, an embedding program) is this process's own:
    # batches are then taken in by this process's threads, which can use it.
    batch_process = settings.batch_intake_process and publisher is None
    if publisher is None:
        broker = sending_publisher(settings.redis_url)
        state.closers.append(broker.close)
        publisher = broker
    state.publisher = publisher
    state.auth = Authenticator(state.engine, TenantCache())
    state.console = Console.of(settings, state.auth)
    state.accounts = AccountCap(state.engine, settings.tenant_max_accounts)
    state.connect = Connect.of(
        settings, state.engine, state.catalog, state.vault, state.publisher, state.accounts
    )
    limiter_redis = redis.Redis.from_url(
        settings.redis_url, socket_timeout=3, socket_connect_timeout=3
    )
    state.limiter = RedisLimiter(limiter_redis)
    state.metrics = ApiMetrics(PassthruCollector(limiter_redis, state.catalog, state.engine))
    quotas_redis = quotas_client(settings.redis_url)
    state.quotas = Quotas.of(settings, quotas_redis, state.engine)
    state.batch_intake = (
        BatchProcess(settings, state.engine, state.publisher)
        if batch_process
        else BatchThreads(
            BatchTaker(
                state.engine, state.catalog, CallLimits.of(settings), state.quotas, publisher
            )
        )
    )
    state.closers += [limiter_redis.close, quotas_redis.close, state.console.sessions.disconnect]
    state.closers.append(state.batch_intake.stop)


def release(app: FastAPI) -> None:
    """Close the connections the app opened: its Redis clients', its broker's and its
    database pool's. Each opens again if the app serves again."""
    for close in app.state.closers:
        close()
    app.state.engine.dispose()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the call-done subscription and the metrics server; at shutdown stop them and
    close the app's connections."""
    state = app.state
    await state.waiter.start()
    state.batch_intake.start()
    stop_metrics = serve_metrics(state.settings.metrics_port, state.metrics)
    freeze_startup_objects()
    try:
        yield
    finally:
        stop_metrics()
        await state.waiter.stop()
        release(app)


def _document_errors(app: FastAPI) -> None:
    """/docs shows what really happens: invalid input is a 400 in the error shape, not 422."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    responses = operation.get("responses", {})
                    if responses.pop("422", None) is not None and "400" not in responses:
                        responses["400"] = {
                            "description": "invalid input",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ErrorOut"}
                                }
                            },
                        }
            schemas = schema.get("components", {}).get("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
