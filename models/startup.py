"""Configuration problems at a process's start, told in one line that names the environment
variable and the fix. The `passthru` commands, the API factory and the Celery app read their
settings through `startup_settings()` and stop with `config_errors_exit()`: exit code 2, no
traceback."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import AliasChoices, ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from models.errors import ConfigError
from models.settings import Settings, get_settings

# The exit code of a process stopped by a configuration problem (argparse's for bad usage).
CONFIG_EXIT_CODE = 2
# What `explain` has a line for.
CONFIG_ERRORS = (ConfigError, ValidationError, SettingsError, OperationalError)
_FIELD = re.compile(r'field "(?P<field>\w+)" from source "(?P<source>\w+)"')
_JSON_EXAMPLES = {
    "PASSTHRU_UPSTREAM_OVERRIDES": 'write a JSON object, e.g. {"https://slack.com": "http://127.0.0.1:9000"}'
}
_DATABASE_URL_EXAMPLES = "sqlite:///./passthru.db or postgresql://user:password@host:5432/passthru"


def env_name(field: str) -> str:
    """The environment variable that sets the Settings field `field` (its first alias)."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return field.upper()


def check_database_url(url: str) -> None:
    """Raise ConfigError unless SQLAlchemy can parse `url` and knows its dialect."""
    from models.db.engine import normalize_database_url, shown

    try:
        make_url(normalize_database_url(url)).get_dialect()
    except ArgumentError as exc:
        raise ConfigError(
            f"DATABASE_URL ({shown(url)}) is not a database URL passthru can use "
            f"({_first_line(exc)}): write e.g. {_DATABASE_URL_EXAMPLES}"
        ) from None


def startup_settings() -> Settings:
    """The process's settings, checked beyond their types: the database URL parses, the
    encryption keys are keys and the operator's app catalog loads, whether or not this
    command uses them."""
    from models.catalog.apps import get_catalog
    from models.crypto.secrets import vault_for

    settings = get_settings()
    check_database_url(settings.database_url)
    if settings.encryption_key_list:
        vault_for(tuple(settings.encryption_key_list))
    if settings.apps_file is not None or settings.oauth_clients:
        get_catalog()
    return settings


def explain(exc: BaseException) -> str | None:
    """One line for a configuration problem, or None for any other exception."""
    told = _explain(exc)
    return None if told is None else " ".join(told.split())


def _explain(exc: BaseException) -> str | None:
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, ValidationError):
        return "; ".join(_validation_problem(e["loc"], e["msg"]) for e in exc.errors())
    if isinstance(exc, SettingsError):
        return _settings_error(exc)
    if isinstance(exc, OperationalError):
        from models.db.engine import shown

        url = shown(get_settings().database_url)
        return (
            f"cannot open the database at DATABASE_URL ({url}): {_first_line(exc.orig or exc)}; "
            "check that it is running and that DATABASE_URL names it"
        )
    return None


@contextmanager
def config_errors_exit() -> Iterator[None]:
    """Inside it, a configuration problem prints `passthru: <one line>` and exits 2."""
    try:
        yield
    except CONFIG_ERRORS as exc:
        line = explain(exc)
        print(f"passthru: {line}", file=sys.stderr)
        raise SystemExit(CONFIG_EXIT_CODE) from None


def _validation_problem(loc: tuple[int | str, ...], msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    if not loc:
        return msg
    name = str(loc[0]).upper()
    return f"{name}: {msg}; change {name} or unset it to use the default"


def _settings_error(exc: SettingsError) -> str:
    found = _FIELD.search(str(exc))
    if found is None:
        return str(exc)
    name = env_name(found["field"])
    where = " (in .env)" if "DotEnv" in found["source"] else ""
    cause = exc.__cause__
    if isinstance(cause, json.JSONDecodeError):
        return (
            f"{name}{where} is not valid JSON ({cause.msg} at line {cause.lineno} column "
            f"{cause.colno}): {_JSON_EXAMPLES.get(name, 'write valid JSON')}"
        )
    reason = f" ({_first_line(cause)})" if cause else ""
    return f"{name}{where} cannot be read{reason}: write it as docs/operations.md shows"


def _first_line(exc: BaseException | object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
