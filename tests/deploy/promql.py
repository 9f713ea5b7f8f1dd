"""PromQL of the alert rules and dashboards: parse it (the Rust promql-parser, via its Python
binding) and list the metrics and label names it selects."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import promql_parser
import yaml

from tests.deploy.manifests import DEPLOY

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))

# Grafana template variables and macros, replaced by valid PromQL before parsing.
_GRAFANA_VARS = [
    (re.compile(r"\$__rate_interval|\$__interval|\$__range"), "5m"),
    (re.compile(r"\$\{?[A-Za-z_]\w*(?::\w+)?\}?"), ".*"),
]


@dataclass(frozen=True)
class Selector:
    name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Matcher:
    metric: str
    label: str
    regex: bool  # =~ or !~
    value: str


def parse(expr: str) -> Any:
    return promql_parser.parse(expr)


def grafana_to_promql(expr: str) -> str:
    for pattern, value in _GRAFANA_VARS:
        expr = pattern.sub(value, expr)
    return expr


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of an expression (matrix selectors included)."""
    out: list[Selector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = tuple(m.name for m in node.matchers.matchers if m.name != "__name__")
            out.append(Selector(node.name or "", labels))

    promql_parser.walk(parse(expr), pre_visit=visit)
    return out


def matchers(expr: str) -> list[Matcher]:
    """Every label matcher of every vector selector (the metric name's own left out)."""
    out: list[Matcher] = []
    regex = (promql_parser.MatchOp.Re, promql_parser.MatchOp.NotRe)  # not hashable

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            for m in node.matchers.matchers:
                if m.name != "__name__":
                    out.append(Matcher(node.name or "", m.name, m.op in regex, m.value))

    promql_parser.walk(parse(expr), pre_visit=visit)
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) of every panel target and query variable."""
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in _panels(dash.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((path.name, panel.get("title", ""), grafana_to_promql(target["expr"])))
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                m = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
                if m:
                    out.append((path.name, f"variable {var['name']}", grafana_to_promql(m.group(1))))
    return out


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out += _panels(p.get("panels", []))
    return out
