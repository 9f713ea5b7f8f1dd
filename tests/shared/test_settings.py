from __future__ import annotations

import subprocess
import sys

import pytest

from shared.settings import (
    CommonSettings,
    GatewaySettings,
    IngestSettings,
    KalturaSettings,
    RelaySettings,
    SettingsError,
    load,
    split_listen,
)


def test_defaults_match_the_design() -> None:
    assert load(CommonSettings).redis_url == ""
    assert load(KalturaSettings).service_url == "https://www.kaltura.com"
    assert load(KalturaSettings).poll_seconds == 30
    assert load(IngestSettings).chunk_ms == 2000
    assert load(GatewaySettings).max_connection_seconds == 7200


def test_values_come_from_reachlive_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACHLIVE_ALLOW_INSECURE_HOSTS", "cache")  # redis:// to a remote host (issue 19)
    monkeypatch.setenv("REACHLIVE_REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("REACHLIVE_KALTURA_PARTNER_ID", "5173642")
    monkeypatch.setenv("REACHLIVE_KALTURA_ADMIN_SECRET", "s3cret")
    monkeypatch.setenv("REACHLIVE_INGEST_LISTEN", "[::]:1935")
    monkeypatch.setenv("REACHLIVE_RELAY_CHUNK_SECONDS", "6")
    assert load(CommonSettings).redis_url == "redis://cache:6380/2"
    kaltura = load(KalturaSettings)
    assert kaltura.partner_id == 5173642
    assert kaltura.admin_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(kaltura)
    assert split_listen(load(IngestSettings).listen) == ("::", 1935)
    assert load(RelaySettings).chunk_seconds == 6


@pytest.mark.parametrize(
    ("cls", "var", "value", "expected"),
    [
        (CommonSettings, "REACHLIVE_REDIS_URL", "not a url", "REACHLIVE_REDIS_URL"),
        (CommonSettings, "REACHLIVE_REDIS_URL", "redis://host:port/0", "REACHLIVE_REDIS_URL"),
        (KalturaSettings, "REACHLIVE_KALTURA_POLL_SECONDS", "-5", "REACHLIVE_KALTURA_POLL_SECONDS"),
        (KalturaSettings, "REACHLIVE_KALTURA_SERVICE_URL", "ftp://x", "REACHLIVE_KALTURA_SERVICE_URL"),
        (IngestSettings, "REACHLIVE_INGEST_LISTEN", "0.0.0.0", "REACHLIVE_INGEST_LISTEN"),
        (GatewaySettings, "REACHLIVE_GATEWAY_LISTEN", "localhost:99999", "REACHLIVE_GATEWAY_LISTEN"),
        (RelaySettings, "REACHLIVE_RELAY_CHUNK_SECONDS", "1", "REACHLIVE_RELAY_CHUNK_SECONDS"),
        (CommonSettings, "REACHLIVE_METRICS_PORT", "abc", "REACHLIVE_METRICS_PORT"),
        (CommonSettings, "REACHLIVE_CAPTION_TYPES", "subtitles", "REACHLIVE_CAPTION_TYPES"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, cls: type, var: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load(cls)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_a_bad_value_stops_the_command_with_one_line() -> None:
    env = {"REACHLIVE_REDIS_URL": "nonsense", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "shared.cli", "redis"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "REACHLIVE_REDIS_URL" in lines[0]
    assert "Traceback" not in proc.stderr
