"""At `passthru dev`'s start: can the current encryption keys open the credentials stored in
its database? After PASSTHRU_ENCRYPTION_KEYS (or `.passthru/encryption.key`) changed, every
call on an account written under the old key would fail with a bare `credentials_invalid`;
dev says so at once, naming where the keys come from, and gives the demo account (whose
credential it knows) a readable one again."""

from __future__ import annotations

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from api.dev.demo_data import DEMO_USER
from api.dev.demo_upstream import DEMO_API_KEY
from models.crypto.secrets import Vault
from models.db.tables import ConnectedAccount
from models.errors import CredentialsError, SecretOfAnotherRow

SCAN_LIMIT = 10_000  # accounts looked at: a dev database holds a few


def unreadable_accounts(engine: Engine, vault: Vault) -> list[ConnectedAccount]:
    """The connected accounts whose credentials no current key decrypts."""
    with Session(engine) as session:
        accounts = session.exec(select(ConnectedAccount).limit(SCAN_LIMIT)).all()
    unreadable = []
    for account in accounts:
        try:
            vault.decrypt(account.credentials_enc, bound_to=account.id)
        except SecretOfAnotherRow:
            continue  # readable, refused on use for another reason
        except CredentialsError:
            unreadable.append(account)
    return unreadable


def check_stored_credentials(
    engine: Engine, vault: Vault, demo_tenant_id: str, keys_from: str
) -> str | None:
    """Re-encrypt an unreadable demo account with the current key; a warning (one line) if
    other accounts cannot be decrypted, else None."""
    others = []
    for account in unreadable_accounts(engine, vault):
        is_demo = (account.tenant_id, account.app, account.user_id) == (
            demo_tenant_id,
            "demo",
            DEMO_USER,
        )
        if is_demo:
            fresh = vault.encrypt({"api_key": DEMO_API_KEY}, bound_to=account.id)
            with Session(engine) as session:
                session.exec(
                    update(ConnectedAccount)
                    .where(col(ConnectedAccount.id) == account.id)
                    .values(credentials_enc=fresh)
                )
                session.commit()
        else:
            others.append(account.id)
    if not others:
        return None
    shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    return (
        f"warning: {len(others)} stored connected account(s) ({shown}) cannot be decrypted "
        f"with the current encryption keys, from {keys_from}; calls on them will fail with "
        "credentials_invalid. Put the key they were written with back, after the new one "
        "(PASSTHRU_ENCRYPTION_KEYS=new,old), then run `passthru rotate-keys`"
    )
