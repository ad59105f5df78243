"""Re-encrypt every stored secret with the first of PASSTHRU_ENCRYPTION_KEYS, bound to its row.

Two columns hold ciphertexts: `connected_account.credentials_enc` (bound to the account id)
and `webhook_endpoint.secrets_enc` (bound to the endpoint's tenant_id). A pass re-encrypts
each row that is not yet current (under the first key and bound), replacing it only if it
did not change since it was read: a token a worker refreshed meanwhile is left to the
verification. The verification then reads every row again with the first key alone; a
process still running the old key list may have written under an old key meanwhile, so the
rows it finds are passed again, up to MAX_PASSES passes. What is still not current after
that is reported, never called done. Calls keep working throughout: every listed key still
decrypts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Column, Engine, Select, Table, func, select, update

from models.crypto.secrets import Vault
from models.db.tables import ConnectedAccount, WebhookEndpoint
from models.errors import CredentialsError, SecretOfAnotherRow

BATCH = 500  # rows per transaction
MAX_PASSES = 5  # passes over the rows the verification finds not current
SHOWN_IDS = 20  # ids of rows left as they are, kept for the report


@dataclass(frozen=True)
class Encrypted:
    """A column of ciphertexts, each bound to the row's key."""

    name: str
    table: Table
    key: Column[str]
    value: Column[str]


_accounts: Table = ConnectedAccount.__table__  # type: ignore[attr-defined]
_endpoints: Table = WebhookEndpoint.__table__  # type: ignore[attr-defined]
ENCRYPTED = (
    Encrypted("accounts", _accounts, _accounts.c.id, _accounts.c.credentials_enc),
    Encrypted("webhook_secrets", _endpoints, _endpoints.c.tenant_id, _endpoints.c.secrets_enc),
)


@dataclass
class TableReport:
    """What a rotation did to one column. The first four add up over the passes; the rest is
    what the last verification found."""

    rotated: int = 0  # re-encrypted with the first key
    bound: int = 0  # of those, written before binding: now bound to their row
    changed_meanwhile: int = 0  # rewritten by another process between read and update
    caught_by_verification: int = 0  # found under an old key by a verification: passed again
    total: int = 0
    undecryptable: int = 0  # no listed key opens them (or they hold no object): left alone
    of_another_row: int = 0  # bound to another row (copied onto this one): left alone
    not_current: int = 0  # a listed key opens them, but not the first alone, or unbound
    left_ids: list[str] = field(default_factory=list)  # some ids of the rows of the last three

    @property
    def left(self) -> int:
        return self.undecryptable + self.of_another_row + self.not_current

    def summary(self) -> dict[str, int]:
        return {
            "total": self.total,
            "rotated": self.rotated,
            "bound": self.bound,
            "changed_meanwhile": self.changed_meanwhile,
            "caught_by_verification": self.caught_by_verification,
            "undecryptable": self.undecryptable,
            "of_another_row": self.of_another_row,
            "not_current": self.not_current,
        }


@dataclass
class RotationReport:
    tables: dict[str, TableReport]
    passes: int = 0

    @property
    def done(self) -> bool:
        """Every row opens with the first key alone and is bound to its row."""
        return all(t.left == 0 for t in self.tables.values())


def rotate_keys(
    engine: Engine,
    vault: Vault,
    progress: Callable[[str, int, int], None] = lambda _name, _seen, _total: None,
    between_passes: Callable[[int], None] = lambda _passes: None,
    max_passes: int = MAX_PASSES,
) -> RotationReport:
    """Rotate every encrypted column; `progress(name, rows seen, rows in the pass)` after each
    batch, `between_passes(passes done)` after each pass, before its verification."""
    report = RotationReport({e.name: TableReport() for e in ENCRYPTED})
    todo: dict[str, list[str] | None] = {e.name: None for e in ENCRYPTED}  # None: every row
    while True:
        for e in ENCRYPTED:
            ids = todo[e.name]
            if ids is None or ids:
                _rotate(engine, vault, e, ids, report.tables[e.name], progress)
        report.passes += 1
        between_passes(report.passes)
        todo = {e.name: _verify(engine, vault, e, report.tables[e.name]) for e in ENCRYPTED}
        if not any(todo.values()) or report.passes >= max_passes:
            return report
        for e in ENCRYPTED:
            report.tables[e.name].caught_by_verification += len(todo[e.name] or ())


def _rows(
    engine: Engine, e: Encrypted, ids: Sequence[str] | None
) -> Iterator[list[tuple[str, str]]]:
    """(key, ciphertext) of every row, or of the rows of `ids`, a batch at a time."""
    if ids is not None:
        for start in range(0, len(ids), BATCH):
            yield _read(engine, select(e.key, e.value).where(e.key.in_(ids[start : start + BATCH])))
        return
    after = ""
    query = select(e.key, e.value).order_by(e.key).limit(BATCH)
    while rows := _read(engine, query.where(e.key > after)):
        yield rows
        after = rows[-1][0]


def _read(engine: Engine, query: Select[str, str]) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(key, token) for key, token in conn.execute(query)]


def _rotate(
    engine: Engine,
    vault: Vault,
    e: Encrypted,
    ids: Sequence[str] | None,
    report: TableReport,
    progress: Callable[[str, int, int], None],
) -> None:
    if ids is None:
        with engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(e.table)).scalar_one()
    else:
        total = len(ids)
    seen = 0
    for rows in _rows(engine, e, ids):
        with engine.begin() as conn:
            for key, token in rows:
                if vault.is_current(token, bound_to=key):
                    continue
                try:
                    rotated, opened = vault.rotate(token, bound_to=key)
                except CredentialsError:
                    continue  # the verification counts it
                done = conn.execute(
                    update(e.table).where(e.key == key, e.value == token).values({e.value: rotated})
                ).rowcount
                if not done:
                    report.changed_meanwhile += 1
                    continue
                report.rotated += 1
                report.bound += not opened.bound
        seen += len(rows)
        progress(e.name, seen, total)


def _verify(engine: Engine, vault: Vault, e: Encrypted, report: TableReport) -> list[str]:
    """Count every row that is not current; return the ids another pass may fix."""
    report.total = report.undecryptable = report.of_another_row = report.not_current = 0
    report.left_ids = []
    again: list[str] = []
    for rows in _rows(engine, e, None):
        report.total += len(rows)
        for key, token in rows:
            if vault.is_current(token, bound_to=key):
                continue
            try:
                vault.decrypt(token, bound_to=key)
            except SecretOfAnotherRow:
                report.of_another_row += 1
            except CredentialsError:
                report.undecryptable += 1
            else:
                report.not_current += 1
                again.append(key)
            if len(report.left_ids) < SHOWN_IDS:
                report.left_ids.append(key)
    return again
