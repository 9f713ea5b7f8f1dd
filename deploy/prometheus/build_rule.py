"""Write k8s/base/prometheusrule.yaml from deploy/prometheus/alerts.yml (one source of truth).

kustomize cannot read files outside its directory, so the Prometheus Operator's copy of the
rules is generated; tests/deploy/test_rules.py fails if the two disagree.

    python deploy/prometheus/build_rule.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "deploy" / "prometheus" / "alerts.yml"
TARGET = ROOT / "k8s" / "base" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by deploy/prometheus/build_rule.py: edit that
# file, then regenerate. The reachlive alert rules for the Prometheus Operator.
"""


class _Literal(str):
    pass


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


def render() -> str:
    groups = yaml.safe_load(SOURCE.read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            if "\n" in rule["expr"]:
                rule["expr"] = _Literal(rule["expr"])
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "reachlive", "labels": {"app.kubernetes.io/name": "reachlive"}},
        "spec": {"groups": groups},
    }
    dumper = yaml.SafeDumper
    dumper.add_representer(_Literal, _literal)
    return HEADER + yaml.dump(doc, Dumper=dumper, sort_keys=False, width=110, allow_unicode=True)


def main() -> int:
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
