"""Issue 19: settings that would send secrets in clear over a network are refused, and no settings
error shows any part of a value.

- ``http://`` Kaltura, ``ws://`` KWIKmotion, ``redis://`` and ``redis+sentinel://`` Redis URLs to a
  host that is not loopback are refused unless REACHLIVE_ALLOW_INSECURE_HOSTS names it;
- a malformed value is named by its variable and problem only: checked for every field of every
  settings class, and with the real ``reachlive <service>`` commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from shared import cleartext
from shared import settings as settings_module
from shared.child import ROOT
from shared.settings import CommonSettings, KalturaSettings, KwikmotionSettings, SettingsError, load

SECRET = "Hunter2-s3cr3t"
ALLOW = "REACHLIVE_ALLOW_INSECURE_HOSTS"


def _load(monkeypatch: pytest.MonkeyPatch, var: str, value: str, allow: str | None = None) -> object:
    cls = {
        "REACHLIVE_REDIS_URL": CommonSettings,
        "REACHLIVE_KALTURA_SERVICE_URL": KalturaSettings,
        "REACHLIVE_KWIKMOTION_URL": KwikmotionSettings,
    }[var]
    monkeypatch.setenv(var, value)
    if allow is None:
        monkeypatch.delenv(ALLOW, raising=False)
    else:
        monkeypatch.setenv(ALLOW, allow)
    return load(cls)


REFUSED = [
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://www.kaltura.com", "http://", "https://"),
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://10.0.0.5:8000", "http://", "https://"),
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://[2001:db8::1]:8000", "http://", "https://"),
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://127.0.0.1.nip.io:8000", "http://", "https://"),  # not resolved
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://0.0.0.0:8000", "http://", "https://"),
    ("REACHLIVE_KWIKMOTION_URL", "ws://kwikmotion.example.com/v1/live", "ws://", "wss://"),
    ("REACHLIVE_KWIKMOTION_URL", f"ws://user:{SECRET}@10.1.2.3:8765/", "ws://", "wss://"),
    ("REACHLIVE_REDIS_URL", f"redis://:{SECRET}@redis.example.internal:6379/0", "redis://", "rediss://"),
    ("REACHLIVE_REDIS_URL", "redis://redis:6379/0", "redis://", "rediss://"),  # no password: still keys
    ("REACHLIVE_REDIS_URL", "redis://192.168.1.10", "redis://", "rediss://"),
    (
        "REACHLIVE_REDIS_URL",
        f"redis+sentinel://:{SECRET}@127.0.0.1:26379,10.0.2.5:26379/reach/0",  # one remote sentinel
        "redis+sentinel://",
        "rediss://",
    ),
]


@pytest.mark.parametrize(("var", "value", "scheme", "instead"), REFUSED)
def test_clear_text_urls_to_remote_hosts_are_refused_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, scheme: str, instead: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        _load(monkeypatch, var, value)
    message = str(caught.value)
    assert message.startswith(f"invalid setting {var}: {scheme} would carry ")
    assert "in clear to a host that is not loopback" in message
    assert f"use {instead}" in message or "use a rediss:// endpoint" in message
    assert ALLOW in message
    assert "\n" not in message
    # Nothing of the value: neither its host nor its password.
    host = value.split("://", 1)[1].split("@")[-1].split("/")[0]
    assert host not in message and SECRET not in message


ALLOWED = [
    ("REACHLIVE_KALTURA_SERVICE_URL", "https://www.kaltura.com", None),
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://127.0.0.1:8000", None),
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://127.9.8.7:8000", None),  # all of 127.0.0.0/8
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://localhost:8000", None),
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://LOCALHOST.:8000", None),
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://[::1]:8000", None),
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://[::ffff:127.0.0.1]:8000", None),
    ("REACHLIVE_KALTURA_SERVICE_URL", "http://kaltura-emulator:8000", "redis, Kaltura-Emulator ,kwikmotion-emulator"),
    ("REACHLIVE_KWIKMOTION_URL", "wss://kwikmotion.example.com/v1/live", None),
    ("REACHLIVE_KWIKMOTION_URL", "ws://127.0.0.1:8765/", None),
    ("REACHLIVE_KWIKMOTION_URL", "ws://kwikmotion-emulator:8765/", "redis,kaltura-emulator,kwikmotion-emulator"),
    ("REACHLIVE_REDIS_URL", f"rediss://:{SECRET}@redis.example.internal:6380/0", None),
    ("REACHLIVE_REDIS_URL", "redis://127.0.0.1:6379/0", None),
    ("REACHLIVE_REDIS_URL", f"redis://:{SECRET}@localhost:6379/0", None),
    ("REACHLIVE_REDIS_URL", "redis://[::1]:6379/0", None),
    ("REACHLIVE_REDIS_URL", "unix:///run/redis/redis.sock?db=1", None),
    ("REACHLIVE_REDIS_URL", "redis://redis:6379/0", "redis"),
    ("REACHLIVE_REDIS_URL", "redis://10.0.0.7:6379/0", "10.0.0.7"),
    ("REACHLIVE_REDIS_URL", "redis://[2001:db8::7]:6379/0", "[2001:DB8:0::7]"),  # one spelling per address
    ("REACHLIVE_REDIS_URL", "redis://anything.example.com:6379/0", "*"),
    ("REACHLIVE_REDIS_URL", "redis+sentinel://127.0.0.1:26379,[::1]:26380/reach", None),
    ("REACHLIVE_REDIS_URL", "redis+sentinel://10.0.1.5,10.0.2.5/reach/0", "10.0.1.5,10.0.2.5"),
    ("REACHLIVE_REDIS_URL", "", None),  # empty: the embedded Redis of all/demo
]


@pytest.mark.parametrize(("var", "value", "allow"), ALLOWED)
def test_tls_loopback_and_named_hosts_are_allowed(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, allow: str | None
) -> None:
    loaded = _load(monkeypatch, var, value, allow)
    field = {"REACHLIVE_REDIS_URL": "redis_url", "REACHLIVE_KALTURA_SERVICE_URL": "service_url"}.get(var, "url")
    assert getattr(loaded, field) == value


def test_the_allowance_is_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    allow = "redis,kaltura-emulator"
    _load(monkeypatch, "REACHLIVE_REDIS_URL", "redis://redis:6379/0", allow)
    with pytest.raises(SettingsError):
        _load(monkeypatch, "REACHLIVE_KWIKMOTION_URL", "ws://kwikmotion-emulator:8765/", allow)
    with pytest.raises(SettingsError):
        _load(monkeypatch, "REACHLIVE_REDIS_URL", "redis+sentinel://redis,sentinel-2/reach", allow)


def test_loopback_is_literal() -> None:
    assert cleartext.is_loopback("127.0.0.1") and cleartext.is_loopback("[::1]") and cleartext.is_loopback("localhost")
    assert not cleartext.is_loopback("localhost.example.com") and not cleartext.is_loopback("0.0.0.0")
    assert not cleartext.is_loopback("::ffff:10.0.0.1") and cleartext.is_loopback("::ffff:127.0.0.1")


# --- no value in any settings error -------------------------------------------------------------
def _settings_classes() -> list[type[BaseSettings]]:
    return [
        obj
        for obj in vars(settings_module).values()
        if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj is not BaseSettings
    ]


BAD_VALUES = [
    f"redis://user:{SECRET}/x@host:6379/0",  # a password with an unencoded "/": no @ where one looks
    f"http://user:{SECRET}@host:port/",
    f"ws://:{SECRET}@[bad/",
    f"{SECRET}",
    f"[{SECRET}]:99999",
    f"transcript,{SECRET}",
]


@pytest.mark.parametrize("value", BAD_VALUES)
def test_no_settings_error_shows_the_value(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Every field of every settings class, set to a value holding a secret: loaded as is, or
    refused with a message naming the variable, never with the secret."""
    refused = 0
    for cls in _settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for field in cls.model_fields:
            var = f"{prefix}{field}".upper()
            monkeypatch.setenv(var, value)
            try:
                load(cls)
            except SettingsError as exc:
                refused += 1
                assert var in str(exc) and SECRET not in str(exc), var
            finally:
                monkeypatch.delenv(var)
    assert refused > 20


# --- the real commands --------------------------------------------------------------------------
def _cli(service: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "reachlive"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "shared.cli"]
    full = {"PATH": "/usr/bin:/bin", "REACHLIVE_DATA_DIR": str(tmp_path / "data"), "REACHLIVE_METRICS_PORT": "0", **env}
    if "PYTHONPATH" in os.environ:  # a checkout other than the installed one (a worktree)
        full["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run([*command, service], env=full, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("service", "var", "value"),
    [
        ("worker", "REACHLIVE_REDIS_URL", f"redis://reach:{SECRET}/x@redis.example.internal:6379/0"),
        ("gateway", "REACHLIVE_REDIS_URL", f"redis://reach:{SECRET}/x@redis.example.internal:6379/0"),
        ("ingest", "REACHLIVE_REDIS_URL", f"redis://:{SECRET}@redis.example.internal:notaport/0"),
        ("relay", "REACHLIVE_REDIS_URL", f"redis+sentinel://:{SECRET}@s1:99999/reach"),
        ("poller", "REACHLIVE_REDIS_URL", f"redis://:{SECRET}@redis.example.internal:6379/0"),  # no TLS
        ("all", "REACHLIVE_REDIS_URL", f"redis://reach:{SECRET}@/0"),
        ("relay", "REACHLIVE_KWIKMOTION_URL", f"ws://user:{SECRET}@kwikmotion.example.com:bad/"),
        ("worker", "REACHLIVE_KALTURA_SERVICE_URL", f"ftp://vendor:{SECRET}@www.kaltura.com/"),
    ],
)
def test_the_commands_never_print_a_bad_value(service: str, var: str, value: str, tmp_path: Path) -> None:
    env = {"REACHLIVE_REDIS_URL": "redis://127.0.0.1:1/0", var: value}
    proc = _cli(service, env, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"reachlive {service}: invalid setting {var}: "), proc.stderr
    assert SECRET not in proc.stderr and SECRET not in proc.stdout
    assert "Traceback" not in proc.stderr
