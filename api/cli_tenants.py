"""`passthru tenants create|list|rotate-key`, and the check every command that reads the
database makes first: the database exists and its schema is current, else one line naming
the database it opened (password masked) and what to run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from api.cli_help import DATABASE_ENV, subcommand
from models.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine


def migrated_engine() -> Engine:
    """The engine of DATABASE_URL, once its database is known to exist at the current schema.
    A missing SQLite file is reported, not created (a command run from another folder
    would otherwise leave a stray empty database there)."""
    from sqlalchemy.engine import make_url

    from models.db.engine import get_engine, normalize_database_url, shown
    from models.db.migrate import pending
    from models.settings import get_settings

    url = get_settings().database_url
    parsed = make_url(normalize_database_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        from pathlib import Path

        path = Path(parsed.database or "").resolve()
        if not path.exists():
            raise ConfigError(
                f"no database at {path} (DATABASE_URL={shown(url)}): run `passthru migrate` "
                "in the folder you ran `make run` in, or set DATABASE_URL to the database"
            )
    engine = get_engine()
    if pending(engine):
        raise ConfigError(
            f"the schema of the database {shown(url)} (DATABASE_URL) is not up to date: "
            "run `passthru migrate` first"
        )
    return engine


def cmd_tenants_create(args: argparse.Namespace) -> int:
    from models.accounts.tenants import create_tenant

    tenant, key = create_tenant(migrated_engine(), args.name, unique=True)
    print(json.dumps({"id": tenant.id, "name": tenant.name, "api_key": key}))
    return 0


def cmd_tenants_list(args: argparse.Namespace) -> int:
    from models.accounts.tenants import list_tenants

    tenants = list_tenants(migrated_engine())
    if args.json:
        for t in tenants:
            last = t.last_call_at.isoformat() if t.last_call_at else None
            created = t.created_at.isoformat()
            print(
                json.dumps(
                    {"id": t.id, "name": t.name, "created_at": created, "last_call_at": last}
                )
            )
        return 0
    rows: list[tuple[str, ...]] = [("ID", "NAME", "CREATED", "LAST CALL")]
    for t in tenants:
        last = _minute(t.last_call_at) if t.last_call_at else "never"
        rows.append((t.id, t.name, _minute(t.created_at), last))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, [*widths, 0], strict=True)).rstrip())
    if not tenants:
        print("no tenants: `passthru tenants create NAME` makes one", file=sys.stderr)
    return 0


def _minute(at: Any) -> str:
    return str(at.strftime("%Y-%m-%d %H:%M UTC"))


def cmd_tenants_rotate_key(args: argparse.Namespace) -> int:
    from models.accounts.tenants import rotate_api_key

    try:
        key = rotate_api_key(migrated_engine(), args.tenant_id)
    except LookupError as exc:
        raise ConfigError(f"{exc}: `passthru tenants list` shows the ids") from exc
    print(json.dumps({"id": args.tenant_id, "api_key": key}))
    print("the old key stops working within 10 seconds", file=sys.stderr)
    return 0


def add_tenant_commands(sub: Any) -> None:
    """`passthru tenants ...` on the root parser's subcommands."""
    tenants = subcommand(
        sub,
        "tenants",
        "create, list tenants, or give one a new API key",
        "Tenants: the backends that call passthru, each with its own API key.",
        DATABASE_ENV,
    ).add_subparsers(dest="action", required=True)
    create = subcommand(
        tenants,
        "create",
        "create a tenant and print its API key",
        "Create a tenant and print {id, name, api_key} as JSON. The key is shown this once "
        "(only its hash is stored). Names are 1 to 200 printable characters, and unique.",
        DATABASE_ENV,
    )
    create.add_argument("name")
    create.set_defaults(func=cmd_tenants_create)
    listing = subcommand(
        tenants,
        "list",
        "list tenants: id, name, created, last call (never keys)",
        "List every tenant, oldest first: id, name, when it was created and when it last "
        "submitted a call (of the calls still kept). API keys are never shown.",
        DATABASE_ENV,
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=cmd_tenants_list)
    rotate_key = subcommand(
        tenants,
        "rotate-key",
        "give a tenant a new API key (printed once); the old one stops",
        "Give a tenant a new API key, printed once as {id, api_key}; the old key stops "
        "working within 10 seconds.",
        DATABASE_ENV,
    )
    rotate_key.add_argument("tenant_id")
    rotate_key.set_defaults(func=cmd_tenants_rotate_key)
