"""The client credentials grant (RFC 6749 section 4.4): an access token asked of the app's
token URL with the account's own client id and secret, and what the answer means. Nothing
of a refusal's body is kept but a standard error code: the endpoint may echo the secret."""

from __future__ import annotations

from typing import Any

import httpx

from models.accounts.credentials import ClientToken, usable_token
from models.catalog.apps import App
from models.net.overrides import apply_override
from models.oauth.token_exchange import (
    ClientRefused,
    RefreshUnavailable,
    basic_client,
    expires_at_of,
    post_form,
    token_error,
)

# What says the client itself is refused (RFC 6749 section 5.2): it must be connected again
# with a client that works. Other 400s (`invalid_scope`, say) come from the catalog or the
# vendor, and are not the account's fault.
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})


def token_request(app: App, client: ClientToken) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """The form to POST and the client authentication, as the app's `token_auth` says:
    HTTP Basic, or `client_id` and `client_secret` in the form."""
    assert app.oauth2 is not None
    oauth2 = app.oauth2
    form = {"grant_type": "client_credentials"}
    if oauth2.scopes:
        # "+" separates scopes in a URL's query; in a form body that is a space, encoded.
        separator = " " if oauth2.scope_separator == "+" else oauth2.scope_separator
        form["scope"] = separator.join(oauth2.scopes)
    if oauth2.token_auth == "basic":  # noqa: S105 - a style, not a secret
        return form, basic_client(client.client_id, client.client_secret)
    return {**form, "client_id": client.client_id, "client_secret": client.client_secret}, None


def _code(body: dict[str, Any]) -> str:
    code = token_error(body)
    return f" ({code})" if code else ""


def fetch_client_token(
    http: httpx.Client,
    app: App,
    client: ClientToken,
    config: dict[str, Any] | None,
    overrides: dict[str, str],
    *,
    now_s: float,
) -> ClientToken:
    """`client` with a new access token from the app's token URL (its template filled in
    from the account's `config`). Raises ClientRefused when the endpoint refuses the client
    (401, or a 400 naming the client), RefreshUnavailable otherwise (unreachable, 5xx, a 400
    about the request or scope, nonsense)."""
    try:
        url, _ = apply_override(app.token_url_for(config), overrides)
    except ValueError as exc:
        raise RefreshUnavailable(f"no token URL for this account: {exc}") from None
    form, auth = token_request(app, client)
    status, body = post_form(http, url, form, auth=auth)
    if status == 401 or (status == 400 and token_error(body) in CLIENT_ERRORS):
        raise ClientRefused(f"the token endpoint answered {status}{_code(body)}")
    access_token = body.get("access_token")
    if status != 200 or not usable_token(access_token):
        raise RefreshUnavailable(
            f"token endpoint answered {status}{_code(body)} without a usable access_token"
        )
    # Built, not validated: the token was checked above, and a validation error would
    # quote the client's values.
    return ClientToken.model_construct(
        **{
            **client.model_dump(),
            "access_token": access_token,
            "expires_at": expires_at_of(body.get("expires_in"), now_s),
            "refreshed_at": now_s,
        }
    )
