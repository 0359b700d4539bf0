from __future__ import annotations

from pathlib import Path

import pytest

from domain.secrets import SecretBox, generate_key, secret_box
from domain.settings import Settings, SettingsError, load_settings


def test_defaults_are_the_embedded_postgres_and_redis_of_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("DATABASE_URL", "BROKER_URL", "SMTP_URL"):
        monkeypatch.delenv(f"METERBRIDGE_{name}", raising=False)
    monkeypatch.setenv("METERBRIDGE_DATA_DIR", str(tmp_path))
    settings = load_settings()
    run = tmp_path.resolve() / "run"
    assert settings.sqlalchemy_url == f"postgresql+psycopg://postgres@/meterbridge?host={run}"
    assert settings.celery_broker_url == f"redis+socket://{run}/redis.sock"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, "redis+unix://{run}/redis.sock"),  # the embedded Redis, the broker's
        ({"broker_url": "redis://r:6379/2"}, "redis://r:6379/2"),
        ({"broker_url": "rediss://:pw@r:6380/0"}, "rediss://:pw@r:6380/0"),
        ({"broker_url": "redis+socket:///tmp/r.sock"}, "redis+unix:///tmp/r.sock"),
        ({"broker_url": "amqp://g:g@rabbit//"}, "redis+unix://{run}/redis.sock"),
        ({"broker_url": "amqp://g:g@rabbit//", "redis_url": "redis://r/1"}, "redis://r/1"),
        ({"broker_url": "redis://b/0", "redis_url": "redis://r/1"}, "redis://r/1"),
        ({"redis_url": "unix:///var/run/r.sock"}, "redis+unix:///var/run/r.sock"),
        ({"redis_url": "redis+unix:///var/run/r.sock"}, "redis+unix:///var/run/r.sock"),
    ],
)
def test_rate_limits_live_in_the_redis_url_else_the_redis_broker_else_the_embedded_one(
    tmp_path: Path, values: dict[str, str], expected: str
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, **values)
    run = tmp_path.resolve() / "run"
    expected = expected.format(run=run)
    assert settings.rate_limit_redis_url == expected
    # the embedded Redis runs exactly when the broker or the rate limits need it
    embedded_broker = not values.get("broker_url")
    assert settings.embedded_redis == (
        embedded_broker or expected.startswith(f"redis+unix://{run}")
    )


def test_a_data_dir_too_deep_for_a_socket_gets_a_short_socket_dir(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 5)
    settings = Settings(_env_file=None, data_dir=deep)
    assert len(str(settings.socket_dir / ".s.PGSQL.5432")) <= 100
    assert str(settings.socket_dir).startswith("/tmp/meterbridge-")
    # the same data dir always finds the same servers; another one, other servers
    assert Settings(_env_file=None, data_dir=deep).socket_dir == settings.socket_dir
    assert Settings(_env_file=None, data_dir=deep / "x").socket_dir != settings.socket_dir


def test_postgres_urls_use_psycopg() -> None:
    settings = Settings(database_url="postgresql://u@db:5432/mb")
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@db:5432/mb"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("METERBRIDGE_DATABASE_URL", "mysql://x"),
        ("METERBRIDGE_DATABASE_URL", "sqlite:///x.db"),
        ("METERBRIDGE_BROKER_URL", "sqs://"),
        ("METERBRIDGE_BROKER_URL", "filesystem://"),
        ("METERBRIDGE_REDIS_URL", "amqp://rabbit//"),
        ("METERBRIDGE_REDIS_URL", "memcached://m:11211"),
        ("METERBRIDGE_SMTP_URL", "http://mail"),
        ("METERBRIDGE_RECEIVER_PORT", "eighty"),
        ("METERBRIDGE_RETRY_MAX_ATTEMPTS", "0"),
        ("METERBRIDGE_LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert variable in str(raised.value)


def test_secrets_round_trip_and_rotate() -> None:
    old, new = generate_key(), generate_key()
    token = SecretBox([old]).encrypt("whsec_abc")
    assert "whsec_abc" not in token
    assert SecretBox([new, old]).decrypt(token) == "whsec_abc"
    with pytest.raises(SettingsError, match="METERBRIDGE_SECRET_KEY"):
        SecretBox([new]).decrypt(token)


def test_a_server_database_requires_a_secret_key() -> None:
    with pytest.raises(SettingsError, match="METERBRIDGE_SECRET_KEY"):
        secret_box(Settings(database_url="postgresql://u@db/mb", secret_key=None))
    with pytest.raises(SettingsError, match="METERBRIDGE_SECRET_KEY"):
        secret_box(Settings(secret_key="not-a-key"))


def test_embedded_installs_keep_a_key_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="", secret_key=None)
    token = secret_box(settings).encrypt("x")
    assert secret_box(settings).decrypt(token) == "x"
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
