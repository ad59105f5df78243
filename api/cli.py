"""The `passthru` command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError
from pydantic_settings import SettingsError

from models.errors import ConfigError
from models.settings import Settings

if TYPE_CHECKING:
    from models.crypto.rotation import RotationReport


def _settings_problem(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def cmd_dev(args: argparse.Namespace) -> int:
    from api.dev.run import run_dev
    from models.settings import get_settings

    if args.port:
        return run_dev(args.port, args.redis, port_variable="--port")
    return run_dev(get_settings().port, args.redis)


def cmd_migrate(_: argparse.Namespace) -> int:
    from models.db.engine import get_engine
    from models.db.migrate import upgrade

    engine = get_engine()
    upgrade(engine)
    print(f"schema up to date ({engine.url.render_as_string(hide_password=True)})")
    return 0


def cmd_tenants_create(args: argparse.Namespace) -> int:
    from models.accounts.tenants import create_tenant
    from models.db.engine import get_engine
    from models.db.migrate import pending

    engine = get_engine()
    if pending(engine):
        raise ConfigError("the database schema is not up to date: run `passthru migrate` first")
    tenant, key = create_tenant(engine, args.name)
    print(json.dumps({"id": tenant.id, "name": tenant.name, "api_key": key}))
    return 0


def cmd_tenants_rotate_key(args: argparse.Namespace) -> int:
    from models.accounts.tenants import rotate_api_key
    from models.db.engine import get_engine

    try:
        key = rotate_api_key(get_engine(), args.tenant_id)
    except LookupError as exc:
        raise ConfigError(f"{exc}: `passthru tenants create NAME` printed the id") from exc
    print(json.dumps({"id": args.tenant_id, "api_key": key}))
    print("the old key stops working within 10 seconds", file=sys.stderr)
    return 0


def cmd_keys_generate(_: argparse.Namespace) -> int:
    from models.crypto.secrets import generate_encryption_key

    print(generate_encryption_key())
    return 0


_ROWS = {"accounts": "connected accounts", "webhook_secrets": "webhook endpoints' secrets"}


def cmd_rotate_keys(_: argparse.Namespace) -> int:
    """Re-encrypt every stored secret with the first key; exit 0 only when the first key
    alone reads every row, bound to its row."""
    from models.crypto.rotation import rotate_keys
    from models.crypto.secrets import vault_for
    from models.db.engine import get_engine
    from models.settings import get_settings

    keys = get_settings().encryption_key_list
    if not keys:
        raise ConfigError(
            "PASSTHRU_ENCRYPTION_KEYS is empty: put the new key first and the old ones after it "
            "(make one with `passthru keys generate`)"
        )

    def show(name: str, seen: int, total: int) -> None:
        print(f"  {seen}/{total} {_ROWS[name]}", file=sys.stderr)

    report = rotate_keys(get_engine(), vault_for(tuple(keys)), show)
    print(
        json.dumps(
            {
                **{name: t.summary() for name, t in report.tables.items()},
                "passes": report.passes,
                "done": report.done,
            }
        )
    )
    if report.done:
        print(
            "every stored secret is now encrypted with the first key alone and bound to its "
            "row; once every process runs with the new list, the old keys may be removed from "
            "PASSTHRU_ENCRYPTION_KEYS",
            file=sys.stderr,
        )
        return 0
    _say_what_is_left(report)
    return 1


def _say_what_is_left(report: RotationReport) -> None:
    """Per table, the rows the rotation could not finish, why, and what to do."""
    for name, t in report.tables.items():
        some = ", ".join(t.left_ids)
        if t.undecryptable:
            print(
                f"{t.undecryptable} {_ROWS[name]} cannot be decrypted with any key in "
                "PASSTHRU_ENCRYPTION_KEYS: add the key they were written with and run this again",
                file=sys.stderr,
            )
        if t.of_another_row:
            print(
                f"{t.of_another_row} {_ROWS[name]} hold a secret encrypted for another row (it "
                "was copied onto them) and are refused on use: new credentials (PATCH "
                "/connected-accounts/{id}) or a new signing secret (POST "
                "/webhook-endpoint/rotate-secret) replace it",
                file=sys.stderr,
            )
        if t.not_current:
            print(
                f"{t.not_current} {_ROWS[name]} are still under an old key after "
                f"{report.passes} passes: some process still writes with an old "
                "PASSTHRU_ENCRYPTION_KEYS. Restart every web and worker process with the new "
                "key first, then run this again",
                file=sys.stderr,
            )
        if some:
            print(f"  among them: {some}", file=sys.stderr)
    print(
        "NOT done: keep the old keys in PASSTHRU_ENCRYPTION_KEYS until this command exits 0",
        file=sys.stderr,
    )


def cmd_apps_docs(_: argparse.Namespace) -> int:
    from models.catalog.apps import load_catalog
    from models.catalog.docs import render

    sys.stdout.write(render(load_catalog()))
    return 0


def cmd_worker_alive(args: argparse.Namespace) -> int:
    """Exit 0 if this container's worker touched its heartbeat file recently."""
    import time

    from models.settings import get_settings

    path = get_settings().heartbeat_file
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"passthru: no heartbeat at {path}: the worker has not started", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(
            f"passthru: last heartbeat {age:.0f} s ago (limit {args.max_age:g} s)", file=sys.stderr
        )
        return 1
    return 0


def cmd_flower(_: argparse.Namespace) -> int:
    """Flower behind basic auth: refused without FLOWER_BASIC_AUTH (`passthru dev` starts
    its own Flower, with a password it keeps in `.passthru/`)."""
    import os

    from api.dev.processes import flower_argv, flower_env
    from models.settings import get_settings

    settings = get_settings()
    if not settings.flower_basic_auth:
        raise ConfigError(
            "set FLOWER_BASIC_AUTH=user:password (Flower shows every worker and queue and can "
            "stop workers: it is never served without a password)"
        )
    argv = flower_argv(settings.flower_port, "0.0.0.0")  # noqa: S104
    # The password goes in the environment (it may have come from .env), never in argv.
    env = flower_env(os.environ, settings.flower_basic_auth)
    os.execve(argv[0], argv, env)  # noqa: S606 - this process becomes Flower
    return 0  # not reached


def _add_apps(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apps = sub.add_parser("apps", help="the app catalog").add_subparsers(
        dest="action", required=True
    )
    apps.add_parser(
        "docs", help="print docs/apps.md: the built-in catalog, per category and app"
    ).set_defaults(func=cmd_apps_docs)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="passthru", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run API, worker, beat and Flower with embedded defaults")
    dev.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"API port (default: PORT or {Settings.model_fields['port'].default})",
    )
    dev.add_argument(
        "--redis",
        choices=["auto", "redis-server", "fakeredis"],
        default="auto",
        help="the embedded Redis when REDIS_URL is unset: redis-server from PATH, fakeredis "
        "(in-process, for trying passthru, not for load), or auto: redis-server if on PATH, "
        "else fakeredis (default: auto)",
    )
    dev.set_defaults(func=cmd_dev)

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(
        func=cmd_migrate
    )

    tenants = sub.add_parser("tenants", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenants.add_parser("create", help="create a tenant and print its API key")
    create.add_argument("name")
    create.set_defaults(func=cmd_tenants_create)
    rotate_key = tenants.add_parser(
        "rotate-key", help="give a tenant a new API key (printed once); the old one stops"
    )
    rotate_key.add_argument("tenant_id")
    rotate_key.set_defaults(func=cmd_tenants_rotate_key)

    keys = sub.add_parser("keys", help="encryption keys").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser("generate", help="print a new Fernet key").set_defaults(func=cmd_keys_generate)
    _add_apps(sub)
    alive = sub.add_parser(
        "worker-alive", help="exit 0 if the worker in this container is alive (a liveness probe)"
    )
    alive.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    alive.set_defaults(func=cmd_worker_alive)
    sub.add_parser(
        "flower", help="run Flower (queues, workers, tasks) behind FLOWER_BASIC_AUTH"
    ).set_defaults(func=cmd_flower)
    sub.add_parser(
        "rotate-keys",
        help="re-encrypt every stored secret (credentials, webhook signing secrets) with the "
        "first of PASSTHRU_ENCRYPTION_KEYS, then check that the first key alone reads them",
    ).set_defaults(func=cmd_rotate_keys)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"passthru: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"passthru: invalid setting: {_settings_problem(exc)}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"passthru: invalid setting: {exc} (JSON settings need valid JSON)", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
