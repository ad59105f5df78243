"""schemathesis hooks and a check for `make fuzz` (SCHEMATHESIS_HOOKS=tests.fuzz.hooks).

- Check: every 4xx is in the error shape, and so is each rejected item of a batch.
- Records: one JSON line per request sent (the counts in the summary) and, for a 5xx, a
  shape violation or no answer, the exact request, which the harness sends again alone to
  find the traceback the API logged for it.
- Steering, in the fuzzing phase of the five operations that take a call or a URL: about
  half the cases are pointed at what exists (a connected app, its account, a valid method
  and URL, the seeded call), so that they get past the first 404 or 400 into account
  selection, the URL and callback checks and the write; `Prefer`, `?wait=` and callback URLs
  come from tests/fuzz/values.py half the time, since the OpenAPI says only "a string".
- The seeded accounts are never PATCHed or DELETEd (schemathesis reuses the ids it reads in
  answers; a disabled account would stop submissions short).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from tests.fuzz.shape import response_shape_problem
from tests.fuzz.values import (
    APP_URLS,
    CALLBACK_URLS,
    METHODS,
    PREFER_VALUES,
    WAIT_VALUES,
)

# Written by the harness: account ids, the seeded call, where to record.
CONTEXT: dict[str, Any] = json.loads(Path(os.environ["PASSTHRU_FUZZ_CONTEXT"]).read_text())
RECORDS = Path(CONTEXT["records"])
SEEDED = frozenset(CONTEXT["accounts"].values())  # accounts the fuzzer must not disable
_LOCK = threading.Lock()
KEEP = object()  # leave the generated value as it is


def _record(entry: dict[str, Any]) -> None:
    line = json.dumps(entry, ensure_ascii=True) + "\n"
    with _LOCK, RECORDS.open("a") as out:
        out.write(line)


def _request_of(request: Any) -> dict[str, Any]:
    body = request.body
    if isinstance(body, str):
        body = body.encode()
    return {
        "method": request.method,
        "url": request.url,
        "headers": {k: v for k, v in request.headers.items() if not k.startswith("X-Schemathesis")},
        "body_b64": base64.b64encode(body or b"").decode(),
    }


# --- checks -------------------------------------------------------------------------------


@schemathesis.check
def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """4xx answers (and rejected batch items) are `{error, error_details: [{field, message}]}`."""
    problem = response_shape_problem(response.status_code, response.content, case.path)
    if problem:
        raise AssertionError(problem)
    return None


# --- records --------------------------------------------------------------------------------


_STARTED: dict[str, float] = {}  # case id -> when its request left


def _phase(case: Any) -> str | None:
    meta = getattr(case, "meta", None)
    return str(meta.phase.name) if meta is not None else None


def _varied(case: Any) -> dict[str, Any]:
    """The values of the inputs the run must vary, when this request carries them."""
    out: dict[str, Any] = {}
    prefer = (case.headers or {}).get("Prefer")
    if prefer is not None:
        out["prefer"] = str(prefer)[:100]
    if (
        case.path == "/function-calls/{call_id}"
        and isinstance(case.query, dict)
        and "wait" in case.query
    ):
        out["wait"] = str(case.query["wait"])[:100]
    body = case.body
    if isinstance(body, dict):
        urls = [body.get("callback_url"), body.get("url") if "webhook" in case.path else None]
        calls = body.get("calls")
        if isinstance(calls, list):
            urls += [c.get("callback_url") for c in calls if isinstance(c, dict)]
        found = [str(u)[:100] for u in urls if u is not None]
        if found:
            out["callback_url"] = found
    return out


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    _STARTED.pop(case.id, None)
    entry: dict[str, Any] = {
        "source": "schemathesis",
        "operation": f"{case.method.upper()} {case.path}",
        "status": response.status_code,
        "phase": _phase(case),
        "path": response.request.path_url[:80],
        "elapsed_s": round(response.elapsed, 3),
        **_varied(case),
    }
    problem = response_shape_problem(response.status_code, response.content, case.path)
    if response.status_code >= 500 or problem:
        entry["kind"] = "server_error" if response.status_code >= 500 else "error_shape"
        entry["problem"] = problem
        entry["request"] = _request_of(response.request)
        entry["response"] = response.content[:500].decode(errors="replace")
    _record(entry)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Time the request; send PATCH and DELETE of a seeded account to a spare one instead
    (here, since this hook runs in every phase)."""
    _STARTED[case.id] = time.monotonic()
    account = case.path_parameters.get("account_id")
    if case.path == "/connected-accounts/{account_id}" and account in SEEDED:
        case.path_parameters = {**case.path_parameters, "account_id": CONTEXT["spare"][0]}


@schemathesis.hook
def after_network_error(context: Any, case: Any, request: Any) -> None:
    """No answer: a timeout if it took the whole request timeout, else a dropped connection."""
    elapsed = time.monotonic() - _STARTED.pop(case.id, time.monotonic())
    timed_out = elapsed >= 0.9 * float(CONTEXT["request_timeout_s"])
    _record(
        {
            "source": "schemathesis",
            "operation": f"{case.method.upper()} {case.path}",
            "status": None,
            "phase": _phase(case),
            "elapsed_s": round(elapsed, 3),
            **_varied(case),
            "kind": "timeout" if timed_out else "dropped",
            "request": _request_of(request),
        }
    )


# --- steering (fuzzing phase) ---------------------------------------------------------------

# Hypothesis leans towards the first branch of a `one_of` (its "simplest" choice), so the
# values we want sent come first.


def sometimes(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of `values` or KEEP (the generated value)."""
    return st.one_of(values, st.just(KEEP))


def often(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of `values` most of the time, else KEEP."""
    return st.one_of(values, values, values, st.just(KEEP))


def _url_for(app: str) -> st.SearchStrategy[str]:
    tail = st.one_of(st.just(""), st.text(max_size=20))
    return st.builds(lambda url, extra: url + extra, st.sampled_from(APP_URLS[app]), tail)


def _params(app: str) -> st.SearchStrategy[dict[str, Any]]:
    """Changes to a call's `{method, url}` for `app`."""
    return st.fixed_dictionaries(
        {"method": often(st.sampled_from(METHODS)), "url": often(_url_for(app))}
    )


def _submission(app: str) -> st.SearchStrategy[dict[str, Any]]:
    """Changes to a submission's own fields: params plus account and callback URL."""
    accounts = list(CONTEXT["accounts"].values())
    return st.fixed_dictionaries(
        {
            "connected_account_id": sometimes(
                st.sampled_from([CONTEXT["accounts"][app], *accounts, None])
            ),
            "callback_url": sometimes(st.sampled_from(CALLBACK_URLS)),
        }
    )


def _apply(target: Any, changes: dict[str, Any]) -> Any:
    if not isinstance(target, dict):
        return target
    out = dict(target)
    for key, value in changes.items():
        if value is not KEEP:
            out[key] = value
    return out


def _with_header(case: Any, name: str, value: Any) -> None:
    if value is KEEP:
        return
    headers = CaseInsensitiveDict(case.headers or {})
    headers[name] = value
    case.headers = headers


APPS = st.sampled_from(sorted(APP_URLS))


def _steer_passthrough(case: Any) -> st.SearchStrategy[Any]:
    def plan(app: str) -> st.SearchStrategy[Any]:
        return st.tuples(
            st.just(app), _params(app), _submission(app), sometimes(st.sampled_from(PREFER_VALUES))
        )

    def apply(choice: tuple[str, dict[str, Any], dict[str, Any], Any]) -> Any:
        app, params, submission, prefer = choice
        case.path_parameters = {**case.path_parameters, "app": app}
        case.body = _apply(_apply(case.body, params), submission)
        _with_header(case, "Prefer", prefer)
        return case

    return APPS.flatmap(plan).map(apply)


def _steer_function_call(case: Any) -> st.SearchStrategy[Any]:
    def plan(app: str) -> st.SearchStrategy[Any]:
        return st.tuples(
            st.just(app),
            _params(app),
            _submission(app),
            sometimes(st.sampled_from(PREFER_VALUES)),
            sometimes(st.sampled_from([CONTEXT["user"], CONTEXT["spare_user"]])),
        )

    def apply(choice: tuple[str, dict[str, Any], dict[str, Any], Any, Any]) -> Any:
        app, params, submission, prefer, user = choice
        body = _apply(case.body, {"function": f"{app}-passthrough-request", **submission})
        if isinstance(body, dict):
            body["params"] = _apply(body.get("params"), params)
            if user is not KEEP:
                body["user_id"] = user
        case.body = body
        _with_header(case, "Prefer", prefer)
        return case

    return APPS.flatmap(plan).map(apply)


def _batch_item(app: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda params, submission: {
            "function": f"{app}-passthrough-request",
            "params": _apply({"method": "GET", "url": APP_URLS[app][0]}, params),
            **{k: v for k, v in submission.items() if v is not KEEP},
        },
        _params(app),
        _submission(app),
    )


def _steer_batch(case: Any) -> st.SearchStrategy[Any]:
    items = st.lists(APPS.flatmap(_batch_item), min_size=1, max_size=5)

    def apply(calls: list[dict[str, Any]]) -> Any:
        case.body = _apply(case.body, {"calls": calls})
        return case

    return items.map(apply)


def _steer_call(case: Any) -> st.SearchStrategy[Any]:
    def apply(choice: tuple[Any, Any]) -> Any:
        call_id, wait = choice
        if call_id is not KEEP:
            case.path_parameters = {**case.path_parameters, "call_id": call_id}
        if wait is not KEEP:
            case.query = {**(case.query or {}), "wait": wait}
        return case

    return st.tuples(
        sometimes(st.just(CONTEXT["call_id"])), sometimes(st.sampled_from(WAIT_VALUES))
    ).map(apply)


def _steer_webhook_endpoint(case: Any) -> st.SearchStrategy[Any]:
    def apply(url: Any) -> Any:
        case.body = _apply(case.body, {"url": url})
        return case

    return sometimes(st.sampled_from(CALLBACK_URLS)).map(apply)


STEERING = {
    "POST /{app}-passthrough-request": _steer_passthrough,
    "POST /function-calls": _steer_function_call,
    "POST /function-calls/batch": _steer_batch,
    "GET /function-calls/{call_id}": _steer_call,
    "PUT /webhook-endpoint": _steer_webhook_endpoint,
}


def _register(operation: str, steer: Any) -> None:
    """Steer one operation's fuzzing; other operations keep schemathesis's own strategy (a
    hook on every operation slows generation for those with one path parameter tenfold)."""
    method, path = operation.split(" ", 1)

    @schemathesis.hook.apply_to(method=method, path=path)
    def flatmap_case(context: Any, case: Any) -> st.SearchStrategy[Any]:
        return st.one_of(steer(case), st.just(case))


for _operation, _steer in STEERING.items():
    _register(_operation, _steer)
