"""Settings for every reachlive command (docs/design.md section 6).

Each group is its own ``BaseSettings`` with a flat ``REACHLIVE_<GROUP>_`` prefix, so the public
variable names stay exactly those of the design (``REACHLIVE_KALTURA_SERVICE_URL``, not a nested
``REACHLIVE_KALTURA__SERVICE_URL``). ``load()`` turns a validation failure into one readable line
that names the variable, for the command to print instead of a traceback. No error shows any part
of the value (issue 19: a Redis URL's password went out with it): validators say what is wrong,
never with what.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "REACHLIVE_"


class SettingsError(Exception):
    """A setting has a bad value; the message is one line naming the variable."""


def _listen(value: str) -> str:
    """``host:port`` (``[::]:port`` for IPv6); the port is required, 0 means any free port."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected host:port with a port from 0 to 65535")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError("unbalanced brackets around the host")
    return value


def _url(*schemes: str, allow_empty: bool = False, clear: tuple[str, str, str] | None = None):
    """``clear``: (scheme without TLS, what it would carry, the TLS scheme): refused to a host
    that is not loopback unless REACHLIVE_ALLOW_INSECURE_HOSTS names it (shared/cleartext.py)."""

    def check(value: str) -> str:
        if not value and allow_empty:
            return value
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"expected a {'/'.join(schemes)} URL with a host")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError:
            raise ValueError("bad port") from None
        if clear and parts.scheme == clear[0]:
            _refuse_cleartext([parts.hostname], *clear)
        return value

    return AfterValidator(check)


def _refuse_cleartext(hosts: list[str], scheme: str, carries: str, instead: str) -> None:
    from shared import cleartext

    if cleartext.refused(hosts, TransportSettings().allow_insecure_hosts):
        raise ValueError(cleartext.problem(scheme, carries, instead))


def _redis_url(value: str) -> str:
    from shared.redis_client import RedisUrlError, check_url, is_sentinel, parse_sentinel

    if not value:
        return value
    try:
        check_url(value)
    except RedisUrlError as exc:
        raise ValueError(exc.problem) from None
    carries = "every key, token hash and caption"
    if is_sentinel(value):  # no TLS form: the sentinels (and the nodes they name) in clear
        hosts = [host for host, _port in parse_sentinel(value).sentinels]
        _refuse_cleartext(hosts, "redis+sentinel", carries, "a rediss:// endpoint")
    elif urlsplit(value).scheme == "redis":
        _refuse_cleartext([urlsplit(value).hostname or ""], "redis", carries, "rediss://")
    return value


def _fernet_keys(value: SecretStr) -> SecretStr:
    """A comma list of Fernet keys (32 bytes, url-safe base64), as ``cryptography`` reads them."""
    keys = [k.strip() for k in value.get_secret_value().split(",") if k.strip()]
    for i, key in enumerate(keys, 1):
        try:
            ok = len(base64.urlsafe_b64decode(key.encode())) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f"key {i} of {len(keys)} is not a Fernet key (32 bytes, url-safe base64: docs/operating.md Secrets)"
            )
    return value


def _console_token(value: SecretStr) -> SecretStr:
    token = value.get_secret_value()
    if token and (len(token) < 16 or token != token.strip()):
        raise ValueError("expected at least 16 characters without surrounding spaces (or empty: the page is off)")
    return value


ListenAddress = Annotated[str, AfterValidator(_listen)]
PositiveSeconds = Annotated[float, Field(gt=0)]


def split_listen(value: str) -> tuple[str, int]:
    """``"0.0.0.0:1935"`` → ``("0.0.0.0", 1935)``; ``"[::]:80"`` → ``("::", 80)``."""
    host, _, port = value.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _config(group: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"{ENV_PREFIX}{group}", extra="ignore", case_sensitive=False)


class CommonSettings(BaseSettings):
    model_config = _config()

    # redis://, rediss://, unix:// or redis+sentinel:// (shared/redis_client.py); redis:// and
    # redis+sentinel:// only to loopback or REACHLIVE_ALLOW_INSECURE_HOSTS (shared/cleartext.py).
    redis_url: Annotated[str, AfterValidator(_redis_url)] = ""
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data_dir: str = ".reachlive"
    # docs/design.md section 5: which response types each task's stream carries.
    caption_types: Annotated[str, AfterValidator(lambda v: _types(v))] = "transcript,captions"
    # How long an event's captions, per-event log and usage records are kept after the event ends
    # (issue 20: vendors are asked for yesterday's transcript and for monthly usage).
    retention_days: float = Field(default=30.0, gt=0, le=3660)

    @property
    def retention_seconds(self) -> int:
        return int(self.retention_days * 86400)


def _types(value: str) -> str:
    kinds = [v.strip() for v in value.split(",") if v.strip()]
    bad = [k for k in kinds if k not in ("transcript", "captions")]
    if not kinds or bad:
        raise ValueError("expected a comma list of transcript,captions")
    return ",".join(kinds)


class KalturaSettings(BaseSettings):
    model_config = _config("KALTURA_")

    service_url: Annotated[
        str, _url("http", "https", clear=("http", "the vendor's credentials and every task's accessKey", "https://"))
    ] = "https://www.kaltura.com"
    partner_id: int = Field(default=0, ge=0)
    admin_secret: SecretStr = SecretStr("")
    app_token_id: str = ""
    app_token: SecretStr = SecretStr("")
    poll_seconds: PositiveSeconds = 30.0
    session_expiry_seconds: int = Field(default=86400, gt=60)
    request_timeout_seconds: PositiveSeconds = 30.0
    vendor_name: str = "reachlive"
    # appToken hashType of the vendor's app token (Kaltura: MD5 | SHA1 | SHA256 | SHA512).
    app_token_hash_type: Literal["MD5", "SHA1", "SHA256", "SHA512"] = "SHA256"


class PollerSettings(BaseSettings):
    """The Celery side of the poller (REACHLIVE_POLLER_*)."""

    model_config = _config("POLLER_")

    concurrency: int = Field(default=8, gt=0)  # worker threads (Kaltura calls are I/O bound)
    max_retries: int = Field(default=8, ge=0)  # per Celery task, exponential backoff
    retry_backoff_max_seconds: int = Field(default=30, gt=0)
    feature_lock_retries: int = Field(default=4, ge=0)  # CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE bound
    beat_lock_seconds: PositiveSeconds = 30.0  # redbeat leader lock; a dead leader is replaced after it
    beat_max_interval_seconds: PositiveSeconds = 5.0
    # Reconcile's per-event checks are sent at most this fast (Celery countdowns), and never
    # spread over more than half the poll period: a burst of 100 checks in 2 s took a core of
    # a 2-core host and delayed captions by seconds (bench/pipeline.py).
    check_rate_per_second: float = Field(default=10.0, gt=0)
    # Fernet keys sealing each task's accessKey in Redis (services/poller/sealing.py): the first
    # seals, every one opens (rotation: put the new key first, drop the old one a poll later).
    # Required by `reachlive worker`; `reachlive all`/`demo` on their embedded Redis make one.
    encryption_keys: Annotated[SecretStr, AfterValidator(_fernet_keys)] = SecretStr("")


class KwikmotionSettings(BaseSettings):
    model_config = _config("KWIKMOTION_")

    url: Annotated[str, _url("ws", "wss", clear=("ws", "the vendor token and the event audio", "wss://"))] = (
        "ws://127.0.0.1:8765/"
    )
    token: SecretStr = SecretStr("")
    ping_interval_seconds: PositiveSeconds = 20.0  # seed: "20-second ping interval"
    ping_timeout_seconds: PositiveSeconds = 30.0  # seed: "30-second timeout"
    start_timeout_seconds: PositiveSeconds = 10.0
    end_timeout_seconds: PositiveSeconds = 30.0


class IngestSettings(BaseSettings):
    model_config = _config("INGEST_")

    listen: ListenAddress = "0.0.0.0:1935"
    public_url: Annotated[str, _url("rtmp", "rtmps")] = "rtmp://127.0.0.1:1935/live"
    app: str = "live"
    # 2000, the relay's default chunk: an entry per KWIKmotion chunk, a write (a script of six
    # commands) every 2 s per event instead of every 0.5 s (issue 22). A chunk ends with an entry
    # as before, so its audio reaches the relay no later; keep it a divisor of
    # REACHLIVE_RELAY_CHUNK_SECONDS (with 3 s chunks, 1000).
    chunk_ms: int = Field(default=2000, ge=20, le=10000)
    tls_cert: str = ""
    tls_key: str = ""
    # Drain after the window closes (end + postEndTime + margin), before the end of stream: the
    # stopped publishers' last audio lands first. A publisher going away never ends the media.
    grace_seconds: PositiveSeconds = 2.0
    window_margin_seconds: float = Field(default=300.0, ge=0)
    idle_timeout_seconds: PositiveSeconds = 30.0
    handshake_timeout_seconds: PositiveSeconds = 10.0
    # Set Chunk Size we send at connect; ffmpeg's publisher adopts it for what it sends.
    rtmp_chunk_size: int = Field(default=4096, ge=128, le=65536)
    # MAXLEN ~ of each audio stream, in seconds of audio (the relay reads it live).
    audio_retention_seconds: PositiveSeconds = 900.0
    standby_buffer_seconds: PositiveSeconds = 30.0  # audio a hot standby holds (> primary TTL)
    heartbeat_seconds: PositiveSeconds = 1.0  # primary lease refresh / standby takeover check
    # Decoded audio each publisher holds while Redis is down (16 kHz s16: 32 kB/s, so 120 s is
    # 3.84 MB a stream): twice the 60 s outage a managed Redis's failover or restart takes.
    # Past it the oldest audio is dropped (reachlive_ingest_outage_dropped_seconds_total).
    outage_buffer_seconds: PositiveSeconds = 120.0
    # SO_REUSEPORT: several ingest processes on one host share LISTEN, the kernel spreading the
    # connections among them (replicas on one machine; each holds only its own connections).
    reuse_port: bool = True
    # Hostile and careless peers (issue 19). Until its publish is accepted a connection may send
    # RTMP messages of at most this many bytes (connect, publish: a few hundred), no media.
    prepublish_max_message_bytes: int = Field(default=16384, ge=1024, le=1 << 20)
    prepublish_max_messages: int = Field(default=256, ge=16)  # a publisher sends a dozen (pings answered)
    # Bytes we have to send that a connection has not read: past this it is aborted (what we
    # send is acknowledgements and statuses, a few kB; a peer that floods pings and reads
    # nothing would make us hold their answers).
    max_write_buffer_bytes: int = Field(default=65536, ge=8192)
    max_connections: int = Field(default=1000, gt=0)  # this process's connections, any state
    # Connections from one client address (an IPv6 /64) with no accepted publish yet; accepted
    # publishers do not count (Kaltura restreams many events from a few addresses).
    max_pending_per_address: int = Field(default=64, gt=0)
    # Accepted publishers of one task (media key) across replicas. Normally one (an event's other
    # features, each on its own key, are its hot standbys); 4 leaves room for a failover restream
    # (Kaltura's backup) and, for each, a restarted encoder while its old connection lingers.
    max_publishers_per_task: int = Field(default=4, gt=0)


class RelaySettings(BaseSettings):
    model_config = _config("RELAY_")

    chunk_seconds: float = Field(default=2.0, ge=2.0, le=10.0)  # seed: 2-10 s chunks
    max_sessions: int = Field(default=50, gt=0)
    heartbeat_seconds: PositiveSeconds = 2.0
    failover_seconds: PositiveSeconds = 10.0
    # A session re-reads its event's tasks this often: cancellations (captions of a cancelled task
    # stop at once anyway: the commit checks) and late orders. Three commands per session per
    # check: every 2 s heartbeat it was ~1.5 Redis commands/s per event (issue 22).
    task_check_seconds: PositiveSeconds = 5.0
    max_unacked_chunks: int = Field(default=4, gt=0)
    backoff_initial_seconds: PositiveSeconds = 0.5
    backoff_max_seconds: PositiveSeconds = 30.0
    auth_retry_seconds: PositiveSeconds = 60.0
    consumer_name: str = ""
    # A partial chunk is sent once no audio came for this long (the last words before a pause
    # are captioned without waiting for the media to return).
    flush_after_seconds: PositiveSeconds = 1.5
    # During a media pause the KWIKmotion session is closed after this long without audio (every
    # chunk answered), and reopened when audio returns: KWIKmotion is paid per connected minute,
    # and half a minute of keepalive covers an encoder restart without a reconnect.
    idle_close_seconds: PositiveSeconds = 30.0
    # KWIKmotion refusing the session (401/403, 4004 for the event's language) is retried every
    # auth_retry_seconds for at most this long from the first refusal, then the tasks go ERROR.
    refusal_deadline_seconds: PositiveSeconds = 300.0


class GatewaySettings(BaseSettings):
    model_config = _config("GATEWAY_")

    listen: ListenAddress = "0.0.0.0:8080"
    public_url: Annotated[str, _url("ws", "wss")] = "ws://127.0.0.1:8080/v1/captions"
    # SO_REUSEPORT, as the ingest's: gateway processes on one host share LISTEN (any of them
    # serves any task: cursors and captions are in Redis).
    reuse_port: bool = True
    max_connection_seconds: PositiveSeconds = 7200.0  # seed: 2-hour limit, then 1001
    ping_interval_seconds: PositiveSeconds = 20.0
    auth_timeout_seconds: PositiveSeconds = 5.0
    max_message_bytes: int = Field(default=4096, gt=0)
    send_buffer_frames: int = Field(default=1000, gt=0)
    drain_seconds: PositiveSeconds = 10.0
    # After frames, a ping at most this often (its pong moves the resume cursor, docs/design.md section 5).
    ack_interval_seconds: PositiveSeconds = 0.5
    # Failed authentications per client address, then HTTP 429 for bad tokens (never a valid one).
    auth_failures_per_minute: int = Field(default=20, gt=0)
    # Inbound client messages and control frames per connection (burst: twice that): pings, and
    # pongs other than the answer to our own outstanding ping.
    messages_per_second: PositiveSeconds = 5.0
    # Proxies in front that each append to X-Forwarded-For (compose nginx, ingress-nginx: 1). The
    # client address is the entry this many from the right; 0: the TCP peer's (no proxy).
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)
    # A connection whose unsent output passes this is aborted: a client that does not read (a
    # PING flood's pongs) cannot grow the gateway. Above websockets' 32 KiB write limit plus
    # the largest caption response, which a reading client drains.
    max_write_buffer_bytes: int = Field(default=65536, ge=16384)
    # Open connections of one task on one replica; more are closed 1013 (a token's reach).
    max_connections_per_task: int = Field(default=10, gt=0)
    # The operator's live page (services/console/web.py) on this process's metrics port, never on
    # LISTEN: empty turns it off (its paths answer 404). At least 16 characters: it is the only
    # thing between the metrics port and every live event's captions.
    console_token: Annotated[SecretStr, AfterValidator(_console_token)] = SecretStr("")


class TransportSettings(BaseSettings):
    """REACHLIVE_ALLOW_INSECURE_HOSTS: hosts that the Kaltura, KWIKmotion and Redis URLs may reach
    without TLS (comma list, ``*`` for any; loopback always may). Read by those URLs' validators."""

    model_config = _config()

    allow_insecure_hosts: str = ""


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S], **overrides: object) -> S:
    """Build a settings group from the environment, or raise ``SettingsError`` naming the variable."""
    prefix = cls.model_config.get("env_prefix", ENV_PREFIX)
    try:
        return cls(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = f"{prefix}{err['loc'][0]}".upper() if err.get("loc") else prefix.rstrip("_")
        msg = err["msg"].removeprefix("Value error, ")
        # Our validators never name the value and pydantic's messages carry none; this is the
        # net under both (a future validator's f-string): the value itself never goes out.
        value = err.get("input")
        if isinstance(value, str) and len(value) >= 4 and value in msg:
            msg = msg.replace(value, "<the value>")
        raise SettingsError(f"invalid setting {name}: {msg}") from None
    except ValueError as exc:
        if type(exc).__module__.partition(".")[0] != "pydantic_settings":
            raise
        # pydantic-settings' own parse failure (a complex field's JSON): its text, not the value.
        raise SettingsError(f"invalid setting among {prefix}*: a value could not be parsed") from None
