"""The operator's upstream overrides (PASSTHRU_UPSTREAM_OVERRIDES): an origin's onward calls
go to another origin (a sandbox, a mock). Webhook deliveries never follow them."""

from __future__ import annotations

from models.urls import origin_of


def apply_override(url: str, overrides: dict[str, str]) -> tuple[str, bool]:
    """Send `url` to the operator's replacement origin, if one is set for its origin."""
    origin = origin_of(url)
    target = overrides.get(origin)
    if target is None:
        return url, False
    return target + url[len(origin) :], True


def undo_override(url: str, overrides: dict[str, str]) -> str:
    """Map a URL on an override target (e.g. a redirect) back to the public origin."""
    origin = origin_of(url)
    for public, target in overrides.items():
        if origin == target:
            return public + url[len(origin) :]
    return url
