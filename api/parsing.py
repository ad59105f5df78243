"""Reading a JSON body: parsed once with orjson, then refused if it nests deeper than
MAX_JSON_DEPTH or holds a NUL character in any string (a key or a value).

FastAPI parses a body with `request.json()`; every route is a `JSONRoute`, whose requests
answer it here. The checks cost nothing for ordinary bodies: the object is walked only when
the raw bytes hold more than MAX_JSON_DEPTH brackets, or an escaped NUL. orjson refuses
what Python's `json` lets through and the database would not store: NaN and Infinity, lone
surrogates, numbers beyond a double.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from models.errors import ApiError, ErrorDetail

# The deepest nesting of arrays and objects a body (or one call of a batch) may have.
MAX_JSON_DEPTH = 64
# A field named in an error shows at most this many steps of its path, each this long.
_PATH_STEPS = 4
_STEP_CHARS = 40


def _field(path: tuple[str | int, ...]) -> str:
    steps = [str(step)[:_STEP_CHARS].replace("\x00", "\\u0000") for step in path[:_PATH_STEPS]]
    if len(path) > _PATH_STEPS:
        steps.append("…")
    return ".".join(steps) or "body"


def find_problem(
    value: Any, max_depth: int = MAX_JSON_DEPTH, *, depth: bool = True, nul: bool = True
) -> ErrorDetail | None:
    """The first container nested deeper than `max_depth` (the top level is 1), or the first
    string holding a NUL; walked without recursion, so any depth is safe."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict | list):
            if depth and len(path) >= max_depth:
                return ErrorDetail(
                    _field(path),
                    f"is nested deeper than {max_depth} levels of arrays and objects",
                )
            if isinstance(node, dict):
                for key, item in node.items():
                    if nul and "\x00" in key:
                        return ErrorDetail(_field((*path, key)), "a key holds NUL (\\u0000)")
                    stack.append((item, (*path, key)))
            else:
                stack.extend((item, (*path, i)) for i, item in enumerate(node))
        elif nul and isinstance(node, str) and "\x00" in node:
            return ErrorDetail(_field(path), "must not contain NUL (\\u0000) characters")
    return None


def problem_of(raw: bytes, value: Any, max_depth: int = MAX_JSON_DEPTH) -> ErrorDetail | None:
    """`find_problem`, walked only when the raw JSON could hold one."""
    deep = raw.count(b"[") + raw.count(b"{") > max_depth
    nul = b"\\u0000" in raw
    if not (deep or nul):
        return None
    return find_problem(value, max_depth, depth=deep, nul=nul)


def item_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> ErrorDetail | None:
    """`problem_of` for a value already parsed (one call of a batch)."""
    try:
        raw = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested past orjson's own limit: walk it
        return find_problem(value, max_depth)
    return problem_of(raw, value, max_depth)


class BodyRefused(HTTPException):
    """A body refused while it is parsed. An HTTPException, so FastAPI lets it through
    unchanged; `api.errors` answers it with its ApiError."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(status_code=error.status_code)
        self.error = error


class JSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            value = orjson.loads(raw)  # orjson.JSONDecodeError is a json.JSONDecodeError
            detail = self.problem(raw, value)
            if detail is not None:
                raise BodyRefused(ApiError("invalid_params", [detail]))
            self._json = value
        return self._json

    def problem(self, raw: bytes, value: Any) -> ErrorDetail | None:
        return problem_of(raw, value)


class ItemsRequest(JSONRequest):
    """A batch: each call is checked alone (`item_problem`), so one bad call is one
    rejected item, never a refused batch."""

    def problem(self, raw: bytes, value: Any) -> ErrorDetail | None:
        return None


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class JSONRoute(APIRoute):
    """Every route's class (`APIRouter(route_class=JSONRoute)`): its JSON bodies are read
    by `JSONRequest`."""

    request_class: type[JSONRequest] = JSONRequest

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        request_class = self.request_class

        async def route(request: Request) -> Response:
            return await handler(request_class(request.scope, request.receive))

        return route


class ItemsRoute(JSONRoute):
    """For routes whose body is a list of calls, each checked alone."""

    request_class = ItemsRequest
