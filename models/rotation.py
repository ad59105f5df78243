"""Re-encrypt every stored credential with the first of PASSTHRU_ENCRYPTION_KEYS.

Calls keep working throughout: every key in the list still decrypts, and each row is
replaced only if it did not change meanwhile (a token refreshed by a worker during the
rotation is already under the new key)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import InvalidToken
from sqlalchemy import Engine, func, select, update

from models.secrets import Vault
from models.tables import ConnectedAccount

_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]
BATCH = 500


@dataclass
class RotationReport:
    total: int = 0
    rotated: int = 0
    changed_meanwhile: int = 0
    undecryptable: int = 0  # no key in the list opens them: left as they are


def rotate_credentials(
    engine: Engine, vault: Vault, progress: Callable[[RotationReport], None] = lambda _: None
) -> RotationReport:
    report = RotationReport()
    with engine.connect() as conn:
        report.total = conn.execute(select(func.count()).select_from(_accounts)).scalar_one()
    after = ""
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(_accounts.c.id, _accounts.c.credentials_enc)
                .where(_accounts.c.id > after)
                .order_by(_accounts.c.id)
                .limit(BATCH)
            ).all()
        if not rows:
            return report
        with engine.begin() as conn:
            for account_id, token in rows:
                try:
                    rotated = vault.rotate(token)
                except InvalidToken:
                    report.undecryptable += 1
                    continue
                done = conn.execute(
                    update(_accounts)
                    .where(_accounts.c.id == account_id, _accounts.c.credentials_enc == token)
                    .values(credentials_enc=rotated)
                ).rowcount
                if done:
                    report.rotated += 1
                else:
                    report.changed_meanwhile += 1
        after = rows[-1][0]
        progress(report)
