"""`Connect`: what the connect routes need (database, catalog, vault, publisher, a token
endpoint client under the egress policy, the page renderer), and each step of the flow as
one method the route calls: make a link, show its page, take its form, finish OAuth2."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from fastapi import Request, Response
from sqlalchemy import Engine
from sqlmodel import Session

from api.account_cap import AccountCap
from api.account_store import check_config
from api.connect import oauth_flow
from api.connect.pages import (
    PageRenderer,
    browser_of,
    error_page,
    refused_page,
    see_other,
    typed_config,
    typed_credentials,
)
from api.connect.sessions import LinkRefused, connect_kind, create_session, open_session, spend
from api.connect.store import back_to_tenant, store_account
from api.console.csrf import FIELD, Csrf
from api.schemas.connect import ConnectSessionIn, ConnectSessionOut
from models.accounts.credentials import parse_credentials
from models.broker import Publisher
from models.catalog.apps import App, Catalog
from models.crypto.secrets import Vault
from models.db.engine import utcnow
from models.db.tables import ConnectSession, Tenant
from models.errors import ApiError
from models.net.egress import onward_policy
from models.net.overrides import apply_override
from models.net.sync_client import make_sync_client
from models.settings import Settings

# The code exchange's connect and read timeouts (its whole answer: TOKEN_DEADLINE_S).
EXCHANGE_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass
class Connect:
    engine: Engine
    catalog: Catalog
    vault: Vault
    publisher: Publisher
    http: httpx.Client
    pages: PageRenderer
    settings: Settings
    accounts: AccountCap
    clock: Callable[[], datetime] = utcnow

    @classmethod
    def of(
        cls,
        settings: Settings,
        engine: Engine,
        catalog: Catalog,
        vault: Vault,
        publisher: Publisher,
        accounts: AccountCap,
    ) -> Connect:
        http = make_sync_client(onward_policy(settings), timeout=EXCHANGE_TIMEOUT)
        pages = PageRenderer(Csrf(settings.encryption_key_list[0]), settings.connect_session_ttl_s)
        return cls(engine, catalog, vault, publisher, http, pages, settings, accounts)

    def create(
        self, tenant: Tenant, body: ConnectSessionIn, header_user: str | None
    ) -> ConnectSessionOut:
        if body.connected_account_id is None:  # a new account: refused now if it cannot be
            self.accounts.check(tenant.id)  # stored, before the end user goes through it all
        made = create_session(
            self.engine,
            tenant,
            self.catalog,
            body,
            header_user=header_user,
            public_origin=self.settings.public_origin,
            ttl_s=self.settings.connect_session_ttl_s,
            now=self.clock(),
        )
        return ConnectSessionOut(
            id=made.session.id, url=made.url, expires_at=made.session.expires_at
        )

    def _opened(self, token: str) -> tuple[ConnectSession, App]:
        session = open_session(self.engine, token, self.clock())
        app = self.catalog.get(session.app)
        oauth2 = None if app is None else app.oauth2
        if app is None or (oauth2 is not None and not (oauth2.authorize_url and oauth2.client_id)):
            raise LinkRefused("App not available", "This app cannot be connected here now.")
        return session, app

    def _targets(self, app: App, session: ConnectSession) -> list[str]:
        """Where this page's form may lead: the vendor (OAuth2) or the tenant's redirect_url."""
        if app.oauth2 is not None:
            base = app.authorize_url_for(session.connection_config) or ""
            return [apply_override(base, self.settings.upstream_overrides)[0]]
        return [session.redirect_url]

    def show(self, request: Request, token: str) -> Response:
        try:
            session, app = self._opened(token)
        except LinkRefused as refusal:
            return refused_page(refusal)
        return self.pages.page(
            request, token, app, session, form_targets=self._targets(app, session)
        )

    def submit(self, request: Request, token: str, form: Mapping[str, str]) -> Response:
        try:
            session, app = self._opened(token)
            browser = browser_of(request)
            self.pages.csrf.check("connect", browser and f"{session.id}:{browser}", form.get(FIELD))
            assert browser is not None  # the check refuses a form without the cookie
            if connect_kind(app) == "oauth2":
                return self._authorize(app, session, browser)
            return self._typed(request, token, app, session, form)
        except LinkRefused as refusal:
            return refused_page(refusal)
        except ApiError as error:  # the CSRF check
            return error_page(error)

    def _authorize(self, app: App, session: ConnectSession, browser: str) -> Response:
        state, verifier = oauth_flow.begin(
            self.engine, self.vault, app, session, browser, self.clock()
        )
        return see_other(
            oauth_flow.authorize_url(
                app,
                session,
                state=state,
                verifier=verifier,
                public_origin=self.settings.public_origin,
                overrides=self.settings.upstream_overrides,
            )
        )

    def _typed(
        self,
        request: Request,
        token: str,
        app: App,
        session: ConnectSession,
        form: Mapping[str, str],
    ) -> Response:
        """An API key or username and password, with the config fields: checked as the API
        checks them (a refusal is the page again, naming the field), then stored."""
        try:
            credentials = typed_credentials(app, form)
            # What the tenant's session fixed wins over anything the form sends.
            typed = typed_config(app, form) or {}
            config = {**typed, **(session.connection_config or {})} or None
            parse_credentials(app, credentials)
            check_config(app, config)
        except ApiError as exc:
            message = "; ".join(f"{d.field}: {d.message}" for d in exc.details) or exc.error
            return self.pages.page(
                request,
                token,
                app,
                session,
                form_targets=[session.redirect_url],
                message=message,
                status_code=400,
            )
        return self._spend_and_store(session, credentials, config)

    def _spend_and_store(
        self, session: ConnectSession, credentials: dict[str, Any], config: dict[str, Any] | None
    ) -> Response:
        with Session(self.engine) as db:
            spend(db, session, self.clock())
            db.commit()
        params = store_account(
            self.engine,
            self.catalog,
            self.vault,
            self.publisher,
            session,
            credentials=credentials,
            config=config,
            cap=self.accounts,
        )
        return see_other(back_to_tenant(session, params))

    def callback(self, request: Request, query: Mapping[str, str]) -> Response:
        try:
            outcome = oauth_flow.finish(
                self.engine,
                self.vault,
                {app.slug: app for app in self.catalog},
                self.http,
                query=dict(query),
                browser=browser_of(request),
                public_origin=self.settings.public_origin,
                overrides=self.settings.upstream_overrides,
                now=self.clock(),
            )
        except LinkRefused as refusal:
            return refused_page(refusal)
        params = outcome.params
        if outcome.credentials is not None:
            params = store_account(
                self.engine,
                self.catalog,
                self.vault,
                self.publisher,
                outcome.session,
                credentials=outcome.credentials,
                config=outcome.session.connection_config,
                cap=self.accounts,
            )
        return see_other(back_to_tenant(outcome.session, params))
