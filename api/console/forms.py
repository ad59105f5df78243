"""What the console's forms and query strings say, checked: a bad value is a 400 naming the
field, never a 500."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from api.call_log import LogFilter
from models.calls.states import CallStatus
from models.db.engine import as_utc
from models.errors import invalid

# Longest value any console field takes (an API key, a user id, a cursor).
MAX_FIELD_CHARS = 512
# Most fields a console form has.
MAX_FIELDS = 20


def parse_form(body: bytes) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body; the first value of each field."""
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise invalid("body", "the form must be UTF-8") from None
    except ValueError:
        raise invalid("body", f"at most {MAX_FIELDS} fields") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def field(values: Mapping[str, str], name: str, max_chars: int = MAX_FIELD_CHARS) -> str | None:
    """A field's value, stripped; None when blank; a 400 when too long or holding NUL."""
    value = values.get(name, "").strip()
    if len(value) > max_chars:
        raise invalid(name, f"at most {max_chars} characters")
    if "\x00" in value:
        raise invalid(name, "must not contain NUL characters")
    return value or None


def _moment(values: Mapping[str, str], name: str) -> datetime | None:
    value = field(values, name)
    if value is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise invalid(
            name, "a date and time from year 1 to 9999, such as 2026-12-01T10:30 (UTC)"
        ) from None


def log_filter(values: Mapping[str, str]) -> LogFilter:
    """The log's filters from the page's query string; times without a zone are UTC."""
    status = field(values, "status")
    if status is not None and status not in {s.value for s in CallStatus}:
        raise invalid("status", "one of " + ", ".join(s.value for s in CallStatus))
    code = field(values, "network_code")
    if code is not None and not (len(code) == 3 and code.isascii() and code.isdigit()):
        raise invalid("network_code", "three digits, such as 429")
    return LogFilter(
        app=field(values, "app"),
        status=CallStatus(status) if status else None,
        user_id=field(values, "user_id"),
        batch_id=field(values, "batch_id"),
        since=_moment(values, "since"),
        until=_moment(values, "until"),
        network_code=code,
    )
