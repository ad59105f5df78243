"""The `passthru` command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from api.cli_help import (
    ALIVE_ENV,
    DATABASE_ENV,
    DEV_ENV,
    FLOWER_ENV,
    ROOT_EPILOG,
    ROTATE_ENV,
    subcommand,
)
from api.cli_tenants import add_tenant_commands, migrated_engine
from models.errors import ConfigError
from models.settings import Settings
from models.startup import CONFIG_ERRORS, CONFIG_EXIT_CODE, explain, startup_settings

if TYPE_CHECKING:
    from models.crypto.rotation import RotationReport


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
    from models.settings import get_settings

    keys = get_settings().encryption_key_list
    if not keys:
        raise ConfigError(
            "PASSTHRU_ENCRYPTION_KEYS is empty: put the new key first and the old ones after it "
            "(make one with `passthru keys generate`)"
        )

    def show(name: str, seen: int, total: int) -> None:
        print(f"  {seen}/{total} {_ROWS[name]}", file=sys.stderr)

    report = rotate_keys(migrated_engine(), vault_for(tuple(keys)), show)
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


def _add_apps(sub: Any) -> None:
    apps = subcommand(
        sub, "apps", "the app catalog", "The built-in app catalog.", None
    ).add_subparsers(dest="action", required=True)
    subcommand(
        apps,
        "docs",
        "print docs/apps.md: the built-in catalog, per category and app",
        "Print docs/apps.md, written from the built-in catalog: per category and app. Reads "
        "no setting (PASSTHRU_APPS_FILE is not included).",
        None,
    ).set_defaults(func=cmd_apps_docs, reads_settings=False)


def _add_dev(sub: Any) -> None:
    dev = subcommand(
        sub,
        "dev",
        "run API, worker, beat and Flower with embedded defaults",
        "Run the API, a worker, beat, Flower and a demo upstream in this terminal, with an "
        "embedded Redis and a SQLite file; print a demo tenant's API key and a curl line "
        "that works offline. For a laptop, never for production.",
        DEV_ENV,
    )
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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="passthru",
        description=__doc__,
        epilog=ROOT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Every command but `keys generate` (which makes the key a bad setting may lack) checks
    # the settings first.
    root.set_defaults(reads_settings=True)
    sub = root.add_subparsers(dest="command", required=True)
    _add_dev(sub)
    subcommand(
        sub,
        "migrate",
        "create or upgrade the database schema",
        "Create the database schema, or upgrade it to this version's; safe to run again.",
        DATABASE_ENV,
    ).set_defaults(func=cmd_migrate)
    add_tenant_commands(sub)
    keys = subcommand(
        sub, "keys", "encryption keys", "Encryption keys for PASSTHRU_ENCRYPTION_KEYS.", None
    ).add_subparsers(dest="action", required=True)
    subcommand(
        keys,
        "generate",
        "print a new Fernet key",
        "Print a new Fernet key for PASSTHRU_ENCRYPTION_KEYS. Reads no setting.",
        None,
    ).set_defaults(func=cmd_keys_generate, reads_settings=False)
    _add_apps(sub)
    alive = subcommand(
        sub,
        "worker-alive",
        "exit 0 if the worker in this container is alive (a liveness probe)",
        "Exit 0 if this container's worker touched its heartbeat file recently, else 1.",
        ALIVE_ENV,
    )
    alive.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    alive.set_defaults(func=cmd_worker_alive)
    subcommand(
        sub,
        "flower",
        "run Flower (queues, workers, tasks) behind FLOWER_BASIC_AUTH",
        "Run Flower, the Celery dashboard, behind basic auth; refused without it.",
        FLOWER_ENV,
    ).set_defaults(func=cmd_flower)
    subcommand(
        sub,
        "rotate-keys",
        "re-encrypt every stored secret (credentials, webhook signing secrets) with the "
        "first of PASSTHRU_ENCRYPTION_KEYS, then check that the first key alone reads them",
        "Re-encrypt every stored secret with the first of PASSTHRU_ENCRYPTION_KEYS, then "
        "check that it alone reads every row; exit 0 only then (runbook: docs/operations.md).",
        ROTATE_ENV,
    ).set_defaults(func=cmd_rotate_keys)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.reads_settings:
            startup_settings()
        code: int = args.func(args)
    except CONFIG_ERRORS as exc:
        print(f"passthru: {explain(exc)}", file=sys.stderr)
        return CONFIG_EXIT_CODE
    return code


if __name__ == "__main__":
    sys.exit(main())
