"""Settings: the environment variable names of DESIGN.md are the public contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from models.settings import Settings

ENV_NAMES = [
    "DATABASE_URL",
    "REDIS_URL",
    "PORT",
    "PASSTHRU_ENCRYPTION_KEYS",
    "PASSTHRU_APPS_FILE",
    "PASSTHRU_UPSTREAM_OVERRIDES",
    "PASSTHRU_ALLOW_PRIVATE_NETWORKS",
    "PASSTHRU_LEASE_S",
    "PASSTHRU_CONNECT_TIMEOUT_S",
    "PASSTHRU_READ_TIMEOUT_S",
    "PASSTHRU_TIMEOUT_S",
    "PASSTHRU_MAX_TIMEOUT_S",
    "PASSTHRU_RETRY_MAX_ATTEMPTS",
    "PASSTHRU_RETRY_MAX_WAIT_S",
    "PASSTHRU_DEFAULT_WAIT_S",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _settings() -> Settings:
    return Settings(_env_file=None)


def test_defaults_match_design(clean_env: pytest.MonkeyPatch) -> None:
    s = _settings()
    assert s.database_url == "sqlite:///./passthru.db"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.port == 8000
    assert s.encryption_key_list == []
    assert s.apps_file is None
    assert s.upstream_overrides == {}
    assert s.allow_private_networks is False


def test_design_env_names_are_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given every documented variable set
    apps = tmp_path / "apps.yaml"
    clean_env.setenv("DATABASE_URL", "postgresql://u:p@db:5432/passthru")
    clean_env.setenv("REDIS_URL", "redis://cache:6380/2")
    clean_env.setenv("PORT", "9123")
    clean_env.setenv("PASSTHRU_ENCRYPTION_KEYS", " key-one , key-two,,")
    clean_env.setenv("PASSTHRU_APPS_FILE", str(apps))
    clean_env.setenv(
        "PASSTHRU_UPSTREAM_OVERRIDES", '{"https://slack.com": "http://127.0.0.1:9000"}'
    )
    clean_env.setenv("PASSTHRU_ALLOW_PRIVATE_NETWORKS", "true")
    # When settings are read
    s = _settings()
    # Then each lands in its field
    assert s.database_url == "postgresql://u:p@db:5432/passthru"
    assert s.redis_url == "redis://cache:6380/2"
    assert s.port == 9123
    assert s.encryption_key_list == ["key-one", "key-two"]
    assert s.apps_file == apps
    assert s.upstream_overrides == {"https://slack.com": "http://127.0.0.1:9000"}
    assert s.allow_private_networks is True


def test_overrides_json_is_normalized(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(
        "PASSTHRU_UPSTREAM_OVERRIDES",
        '{"https://Slack.com/": "http://LOCALHOST:9000/", "https://api.pipedrive.com": '
        '"http://127.0.0.1:9001"}',
    )
    assert _settings().upstream_overrides == {
        "https://slack.com": "http://localhost:9000",
        "https://api.pipedrive.com": "http://127.0.0.1:9001",
    }


@pytest.mark.parametrize(
    "value",
    [
        '{"https://slack.com": "http://127.0.0.1:9000/mock"}',
        '{"https://slack.com/api": "http://127.0.0.1:9000"}',
        '{"https://slack.com": "127.0.0.1:9000"}',
        '{"https://slack.com": "http://127.0.0.1:9000?x=1"}',
    ],
)
def test_override_with_path_or_non_origin_is_rejected(
    clean_env: pytest.MonkeyPatch, value: str
) -> None:
    clean_env.setenv("PASSTHRU_UPSTREAM_OVERRIDES", value)
    with pytest.raises(ValidationError):
        _settings()


def test_overrides_not_json_is_rejected(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PASSTHRU_UPSTREAM_OVERRIDES", "https://slack.com=http://127.0.0.1:9000")
    with pytest.raises((ValidationError, SettingsError)):
        _settings()


def test_lower_case_names_are_accepted_too(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("redis_url", "redis://lower:1/0")
    assert _settings().redis_url == "redis://lower:1/0"


def test_env_file_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=7001\nPASSTHRU_ALLOW_PRIVATE_NETWORKS=1\n")
    s = Settings(_env_file=env_file)
    assert s.port == 7001
    assert s.allow_private_networks is True


def test_the_lease_no_longer_depends_on_the_longest_exchange(
    clean_env: pytest.MonkeyPatch,
) -> None:
    # Given a lease far shorter than the longest exchange
    clean_env.setenv("PASSTHRU_MAX_TIMEOUT_S", "120")
    clean_env.setenv("PASSTHRU_LEASE_S", "10")
    s = _settings()
    # Then it is accepted: the heartbeat renews it every fifth of it, and an attempt's
    # deadline follows the longest exchange instead
    assert (s.lease_s, s.heartbeat_every_s) == (10, 2)
    assert s.attempt_deadline_s > s.max_timeout_s


@pytest.mark.parametrize("lease", ["2", "0", "-5", "601"])
def test_a_lease_too_short_to_beat_in_or_too_long_to_fail_over_is_refused(
    clean_env: pytest.MonkeyPatch, lease: str
) -> None:
    clean_env.setenv("PASSTHRU_LEASE_S", lease)
    with pytest.raises(ValidationError, match="PASSTHRU_LEASE_S"):
        _settings()


def test_default_timeouts_above_the_cap_are_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PASSTHRU_TIMEOUT_S", "100")
    with pytest.raises(ValidationError, match="PASSTHRU_MAX_TIMEOUT_S"):
        _settings()


def test_timeouts_and_retries_are_settings(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in {
        "PASSTHRU_CONNECT_TIMEOUT_S": "3",
        "PASSTHRU_READ_TIMEOUT_S": "20",
        "PASSTHRU_TIMEOUT_S": "25",
        "PASSTHRU_MAX_TIMEOUT_S": "30",
        "PASSTHRU_LEASE_S": "45",
        "PASSTHRU_RETRY_MAX_ATTEMPTS": "6",
        "PASSTHRU_RETRY_MAX_WAIT_S": "120",
    }.items():
        clean_env.setenv(name, value)
    s = _settings()
    assert (s.connect_timeout_s, s.read_timeout_s, s.timeout_s, s.max_timeout_s) == (3, 20, 25, 30)
    assert (s.lease_s, s.retry_max_attempts, s.retry_max_wait_s) == (45, 6, 120)


def test_a_tenant_rate_limit_must_be_a_rate(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PASSTHRU_TENANT_RATE_LIMIT", "lots")
    with pytest.raises(ValidationError, match="N/SECONDS"):
        _settings()
    clean_env.setenv("PASSTHRU_TENANT_RATE_LIMIT", "200/1")
    assert _settings().tenant_rate_limit == "200/1"


def test_the_default_wait_is_0_and_within_the_contracts_bound(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert _settings().default_wait_s == 0
    clean_env.setenv("PASSTHRU_DEFAULT_WAIT_S", "10")
    assert _settings().default_wait_s == 10
    for refused in ("-1", "61", "nan"):
        clean_env.setenv("PASSTHRU_DEFAULT_WAIT_S", refused)
        with pytest.raises(ValidationError, match=r"(?i)default_wait_s"):
            _settings()
