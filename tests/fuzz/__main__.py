"""`python -m tests.fuzz` (`make fuzz`): start the API alone (its own Redis and SQLite, no
worker), run schemathesis over /openapi.json, send the explicit and hostile probes, then send
each failing request again alone to find the traceback the API logged for it. Exit 1 on any
5xx, dropped connection, timeout, answer outside the error shape or the contract; else 0."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fuzz import probes
from tests.fuzz.findings import Collector, Finding, log_errors
from tests.fuzz.stack import (
    ACCOUNTS,
    MAX_WAIT_S,
    ROOT,
    SPARE_USER,
    USER,
    Target,
    running_api,
)
from tests.fuzz.values import CALLBACK_URLS, PREFER_VALUES, WAIT_VALUES

# Test cases per operation in schemathesis's fuzzing phase: 100 keeps the run near a minute on
# 2 cores (about 2,500 requests; the coverage phase adds its own, some 30 per operation).
MAX_EXAMPLES = 100
SEED = 20261130  # fixed, so that `make test` is a stable gate; --seed for another run
# A request is a failure if it gets no answer in this long: no wait may exceed
# PASSTHRU_MAX_WAIT_S (set to MAX_WAIT_S here), and nothing else waits at all; the rest is
# room for a loaded machine, below the 60 s of a wait the cap did not hold.
REQUEST_TIMEOUT_S = 20.0
PHASES = "examples,coverage,fuzzing"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--max-examples", type=int, default=MAX_EXAMPLES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workers", type=int, default=2, help="schemathesis workers")
    parser.add_argument("--phases", default=PHASES, help="schemathesis phases")
    parser.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT_S)
    parser.add_argument("--no-schemathesis", action="store_true", help="probes only")
    parser.add_argument("--keep", type=Path, help="keep the database, logs and records here")
    parser.add_argument(
        "--serve", action="store_true", help="start the seeded API, print $PT and $KEY, and wait"
    )
    args = parser.parse_args(argv)
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: give a new or empty directory")

    started = time.monotonic()
    with running_api(args.keep) as target:
        if args.serve:
            return serve(target)
        return fuzz(target, target.log.parent, args, started)


def serve(target: Target) -> int:
    print(f"export PT={target.base_url} KEY={target.api_key}")
    print(f"X-User-ID {USER}: accounts {json.dumps(target.accounts)}; call {target.call_id}")
    print(f"API log: {target.log}. Ctrl-C stops.", flush=True)
    try:
        while target.alive():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    return 0


@dataclass
class Run:
    """What one fuzz run sent and saw."""

    explicit: list[probes.Outcome] = field(default_factory=list)
    hostile: list[probes.Outcome] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # one per schemathesis request
    schemathesis_rc: int = 0
    log: str = ""  # the API's log up to the replays
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


def fuzz(target: Target, work: Path, args: argparse.Namespace, started: float) -> int:
    templates = list(httpx.get(f"{target.base_url}/openapi.json").json()["paths"])
    run = Run()
    kept = f", log {target.log}" if args.keep else " (--keep DIR keeps its log)"
    print(f"fuzz: the API at {target.base_url}{kept}", flush=True)

    # schemathesis first: it reuses values it sees in answers, and should not find the probes'
    # 64 KiB user ids there. The probes then get a Slack account and a queued call of their
    # own, whatever the fuzzer did to the seeded ones.
    mark = time.monotonic()
    if not args.no_schemathesis:
        records_file = work / "records.jsonl"
        run.schemathesis_rc = run_schemathesis(target, work, records_file, args)
        lines = records_file.read_text().splitlines()
        run.records = [json.loads(line) for line in lines if line]
    run.seconds["schemathesis"] = time.monotonic() - mark

    mark = time.monotonic()
    target.accounts["slack"] = target.connect(USER, *ACCOUNTS[0])
    target.call_id = target.new_call()
    run.explicit = probes.run(target, probes.explicit_probes(target), args.request_timeout)
    run.hostile = probes.run(target, probes.hostile_probes(target), args.request_timeout)
    run.seconds["probes"] = time.monotonic() - mark
    print(f"fuzz: {len(run.explicit)} explicit and {len(run.hostile)} hostile requests sent")
    run.log = target.log_since(0)
    alive = target.alive()

    print("fuzz: sending each failing request again, alone, for its traceback", flush=True)
    mark = time.monotonic()
    collector = Collector(target, templates, args.request_timeout)
    collector.probe_outcomes(run.explicit, "explicit")
    collector.probe_outcomes(run.hostile, "hostile")
    collector.schemathesis_records(run.records)
    run.seconds["replays"] = time.monotonic() - mark

    problems = collector.problems()
    report(run, args, templates, collector, problems)
    verdict = []
    if problems:
        verdict.append(f"{len(problems)} problems")
    if run.schemathesis_rc:
        verdict.append(f"schemathesis exited {run.schemathesis_rc}")
    if not alive:
        verdict.append("the API process died")
    elapsed = time.monotonic() - started
    print(f"\nfuzz: {'FAILED: ' + ', '.join(verdict) if verdict else 'passed'} ({elapsed:.0f} s)")
    return 1 if verdict else 0


def run_schemathesis(target: Target, work: Path, records: Path, args: argparse.Namespace) -> int:
    context = work / "context.json"
    context.write_text(
        json.dumps(
            {
                "accounts": target.accounts,
                "spare": target.spare_accounts,
                "call_id": target.call_id,
                "user": USER,
                "spare_user": SPARE_USER,
                "records": str(records),
                "request_timeout_s": args.request_timeout,
            }
        )
    )
    records.write_text("")
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{target.base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {target.api_key}",
        "--header",
        f"X-User-ID: {USER}",
        "--checks",
        "not_a_server_error,error_shape",
        "--phases",
        args.phases,
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
        "--request-timeout",
        str(args.request_timeout),
        "--continue-on-failure",
        # Shrinking a request that times out costs the timeout again and again; the replays
        # below find the traceback of each failure instead.
        "--no-shrink",
        "--generation-database",
        "none",
        "--no-color",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks",
        "PASSTHRU_FUZZ_CONTEXT": str(context),
    }
    print(
        f"fuzz: schemathesis, phases {args.phases}, {args.max_examples} examples per operation, "
        f"seed {args.seed}",
        flush=True,
    )
    return subprocess.run(argv, env=env, cwd=work, check=False).returncode


def report(
    run: Run,
    args: argparse.Namespace,
    templates: list[str],
    collector: Collector,
    problems: list[Finding],
) -> None:
    print("\n" + "=" * 30 + " fuzz summary " + "=" * 30)
    phases = Counter(str(r.get("phase")) for r in run.records)
    sent = len(run.records) + len(run.explicit) + len(run.hostile)
    print(
        f"{sent} requests: {len(run.records)} by schemathesis ("
        + ", ".join(f"{n} {p}" for p, n in phases.most_common())
        + f"; {args.max_examples} examples per operation, seed {args.seed}), "
        f"{len(run.explicit)} explicit, {len(run.hostile)} hostile"
    )
    print(
        "time: "
        + ", ".join(f"{name} {s:.0f} s" for name, s in run.seconds.items())
        + f"; PASSTHRU_MAX_WAIT_S={MAX_WAIT_S:g}, request timeout {args.request_timeout:g} s"
    )
    statuses = Counter(str(r.get("status") or "no answer") for r in run.records)
    print("schemathesis answers: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    for name, key, listed in (
        ("Prefer", "prefer", PREFER_VALUES),
        ("?wait=", "wait", WAIT_VALUES),
        ("callback and webhook URL", "callback_url", CALLBACK_URLS),
    ):
        values: set[str] = set()
        for r in run.records:
            value = r.get(key)
            values.update(value if isinstance(value, list) else [] if value is None else [value])
        hits = {v[:100] for v in listed} & values
        print(
            f"{name} values schemathesis sent: {len(values)} distinct, {len(hits)} of the "
            f"{len(listed)} listed (the explicit phase sends each of them)"
        )
    print("\nhostile requests:")
    for outcome in run.hostile:
        answer = outcome.network_error or outcome.status
        print(f"  {answer!s:>9}  {outcome.elapsed_s:5.2f} s  {outcome.probe.name}")
    logged = log_errors(run.log, templates)
    if logged:
        print(f"\nerrors the API logged before the replays ({sum(logged.values())}):")
        for cause, n in logged.most_common():
            print(f"  {n:5d} x {cause}")
    if collector.failing:
        print("\nschemathesis requests that failed a check or got no answer, per operation:")
        for operation, n in collector.failing.most_common():
            print(f"  {n:5d}  {operation}")
    if not problems:
        return
    print(f"\n{len(problems)} problems ($PT and $KEY: see `python -m tests.fuzz --serve`):")
    for i, finding in enumerate(problems, 1):
        print(f"\n{i}. [{finding.kind}] {finding.title}")
        operations, sources = sorted(finding.operations), sorted(finding.sources)
        print(f"   on {', '.join(operations)} (from {', '.join(sources)})")
        shown = [f"{label} -> {answer}" for label, answer in finding.examples.items()]
        more = f"; and {len(shown) - 30} more" if len(shown) > 30 else ""
        cases = "1 case" if len(shown) == 1 else f"{len(shown)} cases"
        print(f"   {cases}: " + "; ".join(shown[:30]) + more)
        if finding.reproducer:
            print(f"   reproduce: {finding.reproducer}")
        if finding.detail:
            print("   " + finding.detail.replace("\n", "\n   "))


if __name__ == "__main__":
    sys.exit(main())
