"""REACHLIVE_REDIS_URL → clients and Celery settings (shared/redis_client.py): the Sentinel URL's
syntax, its errors (one line, never a password), and what each kind of URL becomes."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel as sentinel

from services.poller.app import make_app
from shared import commands, redis_client
from shared.redis_client import RedisUrlError, check_url, parse_sentinel, redacted
from shared.settings import CommonSettings, SettingsError, load

SECRET = "s3cr3t"


def test_a_full_sentinel_url() -> None:
    target = parse_sentinel(
        f"redis+sentinel://app:{SECRET}@s1:26380,s2,[::1]:26381/reach-main/3?sentinel_password=p%40ss%2Bw+x"
    )
    assert target.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert target.master == "reach-main"
    assert target.db == 3
    assert (target.username, target.password) == ("app", SECRET)
    assert target.sentinel_password == "p@ss+w+x"  # percent-decoded, "+" kept
    assert SECRET not in repr(target) and "p@ss" not in repr(target)


def test_a_minimal_sentinel_url() -> None:
    target = parse_sentinel("redis+sentinel://sentinel/mymaster")
    assert target.sentinels == (("sentinel", 26379),)
    assert (target.master, target.db, target.password, target.sentinel_password) == ("mymaster", 0, None, None)
    assert target.data_auth() == {}
    assert "password" not in target.sentinel_kwargs()


def test_a_lone_token_is_the_data_password_as_in_redis_urls() -> None:
    target = parse_sentinel(f"redis+sentinel://{SECRET}@s1/m")
    assert (target.username, target.password) == (None, SECRET)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"redis+sentinel://:{SECRET}@s1,s2:26379", "no master name"),
        (f"redis+sentinel://:{SECRET}@s1,s2:26379/", "no master name"),
        (f"redis+sentinel://:{SECRET}@s1:port/m", "bad port"),
        (f"redis+sentinel://:{SECRET}@s1:70000/m", "bad port"),
        (f"redis+sentinel://:{SECRET}@s1,,s2/m", "empty sentinel host"),
        (f"redis+sentinel://:{SECRET}@s1/m/db", "<db number>"),
        (f"redis+sentinel://:{SECRET}@s1/m/0/x", "<db number>"),
        (f"redis+sentinel://:{SECRET}@[::1/m", "bad sentinel address"),
        (f"redis+sentinel://:{SECRET}@s1/m?sentinel_pasword={SECRET}", "unknown option 'sentinel_pasword'"),
        (f"redis://:{SECRET}@host:port/0", "numeric port"),
        (f"ftp://:{SECRET}@host/0", "expected a redis/rediss/unix/redis+sentinel URL"),
        (f"redis://:{SECRET}@/0", "no host"),
        ("unix://", "unix:///path"),
        (f"not a url {SECRET}", "expected a redis"),
    ],
)
def test_errors_are_one_line_without_the_password(url: str, says: str) -> None:
    with pytest.raises(RedisUrlError) as caught:
        check_url(url)
    message = str(caught.value)
    assert says in message
    assert "\n" not in message
    assert SECRET not in message


def test_the_setting_takes_every_kind_and_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACHLIVE_ALLOW_INSECURE_HOSTS", "redis,s1,s2,s3")  # no TLS to these (issue 19)
    for url in (
        "redis://redis:6379/0",
        f"rediss://default:{SECRET}@cache.example.com:6380/0",
        "unix:///run/redis.sock?db=1",
        f"redis+sentinel://:{SECRET}@s1,s2,s3/reach/0?sentinel_password={SECRET}",
    ):
        monkeypatch.setenv("REACHLIVE_REDIS_URL", url)
        assert load(CommonSettings).redis_url == url
    monkeypatch.setenv("REACHLIVE_REDIS_URL", f"redis+sentinel://:{SECRET}@s1:x/reach")
    with pytest.raises(SettingsError) as caught:
        load(CommonSettings)
    assert str(caught.value).startswith("invalid setting REACHLIVE_REDIS_URL: bad port")
    assert SECRET not in str(caught.value)


def test_redacted() -> None:
    assert redacted(f"redis://:{SECRET}@h:6379/0") == "redis://:***@h:6379/0"
    assert redacted(f"redis://user:{SECRET}@h/0") == "redis://user:***@h/0"
    assert redacted(f"redis+sentinel://{SECRET}@a,b/m?sentinel_password={SECRET}") == (
        "redis+sentinel://***@a,b/m?sentinel_password=***"
    )
    assert redacted("redis://h:6379/0") == "redis://h:6379/0"


# --- what each URL becomes (no server needed: clients connect lazily) -------------------------
SENTINEL_URL = f"redis+sentinel://app:{SECRET}@s1:26380,s2/reach/2?sentinel_password=sp"


async def test_async_clients_of_a_sentinel_url_follow_the_master() -> None:
    command = redis_client.command_client(SENTINEL_URL, max_connections=7, wait=3.0, socket_timeout=2.0)
    pool = command.connection_pool
    assert isinstance(pool, aiosentinel.SentinelConnectionPool)
    assert isinstance(pool, aioredis.BlockingConnectionPool)  # waits for a free connection
    assert (pool.service_name, pool.is_master, pool.max_connections, pool.timeout) == ("reach", True, 7, 3.0)
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"], kwargs["socket_timeout"]) == (2, "app", SECRET, 2.0)
    manager = pool.sentinel_manager
    assert [c.connection_pool.connection_kwargs["port"] for c in manager.sentinels] == [26380, 26379]
    assert manager.sentinels[0].connection_pool.connection_kwargs["password"] == "sp"
    plain = redis_client.async_client(SENTINEL_URL, max_connections=5)
    assert isinstance(plain.connection_pool, aiosentinel.SentinelConnectionPool)
    assert plain.connection_pool.max_connections == 5
    await command.aclose()
    await plain.aclose()


def test_sync_client_of_a_sentinel_url() -> None:
    client = redis_client.sync_client(SENTINEL_URL, socket_timeout=1.0)
    assert isinstance(client.connection_pool, sentinel.SentinelConnectionPool)
    assert client.connection_pool.connection_kwargs["db"] == 2
    client.close()


async def test_plain_urls_are_used_as_they_are() -> None:
    command = redis_client.command_client("redis://h:6390/4", max_connections=9)
    assert isinstance(command.connection_pool, aioredis.BlockingConnectionPool)
    assert command.connection_pool.connection_kwargs["port"] == 6390
    await command.aclose()
    sync = redis_client.sync_client("redis://h:6390/4")
    assert isinstance(sync, redis.Redis) and sync.connection_pool.connection_kwargs["db"] == 4
    assert redis_client.celery_broker("redis://h:6390/4") == ("redis://h:6390/4", {})
    assert redis_client.redbeat_settings("redis://h/0", socket_timeout=1) == {
        "redbeat_redis_url": "redis://h/0",
        "redbeat_redis_options": {"socket_timeout": 1},
    }


def test_celery_settings_of_a_sentinel_url() -> None:
    broker, options = redis_client.celery_broker(SENTINEL_URL)
    assert broker == f"sentinel://app:{SECRET}@s1:26380/2;sentinel://app:{SECRET}@s2:26379/2"
    assert options["master_name"] == "reach"
    assert options["sentinel_kwargs"]["password"] == "sp"
    beat = redis_client.redbeat_settings(SENTINEL_URL, socket_timeout=10.0)
    assert beat["redbeat_redis_url"].startswith("redis-sentinel")  # redbeat 2.4's sentinel switch
    assert beat["redbeat_redis_options"] | {"sentinel_kwargs": None} == {
        "sentinels": [("s1", 26380), ("s2", 26379)],
        "service_name": "reach",
        "db": 2,
        "username": "app",
        "password": SECRET,
        "socket_timeout": 10.0,
        "sentinel_kwargs": None,
    }


def test_the_poller_and_the_senders_use_kombus_sentinel_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(SENTINEL_URL, media_url="rtmp://x/live", caption_url="wss://x", window_margin_seconds=1)
    with app.connection_for_write() as conn:
        assert conn.transport_cls == "sentinel"
        assert [a.split("@")[1] for a in conn.alt] == ["s1:26380/2", "s2:26379/2"]
        assert SECRET not in conn.as_uri()  # what Celery logs
    assert app.conf.broker_transport_options["master_name"] == "reach"
    assert app.conf.broker_transport_options["global_keyprefix"]  # still the shared prefix
    assert app.conf.redbeat_redis_options["service_name"] == "reach"
    assert isinstance(app.reachlive.redis.connection_pool, sentinel.SentinelConnectionPool)
    sender = commands._sender(SENTINEL_URL)
    assert sender.conf.broker_transport_options["master_name"] == "reach"
    with sender.connection_for_write() as conn:
        assert conn.transport_cls == "sentinel"
