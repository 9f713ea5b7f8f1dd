"""Every ``REACHLIVE_*`` variable the deployment files name is a real setting (issue 9).

The set of real names is derived from the settings classes of shared/settings.py (as
pydantic-settings reads them), never typed by hand."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.manifests import (
    DEPLOY,
    K8S,
    OVERLAYS,
    ROOT,
    env_names_in_text,
    kind,
    render,
    setting_names,
    setting_value,
    settings_fields,
    walk,
    workloads,
)

DEPLOY_FILES = sorted(
    [
        ROOT / "docker-compose.yml",
        *K8S.rglob("*.yaml"),
        *K8S.rglob("*.md"),
        *(p for p in DEPLOY.rglob("*") if p.is_file()),
    ]
)


def test_settings_are_derived() -> None:
    names = setting_names()
    # The design's public contract (docs/design.md section 6) is among them: the derivation works.
    assert {"REACHLIVE_REDIS_URL", "REACHLIVE_INGEST_LISTEN", "REACHLIVE_GATEWAY_PUBLIC_URL"} <= names
    assert len(names) == len(settings_fields()) > 20


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_variable_is_a_setting(path) -> None:
    unknown = env_names_in_text(path.read_text(errors="replace")) - setting_names()
    assert not unknown, f"{path.relative_to(ROOT)} names variables no setting reads: {sorted(unknown)}"


def test_operator_guide_names_real_settings() -> None:
    """Every REACHLIVE_* variable the README and the operator's guide name is a real setting."""
    for doc in ("README.md", "docs/operating.md", "docs/services.md"):
        unknown = env_names_in_text((ROOT / doc).read_text()) - setting_names()
        assert not unknown, f"{doc} names variables no setting reads: {sorted(unknown)}"


def _env_keys_of_rendered(docs) -> set[str]:
    """The variable names set structurally: ConfigMap/Secret keys and container env names."""
    keys: set[str] = set()
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            keys |= set(doc.get("data", {}))
        if doc["kind"] == "Secret":
            keys |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
    for w in workloads(docs):
        for node in walk(w["spec"]["template"]["spec"]):
            if isinstance(node, dict) and "env" in node and isinstance(node["env"], list):
                keys |= {e["name"] for e in node["env"]}
    return keys


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_config_and_secret_keys_are_settings(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    keys = {k for k in _env_keys_of_rendered(docs) if k.startswith("REACHLIVE_")}
    assert len(keys) >= 10, "the extraction found the ConfigMap"
    assert keys <= setting_names(), sorted(keys - setting_names())
    # Every non-REACHLIVE key in our ConfigMaps/Secrets would be ignored by the services.
    for doc in kind(docs, "ConfigMap") + kind(docs, "Secret"):
        if doc["metadata"]["name"].startswith("reachlive-"):
            stray = {k for k in {**doc.get("data", {}), **doc.get("stringData", {})} if not k.startswith("REACHLIVE_")}
            assert not stray, (doc["metadata"]["name"], stray)


def test_values_parse_with_the_settings_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ConfigMap / compose value the service would refuse at start (e.g. a bad URL, or one
    without TLS to a host the same file does not allow, issue 19) fails here."""
    sources: list[dict[str, str]] = []
    for overlay in OVERLAYS:
        for doc in kind(render(f"overlays/{overlay}"), "ConfigMap"):
            sources.append(doc["data"])
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for svc in compose["services"].values():
        env = svc.get("environment") or {}
        # ${VAR:-default} takes its default when the variable is unset.
        sources.append({k: _compose_default(str(v)) for k, v in env.items()})
    checked = 0
    for values in sources:
        # The URL validators read REACHLIVE_ALLOW_INSECURE_HOSTS from the environment, as a
        # service started with this file's variables would.
        monkeypatch.setenv("REACHLIVE_ALLOW_INSECURE_HOSTS", values.get("REACHLIVE_ALLOW_INSECURE_HOSTS", ""))
        for env, value in values.items():
            if env.startswith("REACHLIVE_") and value != "":
                setting_value(env, {env: value})
                checked += 1
    assert checked > 30


def _compose_default(value: str) -> str:
    if value.startswith("${") and value.endswith("}"):
        _, _, default = value[2:-1].partition(":-")
        return default
    return value
