"""One settings object, read once from the environment (and `.env`).

Environment variable names are the public contract (docs/operations.md lists them).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./passthru.db"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# A worker process holds the calls it claimed while its heartbeat renews this lease (every
# fifth of it); once the renewals stop, the sweeper takes them back.
DEFAULT_LEASE_S = 12.0
# A running attempt's deadline is PASSTHRU_MAX_TIMEOUT_S plus twice this: past it the
# call is taken back even from a live worker (one stuck on it). A request starts only
# while this much of the deadline is left beyond its own timeout.
LEASE_MARGIN_S = 10.0
# Onward request timeouts: connecting, waiting for bytes, and the whole exchange. Apps and
# calls may set their own, up to DEFAULT_MAX_TIMEOUT_S.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 60.0
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_TIMEOUT_S = 90.0
# Retries: attempts per call unless the app or the call says otherwise, and the longest
# wait an upstream may ask for before the call ends `failed` with `rate_limited`.
DEFAULT_RETRY_MAX_ATTEMPTS = 4
DEFAULT_RETRY_MAX_WAIT_S = 600.0
# Upstream bodies beyond this many bytes are cut and flagged.
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
# Messages a worker process works on at once (Celery threads); each carries 1 to
# BULK_CHUNK calls, all sent concurrently by the process's event loop.
DEFAULT_WORKER_CONCURRENCY = 32
# Onward requests on the wire at once per worker process (and its connection pool size);
# more wait their turn. Past a few hundred, CPU per call rises (measured: bench/).
DEFAULT_MAX_CONNECTIONS = 256
# How often beat runs the sweeper: a third of the lease, so a dead worker's calls move on soon.
DEFAULT_SWEEP_EVERY_S = 4.0
# A queued call not claimed this long after its publish is published again (its message
# may sit unacknowledged in a dead worker's prefetch until the visibility timeout).
DEFAULT_REPUBLISH_AFTER_S = 300.0
# Longest `Prefer: wait` / `?wait=` a caller may ask for, in seconds (the contract's bound;
# PASSTHRU_MAX_WAIT_S may honour less).
MAX_WAIT_S = 60.0
# How long a submission without `Prefer` waits for its call to end (0: answer 202 at once).
DEFAULT_WAIT_S = 0.0
# Request bodies the API reads at most (413 beyond, before parsing and authentication); a
# batch of 1,000 calls may be larger.
DEFAULT_MAX_REQUEST_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_BATCH_REQUEST_BYTES = 20 * 1024 * 1024
# The largest `body` one call may send upstream (its JSON encoding).
DEFAULT_MAX_CALL_BODY_BYTES = 1024 * 1024
# Per-tenant bounds on work a tenant can start: calls accepted per second (N/S/BURST), calls
# not yet finished, open long polls per API process, redeliveries per minute.
DEFAULT_TENANT_SUBMIT_RATE = "1000/1/10000"
DEFAULT_TENANT_MAX_OPEN_CALLS = 100_000
DEFAULT_TENANT_MAX_WAITS = 100
DEFAULT_TENANT_MAX_ACCOUNTS = 1_000_000
DEFAULT_TENANT_REDELIVERIES_PER_MIN = 60
# Upstream bodies one worker message (up to 100 calls) may hold at once; bodies beyond it
# are cut and flagged like bodies over PASSTHRU_MAX_RESPONSE_BYTES.
DEFAULT_MESSAGE_MEMORY_BYTES = 64 * 1024 * 1024
# Webhook attempts in flight at once per worker process (on its event loop, never on the
# threads that run calls), and the deadline of one attempt: connect, send and answer.
DEFAULT_WEBHOOK_CONCURRENCY = 64
DEFAULT_WEBHOOK_TIMEOUT_S = 10.0
DEFAULT_METRICS_PORT = 9300


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


def _setting(default: Any, name: str, **bounds: Any) -> Any:
    """A field read from the environment variable `name`, with `default` and its bounds."""
    return Field(default, validation_alias=_env(name), **bounds)


class Settings(BaseSettings):
    """Every knob of passthru. Field names are Pythonic; aliases are the env names."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, case_sensitive=False
    )

    env: Literal["production", "dev", "test"] = _setting("production", "PASSTHRU_ENV")
    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias=_env("DATABASE_URL"))
    redis_url: str = Field(DEFAULT_REDIS_URL, validation_alias=_env("REDIS_URL"))
    port: int = Field(8000, validation_alias=_env("PORT"))
    encryption_keys: str = Field("", validation_alias=_env("PASSTHRU_ENCRYPTION_KEYS"))
    apps_file: Path | None = Field(None, validation_alias=_env("PASSTHRU_APPS_FILE"))
    upstream_overrides: dict[str, str] = Field(
        default_factory=dict, validation_alias=_env("PASSTHRU_UPSTREAM_OVERRIDES")
    )
    allow_private_networks: bool = _setting(False, "PASSTHRU_ALLOW_PRIVATE_NETWORKS")
    # The same for webhook and callback URLs; never implied by an upstream override.
    webhook_allow_private_networks: bool = Field(
        False, validation_alias=_env("PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS")
    )
    max_request_bytes: int = _setting(DEFAULT_MAX_REQUEST_BYTES, "PASSTHRU_MAX_REQUEST_BYTES", gt=0)
    max_batch_request_bytes: int = Field(
        DEFAULT_MAX_BATCH_REQUEST_BYTES,
        gt=0,
        validation_alias=_env("PASSTHRU_MAX_BATCH_REQUEST_BYTES"),
    )
    max_call_body_bytes: int = Field(
        DEFAULT_MAX_CALL_BODY_BYTES, gt=0, validation_alias=_env("PASSTHRU_MAX_CALL_BODY_BYTES")
    )
    # The longest wait honoured (a caller may ask for up to MAX_WAIT_S; more is a 400).
    max_wait_s: float = _setting(MAX_WAIT_S, "PASSTHRU_MAX_WAIT_S", ge=0, le=MAX_WAIT_S)
    # The wait of a submission that sends no `Prefer` (served up to max_wait_s, like an ask).
    default_wait_s: float = _setting(DEFAULT_WAIT_S, "PASSTHRU_DEFAULT_WAIT_S", ge=0, le=MAX_WAIT_S)
    tenant_submit_rate: str = _setting(DEFAULT_TENANT_SUBMIT_RATE, "PASSTHRU_TENANT_SUBMIT_RATE")
    tenant_max_open_calls: int = Field(
        DEFAULT_TENANT_MAX_OPEN_CALLS,
        gt=0,
        validation_alias=_env("PASSTHRU_TENANT_MAX_OPEN_CALLS"),
    )
    tenant_max_waits: int = _setting(DEFAULT_TENANT_MAX_WAITS, "PASSTHRU_TENANT_MAX_WAITS", gt=0)
    tenant_max_accounts: int = _setting(
        DEFAULT_TENANT_MAX_ACCOUNTS, "PASSTHRU_TENANT_MAX_ACCOUNTS", gt=0
    )
    tenant_redeliveries_per_min: int = Field(
        DEFAULT_TENANT_REDELIVERIES_PER_MIN,
        gt=0,
        validation_alias=_env("PASSTHRU_TENANT_REDELIVERIES_PER_MIN"),
    )
    lease_s: float = Field(DEFAULT_LEASE_S, ge=3, le=600, validation_alias=_env("PASSTHRU_LEASE_S"))
    connect_timeout_s: float = Field(
        DEFAULT_CONNECT_TIMEOUT_S, gt=0, validation_alias=_env("PASSTHRU_CONNECT_TIMEOUT_S")
    )
    read_timeout_s: float = _setting(DEFAULT_READ_TIMEOUT_S, "PASSTHRU_READ_TIMEOUT_S", gt=0)
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, validation_alias=_env("PASSTHRU_TIMEOUT_S"))
    max_timeout_s: float = _setting(DEFAULT_MAX_TIMEOUT_S, "PASSTHRU_MAX_TIMEOUT_S", gt=0)
    retry_max_attempts: int = Field(
        DEFAULT_RETRY_MAX_ATTEMPTS,
        ge=1,
        le=10,
        validation_alias=_env("PASSTHRU_RETRY_MAX_ATTEMPTS"),
    )
    retry_max_wait_s: float = _setting(DEFAULT_RETRY_MAX_WAIT_S, "PASSTHRU_RETRY_MAX_WAIT_S", gt=0)
    max_response_bytes: int = Field(
        DEFAULT_MAX_RESPONSE_BYTES, gt=0, validation_alias=_env("PASSTHRU_MAX_RESPONSE_BYTES")
    )
    message_memory_bytes: int = Field(
        DEFAULT_MESSAGE_MEMORY_BYTES,
        gt=0,
        validation_alias=_env("PASSTHRU_MESSAGE_MEMORY_BYTES"),
    )
    worker_concurrency: int = _setting(DEFAULT_WORKER_CONCURRENCY, "PASSTHRU_WORKER_CONCURRENCY")
    # The interactive lane runs in a process of its own beside each worker (worker/lane_process.py).
    lane_process: bool = _setting(True, "PASSTHRU_LANE_PROCESS")
    # The API takes batches in through a process of its own (api/batch_intake.py).
    batch_intake_process: bool = _setting(True, "PASSTHRU_BATCH_INTAKE_PROCESS")
    max_connections: int = _setting(DEFAULT_MAX_CONNECTIONS, "PASSTHRU_MAX_CONNECTIONS")
    http_transport: Literal["aiohttp", "httpx"] = _setting("aiohttp", "PASSTHRU_HTTP_TRANSPORT")
    db_pool_size: int = Field(20, ge=1, validation_alias=_env("PASSTHRU_DB_POOL_SIZE"))
    # How long a request waits for a free database connection before it is answered 503.
    db_pool_timeout_s: float = _setting(10.0, "PASSTHRU_DB_POOL_TIMEOUT_S", gt=0, le=300)
    sweep_every_s: float = _setting(DEFAULT_SWEEP_EVERY_S, "PASSTHRU_SWEEP_EVERY_S")
    republish_after_s: float = _setting(DEFAULT_REPUBLISH_AFTER_S, "PASSTHRU_REPUBLISH_AFTER_S")
    # OAuth2 access tokens are refreshed this long before they expire.
    oauth_refresh_margin_s: float = _setting(300.0, "PASSTHRU_OAUTH_REFRESH_MARGIN_S", ge=0)
    # The operator's OAuth client per app, {"slug": {"client_id": ..., "client_secret": ...}},
    # over what PASSTHRU_APPS_FILE says.
    oauth_clients: dict[str, dict[str, str]] = Field(
        default_factory=dict, validation_alias=_env("PASSTHRU_OAUTH_CLIENTS")
    )
    # The API's public origin (connect links, the OAuth callback); "" is http://127.0.0.1:PORT.
    public_url: str = Field("", validation_alias=_env("PASSTHRU_PUBLIC_URL"))
    # How long a connect link lasts (seconds).
    connect_session_ttl_s: float = Field(
        600.0, gt=0, le=86_400, validation_alias=_env("PASSTHRU_CONNECT_SESSION_TTL_S")
    )
    # A worker touches this file every few seconds while it runs; `passthru worker-alive`
    # (a Kubernetes liveness probe) checks it is fresh.
    heartbeat_file: Path = Field(
        Path("/tmp/passthru-worker.heartbeat"),  # noqa: S108 - per-container, not shared
        validation_alias=_env("PASSTHRU_HEARTBEAT_FILE"),
    )
    # Each worker process serves its Prometheus metrics on this port (0: not at all). Run one
    # worker process per container, or give each its own port.
    worker_metrics_port: int = _setting(9400, "PASSTHRU_WORKER_METRICS_PORT", ge=0, le=65535)
    # The API process serves its metrics on this port (0: not at all); the API port answers
    # GET /metrics only to `Authorization: Bearer <PASSTHRU_METRICS_TOKEN>`, when it is set.
    metrics_port: int = _setting(DEFAULT_METRICS_PORT, "PASSTHRU_METRICS_PORT", ge=0, le=65535)
    metrics_token: str = Field("", validation_alias=_env("PASSTHRU_METRICS_TOKEN"))
    # Flower's port and basic auth (user:password[,user:password]); `passthru flower`
    # refuses to start without it.
    flower_port: int = Field(5555, validation_alias=_env("FLOWER_PORT"))
    flower_basic_auth: str = Field("", validation_alias=_env("FLOWER_BASIC_AUTH"))
    # Set by `passthru dev` for its own API: /readyz echoes it to a probe that sends it.
    dev_instance: str = Field("", validation_alias=_env("PASSTHRU_DEV_INSTANCE"))
    # Finished calls older than this many days are deleted (0: kept forever).
    retention_days: float = Field(30.0, ge=0, validation_alias=_env("PASSTHRU_RETENTION_DAYS"))
    # Webhook retries: seconds to wait before each attempt (Standard Webhooks' schedule).
    webhook_schedule_s: str = Field(
        "0,5,300,1800,7200,18000,36000,36000",
        validation_alias=_env("PASSTHRU_WEBHOOK_SCHEDULE_S"),
    )
    webhook_timeout_s: float = Field(
        DEFAULT_WEBHOOK_TIMEOUT_S, gt=0, le=60, validation_alias=_env("PASSTHRU_WEBHOOK_TIMEOUT_S")
    )
    webhook_concurrency: int = Field(
        DEFAULT_WEBHOOK_CONCURRENCY, gt=0, validation_alias=_env("PASSTHRU_WEBHOOK_CONCURRENCY")
    )
    # A cap on each tenant's calls across all its apps, N/SECONDS[/BURST]; "" is none.
    tenant_rate_limit: str = Field("", validation_alias=_env("PASSTHRU_TENANT_RATE_LIMIT"))
    # `json`: a JSON object per line (log shippers); `text`: a terminal; `dev`: models/terminal.py.
    log_format: Literal["json", "text", "dev"] = _setting("json", "PASSTHRU_LOG_FORMAT")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _setting("INFO", "PASSTHRU_LOG_LEVEL")

    @field_validator("upstream_overrides")
    @classmethod
    def _origins(cls, value: dict[str, str]) -> dict[str, str]:
        from models.net.urls import normalize_origin

        return {normalize_origin(k): normalize_origin(v) for k, v in value.items()}

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str) -> str:
        if value and (not value.startswith(("https://", "http://")) or "?" in value):
            raise ValueError("an http(s) origin, such as https://passthru.example.com")
        return value.rstrip("/")

    @property
    def public_origin(self) -> str:
        return self.public_url or f"http://127.0.0.1:{self.port}"

    @field_validator("webhook_schedule_s")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",")]
        except ValueError:
            raise ValueError("write seconds separated by commas, e.g. 0,5,300") from None
        if not delays or any(d < 0 for d in delays):
            raise ValueError("write seconds separated by commas, e.g. 0,5,300")
        return value

    @property
    def webhook_schedule(self) -> list[float]:
        return [float(part) for part in self.webhook_schedule_s.split(",")]

    @field_validator("tenant_rate_limit", "tenant_submit_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        from models.ratelimit.rules import parse_rate

        parse_rate(value)
        return value

    @model_validator(mode="after")
    def _timeouts_fit(self) -> Settings:
        longest = max(self.connect_timeout_s, self.read_timeout_s, self.timeout_s)
        if longest > self.max_timeout_s:
            raise ValueError(
                f"the default timeouts ({longest:g} s) exceed PASSTHRU_MAX_TIMEOUT_S "
                f"({self.max_timeout_s:g} s); raise it or lower them"
            )
        return self

    @property
    def attempt_deadline_s(self) -> float:
        """How long a claimed attempt may run, heartbeat or not: the longest exchange,
        with room to wait its turn on the wire and to be stored."""
        return self.max_timeout_s + 2 * LEASE_MARGIN_S

    @property
    def heartbeat_every_s(self) -> float:
        """How often a worker process renews its lease: five chances before it runs out."""
        return self.lease_s / 5

    @property
    def encryption_key_list(self) -> list[str]:
        return [k.strip() for k in self.encryption_keys.split(",") if k.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use; tests call `get_settings.cache_clear()`."""
    return Settings()
