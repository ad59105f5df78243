"""The console's connect links: the accounts page's small form makes one as `POST
/connect-sessions` does (the same checks, the same 400 naming the field), for a new account
or to reconnect one that needs reauth; the link is shown in the answer."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from api.connect.service import Connect
from api.console.forms import field
from api.console.manage import accounts_page
from api.console.visitor import SignedIn
from api.schemas.connect import ConnectSessionIn
from models.errors import invalid


def link_request(form: Mapping[str, str]) -> ConnectSessionIn:
    """The form as the API's body; a value the schema refuses is a 400 naming its field."""
    values = {
        name: value
        for name in ("app", "user_id", "redirect_url", "connected_account_id")
        if (value := field(form, name, 2048)) is not None
    }
    try:
        return ConnectSessionIn.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise invalid(where, str(error["msg"])) from None


def create_link(connect: Connect, who: SignedIn, form: Mapping[str, str]) -> HTMLResponse:
    made = connect.create(who.tenant, link_request(form), None)
    return accounts_page(connect.engine, who, link=made)
