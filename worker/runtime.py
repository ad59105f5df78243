"""What the pipeline and the sweeper work with (`Runtime`: every effect comes in through
it, so tests pass their own), and the process-wide one a worker builds from its settings:
one sender (event loop + HTTP pool), one engine, one Redis client."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache, partial

import httpx
import redis
from sqlalchemy import Engine

from models.broker import Publisher
from models.broker_epoch import BrokerEpoch, RedisEpoch
from models.calls.notices import publish_notices
from models.calls.resources import CallResult
from models.catalog.apps import Catalog, get_catalog
from models.catalog.spec import RateLimitSpec
from models.crypto.secrets import Vault, vault_for
from models.db.engine import get_engine, utcnow
from models.net.egress import onward_policy
from models.net.sync_client import make_sync_client
from models.ratelimit.rules import parse_rate
from models.ratelimit.store import Limiter, RedisLimiter, make_pause_gate
from models.settings import LEASE_MARGIN_S, Settings, get_settings
from models.webhooks.due import DeliveriesDue
from worker.calls.credentials import TokenRefresher
from worker.calls.oauth import Refresher
from worker.calls.retry import RetryPolicy
from worker.calls.timeouts import Timeouts
from worker.held import Holds, NoHolds, RedisHolds
from worker.liveness import this_process
from worker.net.egress import EgressPolicy, owned_lookups, threaded_lookup
from worker.net.send import SendPolicy
from worker.net.sender import Sender
from worker.net.transport import make_async_client, make_webhook_client
from worker.webhooks.deliveries import WebhookRuntime, deliver, lease_for
from worker.webhooks.puller import LOOK_EVERY_S, Puller
from worker.webhooks.sender import LoopPoster


@dataclass(frozen=True)
class CallRules:
    """The operator's rules for every call, from the settings."""

    # How long a claimed attempt may run before it is taken back, heartbeat or not.
    attempt_deadline_s: float
    # Every request ends at least this long before its attempt's deadline.
    deadline_margin_s: float
    # How long a worker process's heartbeat holds its calls (PASSTHRU_LEASE_S).
    lease_s: float
    retry_policy: RetryPolicy
    # The operator's onward timeouts, and the cap on any an app or a call sets.
    timeouts: Timeouts
    max_timeout_s: float
    # The cap on each tenant's calls across its apps (PASSTHRU_TENANT_RATE_LIMIT).
    tenant_cap: RateLimitSpec | None
    # The sweeper publishes again a message not claimed for this long.
    republish_after_s: float
    # Attempts a webhook delivery has (the length of PASSTHRU_WEBHOOK_SCHEDULE).
    webhook_attempts: int

    @staticmethod
    def of(settings: Settings) -> CallRules:
        return CallRules(
            attempt_deadline_s=settings.attempt_deadline_s,
            deadline_margin_s=LEASE_MARGIN_S,
            lease_s=settings.lease_s,
            retry_policy=RetryPolicy(
                max_attempts=settings.retry_max_attempts, max_wait_s=settings.retry_max_wait_s
            ),
            timeouts=Timeouts(
                connect_s=settings.connect_timeout_s,
                read_s=settings.read_timeout_s,
                total_s=settings.timeout_s,
            ),
            max_timeout_s=settings.max_timeout_s,
            tenant_cap=parse_rate(settings.tenant_rate_limit),
            republish_after_s=settings.republish_after_s,
            webhook_attempts=len(settings.webhook_schedule),
        )


Notify = Callable[[Sequence[str], Sequence[CallResult]], None]


@dataclass(frozen=True)
class Runtime:
    engine: Engine
    sender: Sender
    catalog: Catalog
    vault: Vault
    rules: CallRules
    clock: Callable[[], datetime]
    # Announces finished calls to waiters: their ids, and the results of those whose
    # callers may be waiting (the interactive lane's), for the API to answer with.
    notify: Notify
    # Global rate limits and pauses (`models.ratelimit.store.UNLIMITED`: none).
    limiter: Limiter
    # Refreshes OAuth2 tokens (`worker.calls.credentials.NoRefresh`: sent as stored).
    refresher: TokenRefresher
    # Publishes retries, handed-back calls and webhook deliveries (`NoPublisher`: the
    # sweeper does, later).
    publisher: Publisher
    # Tells the sweeper when Redis lost its messages (`EpochKept`: never).
    epoch: BrokerEpoch
    # The worker process whose heartbeat holds the calls it claims (None: no heartbeat;
    # only the attempt's deadline holds them).
    worker_id: str | None = None
    # What dead worker processes held, for the sweeper (`NoHolds`: nothing recorded).
    holds: Holds = field(default_factory=NoHolds)
    # The tenants with webhook deliveries waiting on their lists, for the sweeper (none
    # known: it publishes again every delivery not published for a while).
    waiting_tenants: Callable[[], set[str]] = set
    rng: random.Random = field(default_factory=random.Random)
    # account id -> when this process last wrote its last_used_at
    touched: dict[str, datetime] = field(default_factory=dict)


# Threads resolving names, per kind of traffic (a lookup holds one until DNS answers).
ONWARD_DNS_THREADS = 8
WEBHOOK_DNS_THREADS = 8
# Receivers' names are the tenants' own: one tenant's lookups hold at most this many of them.
WEBHOOK_DNS_PER_TENANT = 2
# The webhook puller's reads block up to LOOK_EVERY_S: its client waits longer than that.
PULLER_SOCKET_TIMEOUT_S = LOOK_EVERY_S + 5


def webhook_policy(settings: Settings) -> EgressPolicy:
    """Webhooks and callbacks: never exempted by an upstream override."""
    return EgressPolicy(
        allow_private=settings.webhook_allow_private_networks,
        setting="PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS",
    )


def make_sender(settings: Settings, max_connections: int | None = None) -> Sender:
    """The process's sender: its own event loop and HTTP pool, with at most
    `max_connections` (PASSTHRU_MAX_CONNECTIONS unless told) requests on the wire."""
    connections = max_connections or settings.max_connections
    policy = SendPolicy(
        overrides=settings.upstream_overrides,
        egress=onward_policy(settings),
        max_response_bytes=settings.max_response_bytes,
    )
    lookup = threaded_lookup(ThreadPoolExecutor(ONWARD_DNS_THREADS, "passthru-dns"))
    return Sender(
        lambda: make_async_client(
            settings.http_transport,
            policy=policy.egress,
            max_connections=connections,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            lookup=lookup,
        ),
        policy,
        max_in_flight=connections,
        make_gate=lambda: make_pause_gate(settings.redis_url),
        message_memory_bytes=settings.message_memory_bytes,
    )


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    from worker.publish import publisher  # the worker's Celery app, loaded by then

    settings = get_settings()
    redis_client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=5
    )

    def notify(call_ids: Sequence[str], results: Sequence[CallResult] = ()) -> None:
        # If Redis is away, waiters still see the results by polling the database.
        with contextlib.suppress(redis.RedisError):
            publish_notices(redis_client, call_ids, results)

    return Runtime(
        engine=get_engine(),
        sender=make_sender(settings),
        catalog=get_catalog(),
        vault=vault_for(tuple(settings.encryption_key_list)),
        rules=CallRules.of(settings),
        clock=utcnow,
        notify=notify,
        publisher=publisher,
        epoch=RedisEpoch(redis_client),
        limiter=RedisLimiter(redis_client),
        worker_id=this_process().id,
        holds=RedisHolds(redis_client),
        waiting_tenants=partial(_waiting_tenants, DeliveriesDue(redis_client)),
        refresher=Refresher(
            engine=get_engine(),
            vault=vault_for(tuple(settings.encryption_key_list)),
            redis=redis_client,
            http=make_sync_client(onward_policy(settings), timeout=httpx.Timeout(5.0, connect=5.0)),
            margin_s=settings.oauth_refresh_margin_s,
            overrides=settings.upstream_overrides,
            on_revoked=notify,
        ),
    )


def _waiting_tenants(due: DeliveriesDue) -> set[str]:
    try:
        return due.tenants()
    except redis.RedisError:  # then every delivery not published for a while is, again
        return set()


@lru_cache(maxsize=1)
def get_lane_runtime() -> Runtime:
    """The interactive lane's (worker/lane.py): the process's runtime with a sender of its
    own, event loop and pool, so a caller's request is never queued on a loop busy with
    hundreds of bulk requests. Its threads run one call each: as many connections."""
    settings = get_settings()
    return replace(
        get_runtime(), sender=make_sender(settings, max_connections=settings.worker_concurrency)
    )


@lru_cache(maxsize=1)
def get_webhook_runtime() -> WebhookRuntime:
    from worker.publish import publisher  # the worker's Celery app, loaded by then

    settings = get_settings()
    policy = webhook_policy(settings)
    sender = get_runtime().sender  # webhook attempts share the process's event loop
    poster = LoopPoster(
        lambda: sender.loop,
        lambda: make_webhook_client(
            policy,
            kind=settings.http_transport,
            max_connections=settings.webhook_concurrency,
            timeout_s=settings.webhook_timeout_s,
            # Receivers' names are the tenants' own: their lookups never hold the threads
            # onward calls resolve on, nor one tenant's all the threads of the others.
            lookup=owned_lookups(
                threaded_lookup(ThreadPoolExecutor(WEBHOOK_DNS_THREADS, "passthru-webhook-dns")),
                WEBHOOK_DNS_PER_TENANT,
            ),
        ),
        concurrency=settings.webhook_concurrency,
        timeout_s=settings.webhook_timeout_s,
    )
    return WebhookRuntime(
        engine=get_engine(),
        vault=vault_for(tuple(settings.encryption_key_list)),
        poster=poster,
        schedule_s=settings.webhook_schedule,
        clock=utcnow,
        publisher=publisher,
        lease_s=lease_for(settings.webhook_timeout_s),
    )


@lru_cache(maxsize=1)
def get_puller() -> Puller:
    """The process's taker of webhook deliveries due (worker/webhooks/puller.py), on a Redis
    client of its own: its blocking reads hold their connection."""
    rt = get_webhook_runtime()
    client = redis.Redis.from_url(
        get_settings().redis_url,
        socket_timeout=PULLER_SOCKET_TIMEOUT_S,
        socket_connect_timeout=5,
    )
    return Puller(
        DeliveriesDue(client), rt.poster, lambda ids, tenant_of: deliver(ids, rt, tenant_of)
    )
