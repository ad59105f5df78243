"""`/connected-accounts`: store, list, update and remove end users' credentials."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.account_pages import PAGE_SIZE, AccountFilter, list_accounts
from api.account_store import create_account, delete_account, update_account
from api.deps import (
    AccountCapDep,
    AccountsCursor,
    AccountsLimit,
    CatalogDep,
    CurrentTenant,
    EngineDep,
    UserIdHeader,
    VaultDep,
)
from api.parsing import JSONRoute
from api.schemas.accounts import AccountIn, AccountList, AccountOut, AccountPatch
from api.schemas.common import ErrorOut

router = APIRouter(prefix="/connected-accounts", tags=["connected accounts"], route_class=JSONRoute)
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
}
_FULL: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorOut, "description": "the tenant holds its most accounts"}
}


@router.post(
    "",
    status_code=201,
    responses={
        **_ERRORS,
        **_FULL,
        200: {
            "model": AccountOut,
            "description": "the same credentials (and connection_config) were already "
            "connected for this user and app: that account, unchanged",
        },
    },
    summary="Connect an end user's account",
)
def create(
    body: AccountIn,
    response: Response,
    tenant: CurrentTenant,
    engine: EngineDep,
    catalog: CatalogDep,
    vault: VaultDep,
    cap: AccountCapDep,
    user_id: UserIdHeader = None,
) -> AccountOut:
    account, created, _ = create_account(
        engine,
        tenant,
        catalog,
        vault,
        app_slug=body.app,
        user_id=user_id,
        credentials=body.credentials,
        config=body.connection_config,
        cap=cap,
    )
    if not created:
        response.status_code = 200
    return AccountOut.of(account)


@router.get(
    "",
    responses=_ERRORS,
    summary="List connected accounts, newest first, a page at a time",
    description="`limit` accounts (100 unless given, at most 500) and `next_cursor`: send it "
    "back as `cursor`, with the same filters, for the next page; null on the last one.",
)
def list_(
    tenant: CurrentTenant,
    engine: EngineDep,
    app: str | None = None,
    user_id: str | None = None,
    status: str | None = None,
    cursor: AccountsCursor = None,
    limit: AccountsLimit = PAGE_SIZE,
) -> AccountList:
    filters = AccountFilter(app, user_id, status)
    accounts, next_cursor = list_accounts(engine, tenant, filters, cursor, limit)
    return AccountList(items=[AccountOut.of(a) for a in accounts], next_cursor=next_cursor)


@router.patch(
    "/{account_id}",
    # 409 `account_changed`: its status changed (a revocation) since the request read it
    responses={**_ERRORS, 409: {"model": ErrorOut}},
    summary="New credentials, config, or enable/disable",
)
def patch(
    account_id: str,
    body: AccountPatch,
    tenant: CurrentTenant,
    engine: EngineDep,
    catalog: CatalogDep,
    vault: VaultDep,
) -> AccountOut:
    account = update_account(
        engine,
        tenant,
        catalog,
        vault,
        account_id,
        credentials=body.credentials,
        config=body.connection_config,
        status=body.status,
    )
    return AccountOut.of(account)


@router.delete("/{account_id}", status_code=204, responses=_ERRORS, summary="Remove an account")
def delete(
    account_id: str, tenant: CurrentTenant, engine: EngineDep, cap: AccountCapDep
) -> Response:
    delete_account(engine, tenant, account_id)
    cap.removed(tenant.id)
    return Response(status_code=204)
