"""The operations on connected accounts, connect links, the catalog, rate limits and
webhooks (see `_ops`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from passthru_client._http import ApiRequest, Op
from passthru_client._requests import FilterValue, Pages, Sender, items_page, path, query
from passthru_client._resources import (
    AccountPage,
    ConnectedAccount,
    ConnectSession,
    Delivery,
    Function,
    WebhookEndpoint,
)


class ResourceOperations(Sender):
    """Everything but the function calls and batches."""

    # Connected accounts

    def connect_account(
        self,
        app: str,
        credentials: Mapping[str, Any],
        connection_config: Mapping[str, Any] | None,
        user_id: str | None,
    ) -> Op[ConnectedAccount]:
        body: dict[str, Any] = {"app": app, "credentials": dict(credentials)}
        if connection_config is not None:
            body["connection_config"] = dict(connection_config)
        return (
            yield from self._send(
                ApiRequest("POST", "/connected-accounts", json=body, headers=self._user(user_id)),
                ConnectedAccount.from_dict,
            )
        )

    def create_connect_session(
        self,
        app: str,
        redirect_url: str,
        user_id: str | None,
        scopes: Sequence[str] | None,
        connection_config: Mapping[str, Any] | None,
        connected_account_id: str | None,
    ) -> Op[ConnectSession]:
        body: dict[str, Any] = {"app": app, "redirect_url": redirect_url}
        if scopes is not None:
            body["scopes"] = list(scopes)
        if connection_config is not None:
            body["connection_config"] = dict(connection_config)
        if connected_account_id is not None:
            body["connected_account_id"] = connected_account_id
        return (
            yield from self._send(
                ApiRequest("POST", "/connect-sessions", json=body, headers=self._user(user_id)),
                ConnectSession.from_dict,
            )
        )

    def list_accounts(
        self, filters: Mapping[str, FilterValue], cursor: str | None
    ) -> Op[AccountPage]:
        params = query({**filters, "cursor": cursor or None})
        return (
            yield from self._send(
                ApiRequest("GET", "/connected-accounts", params=params), AccountPage.from_dict
            )
        )

    def all_accounts(self, filters: Mapping[str, FilterValue]) -> Op[list[ConnectedAccount]]:
        """Every page of the accounts, following `next_cursor` to the last."""
        accounts: list[ConnectedAccount] = []
        cursor: str | None = None
        pages = Pages()
        while True:
            page = yield from self.list_accounts(filters, cursor)
            accounts.extend(page.items)
            cursor = pages.next(page.next_cursor)
            if cursor is None:
                return accounts

    def update_account(
        self,
        account_id: str,
        credentials: Mapping[str, Any] | None,
        connection_config: Mapping[str, Any] | None,
        status: str | None,
    ) -> Op[ConnectedAccount]:
        body: dict[str, Any] = {}
        if credentials is not None:
            body["credentials"] = dict(credentials)
        if connection_config is not None:
            body["connection_config"] = dict(connection_config)
        if status is not None:
            body["status"] = status
        return (
            yield from self._send(
                ApiRequest("PATCH", path("connected-accounts", account_id), json=body),
                ConnectedAccount.from_dict,
            )
        )

    def delete_account(self, account_id: str) -> Op[None]:
        yield from self._send(ApiRequest("DELETE", path("connected-accounts", account_id)))
        return None

    # Catalog and limits

    def list_functions(
        self, kind: str | None, category: str | None = None, q: str | None = None
    ) -> Op[list[Function]]:
        params = query({"type": kind, "category": category, "q": q})
        return (
            yield from self._send(
                ApiRequest("GET", "/functions", params=params),
                lambda data: [Function.from_dict(item) for item in data.get("functions") or ()],
            )
        )

    def rate_limits(self, page_size: int | None) -> Op[dict[str, Any]]:
        """Every page of `GET /rate-limits` as one: the items of all, `as_of` and
        `tenant_cap` as the first page read them."""
        merged: dict[str, Any] | None = None
        cursor: str | None = None
        pages = Pages()
        while True:
            params = query({"limit": page_size, "cursor": cursor})
            data = yield from self._send(
                ApiRequest("GET", "/rate-limits", params=params), items_page
            )
            if merged is None:
                merged = {**data, "items": list(data.get("items") or ())}
            else:
                merged["items"].extend(data.get("items") or ())
            cursor = pages.next(data.get("next_cursor"))
            if cursor is None:
                merged["next_cursor"] = None
                return merged

    # Webhooks

    def set_webhook_endpoint(self, url: str | None) -> Op[WebhookEndpoint]:
        # A PUT: repeatable, so retried like a GET.
        return (
            yield from self._send(
                ApiRequest("PUT", "/webhook-endpoint", json={"url": url}), WebhookEndpoint.from_dict
            )
        )

    def get_webhook_endpoint(self) -> Op[WebhookEndpoint]:
        return (
            yield from self._send(ApiRequest("GET", "/webhook-endpoint"), WebhookEndpoint.from_dict)
        )

    def rotate_webhook_secret(self) -> Op[WebhookEndpoint]:
        # A POST without an Idempotency-Key: never repeated once the API may have acted on it.
        return (
            yield from self._send(
                ApiRequest("POST", "/webhook-endpoint/rotate-secret"), WebhookEndpoint.from_dict
            )
        )

    def list_deliveries(self, call_id: str) -> Op[list[Delivery]]:
        return (
            yield from self._send(
                ApiRequest("GET", path("function-calls", call_id, "deliveries")),
                lambda data: [Delivery.from_dict(item) for item in data.get("items") or ()],
            )
        )

    def redeliver(self, call_id: str) -> Op[None]:
        yield from self._send(ApiRequest("POST", path("function-calls", call_id, "redeliver")))
        return None
