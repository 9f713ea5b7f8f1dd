"""What the services really export: start each as a child process (``reachlive <service>``)
against the test Redis with ``REACHLIVE_METRICS_PORT`` on a free port, and scrape ``/metrics``.

A labelled metric with no sample yet still shows its ``# HELP``/``# TYPE`` lines, so the
families are complete from the first scrape; the sample names of each family follow its type.
"""

from __future__ import annotations

import importlib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from shared.child import Service, free_port, wait_port
from shared.cli import available

# Each stage, the metrics module whose families it must show (the worker runs the poller's tasks).
STAGES = {
    "poller": "services.poller.metrics",
    "worker": "services.poller.metrics",
    "ingest": "services.ingest.metrics",
    "relay": "services.relay.metrics",
    "gateway": "services.gateway.metrics",
}
# Series Prometheus itself adds to every target (not exported by the code).
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added", "ALERTS"}
# Labels the scrape adds (compose scrape config / PodMonitor relabelling, Kubernetes SD).
TARGET_LABELS = {"service", "instance", "job", "namespace", "pod", "container", "endpoint"}

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


@dataclass
class Exported:
    series: dict[str, str] = field(default_factory=dict)  # sample name → stage that exports it
    labels: dict[str, set[str]] = field(default_factory=dict)  # sample name → its label names
    skipped: list[str] = field(default_factory=list)  # stages whose module is not written yet
    by_stage: dict[str, set[str]] = field(default_factory=dict)  # stage → sample names it exports
    families: set[str] = field(default_factory=set)  # metric names as documented (counters with _total)
    probes: dict[tuple[str, str, str, str], int] = field(default_factory=dict)  # probe → HTTP status (200 ok)


def families_of(text: str) -> set[str]:
    """Metric names as their modules define them; the text format shows each counter's and
    histogram's creation time as a separate ``<name>_created`` gauge family, left out here."""
    fams = {f.name: f.type for f in text_string_to_metric_families(text)}
    return {
        name + ("_total" if kind == "counter" else "")
        for name, kind in fams.items()
        if not (name.endswith("_created") and name.removesuffix("_created") in fams)
    }


def series_of(text: str) -> set[str]:
    out: set[str] = set()
    for fam in text_string_to_metric_families(text):
        out |= {fam.name + s for s in SUFFIXES[fam.type]}
        out |= {s.name for s in fam.samples}
    return out


def _label_names(module: str) -> dict[str, set[str]]:
    """Declared label names of each metric in a service's metrics module (a labelled metric
    with no child yet exposes none in the text format)."""
    out: dict[str, set[str]] = {}
    for obj in vars(importlib.import_module(module)).values():
        if isinstance(obj, MetricWrapperBase):
            extra = {"le"} if obj._type == "histogram" else set()
            name = obj._name
            for suffix in SUFFIXES.get(obj._type, ("",)):
                base = name[: -len("_total")] if obj._type == "counter" and name.endswith("_total") else name
                out[base + suffix] = set(obj._labelnames) | extra
    return out


def scrape(port: int, deadline: float, needle: str) -> str:
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                last = resp.read().decode()
            if needle in last:
                return last
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no {needle!r} on :{port}/metrics; last scrape:\n{last[:2000]}")


def http_status(port: int, path: str, deadline: float) -> int:
    """The status of GET path, retried until 200 or the deadline (a service may still be starting)."""
    status = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        if status == 200:
            return status
        time.sleep(0.2)
    return status


# Probe = (handler "httpGet" | "tcpSocket", container port name, path or "").
Probe = tuple[str, str, str]


def collect(
    redis_url: str, log_dir: Path, probes: dict[str, set[Probe]] | None = None, timeout: float = 60.0
) -> Exported:
    """Run every written stage, scrape it, and try the probes the manifests declare for it
    (port names: "metrics" = REACHLIVE_METRICS_PORT, "http" = the gateway's listen port,
    "rtmp" = the ingest's listen port)."""
    found = Exported()
    present = available()
    procs: dict[str, tuple[Service, dict[str, int]]] = {}
    try:
        for stage in STAGES:
            if stage not in present:
                found.skipped.append(stage)
                continue
            ports = {"metrics": free_port(), "http": free_port(), "rtmp": free_port()}
            env = {
                "REACHLIVE_REDIS_URL": redis_url,
                "REACHLIVE_METRICS_PORT": str(ports["metrics"]),
                "REACHLIVE_METRICS_HOST": "127.0.0.1",
                "REACHLIVE_DATA_DIR": str(log_dir / "data"),
                # Nothing outside: Kaltura and KWIKmotion on a closed loopback port, no early poll.
                "REACHLIVE_KALTURA_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
                "REACHLIVE_KALTURA_POLL_SECONDS": "3600",
                "REACHLIVE_KWIKMOTION_URL": f"ws://127.0.0.1:{free_port()}/",
                "REACHLIVE_INGEST_LISTEN": f"127.0.0.1:{ports['rtmp']}",
                "REACHLIVE_GATEWAY_LISTEN": f"127.0.0.1:{ports['http']}",
                # The worker refuses to start without one (issue 19): any Fernet key.
                "REACHLIVE_POLLER_ENCRYPTION_KEYS": "dGVzdHMtcG9sbGVyLWVuY3J5cHRpb24ta2V5LTMyYiE=",
            }
            procs[stage] = (Service([stage], env, log_dir, name=f"metrics-{stage}"), ports)
        deadline = time.monotonic() + timeout
        for stage, (proc, ports) in procs.items():
            prefix = STAGES[stage].split(".")[1]
            try:
                wait_port(ports["metrics"], timeout=max(1.0, deadline - time.monotonic()))
                text = scrape(ports["metrics"], deadline, f"reachlive_{prefix}_")
            except (TimeoutError, AssertionError) as exc:
                raise AssertionError(f"{stage}: {exc}\n--- log:\n{proc.log()[-3000:]}") from None
            found.by_stage[stage] = series_of(text)
            found.families |= families_of(text)
            for name in found.by_stage[stage]:
                found.series.setdefault(name, stage)
            for name, labels in _label_names(STAGES[stage]).items():
                found.labels.setdefault(name, set()).update(labels)
            for handler, port_name, path in sorted((probes or {}).get(stage, set())):
                port = ports[port_name]
                if handler == "tcpSocket":
                    try:
                        wait_port(port, timeout=max(1.0, deadline - time.monotonic()))
                        result = 200
                    except TimeoutError:
                        result = 0
                else:
                    result = http_status(port, path, deadline)
                found.probes[(stage, handler, port_name, path)] = result
    finally:
        for proc, _ in procs.values():
            proc.stop(timeout=30)
    return found
