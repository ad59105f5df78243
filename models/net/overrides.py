"""The operator's upstream overrides (PASSTHRU_UPSTREAM_OVERRIDES): an origin's onward calls
go to another origin (a sandbox, a mock). Webhook deliveries never follow them."""

from __future__ import annotations

from models.net.urls import after_origin, origin_of


def apply_override(url: str, overrides: dict[str, str]) -> tuple[str, bool]:
    """Send `url` to the operator's replacement origin, if one is set for its origin (however
    the origin is spelled: an explicit default port or user info does not escape it)."""
    if not overrides:  # the usual case: nothing to parse
        return url, False
    target = overrides.get(origin_of(url))
    if target is None:
        return url, False
    return target + after_origin(url), True


def undo_override(url: str, overrides: dict[str, str]) -> str:
    """Map a URL on an override target (e.g. a redirect) back to the public origin."""
    origin = origin_of(url)
    for public, target in overrides.items():
        if origin == target:
            return public + after_origin(url)
    return url
