"""`{field}` templates in an entry's URLs and hosts, filled in from one account's
connection_config: a value a user typed may only ever be one DNS label, so it cannot move
a call (or its credentials) to another host."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from models.net.urls import is_dns_label

if TYPE_CHECKING:
    from models.catalog.spec import ConfigField


def template_fields(templates: Iterable[str]) -> list[str]:
    """The `{field}` names used in `templates`, in order of first use."""
    names: list[str] = []
    for template in templates:
        for _, name, _, _ in string.Formatter().parse(template):
            if name and name not in names:
                names.append(name)
    return names


def render_values(
    fields: list[str], config: Mapping[str, Any], described: Mapping[str, ConfigField]
) -> dict[str, str]:
    """The text each field puts in the templates; raises ValueError naming the field.

    A field with choices takes the text of the key given (or of its default); any other
    field takes the value given (or its default), which must be one DNS label."""
    values: dict[str, str] = {}
    for name in fields:
        spec = described.get(name)
        value = config.get(name)
        if (value is None or value == "") and spec is not None and spec.default is not None:
            value = spec.default
        if not isinstance(value, str) or not value:
            raise ValueError(f"connection_config.{name} is required by this app")
        if spec is not None and spec.choices is not None:
            values[name] = _chosen(name, value, spec.choices)
            continue
        if not is_dns_label(value):
            raise ValueError(
                f"connection_config.{name} must be a single DNS label "
                "(letters, digits and '-', no '.', '/', '@' or ':')"
            )
        values[name] = value.lower()
    return values


def _chosen(name: str, key: str, choices: Mapping[str, str]) -> str:
    text = choices.get(key.lower())
    if text is None:
        raise ValueError(f"connection_config.{name} must be one of {', '.join(choices)}")
    return text


def samples(fields: list[str], described: Mapping[str, ConfigField]) -> list[dict[str, str]]:
    """One connection_config per choice of each field (other fields a made-up label), so that
    every host an entry can resolve to is checked once."""
    base = {name: _first(described.get(name)) for name in fields}
    found = [base]
    for name in fields:
        spec = described.get(name)
        for key in (spec.choices or {}) if spec is not None else {}:
            found.append({**base, name: key})
    return found


def _first(spec: ConfigField | None) -> str:
    if spec is None or spec.choices is None:
        return "acme"
    return spec.default or next(iter(spec.choices))
