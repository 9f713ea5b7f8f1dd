"""The alert rules parse and cover what an on-call needs (issue 9).

No Prometheus rule checker (promtool) is published on the package index: the rule file is
checked structurally here, as promtool's ``check rules`` does, and every expression is parsed
with promql-parser (a PromQL parser, Rust, with a Python binding)."""

from __future__ import annotations

import re

import promql_parser
import pytest
import yaml

from tests.deploy.manifests import K8S, load_docs
from tests.deploy.promql import ALERTS, alert_rules, parse, selectors

DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
SEVERITIES = {"critical", "warning", "info"}
TEMPLATE = re.compile(r"{{.*?}}")


def test_rule_file_structure() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names)), "group names are unique"
    alerts = [r["alert"] for g in doc["groups"] for r in g["rules"]]
    assert len(alerts) == len(set(alerts)), "alert names are unique"
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS, set(rule) - RULE_KEYS
            assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", rule["alert"])
            if "for" in rule:
                assert DURATION.match(rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in SEVERITIES
            for key in ("summary", "description", "runbook"):
                assert rule["annotations"].get(key), (rule["alert"], key)
            # Annotation templates are balanced Go templates of $value / $labels only.
            for text in rule["annotations"].values():
                assert text.count("{{") == text.count("}}")
                for tmpl in TEMPLATE.findall(text):
                    assert re.fullmatch(r"{{ \$(value|labels\.\w+)( \| \w+)? }}", tmpl), tmpl


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_expression_parses_and_selects_metrics(rule: dict) -> None:
    expr = parse(rule["expr"])
    assert str(expr)  # round-trips to text
    sels = selectors(rule["expr"])
    assert sels and all(s.name for s in sels), "every selector names its metric"
    # An alert fires on a condition (comparison or absent()), not on a bare value.
    has_cmp = any(op in rule["expr"] for op in (">", "<", "==", "!=")) or "absent(" in rule["expr"]
    assert has_cmp, rule["alert"]


def test_malformed_promql_is_refused() -> None:
    """The parser really checks (so the test above can fail)."""
    for bad in ("sum(rate(x[5m])", "rate(x)", "x >", "histogram_quantile(0.9, rate(x[5m]) by (le))"):
        with pytest.raises(ValueError):
            promql_parser.parse(bad)


def test_on_call_needs_are_covered() -> None:
    """The alerts the issue asks for exist (by the metrics they watch, not by name)."""
    rules = alert_rules()

    def watching(*metrics: str) -> list[str]:
        return [r["alert"] for r in rules if all(any(s.name == m for s in selectors(r["expr"])) for m in metrics)]

    # No relay session for a live event: live publishers vs sessions owned.
    assert watching("reachlive_ingest_publishers", "reachlive_relay_sessions_owned")
    assert watching("reachlive_relay_kwikmotion_auth_failures_total")
    assert watching("reachlive_relay_reconnects_total")
    assert watching("reachlive_gateway_delivery_lag_seconds_bucket")
    assert watching("reachlive_poller_kaltura_errors_total")
    assert watching("reachlive_poller_polls_total")
    assert watching("reachlive_poller_tasks_overdue")  # tasks stuck in SCHEDULED past their start
    assert watching("reachlive_poller_no_shows_total")  # windows that closed with no media
    assert watching("reachlive_relay_sessions_refused")  # KWIKmotion refusing us: at once, not at the deadline
    critical = {r["alert"] for r in rules if r["labels"]["severity"] == "critical"}
    assert set(watching("reachlive_relay_kwikmotion_auth_failures_total")) <= critical


def test_prometheus_operator_rule_matches_the_rule_file() -> None:
    """k8s/base/prometheusrule.yaml is generated from alerts.yml (deploy/prometheus/build_rule.py)."""
    (rule,) = load_docs(K8S / "base" / "prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"], (
        "regenerate with: python deploy/prometheus/build_rule.py"
    )
