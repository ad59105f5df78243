"""What went wrong in a run, grouped by cause, each group with a reproducer and, for a 5xx or a
dropped connection, the end of the traceback the API logged when the request was sent again
alone."""

from __future__ import annotations

import base64
import json
import re
import shlex
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz.probes import Outcome, send
from tests.fuzz.shape import response_shape_problem
from tests.fuzz.stack import ROOT, Target

# Failing schemathesis requests sent again per operation, at most (one per distinct value of
# what it varies, smallest bodies first).
REPLAYS_PER_OPERATION = 10
# Headers a reproducer leaves out: curl sets its own.
_CURL_SKIPS = ("content-length", "user-agent", "accept", "accept-encoding", "connection")
CURL_BODY_LIMIT = 2000
# Kinds of finding, most serious first.
KINDS = ("server_error", "dropped", "timeout", "too_slow", "error_shape", "unexpected")


@dataclass
class Request:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes

    def curl(self, shell_body: str | None = None) -> str:
        """A curl line against $PT with $KEY (the API key), as in the README's tour."""
        parts = ["curl", "-sS", "-X", self.method, f'"$PT{_shell_path(self.path)}"']
        for name, value in self.headers.items():
            if name.lower() == "authorization":
                parts += ["-H", '"Authorization: Bearer $KEY"']
            elif name.lower() not in _CURL_SKIPS:
                shown = value if len(value) <= 200 else f"{value[:20]}…({len(value)} chars)"
                parts += ["-H", shlex.quote(f"{name}: {shown}")]
        if shell_body is not None:
            parts += ["--data-binary", "@-"]
            return f"python3 -c {shlex.quote(shell_body)} | " + " ".join(parts)
        if self.body:
            text = self.body.decode(errors="backslashreplace")
            if len(text) > CURL_BODY_LIMIT:
                text = text[:CURL_BODY_LIMIT] + f"…(cut: {len(self.body)} bytes in all)"
            parts += ["--data-binary", shlex.quote(text)]
        return " ".join(parts)


def _shell_path(path: str) -> str:
    for char in ("\\", '"', "$", "`"):
        path = path.replace(char, "\\" + char)
    return path


@dataclass
class Finding:
    kind: str  # one of KINDS, or not_reproduced
    title: str
    operations: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)  # explicit, hostile, schemathesis
    examples: dict[str, str] = field(default_factory=dict)  # what was sent -> what came back
    reproducer: str = ""
    detail: str = ""  # the end of a traceback, or an answer


@dataclass
class Traceback:
    text: str

    @property
    def exception_line(self) -> str:
        """`Type: message`, skipping what SQLAlchemy appends ([SQL: ...], [parameters: ...])."""
        lines = [line.strip() for line in self.text.strip().splitlines() if line.strip()]
        for line in reversed(lines):
            if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Warning|Exit)\b", line):
                return line
        return lines[-1] if lines else "?"

    @property
    def frame(self) -> str:
        """The innermost frame in passthru's own code (not a library's)."""
        found = "?"
        for m in re.finditer(r'File "([^"]+)", line (\d+), in (\S+)', self.text):
            path = Path(m.group(1))
            if ".venv" in path.parts or "site-packages" in path.parts:
                continue
            try:
                shown = path.relative_to(ROOT)
            except ValueError:
                continue
            found = f"{shown}:{m.group(2)} in {m.group(3)}"
        return found

    @property
    def cause(self) -> str:
        return f"{self.exception_line[:160]} (at {self.frame})"

    def tail(self, lines: int = 5) -> str:
        """The last frames, up to the exception line."""
        kept = self.text.strip().splitlines()
        end = max(i for i, line in enumerate(kept) if line.strip() == self.exception_line)
        return "\n".join(kept[max(0, end - lines + 1) : end + 1])


def tracebacks_in(log: str) -> list[tuple[str | None, Traceback]]:
    """(`METHOD /path` when logged, traceback) for each error the API logged.

    passthru logs one JSON line with `exc` for each unexpected error, and uvicorn then logs
    "Exception in ASGI application" with the same traceback (skipped); uvicorn's tracebacks of
    errors outside the app are kept."""
    found: list[tuple[str | None, Traceback]] = []
    block: list[str] = []
    copies_due = 0  # uvicorn's copies of errors passthru logged, still to come
    skip = False

    def close() -> None:
        if block and not skip:
            found.append((None, Traceback("\n".join(block))))
        block.clear()

    for line in log.splitlines():
        if line.startswith("{"):
            close()
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("exc"):
                where = re.sub(r"^unexpected error on ", "", str(record.get("msg", "")))
                found.append((where or None, Traceback(str(record["exc"]))))
                copies_due += 1
        elif line.startswith(("ERROR:", "WARNING:", "INFO:")):
            close()
            skip = "Exception in ASGI application" in line and copies_due > 0
            copies_due -= skip
        elif line.startswith("Traceback") or block:
            block.append(line)
    close()
    return found


def replay(target: Target, request: Request, timeout_s: float) -> tuple[str, list[Traceback]]:
    """Send `request` again, alone: (what came back, the tracebacks the API logged for it)."""
    offset = target.log_size()
    status, _, _, error = send(
        target, request.method, request.path, request.headers, request.body or None, timeout_s
    )
    # passthru logs an error before it answers; uvicorn logs a dropped connection around it.
    for _ in range(3):
        tracebacks = [tb for _, tb in tracebacks_in(target.log_since(offset))]
        if tracebacks or (status is not None and status < 500):
            break
        time.sleep(0.2)
    return error or str(status), tracebacks


def operation_of(method: str, path: str, templates: list[str]) -> str:
    """`POST /slack-passthrough-request` -> `POST /{app}-passthrough-request`."""
    bare = path.split("?", 1)[0]
    for template in sorted(templates, key=lambda t: (t.count("{"), -len(t))):
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]*", re.escape(template)) + "$"
        if re.match(pattern, bare):
            return f"{method} {template}"
    return f"{method} {bare}"


def log_errors(log: str, templates: list[str]) -> Counter[str]:
    """Every error the API logged, per cause and operation: the ground truth that the replays
    attach reproducers to."""
    counts: Counter[str] = Counter()
    for where, tb in tracebacks_in(log):
        operation = "?"
        if where:
            method, _, path = where.partition(" ")
            operation = operation_of(method, path, templates)
        counts[f"{tb.cause} on {operation}"] += 1
    return counts


def varied(request: Request) -> tuple[str, str]:
    """(group, label) of a schemathesis request: what it varied among the values the run must
    vary (`Prefer`, `?wait=`, callback URLs), for grouping timeouts and listing cases."""
    parts: list[str] = []
    group = request.method + " " + request.path.partition("?")[0][:60]
    prefer = next((v for k, v in request.headers.items() if k.lower() == "prefer"), None)
    if prefer is not None:
        group = "Prefer on submissions"
        parts.append(f"Prefer: {prefer[:40]}")
    query = request.path.partition("?")[2]
    if "wait=" in query:
        group = "?wait= on GET /function-calls/{id}"
        parts.append(query[:50])
    try:
        body = json.loads(request.body) if request.body else None
    except ValueError:
        body = None
    urls: list[Any] = []
    if isinstance(body, dict):
        urls = [body.get("callback_url"), body.get("url") if "webhook" in request.path else None]
        calls = body.get("calls")
        if isinstance(calls, list):
            urls += [c.get("callback_url") for c in calls if isinstance(c, dict)]
    parts += [f"url {json.dumps(u)[:50]}" for u in urls if isinstance(u, str)]
    return group, ", ".join(parts) or request.path[:60]


class Collector:
    """Findings of one run, merged by cause."""

    def __init__(self, target: Target, templates: list[str], timeout_s: float) -> None:
        self.target = target
        self.templates = templates
        self.timeout_s = timeout_s
        self.findings: dict[str, Finding] = {}
        self.failing: Counter[str] = Counter()  # schemathesis requests per operation

    def add(self, key: str, kind: str, title: str, operation: str, source: str) -> Finding:
        finding = self.findings.setdefault(key, Finding(kind, title))
        finding.operations.add(operation)
        finding.sources.add(source)
        return finding

    # --- the harness's own requests ---

    def probe_outcomes(self, outcomes: list[Outcome], source: str) -> None:
        for outcome in outcomes:
            probe = outcome.probe
            request = Request(
                probe.method, probe.path, probe.request_headers(self.target), probe.body() or b""
            )
            curl = request.curl(probe.shell_body)
            if probe.repeat > 1:
                curl = f"for i in $(seq {probe.repeat}); do {curl}; done"
            operation = operation_of(probe.method, probe.path, self.templates)
            if outcome.network_error == "timeout":
                self._timeout(probe.group, probe.name, operation, source, curl)
                continue
            if outcome.network_error or (outcome.status or 0) >= 500:
                self._explain(request, operation, source, curl, probe.name)
                continue
            assert outcome.status is not None
            path = probe.path.split("?")[0]
            problem = response_shape_problem(outcome.status, outcome.content, path)
            if problem:
                self._shape(problem, operation, source, curl, probe.name)
            try:
                payload = json.loads(outcome.content) if outcome.content else None
            except ValueError:
                payload = None
            wrong = probe.expect(outcome.status, payload)
            if wrong:
                found = self.add(
                    f"unexpected {probe.group} {wrong}",
                    "unexpected",
                    f"{probe.group}: {wrong}",
                    operation,
                    source,
                )
                found.examples[probe.name] = str(outcome.status)
                found.reproducer = found.reproducer or curl
                found.detail = found.detail or outcome.content[:300].decode(errors="replace")
            elif probe.max_elapsed_s is not None and outcome.elapsed_s > probe.max_elapsed_s:
                found = self.add(
                    f"slow {probe.group}",
                    "too_slow",
                    f"{probe.group}: answered after more than PASSTHRU_MAX_WAIT_S "
                    f"+ {probe.max_elapsed_s:g} s",
                    operation,
                    source,
                )
                found.examples[probe.name] = f"{outcome.elapsed_s:.1f} s"
                found.reproducer = found.reproducer or curl

    # --- schemathesis's requests ---

    def schemathesis_records(self, records: list[dict[str, Any]]) -> None:
        """Shape violations and timeouts as they are; 5xx and drops sent again for a
        traceback."""
        failing: dict[str, list[Request]] = defaultdict(list)
        for entry in records:
            kind = entry.get("kind")
            if kind is None:
                continue
            request = _request_from_record(entry, self.target.base_url)
            operation = entry["operation"]
            self.failing[operation] += 1
            group, label = varied(request)
            if kind == "error_shape":
                self._shape(str(entry["problem"]), operation, "schemathesis", request.curl(), label)
            elif kind == "timeout":
                self._timeout(group, label, operation, "schemathesis", request.curl())
            else:
                failing[operation].append(request)
        for operation, requests in failing.items():
            seen: set[str] = set()
            for request in sorted(requests, key=lambda r: (len(r.body), len(r.path))):
                label = varied(request)[1]
                if label in seen or len(seen) >= REPLAYS_PER_OPERATION:
                    continue
                seen.add(label)
                self._explain(request, operation, "schemathesis", request.curl(), label)

    # --- kinds ---

    def _timeout(self, group: str, label: str, operation: str, source: str, curl: str) -> None:
        found = self.add(
            f"timeout {group}",
            "timeout",
            f"{group}: no answer within {self.timeout_s:g} s",
            operation,
            source,
        )
        found.examples.setdefault(label, "no answer")
        found.reproducer = found.reproducer or curl

    def _shape(self, problem: str, operation: str, source: str, curl: str, label: str) -> None:
        found = self.add(f"shape {operation} {problem}", "error_shape", problem, operation, source)
        found.examples.setdefault(label, operation)
        found.reproducer = found.reproducer or curl

    def _explain(
        self, request: Request, operation: str, source: str, curl: str, label: str
    ) -> None:
        answer, tracebacks = replay(self.target, request, self.timeout_s)
        if answer == "timeout":
            self._timeout(varied(request)[0], label, operation, source, curl)
            return
        dropped = not answer.isdigit()
        kind = "dropped" if dropped else "server_error"
        if tracebacks:
            tb = tracebacks[-1]
            found = self.add(f"{kind} {tb.cause}", kind, tb.cause, operation, source)
            found.detail = found.detail or tb.tail()
        elif dropped or int(answer) >= 500:
            what = "connection dropped" if dropped else f"{answer}"
            found = self.add(
                f"{kind} {operation}", kind, f"{what}, no traceback logged", operation, source
            )
        else:
            found = self.add(
                f"flaky {operation}",
                "not_reproduced",
                "failed once, answered when sent again alone",
                operation,
                source,
            )
        found.examples.setdefault(label, answer)
        found.reproducer = found.reproducer or curl

    def problems(self) -> list[Finding]:
        order = {kind: i for i, kind in enumerate(KINDS)}
        return sorted(
            self.findings.values(), key=lambda f: (order.get(f.kind, 9), -len(f.examples))
        )


def _request_from_record(entry: dict[str, Any], base_url: str) -> Request:
    req = entry["request"]
    url: str = req["url"]
    path = url[len(base_url) :] if url.startswith(base_url) else url
    return Request(req["method"], path, dict(req["headers"]), base64.b64decode(req["body_b64"]))
