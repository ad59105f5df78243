"""`passthru rotate-keys`: every stored secret (accounts' credentials, webhook endpoints'
signing secrets) re-encrypted with the first key and bound to its row, then verified with the
first key alone; never "done" while a row is not."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, select, update
from sqlmodel import Session

import models.crypto.rotation
import models.db.engine
import models.settings
from api.cli import main
from models.accounts.tenants import create_tenant, rotate_api_key
from models.crypto.rotation import rotate_keys
from models.crypto.secrets import Vault, api_key_matches, generate_encryption_key
from models.db.tables import ConnectedAccount, Tenant, WebhookEndpoint
from models.webhooks.signing import new_secret, signing_secrets, store_secrets
from tests.worker.factories import insert, make_account

ROOT = Path(__file__).resolve().parents[2]
_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]
_endpoints = WebhookEndpoint.__table__  # type: ignore[attr-defined]


def _credentials(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(_accounts.c.id, _accounts.c.credentials_enc)).all())


def _webhook_secrets(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(_endpoints.c.tenant_id, _endpoints.c.secrets_enc)).all())


def _set_credentials(engine: Engine, account_id: str, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(_accounts).where(_accounts.c.id == account_id).values(credentials_enc=token)
        )


def _unbound(key: str, value: dict[str, Any]) -> str:
    """A ciphertext as passthru wrote them before binding: the bare value."""
    return Fernet(key.encode()).encrypt(orjson.dumps(value)).decode()


def _endpoint(engine: Engine, tenant: Tenant, secrets_enc: str) -> None:
    insert(engine, WebhookEndpoint(tenant_id=tenant.id, url=None, secrets_enc=secrets_enc))


def _all_current(engine: Engine, vault: Vault) -> bool:
    return all(vault.is_current(t, bound_to=k) for k, t in _credentials(engine).items()) and all(
        vault.is_current(t, bound_to=k) for k, t in _webhook_secrets(engine).items()
    )


def test_rotation_moves_every_secret_to_the_first_key_and_binds_it(own_engine: Engine) -> None:
    # Given accounts and webhook endpoints under the old key, some written before binding
    old, new = generate_encryption_key(), generate_encryption_key()
    a, _ = create_tenant(own_engine, "a")
    b, _ = create_tenant(own_engine, "b")
    bound = [
        make_account(own_engine, a, Vault([old]), credentials={"access_token": f"t{n}"})
        for n in range(2)
    ]
    legacy = make_account(own_engine, b, Vault([old]))
    _set_credentials(own_engine, legacy.id, _unbound(old, {"api_key": "legacy"}))
    secret_a, secret_b = new_secret(), new_secret()
    _endpoint(own_engine, a, store_secrets(Vault([old]), secret_a, tenant_id=a.id))
    _endpoint(own_engine, b, _unbound(old, {"current": secret_b, "shown": True}))

    # When rotated with the new key first
    report = rotate_keys(own_engine, Vault([new, old]))

    # Then every row reads with the new key alone, bound to its row, its value unchanged
    assert report.done
    assert report.passes == 1
    assert report.tables["accounts"].summary() == {
        "total": 3,
        "rotated": 3,
        "bound": 1,
        "changed_meanwhile": 0,
        "caught_by_verification": 0,
        "undecryptable": 0,
        "of_another_row": 0,
        "not_current": 0,
    }
    hooks = report.tables["webhook_secrets"]
    assert (hooks.total, hooks.rotated, hooks.bound, hooks.left) == (2, 2, 1, 0)
    only_new = Vault([new])
    assert _all_current(own_engine, only_new)
    tokens = _credentials(own_engine)
    assert [only_new.decrypt(tokens[x.id], bound_to=x.id) for x in bound] == [
        {"access_token": "t0"},
        {"access_token": "t1"},
    ]
    assert only_new.decrypt(tokens[legacy.id], bound_to=legacy.id) == {"api_key": "legacy"}
    hook_tokens = _webhook_secrets(own_engine)
    assert signing_secrets(only_new, hook_tokens[a.id], 0.0, tenant_id=a.id) == [secret_a]
    assert signing_secrets(only_new, hook_tokens[b.id], 0.0, tenant_id=b.id) == [secret_b]

    # And a second run finds nothing to do
    again = rotate_keys(own_engine, Vault([new, old]))
    assert again.done
    assert sum(t.rotated for t in again.tables.values()) == 0
    assert _credentials(own_engine) == tokens


def _rewrite_after_passes(
    engine: Engine, account_id: str, token: Callable[[], str], passes: set[int]
) -> Callable[[int], None]:
    """A hook that writes `token()` onto the account after each pass in `passes`, as a
    process refreshing its token meanwhile would."""

    def hook(done: int) -> None:
        if done in passes:
            _set_credentials(engine, account_id, token())

    return hook


@pytest.mark.parametrize("writer", ["old key list", "previous version"])
def test_a_row_rewritten_during_rotation_is_caught_and_rotated_again(
    own_engine: Engine, writer: str
) -> None:
    # Given an account under the old key
    old, new = generate_encryption_key(), generate_encryption_key()
    tenant, _ = create_tenant(own_engine, "refreshing")
    account = make_account(own_engine, tenant, Vault([old]))
    refreshed = {"access_token": "refreshed"}
    # and, right after the first pass, a process writes a refreshed token the way it still
    # does: under the old key, or (a process of the version before binding) unbound
    if writer == "old key list":
        token = functools.partial(Vault([old]).encrypt, refreshed, bound_to=account.id)
    else:
        token = functools.partial(_unbound, new, refreshed)
    hook = _rewrite_after_passes(own_engine, account.id, token, {1})

    # When the keys are rotated
    report = rotate_keys(own_engine, Vault([new, old]), between_passes=hook)

    # Then the verification caught the row, a second pass rotated it, and it is done
    assert report.done
    assert report.passes == 2
    assert report.tables["accounts"].caught_by_verification == 1
    assert report.tables["accounts"].rotated == 2
    only_new = Vault([new])
    stored = _credentials(own_engine)[account.id]
    assert only_new.is_current(stored, bound_to=account.id)
    assert only_new.decrypt(stored, bound_to=account.id) == refreshed


def test_a_row_still_under_an_old_key_after_every_pass_is_not_done(own_engine: Engine) -> None:
    # Given an account a process keeps rewriting under the old key after every pass
    old, new = generate_encryption_key(), generate_encryption_key()
    tenant, _ = create_tenant(own_engine, "stubborn")
    account = make_account(own_engine, tenant, Vault([old]))
    token = functools.partial(Vault([old]).encrypt, {"access_token": "x"}, bound_to=account.id)
    hook = _rewrite_after_passes(own_engine, account.id, token, {1, 2, 3})

    # When the keys are rotated, three passes at most
    report = rotate_keys(own_engine, Vault([new, old]), between_passes=hook, max_passes=3)

    # Then it gave up after three passes and says which row is not current
    assert not report.done
    assert report.passes == 3
    accounts = report.tables["accounts"]
    assert (accounts.not_current, accounts.left_ids) == (1, [account.id])
    assert not Vault([new]).is_current(_credentials(own_engine)[account.id], bound_to=account.id)


def test_unreadable_and_copied_rows_are_counted_and_left_alone(own_engine: Engine) -> None:
    # Given, beside good rows: an account under a key nobody lists, an account holding
    # another account's credentials, and an endpoint holding another tenant's secrets
    old, new = generate_encryption_key(), generate_encryption_key()
    a, _ = create_tenant(own_engine, "a")
    b, _ = create_tenant(own_engine, "b")
    good = make_account(own_engine, a, Vault([old]))
    stranger = make_account(own_engine, a, Vault([generate_encryption_key()]))
    copied = make_account(own_engine, b, Vault([old]), encrypted=good.credentials_enc)
    a_secrets = store_secrets(Vault([old]), new_secret(), tenant_id=a.id)
    _endpoint(own_engine, a, a_secrets)
    _endpoint(own_engine, b, a_secrets)
    before = _credentials(own_engine)

    # When the keys are rotated
    report = rotate_keys(own_engine, Vault([new, old]))

    # Then the good rows are rotated, the others are left as they were and counted
    accounts, hooks = report.tables["accounts"], report.tables["webhook_secrets"]
    assert (accounts.rotated, accounts.undecryptable, accounts.of_another_row) == (1, 1, 1)
    assert sorted(accounts.left_ids) == sorted([stranger.id, copied.id])
    assert (hooks.rotated, hooks.of_another_row, hooks.left_ids) == (1, 1, [b.id])
    after = _credentials(own_engine)
    assert after[stranger.id] == before[stranger.id]
    assert after[copied.id] == before[copied.id]
    assert _webhook_secrets(own_engine)[b.id] == a_secrets
    # and it is not done, with no pass wasted on rows another pass cannot fix
    assert not report.done
    assert report.passes == 1


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_the_command_prints_what_it_did(own_engine: Engine, tmp_path: Path) -> None:
    # Given an account and a webhook endpoint under the old key, and the keys listed new first
    old, new = generate_encryption_key(), generate_encryption_key()
    tenant, _ = create_tenant(own_engine, "rotation")
    account = make_account(own_engine, tenant, Vault([old]), credentials={"api_key": "k"})
    secret = new_secret()
    _endpoint(own_engine, tenant, store_secrets(Vault([old]), secret, tenant_id=tenant.id))
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": _url(own_engine),
        "PASSTHRU_ENCRYPTION_KEYS": f"{new},{old}",
    }
    # When `passthru rotate-keys` runs (from a folder without a .env)
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "rotate-keys"],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then it succeeds, prints the counts of both as JSON and progress on stderr
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["done"] is True
    assert summary["accounts"]["rotated"] == 1
    assert summary["webhook_secrets"]["rotated"] == 1
    assert "1/1 connected accounts" in done.stderr
    assert "1/1 webhook endpoints' secrets" in done.stderr
    # and both read with the new key alone
    only_new = Vault([new])
    stored = _credentials(own_engine)[account.id]
    assert only_new.decrypt(stored, bound_to=account.id) == {"api_key": "k"}
    hook_token = _webhook_secrets(own_engine)[tenant.id]
    assert signing_secrets(only_new, hook_token, 0.0, tenant_id=tenant.id) == [secret]


@pytest.fixture
def cli_env(own_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`main()` in this process, on the test's own database (no .env read)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", _url(own_engine))
    models.settings.get_settings.cache_clear()
    models.db.engine.get_engine.cache_clear()
    yield
    models.db.engine.get_engine().dispose()
    models.settings.get_settings.cache_clear()
    models.db.engine.get_engine.cache_clear()


@pytest.mark.usefixtures("cli_env")
def test_the_command_is_not_done_while_a_row_is_under_an_old_key(
    own_engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an account that a process still running the old key list rewrites after every pass
    old, new = generate_encryption_key(), generate_encryption_key()
    monkeypatch.setenv("PASSTHRU_ENCRYPTION_KEYS", f"{new},{old}")
    tenant, _ = create_tenant(own_engine, "lagging")
    account = make_account(own_engine, tenant, Vault([old]))
    token = functools.partial(Vault([old]).encrypt, {"access_token": "x"}, bound_to=account.id)
    hook = _rewrite_after_passes(own_engine, account.id, token, set(range(1, 100)))
    monkeypatch.setattr(
        models.crypto.rotation, "rotate_keys", functools.partial(rotate_keys, between_passes=hook)
    )

    # When `passthru rotate-keys` runs
    code = main(["rotate-keys"])

    # Then it exits 1, its summary says not done, and stderr says what to do
    out, err = capsys.readouterr()
    assert code == 1
    summary = json.loads(out)
    assert summary["done"] is False
    assert summary["accounts"]["not_current"] == 1
    assert summary["passes"] == models.crypto.rotation.MAX_PASSES
    assert "NOT done" in err
    assert "Restart every web and worker process" in err
    assert account.id in err
    assert "may be removed" not in err


@pytest.mark.usefixtures("cli_env")
def test_the_command_says_what_to_do_with_rows_it_cannot_rotate(
    own_engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an account under a key not listed, and one holding another account's credentials
    old, new = generate_encryption_key(), generate_encryption_key()
    monkeypatch.setenv("PASSTHRU_ENCRYPTION_KEYS", f"{new},{old}")
    tenant, _ = create_tenant(own_engine, "odd")
    make_account(own_engine, tenant, Vault([generate_encryption_key()]))
    good = make_account(own_engine, tenant, Vault([old]))
    make_account(own_engine, tenant, Vault([old]), encrypted=good.credentials_enc)

    # When `passthru rotate-keys` runs / Then it exits 1 and says what to do with each
    assert main(["rotate-keys"]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)["accounts"]
    assert (summary["undecryptable"], summary["of_another_row"]) == (1, 1)
    assert "add the key they were written with" in err
    assert "encrypted for another row" in err
    assert "NOT done" in err


def test_a_tenant_gets_a_new_api_key_and_the_old_one_stops(engine: Engine) -> None:
    tenant, old = create_tenant(engine, "rotating")
    new = rotate_api_key(engine, tenant.id)
    with Session(engine) as session:
        stored = session.get(Tenant, tenant.id)
        assert stored is not None
        assert api_key_matches(new, stored.api_key_hash)
        assert not api_key_matches(old, stored.api_key_hash)
        assert stored.api_key_prefix == new[:8]


def test_rotating_the_key_of_no_tenant_says_so(engine: Engine) -> None:
    with pytest.raises(LookupError, match="no tenant"):
        rotate_api_key(engine, "tn_missing")
