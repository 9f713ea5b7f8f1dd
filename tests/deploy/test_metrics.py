"""Every metric the alert rules, dashboards and autoscalers name is one the code exports,
collected from the running services' /metrics (issue 9)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from shared.embedded_redis import EmbeddedRedis
from tests.deploy.exported import PROMETHEUS_SERIES, STAGES, TARGET_LABELS, Exported, collect
from tests.deploy.manifests import DEPLOY, OVERLAYS, component, kind, render, workloads
from tests.deploy.promql import alert_rules, dashboard_exprs, matchers, selectors


@pytest.fixture(scope="module")
def exported(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    found = collect(redis_server.url, tmp_path_factory.mktemp("metrics"), probes=manifest_probes())
    if len(found.skipped) == len(STAGES):
        pytest.skip("no service module written yet")
    return found


def manifest_probes() -> dict[str, set]:
    """The liveness/readiness/startup probes of each stage in the rendered overlays."""
    out: dict[str, set] = {}
    for overlay in OVERLAYS:
        for w in workloads(render(f"overlays/{overlay}")):
            if component(w) not in STAGES:
                continue
            for c in w["spec"]["template"]["spec"]["containers"]:
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    spec = c.get(probe)
                    if not spec:
                        continue
                    handler = "httpGet" if "httpGet" in spec else "tcpSocket"
                    out.setdefault(component(w), set()).add(
                        (handler, spec[handler]["port"], spec[handler].get("path", ""))
                    )
    return out


def test_manifest_probes_answer(exported: Exported) -> None:
    """Every probe path and port the manifests declare is served by the running service."""
    probes = manifest_probes()
    assert {p for ps in probes.values() for p in ps if p[0] == "httpGet" and p[2] in ("/healthz", "/readyz")}
    checked = 0
    for stage, ps in probes.items():
        if stage in exported.skipped:
            continue
        for handler, port, path in ps:
            status = exported.probes[(stage, handler, port, path)]
            assert status == 200, f"{stage}: {handler} {port} {path} answered {status}"
            checked += 1
    assert checked >= len(probes)


def _check(exported: Exported, where: str, expr: str) -> None:
    for sel in selectors(expr):
        if sel.name in PROMETHEUS_SERIES:
            continue
        stage = sel.name.split("_")[1] if sel.name.startswith("reachlive_") else ""
        if sel.name not in exported.series and stage in exported.skipped:
            continue  # that service is not written yet (reported by test_every_stage_was_scraped)
        assert sel.name in exported.series, f"{where}: {sel.name} is not exported by any service"
        unknown = set(sel.labels) - exported.labels.get(sel.name, set()) - TARGET_LABELS
        assert not unknown, f"{where}: {sel.name} has no label(s) {sorted(unknown)}"
    # The scrape's own "service" label (the stage) wins over a metric's: a matcher on it can only
    # select stages (a Kaltura API service name there once kept an alert from ever firing).
    for m in matchers(expr):
        if m.label == "service" and m.value != ".*":
            values = m.value.split("|") if m.regex else [m.value]
            assert set(values) <= set(STAGES), f"{where}: service={m.value!r} is not a stage {sorted(STAGES)}"


def test_every_stage_was_scraped(exported: Exported) -> None:
    if exported.skipped:
        pytest.skip(f"services not written yet: {', '.join(exported.skipped)}")
    for stage, module in STAGES.items():
        prefix = f"reachlive_{module.split('.')[1]}_"
        assert any(n.startswith(prefix) for n in exported.by_stage[stage]), stage


def test_alert_rules_use_exported_metrics(exported: Exported) -> None:
    rules = alert_rules()
    assert rules
    for rule in rules:
        _check(exported, f"alert {rule['alert']}", rule["expr"])


def test_dashboards_use_exported_metrics(exported: Exported) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    for name, title, expr in exprs:
        _check(exported, f"{name} / {title}", expr)


def test_autoscaler_metrics_are_exported(exported: Exported) -> None:
    """HPA Pods metrics come from prometheus-adapter rules over exported series."""
    adapter = yaml.safe_load((DEPLOY / "prometheus" / "adapter-rules.yaml").read_text())["rules"]["custom"]
    served = {}
    for rule in adapter:
        (sel,) = selectors(rule["seriesQuery"])
        served[rule["name"]["as"]] = sel.name
        _check(exported, "adapter", sel.name)
    hpas = kind(render("overlays/prod"), "HorizontalPodAutoscaler")
    pods_metrics = [m["pods"]["metric"]["name"] for h in hpas for m in h["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics
    for name in pods_metrics:
        assert name in served, f"HPA metric {name} has no prometheus-adapter rule"


def test_no_metric_label_is_renamed_by_the_scrape(exported: Exported) -> None:
    """A label a metric shares with the scrape's target labels is stored as exported_<label>,
    where rules and dashboards do not look. Only the Redis health metrics carry one: "service",
    set to the stage's own name, so the two agree."""
    clashing = {
        name: labels & TARGET_LABELS
        for name, labels in exported.labels.items()
        if labels & TARGET_LABELS
        and not (name.startswith("reachlive_redis_") and labels & TARGET_LABELS == {"service"})
    }
    assert not clashing, clashing


def test_a_matcher_on_a_kaltura_service_is_caught(exported: Exported) -> None:
    """The check can fail: the old label of the vendor-auth alert is refused."""
    with pytest.raises(AssertionError, match="not a stage"):
        _check(
            exported, "probe", 'sum(increase(reachlive_poller_kaltura_errors_total{service=~"session|apptoken"}[10m]))'
        )


def test_unknown_metric_is_caught(exported: Exported) -> None:
    """The check can fail: a made-up metric of a scraped stage is refused."""
    stage = next(s for s in STAGES if s not in exported.skipped)
    prefix = STAGES[stage].split(".")[1]
    with pytest.raises(AssertionError):
        _check(exported, "probe", f"rate(reachlive_{prefix}_made_up_total[5m])")


def readme_row(module: str, name: str) -> str:
    """The metrics reference's table row of a metric, from its definition (to paste into the right table)."""
    for obj in vars(importlib.import_module(module)).values():
        if isinstance(obj, MetricWrapperBase) and obj._name in (name, name.removesuffix("_total")):
            labels = ", ".join(obj._labelnames) or "—"
            return f"| `{name}` | {obj._type} | {labels} | {obj._documentation} |"
    return f"| `{name}` | ? | ? | ? |"


def test_metrics_reference_in_the_operator_guide(exported: Exported) -> None:
    """docs/operating.md's metrics reference lists every exported reachlive metric family."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operating.md").read_text()
    section = guide.partition("## Metrics reference")[2].partition("\n## ")[0]
    assert section, "docs/operating.md has a '## Metrics reference' section"
    families = {f for f in exported.families if f.startswith("reachlive_")}
    assert families
    missing = sorted(f for f in families if f"`{f}`" not in section)
    assert not missing, "docs/operating.md metrics reference lacks these rows:\n" + "\n".join(
        readme_row(f"services.{f.split('_')[1]}.metrics", f) for f in missing
    )
    listed = set(re.findall(r"`(reachlive_\w+)`", section))
    stale = sorted(n for n in listed if n not in families)
    assert not stale, f"docs/operating.md metrics reference lists metrics no service exports: {stale}"
