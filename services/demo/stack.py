"""The whole pipeline on one machine: embedded Redis, the two emulators (unless real Kaltura /
KWIKmotion settings are given), and every reachlive service as a supervised child process.

Used by ``reachlive demo``, the end-to-end tests and the pipeline benchmark, so all three run
exactly what an operator runs (``reachlive <service>`` processes), not an in-process shortcut.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.kaltura_admin import KalturaAdmin
from services.all.supervisor import Child, Supervisor
from services.poller import sealing
from shared.child import free_port
from shared.embedded_redis import EmbeddedRedis
from shared.settings import CommonSettings, KalturaSettings, KwikmotionSettings, PollerSettings, load

log = logging.getLogger(__name__)

VENDOR_PARTNER_ID = 5173642  # the seed's vendorPartnerId
VENDOR_SECRET = "emulated-vendor-admin-secret"
KWIK_TOKEN = "emulated-kwikmotion-token"


@dataclass
class Stack:
    data_dir: Path
    replicas: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # extra REACHLIVE_* for every service
    log_dir: Path | None = None  # child output goes here (one file each) instead of the terminal
    kwik_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._exit = contextlib.ExitStack()
        self.children: dict[str, list[Child]] = {}
        self.supervisor: Supervisor | None = None
        self._thread: threading.Thread | None = None
        self.kaltura_emulator: Any = None
        self.kwik_emulator: Any = None
        self.embedded_redis: EmbeddedRedis | None = None

    # -- endpoints -------------------------------------------------------------------------
    @property
    def kaltura(self) -> KalturaAdmin:
        return KalturaAdmin(self.kaltura_url)

    def gateway_urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{p}/v1/captions" for p in self.gateway_ports]

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    def _start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # An external Redis given to the stack itself, or the caller's environment's; else embedded.
        self.redis_url = self.env.get("REACHLIVE_REDIS_URL") or load(CommonSettings).redis_url
        if not self.redis_url:
            self.embedded_redis = self._exit.enter_context(EmbeddedRedis(self.data_dir))
            self.redis_url = self.embedded_redis.url
        # Real accounts when their credentials are set (docs/services.md, "Demo on real accounts").
        self.real_kaltura = load(KalturaSettings).partner_id > 0
        self.real_kwik = bool(load(KwikmotionSettings).token.get_secret_value())
        base = {"REACHLIVE_REDIS_URL": self.redis_url, "REACHLIVE_DATA_DIR": str(self.data_dir)}
        if not sealing.split_keys(load(PollerSettings).encryption_keys.get_secret_value()):
            # The demo's (and the tests') own key for the run, shared by its workers: what it
            # seals is demo data (issue 19; docs/operating.md "Secrets"). A key given in env= wins.
            base[sealing.VARIABLE] = sealing.new_key()
        if not self.real_kaltura:
            from emulators.kaltura import KalturaEmulator

            emu = KalturaEmulator(host="127.0.0.1", port=0, partner_id=VENDOR_PARTNER_ID, admin_secret=VENDOR_SECRET)
            emu.start()
            self._exit.callback(emu.stop)
            self.kaltura_emulator = emu
            self.kaltura_url = emu.url
            base |= {
                "REACHLIVE_KALTURA_SERVICE_URL": emu.url,
                "REACHLIVE_KALTURA_PARTNER_ID": str(VENDOR_PARTNER_ID),
                "REACHLIVE_KALTURA_ADMIN_SECRET": VENDOR_SECRET,
                "REACHLIVE_KALTURA_POLL_SECONDS": "1",
            }
        if not self.real_kwik:
            from emulators.kwikmotion import KwikmotionEmulator

            kwik = KwikmotionEmulator(host="127.0.0.1", port=0, token=KWIK_TOKEN, **self.kwik_options)
            self._exit.enter_context(kwik.running_in_thread())
            self.kwik_emulator = kwik
            base |= {"REACHLIVE_KWIKMOTION_URL": kwik.url, "REACHLIVE_KWIKMOTION_TOKEN": KWIK_TOKEN}
        ingest_port = free_port()
        self.ingest_url = f"rtmp://127.0.0.1:{ingest_port}/live"
        self.gateway_ports = [free_port() for _ in range(self.replicas.get("gateway", 1))]
        # The gateways' metrics ports (loopback): their probes and the operator's page (/console/).
        self.gateway_metrics_ports = [free_port() for _ in self.gateway_ports]
        base |= {
            "REACHLIVE_INGEST_PUBLIC_URL": self.ingest_url,
            "REACHLIVE_GATEWAY_PUBLIC_URL": self.gateway_urls()[0],
            "REACHLIVE_INGEST_GRACE_SECONDS": "1",
            # Events of the demo and tests end when their window is closed by hand: a small
            # margin ends the media a couple of seconds later, not five minutes.
            "REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS": "2",
            "REACHLIVE_METRICS_PORT": "0",
        }
        base |= self.env
        children: list[Child] = []
        for name in ("worker", "poller", "ingest", "relay", "gateway"):
            for i in range(self.replicas.get(name, 1)):
                env = dict(base)
                if name == "ingest":
                    env["REACHLIVE_INGEST_LISTEN"] = f"127.0.0.1:{ingest_port}"
                if name == "gateway":
                    env["REACHLIVE_GATEWAY_LISTEN"] = f"127.0.0.1:{self.gateway_ports[i]}"
                    env["REACHLIVE_METRICS_PORT"] = str(self.gateway_metrics_ports[i])
                    env["REACHLIVE_METRICS_HOST"] = "127.0.0.1"
                if name == "relay":
                    env.setdefault("REACHLIVE_RELAY_CONSUMER_NAME", f"relay-{i}")
                child = Child(name=f"{name}-{i}", args=[name], env=env, log_path=self._log_path(name, i))
                self.children.setdefault(name, []).append(child)
                children.append(child)
        self.supervisor = Supervisor(children)
        self._thread = threading.Thread(target=self.supervisor.run, name="supervisor", daemon=True)
        self._thread.start()
        self._exit.callback(self._stop_supervisor)

    def _log_path(self, name: str, i: int) -> Path | None:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{name}-{i}.log"

    def _stop_supervisor(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stopping.set()
        if self._thread is not None:
            self._thread.join(60)

    def child(self, name: str, i: int = 0) -> Child:
        return self.children[name][i]

    def logs(self) -> str:
        """Every child's output, for a failing test's report."""
        if self.log_dir is None:
            return ""
        files = sorted(self.log_dir.glob("*.log"))
        return "\n".join(f"==== {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in files)
