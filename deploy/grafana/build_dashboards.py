"""Write the Grafana dashboards (deploy/grafana/dashboards/*.json) from the panel lists below.

The JSON files are committed (Grafana provisioning and the Kubernetes sidecar load them as
they are); this script is their source, so panels stay uniform. tests/deploy checks that the
files match this script and that every metric they query is one the services export.

    python deploy/grafana/build_dashboards.py
"""

# ruff: noqa: E501 - the panel table reads best one panel per line, queries unbroken
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


@dataclass
class P:
    """A panel: title, queries (expr, legend), unit, type."""

    title: str
    queries: list[tuple[str, str]]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 8
    description: str = ""
    stack: bool = False
    thresholds: list[tuple[float, str]] = field(default_factory=list)


def q(expr: str, legend: str = "") -> tuple[str, str]:
    return expr, legend


def p95(metric: str, sel: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile(0.95, sum by ({group}) (rate({metric}_bucket{sel}[{RATE}])))"


def quantiles(metric: str, sel: str) -> list[tuple[str, str]]:
    return [
        q(f"histogram_quantile({x}, sum by (le) (rate({metric}_bucket{sel}[{RATE}])))", f"p{int(x * 100)}")
        for x in (0.5, 0.95, 0.99)
    ]


def resources(service: str, event_loop: bool = True) -> list[P]:
    """CPU, memory and descriptors per replica; and, for the asyncio services, event-loop lag."""
    sel = f'{{service="{service}", instance=~"$instance"}}'
    panels = [
        P("CPU by replica", [q(f"rate(process_cpu_seconds_total{sel}[{RATE}])", "{{instance}}")], "percentunit"),
        P("Memory by replica", [q(f"process_resident_memory_bytes{sel}", "{{instance}}")], "bytes"),
        P("Open file descriptors", [q(f"process_open_fds{sel}", "{{instance}}")]),
    ]
    if event_loop:
        lag = f"histogram_quantile(0.99, sum by (le, instance) (rate(reachlive_event_loop_lag_seconds_bucket{sel}[{RATE}])))"
        panels.append(P("Event loop lag p99 by replica", [q(lag, "{{instance}}")], "s"))
    return panels


def _panel(pid: int, panel: P, x: int, y: int) -> dict:
    height = 4 if panel.kind == "stat" else 8
    out: dict = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"h": height, "w": panel.width, "x": x, "y": y},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend or "__auto"}
            for i, (expr, legend) in enumerate(panel.queries)
        ],
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {},
    }
    if panel.kind == "timeseries":
        out["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    else:
        out["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        }
    if panel.thresholds:
        out["fieldConfig"]["defaults"]["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}]
            + [{"color": color, "value": value} for value, color in panel.thresholds],
        }
    return out


def dashboard(uid: str, title: str, rows: list[tuple[str, list[P]]], instance_of: str | None) -> dict:
    panels, pid, y = [], 1, 0
    for row_title, row in rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y, x, row_h = pid + 1, y + 1, 0, 0
        for panel in row:
            if x + panel.width > 24:
                x, y = 0, y + row_h
                row_h = 0
            built = _panel(pid, panel, x, y)
            panels.append(built)
            pid, x, row_h = pid + 1, x + panel.width, max(row_h, built["gridPos"]["h"])
        y += row_h
    variables: list[dict] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "options": [],
        },
    ]
    if instance_of:
        variables.append(
            {
                "name": "instance",
                "label": "Replica",
                "type": "query",
                "datasource": DS,
                "query": {"query": f'label_values(up{{service="{instance_of}"}}, instance)', "refId": "instance"},
                "definition": f'label_values(up{{service="{instance_of}"}}, instance)',
                "multi": True,
                "includeAll": True,
                "allValue": ".*",
                "current": {},
                "hide": 0,
                "refresh": 2,
                "options": [],
                "sort": 1,
            }
        )
    return {
        "uid": uid,
        "title": title,
        "description": "reachlive: live captions for Kaltura REACH with KWIKmotion (generated by "
        "deploy/grafana/build_dashboards.py)",
        "tags": ["reachlive"],
        "editable": False,
        "graphTooltip": 1,
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "links": [{"title": "reachlive", "type": "dashboards", "tags": ["reachlive"], "asDropdown": True}],
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": panels,
    }


def overview() -> dict:
    primaries = 'sum(reachlive_ingest_publishers{role="primary"})'
    sessions = "sum(reachlive_relay_sessions_owned)"
    return dashboard(
        "reachlive-overview",
        "reachlive / pipeline overview",
        [
            (
                "Now",
                [
                    P("Live events (primary publishers)", [q(primaries)], kind="stat", width=4),
                    P("Relay sessions", [q(sessions)], kind="stat", width=4),
                    P(
                        "Events without a relay session",
                        [q(f"clamp_min(({primaries} or vector(0)) - ({sessions} or vector(0)), 0)")],
                        kind="stat",
                        width=4,
                        thresholds=[(1, "red")],
                    ),
                    P(
                        "Caption connections (live)",
                        [q('sum(reachlive_gateway_connections{state="live"})')],
                        kind="stat",
                        width=4,
                    ),
                    P(
                        "Delivery lag p95",
                        [q(p95("reachlive_gateway_delivery_lag_seconds", ""))],
                        "s",
                        kind="stat",
                        width=4,
                        thresholds=[(2, "orange"), (5, "red")],
                    ),
                    P(
                        "Firing reachlive alerts",
                        [q('count(ALERTS{alertstate="firing", alertname=~"Reachlive.*"}) or vector(0)')],
                        kind="stat",
                        width=4,
                        thresholds=[(1, "red")],
                    ),
                    P(
                        "Tasks past start, no media",
                        [q("max(reachlive_poller_tasks_overdue)")],
                        kind="stat",
                        width=4,
                        thresholds=[(1, "orange")],
                        description="SCHEDULED more than 5 min after their start (alert ReachliveTasksStuckScheduled).",
                    ),
                    P(
                        "Redis outage (s, longest now)",
                        [q("max(reachlive_redis_outage_seconds) or vector(0)")],
                        "s",
                        kind="stat",
                        width=4,
                        thresholds=[(1, "orange"), (30, "red")],
                        description="Seconds the current Redis outage has lasted for the worst-off process (0: every "
                        "service reaches Redis). The services wait and resume on their own (alert ReachliveRedisDown).",
                    ),
                ],
            ),
            (
                "Flow",
                [
                    P(
                        "Live events vs relay sessions",
                        [q(primaries, "live publishers (primary)"), q(sessions, "relay sessions")],
                        description="A gap that lasts is an event whose audio no relay transcribes "
                        "(alert ReachliveLiveEventWithoutRelaySession).",
                    ),
                    P(
                        "Audio in (s of audio per s)",
                        [
                            q(f"sum(rate(reachlive_ingest_audio_seconds_total[{RATE}]))", "ingest"),
                            q(f"sum(rate(reachlive_relay_audio_sent_seconds_total[{RATE}]))", "relay → KWIKmotion"),
                        ],
                    ),
                    P(
                        "Captions out (per s)",
                        [
                            q(
                                f"sum by (kind) (rate(reachlive_relay_caption_entries_total[{RATE}]))",
                                "written {{kind}}",
                            ),
                            q(f"sum(rate(reachlive_gateway_frames_sent_total[{RATE}]))", "delivered frames"),
                        ],
                    ),
                    P(
                        "Latency by stage (p95)",
                        [
                            q(p95("reachlive_ingest_redis_write_seconds", ""), "ingest: chunk → Redis"),
                            q(
                                p95("reachlive_relay_kwikmotion_round_trip_seconds", ""),
                                "KWIKmotion: chunk → transcript",
                            ),
                            q(p95("reachlive_relay_added_latency_seconds", ""), "relay: result → captions XADD"),
                            q(p95("reachlive_gateway_delivery_lag_seconds", ""), "gateway: XADD → client"),
                        ],
                        "s",
                        width=16,
                    ),
                    P(
                        "Replicas up",
                        [q('sum by (service) (up{service=~"poller|worker|ingest|relay|gateway"})', "{{service}}")],
                    ),
                ],
            ),
            (
                "Outside services",
                [
                    P(
                        "KWIKmotion reconnects by cause",
                        [q(f"sum by (cause) (increase(reachlive_relay_reconnects_total[{RATE}]))", "{{cause}}")],
                        stack=True,
                    ),
                    P(
                        "KWIKmotion auth failures",
                        [q(f"sum(increase(reachlive_relay_kwikmotion_auth_failures_total[{RATE}]))", "auth failures")],
                        thresholds=[(1, "red")],
                    ),
                    P(
                        "Kaltura API calls and errors (per s)",
                        [
                            q(f"sum(rate(reachlive_poller_kaltura_call_seconds_count[{RATE}]))", "calls"),
                            q(f"sum by (code) (rate(reachlive_poller_kaltura_errors_total[{RATE}]))", "error {{code}}"),
                        ],
                    ),
                    P(
                        "REACH tasks by outcome (per h)",
                        [q("sum by (outcome) (increase(reachlive_poller_tasks_total[1h]))", "{{outcome}}")],
                        width=12,
                        stack=True,
                    ),
                    P(
                        "Kaltura listing (last poll)",
                        [q("max by (status) (reachlive_poller_jobs_listed)", "{{status}}")],
                        width=12,
                    ),
                ],
            ),
        ],
        None,
    )


def poller() -> dict:
    sel = '{service=~"poller|worker", instance=~"$instance"}'
    return dashboard(
        "reachlive-poller",
        "reachlive / poller (Kaltura REACH)",
        [
            (
                "Polling",
                [
                    P(
                        "Polls by result (per min)",
                        [q(f"sum by (result) (increase(reachlive_poller_polls_total{sel}[1m]))", "{{result}}")],
                    ),
                    P(
                        "Tasks in the last listing",
                        [q(f"max by (status) (reachlive_poller_jobs_listed{sel})", "{{status}}")],
                    ),
                    P(
                        "Registry size",
                        [
                            q(f"max(reachlive_poller_registry_events{sel})", "events"),
                            q(f"max(reachlive_poller_registry_tasks{sel})", "tasks"),
                        ],
                    ),
                ],
            ),
            (
                "Tasks",
                [
                    P(
                        "Task outcomes (per 5 min)",
                        [q(f"sum by (outcome) (increase(reachlive_poller_tasks_total{sel}[5m]))", "{{outcome}}")],
                        stack=True,
                    ),
                    P("Provision time", quantiles("reachlive_poller_provision_seconds", sel), "s"),
                    P(
                        "Tasks past start with no media",
                        [q(f"max(reachlive_poller_tasks_overdue{sel})", "overdue")],
                        description="Still SCHEDULED more than 5 min after their start: no media reached the ingest.",
                    ),
                    P(
                        "No-shows (per h)",
                        [q(f"sum(increase(reachlive_poller_no_shows_total{sel}[1h]))", "no-shows")],
                        description="Tasks ended ERROR because their window closed with no media at all.",
                    ),
                    P(
                        "Reconcile checks per event (per 5 min)",
                        [
                            q(
                                f"sum by (result) (increase(reachlive_poller_event_checks_total{sel}[5m]))",
                                "{{result}}",
                            )
                        ],
                        description="busy: an event's previous check was still queued or running at the next "
                        "poll (the workers are behind: add worker replicas or REACHLIVE_POLLER_CONCURRENCY).",
                    ),
                ],
            ),
            (
                "Kaltura API",
                [
                    P(
                        "Call latency p95 by action",
                        [
                            q(
                                p95("reachlive_poller_kaltura_call_seconds", sel, "kaltura_service, action"),
                                "{{kaltura_service}}.{{action}}",
                            )
                        ],
                        "s",
                        width=12,
                    ),
                    P(
                        "Calls per s by action",
                        [
                            q(
                                f"sum by (kaltura_service, action) (rate(reachlive_poller_kaltura_call_seconds_count{sel}[{RATE}]))",
                                "{{kaltura_service}}.{{action}}",
                            )
                        ],
                        width=12,
                    ),
                    P(
                        "Errors by code (per 5 min)",
                        [q(f"sum by (code) (increase(reachlive_poller_kaltura_errors_total{sel}[5m]))", "{{code}}")],
                        width=12,
                        stack=True,
                    ),
                    P(
                        "Errors by action (per 5 min)",
                        [
                            q(
                                f"sum by (kaltura_service, action) (increase(reachlive_poller_kaltura_errors_total{sel}[5m]))",
                                "{{kaltura_service}}.{{action}}",
                            )
                        ],
                        width=12,
                        stack=True,
                    ),
                ],
            ),
            ("Resources", resources("worker", event_loop=False)),
        ],
        "worker",
    )


def ingest() -> dict:
    sel = '{service="ingest", instance=~"$instance"}'
    return dashboard(
        "reachlive-ingest",
        "reachlive / ingest (RTMP)",
        [
            (
                "Publishers",
                [
                    P("Publishers by role", [q(f"sum by (role) (reachlive_ingest_publishers{sel})", "{{role}}")]),
                    P("TCP connections by replica", [q(f"reachlive_ingest_connections{sel}", "{{instance}}")]),
                    P(
                        "Events paused (no publisher)",
                        [q(f"max(reachlive_ingest_events_paused{sel})", "paused")],
                        description="Open events whose publishers went away: paused until a publish resumes them "
                        "or the window ends (a pause never ends an event).",
                    ),
                    P(
                        "Sessions opened / takeovers (per 5 min)",
                        [
                            q(f"sum(increase(reachlive_ingest_sessions_opened_total{sel}[5m]))", "sessions opened"),
                            q(f"sum(increase(reachlive_ingest_takeovers_total{sel}[5m]))", "takeovers"),
                        ],
                    ),
                    P(
                        "Publishes rejected by reason (per 5 min)",
                        [
                            q(
                                f"sum by (reason) (increase(reachlive_ingest_publish_rejected_total{sel}[5m]))",
                                "{{reason}}",
                            )
                        ],
                        stack=True,
                    ),
                    P(
                        "Connections closed by cause (per 5 min)",
                        [
                            q(
                                f"sum by (cause) (increase(reachlive_ingest_connections_closed_total{sel}[5m]))",
                                "{{cause}}",
                            )
                        ],
                        stack=True,
                    ),
                    P(
                        "End of stream by reason (per h)",
                        [q(f"sum by (reason) (increase(reachlive_ingest_end_of_stream_total{sel}[1h]))", "{{reason}}")],
                    ),
                ],
            ),
            (
                "Media",
                [
                    P(
                        "Bytes received per s",
                        [
                            q(
                                f"sum by (instance) (rate(reachlive_ingest_received_bytes_total{sel}[{RATE}]))",
                                "{{instance}}",
                            )
                        ],
                        "Bps",
                    ),
                    P(
                        "Audio written (s per s = live events)",
                        [
                            q(
                                f"sum by (instance) (rate(reachlive_ingest_audio_seconds_total{sel}[{RATE}]))",
                                "{{instance}}",
                            )
                        ],
                    ),
                    P(
                        "PCM bytes written per s",
                        [q(f"sum(rate(reachlive_ingest_audio_bytes_total{sel}[{RATE}]))", "PCM")],
                        "Bps",
                    ),
                    P(
                        "Decode errors by codec (per 5 min)",
                        [q(f"sum by (codec) (increase(reachlive_ingest_decode_errors_total{sel}[5m]))", "{{codec}}")],
                    ),
                    P(
                        "RTMP protocol errors by kind (per 5 min)",
                        [q(f"sum by (kind) (increase(reachlive_ingest_protocol_errors_total{sel}[5m]))", "{{kind}}")],
                    ),
                    P("Redis write latency", quantiles("reachlive_ingest_redis_write_seconds", sel), "s"),
                ],
            ),
            ("Resources", resources("ingest")),
        ],
        "ingest",
    )


def relay() -> dict:
    sel = '{service="relay", instance=~"$instance"}'
    return dashboard(
        "reachlive-relay",
        "reachlive / relay (KWIKmotion)",
        [
            (
                "Sessions",
                [
                    P(
                        "Sessions owned by replica",
                        [q(f"reachlive_relay_sessions_owned{sel}", "{{instance}}")],
                        stack=True,
                    ),
                    P(
                        "Claims by how (per 5 min)",
                        [
                            q(f"sum by (how) (increase(reachlive_relay_sessions_claimed_total{sel}[5m]))", "{{how}}"),
                            q(f"sum(increase(reachlive_relay_failovers_total{sel}[5m]))", "failovers"),
                            q(
                                f"sum(increase(reachlive_relay_sessions_lost_total{sel}[5m]))",
                                "lost to another replica",
                            ),
                        ],
                    ),
                    P(
                        "Sessions finished by outcome (per h)",
                        [
                            q(
                                f"sum by (outcome) (increase(reachlive_relay_sessions_finished_total{sel}[1h]))",
                                "{{outcome}}",
                            )
                        ],
                    ),
                ],
            ),
            (
                "KWIKmotion",
                [
                    P(
                        "Connects and reconnects by cause (per 5 min)",
                        [
                            q(f"sum(increase(reachlive_relay_kwikmotion_connects_total{sel}[5m]))", "connects"),
                            q(
                                f"sum by (cause) (increase(reachlive_relay_reconnects_total{sel}[5m]))",
                                "reconnect: {{cause}}",
                            ),
                        ],
                    ),
                    P(
                        "Errors by code (per 5 min)",
                        [q(f"sum by (code) (increase(reachlive_relay_kwikmotion_errors_total{sel}[5m]))", "{{code}}")],
                        stack=True,
                    ),
                    P(
                        "Authentication failures (per 5 min)",
                        [q(f"sum(increase(reachlive_relay_kwikmotion_auth_failures_total{sel}[5m]))", "auth failures")],
                        thresholds=[(1, "red")],
                    ),
                    P("Chunk → AudioAdded", quantiles("reachlive_relay_audio_added_lag_seconds", sel), "s"),
                    P(
                        "Chunk → AddTranscript (round trip)",
                        quantiles("reachlive_relay_kwikmotion_round_trip_seconds", sel),
                        "s",
                    ),
                    P(
                        "Audio sent vs replayed (s per s)",
                        [
                            q(f"sum(rate(reachlive_relay_audio_sent_seconds_total{sel}[{RATE}]))", "sent"),
                            q(f"sum(rate(reachlive_relay_audio_replayed_seconds_total{sel}[{RATE}]))", "replayed"),
                        ],
                    ),
                ],
            ),
            (
                "Captions",
                [
                    P(
                        "Caption entries by kind (per s)",
                        [q(f"sum by (kind) (rate(reachlive_relay_caption_entries_total{sel}[{RATE}]))", "{{kind}}")],
                    ),
                    P("Result → captions XADD", quantiles("reachlive_relay_added_latency_seconds", sel), "s"),
                    P(
                        "Fenced writes (per 5 min)",
                        [q(f"sum(increase(reachlive_relay_fenced_writes_total{sel}[5m]))", "fenced")],
                        description="Writes refused because another replica owns the session: a paused replica.",
                    ),
                ],
            ),
            ("Resources", resources("relay")),
        ],
        "relay",
    )


def gateway() -> dict:
    sel = '{service="gateway", instance=~"$instance"}'
    return dashboard(
        "reachlive-gateway",
        "reachlive / gateway (caption WebSocket)",
        [
            (
                "Connections",
                [
                    P(
                        "Connections by state",
                        [q(f"sum by (state) (reachlive_gateway_connections{sel})", "{{state}}")],
                        stack=True,
                    ),
                    P(
                        "Connections by replica",
                        [q(f"sum by (instance) (reachlive_gateway_connections{sel})", "{{instance}}")],
                    ),
                    P("Shared stream readers", [q(f"sum(reachlive_gateway_stream_readers{sel})", "readers")]),
                    P(
                        "Auth failures by reason (per 5 min)",
                        [
                            q(
                                f"sum by (reason) (increase(reachlive_gateway_auth_failures_total{sel}[5m]))",
                                "{{reason}}",
                            )
                        ],
                        stack=True,
                    ),
                    P(
                        "Closes by code (per 5 min)",
                        [q(f"sum by (code) (increase(reachlive_gateway_closes_total{sel}[5m]))", "{{code}}")],
                        stack=True,
                    ),
                    P(
                        "Resumes, revocations, refusals (per 5 min)",
                        [
                            q(f"sum(increase(reachlive_gateway_resumes_total{sel}[5m]))", "resumes"),
                            q(f"sum(increase(reachlive_gateway_revocations_total{sel}[5m]))", "revocations"),
                            q(
                                f"sum(increase(reachlive_gateway_slow_subscriber_closes_total{sel}[5m]))",
                                "slow subscribers",
                            ),
                            q(f"sum(increase(reachlive_gateway_inbound_refused_total{sel}[5m]))", "inbound refused"),
                        ],
                    ),
                ],
            ),
            (
                "Delivery",
                [
                    P("Delivery lag (XADD → frame)", quantiles("reachlive_gateway_delivery_lag_seconds", sel), "s"),
                    P(
                        "Frames per s",
                        [
                            q(
                                f"sum by (instance) (rate(reachlive_gateway_frames_sent_total{sel}[{RATE}]))",
                                "{{instance}}",
                            )
                        ],
                    ),
                    P("Bytes per s", [q(f"sum(rate(reachlive_gateway_sent_bytes_total{sel}[{RATE}]))", "sent")], "Bps"),
                    P(
                        "Cursor saves per s",
                        [q(f"sum(rate(reachlive_gateway_cursor_saves_total{sel}[{RATE}]))", "saves")],
                    ),
                ],
            ),
            ("Resources", resources("gateway")),
        ],
        "gateway",
    )


DASHBOARDS = {
    "reachlive-overview.json": overview,
    "reachlive-poller.json": poller,
    "reachlive-ingest.json": ingest,
    "reachlive-relay.json": relay,
    "reachlive-gateway.json": gateway,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        (OUT / name).write_text(render(name))
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
