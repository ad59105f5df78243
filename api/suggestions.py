""" "Did you mean" for names a caller got wrong: an unknown app or function is answered with
the closest names the catalog has (difflib), so a typo costs one look instead of a search."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches

from api.validation import FUNCTION_SUFFIX, app_slug_of
from models.catalog.apps import Catalog
from models.errors import ApiError, ErrorDetail, invalid

# How many names are suggested, and how alike they must be (difflib's ratio, 0 to 1).
MAX_SUGGESTIONS = 3
MIN_LIKENESS = 0.6
# A name longer than this is not compared (nor echoed whole).
MAX_COMPARED_CHARS = 100


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'a' or 'b'?" for the choices closest to `name`, or ""."""
    if len(name) > MAX_COMPARED_CHARS:
        return ""
    close = get_close_matches(name.lower(), list(choices), MAX_SUGGESTIONS, MIN_LIKENESS)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def _shown(name: str) -> str:
    return repr(name if len(name) <= MAX_COMPARED_CHARS else name[:MAX_COMPARED_CHARS] + "…")


def unknown_app(
    slug: str,
    catalog: Catalog,
    *,
    status_code: int = 404,
    lists_them: str = "GET /functions?type=passthrough",
) -> ApiError:
    """An app the catalog does not have, with the closest slugs it does."""
    hint = did_you_mean(slug, (app.slug for app in catalog))
    message = f"no app {_shown(slug)}{hint} ({lists_them} lists them)"
    return ApiError("unknown_app", [ErrorDetail("app", message)], status_code)


def function_problem(function: str, catalog: Catalog) -> ApiError:
    """Why `function` names no function: not of the form `<app>-passthrough-request` (400),
    or for an app the catalog does not have (404 `unknown_app`); with the closest names."""
    names = [app.slug + FUNCTION_SUFFIX for app in catalog]
    hint = did_you_mean(function, names)
    if app_slug_of(function) is None:
        if not hint and catalog.get(function) is not None:
            hint = f"; did you mean {function + FUNCTION_SUFFIX!r}?"
        return invalid("function", f"must be '<app>{FUNCTION_SUFFIX}'{hint}")
    message = f"no function {_shown(function)}{hint} (GET /functions?type=passthrough lists them)"
    return ApiError("unknown_app", [ErrorDetail("function", message)], 404)
