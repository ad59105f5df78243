"""What `passthru --help` and each command's `--help` say beyond their options: a
description, and an epilog naming the environment variables the command reads."""

from __future__ import annotations

import argparse
from typing import Any

ROOT_EPILOG = """Settings come from the environment and from .env in the working directory
(docs/operations.md lists them all); `passthru COMMAND --help` names those a command reads.
In a clone, the command is .venv/bin/passthru (`make run` runs `passthru dev`)."""
DATABASE_ENV = """environment:
  DATABASE_URL   the database (default sqlite:///./passthru.db, in the working directory)
  settings are read from the environment and from .env in the working directory"""
DEV_ENV = """environment (all optional; dev fills in the rest):
  PORT, FLOWER_PORT                        the API's and Flower's ports
  REDIS_URL                                a Redis of your own instead of the embedded one
  DATABASE_URL                             default sqlite:///./passthru.db
  PASSTHRU_ENCRYPTION_KEYS                 default: a key kept in .passthru/
  PASSTHRU_UPSTREAM_OVERRIDES              send an app's calls to a stand-in
  PASSTHRU_DEFAULT_WAIT_S                  default 10 under dev
  settings are read from the environment and from .env in the working directory"""
ROTATE_ENV = f"""{DATABASE_ENV}
  PASSTHRU_ENCRYPTION_KEYS   the new key first, the old ones after it"""
FLOWER_ENV = """environment:
  FLOWER_BASIC_AUTH   user:password (required)
  FLOWER_PORT         default 5555
  REDIS_URL           the broker to watch"""
ALIVE_ENV = """environment:
  PASSTHRU_HEARTBEAT_FILE   the file the worker touches (default /tmp/passthru-worker.heartbeat)"""


def subcommand(sub: Any, name: str, summary: str, description: str, epilog: str | None) -> Any:
    """A subcommand whose --help has a description and names the environment it reads."""
    return sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
