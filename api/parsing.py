"""Reading a JSON body: counted, parsed once with orjson, then refused if it nests deeper than
MAX_JSON_DEPTH or holds a NUL character in any string (a key or a value).

Before parsing, a body may hold at most MAX_JSON_CONTAINERS arrays and objects and
MAX_JSON_VALUES values (413 otherwise): parsed, a byte of JSON can cost a hundred of
memory (`[[],[],…]`), and these bound what any body within the size limit can cost (about
100 MB, against 700 MB for a 20 MiB batch of empty arrays). A body over
PARSE_ON_THREAD_BYTES is counted and parsed on a worker thread, where the Python-level walk
takes turns with other requests; orjson's parse and the byte counts are single C calls that
hold the GIL, and the event loop waits for those (bounded by the counts above).

FastAPI parses a body with `request.json()`; every route is a `JSONRoute`, whose requests
answer it here. The checks cost nothing for ordinary bodies: the object is walked only when
the raw bytes hold more than MAX_JSON_DEPTH brackets, or an escaped NUL. orjson refuses
what Python's `json` lets through and the database would not store: NaN and Infinity, lone
surrogates, numbers beyond a double.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api.prometheus import REQUESTS_REFUSED
from models.errors import ApiError, ErrorDetail

# The deepest nesting of arrays and objects a body (or one call of a batch) may have.
MAX_JSON_DEPTH = 64
# How many arrays and objects, and how many values, any body may hold.
MAX_JSON_CONTAINERS = 200_000
MAX_JSON_VALUES = 1_000_000
# Bodies larger than this are counted and parsed on a worker thread.
PARSE_ON_THREAD_BYTES = 256 * 1024
# A JSON string, escapes included: what it holds is no bracket and no comma of the body. A
# string left open runs to the end of the body, so a match, once started, never fails.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
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


def too_complex(raw: bytes) -> ApiError | None:
    """A 413 if the body holds more arrays and objects, or values, than any body may. The
    bytes are counted as they are (fast); only past a bound are the strings taken out, so
    brackets and commas inside them are not held against the body. Taking them out is
    linear (an unclosed string runs to the end, it never makes the pattern start again),
    and is not tried on a body with more strings than values can be within the bounds."""
    if (
        raw.count(b"[") + raw.count(b"{") <= MAX_JSON_CONTAINERS
        and raw.count(b",") < MAX_JSON_VALUES
    ):
        return None
    # Every string is a value or a key, and an object has no more keys than values.
    if raw.count(b'"') - raw.count(b'\\"') > 4 * MAX_JSON_VALUES:
        return _too_complex(f"the body holds more than {2 * MAX_JSON_VALUES} strings")
    bare = _STRING.sub(b"", raw)
    containers, values = bare.count(b"[") + bare.count(b"{"), bare.count(b",") + 1
    if containers <= MAX_JSON_CONTAINERS and values <= MAX_JSON_VALUES:
        return None
    return _too_complex(f"the body holds {containers} arrays and objects and {values} values")


def _too_complex(what: str) -> ApiError:
    REQUESTS_REFUSED.labels("request_too_complex").inc()
    return ApiError(
        "request_too_large",
        [
            ErrorDetail(
                "body",
                f"{what}; at most {MAX_JSON_CONTAINERS} arrays and objects and "
                f"{MAX_JSON_VALUES} values are accepted: send less, or split a batch",
            )
        ],
        413,
    )


def invalid_json(exc: orjson.JSONDecodeError) -> ApiError:
    """A 400 saying what is wrong with the JSON and where: line, column, character offset."""
    where = f"line {exc.lineno} column {exc.colno} (character {exc.pos})"
    if not exc.doc:
        what = "the body is empty; send a JSON object"
    else:
        what = f"the body is not valid JSON: {exc.msg} at {where}"
    return ApiError("invalid_json", [ErrorDetail("body", what)])


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
            if len(raw) > PARSE_ON_THREAD_BYTES:
                self._json = await run_in_threadpool(self.parse, raw)
            else:
                self._json = self.parse(raw)
        return self._json

    def parse(self, raw: bytes) -> Any:
        """The body's value, or BodyRefused: `invalid_json` with where the JSON went wrong
        (line, column and character offset) when it is not JSON."""
        error = too_complex(raw)
        if error is not None:
            raise BodyRefused(error)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BodyRefused(invalid_json(exc)) from None
        detail = self.problem(raw, value)
        if detail is not None:
            raise BodyRefused(ApiError("invalid_params", [detail]))
        return value

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
