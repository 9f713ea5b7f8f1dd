"""The Kubernetes manifests: they render, validate against the Kubernetes schemas, and agree
with each other and with the code (issue 9)."""

from __future__ import annotations

import base64
import copy
import re
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from shared.cli import COMMANDS
from tests.deploy.manifests import (
    K8S,
    OVERLAYS,
    by_name,
    component,
    containers,
    kind,
    load_docs,
    render,
    secret_setting_names,
    selects,
    setting_value,
    settings_fields,
    walk,
    workloads,
)

K8S_VERSION = kubernetes_validate.latest_version()
# The oldest Kubernetes the manifests support (docs/operating.md) and the newest the package knows.
K8S_VERSIONS = ("1.30.0", K8S_VERSION)
# Prometheus Operator CRDs: kubernetes-validate has no schema for them (checked structurally).
CRD_GROUP = "monitoring.coreos.com/v1"
CRD_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
SERVICES = ("poller", "worker", "ingest", "relay", "gateway")
EMULATORS = ("kaltura-emulator", "kwikmotion-emulator")
TARGETS = ("base", *(f"overlays/{o}" for o in OVERLAYS))


def config(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    maps = [d for d in kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("reachlive-config")]
    assert len(maps) == 1
    return maps[0]["data"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_validates(target: str, version: str) -> None:
    docs = render(target)
    assert {component(d) for d in workloads(docs)} >= set(SERVICES)
    for doc in docs:
        if doc["apiVersion"] == CRD_GROUP:
            assert doc["kind"] in CRD_KINDS, doc["kind"]
            continue
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_is_strict() -> None:
    """An unknown field (a typo) is refused, so the test above can fail."""
    deployment = copy.deepcopy(by_name(render("overlays/prod"), "Deployment", "relay"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_secret_template_validates_and_holds_every_credential() -> None:
    (secret,) = load_docs(K8S / "base" / "secret.example.yaml")
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["metadata"]["name"] == "reachlive-secrets"
    # Every SecretStr setting has its key in the template, and none sits in the ConfigMap.
    assert secret_setting_names() <= set(secret["stringData"])
    for target in TARGETS:
        assert not secret_setting_names() & set(config(render(target))), target


def test_every_manifest_file_is_rendered_or_a_template() -> None:
    """No YAML under k8s/ escapes validation: each is a kustomization, a resource or patch one
    references, or the Secret template."""
    used: set[str] = {str(K8S / "base" / "secret.example.yaml")}
    for kfile in K8S.rglob("kustomization.yaml"):
        used.add(str(kfile))
        k = yaml.safe_load(kfile.read_text())
        for entry in k.get("resources", []):
            path = (kfile.parent / entry).resolve()
            used.add(str(path if path.is_file() else path / "kustomization.yaml"))
        for patch in k.get("patches", []):
            if "path" in patch:
                used.add(str((kfile.parent / patch["path"]).resolve()))
    files = {str(p.resolve()) for p in K8S.rglob("*.yaml")}
    assert files - used == set()
    assert used - files == set(), "a kustomization names a missing file"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in workloads(docs)}
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}

    for w in workloads(docs):
        assert selects(w["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        for c in containers(w):
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ("ConfigMap", ref["configMapRef"]["name"]) in names
                if "secretRef" in ref:
                    name = ref["secretRef"]["name"]
                    # prod's Secret is created out of band from the template (docs/operating.md).
                    assert ("Secret", name) in names or (overlay == "prod" and name == "reachlive-secrets")
            env_names = {e["name"] for e in c.get("env", [])}
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef") or e.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    kind_ = "Secret" if "secretKeyRef" in e["valueFrom"] else "ConfigMap"
                    if overlay == "prod" and ref["name"] == "reachlive-secrets":
                        continue
                    obj = by_name(docs, kind_, ref["name"])
                    assert ref["key"] in {**obj.get("data", {}), **obj.get("stringData", {})}, ref
            for arg in c.get("args", []):
                for var in re.findall(r"\$\((\w+)\)", arg):
                    # The kubelet expands $(VAR) only from variables the container defines.
                    assert var in env_names, (w["metadata"]["name"], var)
            if "reachlive" in c["image"]:  # the entry point is a real `reachlive` subcommand
                assert c["args"][0] in COMMANDS, c["args"]
            port_names = {p["name"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                for handler in ("httpGet", "tcpSocket"):
                    port = c.get(probe, {}).get(handler, {}).get("port")
                    if isinstance(port, str):
                        assert port in port_names, (w["metadata"]["name"], probe, port)

    for svc in kind(docs, "Service"):
        sel = {"matchLabels": svc["spec"]["selector"]}
        matched = [t for t in pods.values() if selects(sel, t["metadata"]["labels"])]
        assert matched, f"Service {svc['metadata']['name']} selects no pod"
        for port in svc["spec"]["ports"]:
            if isinstance(port["targetPort"], str):
                assert all(
                    port["targetPort"] in {p["name"] for c in t["spec"]["containers"] for p in c.get("ports", [])}
                    for t in matched
                )

    for pdb in kind(docs, "PodDisruptionBudget"):
        assert any(selects(pdb["spec"]["selector"], t["metadata"]["labels"]) for t in pods.values())

    for hpa in kind(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) in names
        target = by_name(docs, ref["kind"], ref["name"])
        # The HPA owns the replica count: a fixed one would be reset on every apply.
        assert "replicas" not in target["spec"], ref["name"]
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]

    for ing in kind(docs, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = by_name(docs, "Service", backend["name"])
                assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}


def _allowed(docs: tuple[dict[str, Any], ...], labels: dict[str, str], port: dict[str, Any]) -> bool | None:
    """Whether NetworkPolicies let traffic reach a container port of pods with these labels
    (None: no policy selects the pods, so everything is allowed)."""
    policies = [p for p in kind(docs, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels)]
    if not policies:
        return None
    for pol in policies:
        for rule in pol["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports is None or any(p["port"] in (port.get("name"), port["containerPort"]) for p in ports):
                return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_served_ports_through(overlay: str) -> None:
    """Default deny, then each served port (Services, probes are kubelet-local, scrapes) opened."""
    docs = render(f"overlays/{overlay}")
    assert kind(docs, "NetworkPolicy")
    for w in workloads(docs):
        labels = w["spec"]["template"]["metadata"]["labels"]
        ports = {p["name"]: p for c in containers(w) for p in c.get("ports", [])}
        served = {
            p["targetPort"]
            for s in kind(docs, "Service")
            if selects({"matchLabels": s["spec"]["selector"]}, labels)
            for p in s["spec"]["ports"]
        }
        served |= {"metrics"} & set(ports)
        for name in served:
            assert _allowed(docs, labels, ports[name]) is not False, (w["metadata"]["name"], name)
        if component(w) in ("poller", "worker", "relay"):
            # Nothing but the scrape reaches them.
            closed = {"name": "other", "containerPort": 12345}
            assert _allowed(docs, labels, closed) is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_are_hardened_and_probed(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    for w in workloads(docs):
        name = w["metadata"]["name"]
        pod = w["spec"]["template"]["spec"]
        assert pod.get("automountServiceAccountToken") is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in containers(w):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in sc["capabilities"], name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), name
            assert "livenessProbe" in c and "readinessProbe" in c, name
        if component(w) in SERVICES:
            anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            assert any(
                selects(t["podAffinityTerm"]["labelSelector"], w["spec"]["template"]["metadata"]["labels"])
                for t in anti
            ), name
            # A read-only root needs a writable /tmp (REACHLIVE_DATA_DIR, Python's tempfile).
            (c,) = pod["containers"]
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, name
            assert any(
                selects(p["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
                for p in kind(docs, "PodDisruptionBudget")
            ), f"no PodDisruptionBudget for {name}"


def _prestop_seconds(container: dict[str, Any]) -> float:
    cmd = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return float(cmd[1]) if cmd[:1] == ["sleep"] else 0.0


# The settings that bound how long each service takes to stop after SIGTERM (its drain): the
# grace period must outlast them plus any preStop sleep, or the kubelet SIGKILLs mid-drain.
SHUTDOWN_BOUNDS = {
    "gateway": ["REACHLIVE_GATEWAY_DRAIN_SECONDS"],
    "relay": ["REACHLIVE_KWIKMOTION_END_TIMEOUT_SECONDS"],
    "worker": ["REACHLIVE_KALTURA_REQUEST_TIMEOUT_SECONDS"],
    "ingest": ["REACHLIVE_INGEST_GRACE_SECONDS"],
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_outlasts_each_drain(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    cfg = config(docs)
    drains = {env for env in settings_fields() if "DRAIN" in env or "SHUTDOWN" in env}
    for env in drains:  # a drain setting added by a service must be covered here
        assert any(env in bounds for bounds in SHUTDOWN_BOUNDS.values()), f"{env} bounds no grace period"
    for svc, bounds in SHUTDOWN_BOUNDS.items():
        w = by_name(docs, "Deployment", svc)
        (c,) = w["spec"]["template"]["spec"]["containers"]
        need = sum(float(setting_value(env, cfg)) for env in bounds) + _prestop_seconds(c)
        assert w["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > need, (svc, need)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_and_gateway_exposure(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    cfg = config(docs)
    ingest = by_name(docs, "Service", "ingest")
    assert ingest["spec"]["type"] == "LoadBalancer"
    assert [(p["port"], p["protocol"]) for p in ingest["spec"]["ports"]] == [(1935, "TCP")]
    # The port Kaltura is told to publish to is the LoadBalancer's.
    public = str(setting_value("REACHLIVE_INGEST_PUBLIC_URL", cfg))
    assert public.startswith("rtmp") and ":1935/" in public

    (ing,) = kind(docs, "Ingress")
    ann = ing["metadata"]["annotations"]
    max_conn = float(setting_value("REACHLIVE_GATEWAY_MAX_CONNECTION_SECONDS", cfg))
    assert max_conn >= 7200
    for key in ("nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"):
        assert float(ann[key]) > max_conn, key
    # The captionUrl given to Kaltura is served by this Ingress.
    url = urlsplit(str(setting_value("REACHLIVE_GATEWAY_PUBLIC_URL", cfg)))
    assert url.scheme == "wss"
    rule = ing["spec"]["rules"][0]
    assert url.hostname == rule["host"]
    assert url.hostname in ing["spec"]["tls"][0]["hosts"]
    assert any(url.path.startswith(p["path"]) for p in rule["http"]["paths"])

    # Issue 19: the Ingress exposes the caption path alone, logs no request line (?token=), and
    # the gateway keys its failed-auth limit on the one X-Forwarded-For entry the controller sets.
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [(url.path, "Exact")]
    assert ann["nginx.ingress.kubernetes.io/enable-access-log"] == "false"
    assert int(setting_value("REACHLIVE_GATEWAY_TRUSTED_PROXY_HOPS", cfg)) == 1
    service = by_name(docs, "Service", "gateway")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    (c,) = by_name(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "metrics", probe  # never on the public port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_signals(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    for name in ("relay", "gateway"):
        hpa = by_name(docs, "HorizontalPodAutoscaler", name)
        types = [m["type"] for m in hpa["spec"]["metrics"]]
        assert "Resource" in types
        if overlay == "prod":  # sessions / connections per replica via prometheus-adapter
            assert "Pods" in types
        else:  # dev needs no metrics adapter
            assert types == ["Resource"]
        # Scale-down moves sessions / clients: never faster than one pod per minute.
        down = hpa["spec"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300
    relay = by_name(docs, "HorizontalPodAutoscaler", "relay")
    for m in relay["spec"]["metrics"]:
        if m["type"] == "Pods":
            target = float(m["pods"]["target"]["averageValue"])
            # Below a replica's capacity so a failover finds room.
            assert target < float(setting_value("REACHLIVE_RELAY_MAX_SESSIONS", config(docs)))


def test_single_active_beat_with_standby() -> None:
    for overlay in OVERLAYS:
        docs = render(f"overlays/{overlay}")
        poller = by_name(docs, "Deployment", "poller")
        assert poller["spec"]["replicas"] >= 2, "a standby beat waits on the redbeat lock"
        assert not [h for h in kind(docs, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "poller"]


def test_dev_has_emulators_and_redis_prod_has_neither() -> None:
    dev, prod = render("overlays/dev"), render("overlays/prod")
    assert {component(d) for d in workloads(dev)} >= {*EMULATORS, "redis"}
    assert not {component(d) for d in workloads(prod)} & {*EMULATORS, "redis"}
    assert not kind(prod, "StatefulSet")
    redis = by_name(dev, "StatefulSet", "redis")
    assert "noeviction" in redis["spec"]["template"]["spec"]["containers"][0]["args"]
    # dev points the services at its emulators and its Redis.
    cfg = config(dev)
    (secret,) = [s for s in kind(dev, "Secret") if s["metadata"]["name"].startswith("reachlive-secrets")]
    redis_url = base64.b64decode(secret["data"]["REACHLIVE_REDIS_URL"]).decode()
    assert redis_url.startswith(f"redis://redis-0.{redis['spec']['serviceName']}:6379/")
    services = {s["metadata"]["name"]: s for s in kind(dev, "Service")}
    for env, svc in (
        ("REACHLIVE_KALTURA_SERVICE_URL", "kaltura-emulator"),
        ("REACHLIVE_KWIKMOTION_URL", "kwikmotion-emulator"),
    ):
        port = services[svc]["spec"]["ports"][0]["port"]
        assert f"//{svc}:{port}" in cfg[env]
        (emu,) = [w for w in workloads(dev) if w["metadata"]["name"] == svc]
        args = emu["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:2] == ["emulate", svc.split("-")[0]]
        assert f"0.0.0.0:{port}" in args, "listens on all interfaces on its Service's port"
    # prod keeps real endpoints (no emulator host names anywhere).
    assert not any(isinstance(v, str) and "emulator" in v for v in walk(list(prod)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_monitors_scrape_every_service(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    monitors = [d for d in docs if d["apiVersion"] == CRD_GROUP and d["kind"] in ("PodMonitor", "ServiceMonitor")]
    scraped: set[str] = set()
    for mon in monitors:
        spec = mon["spec"]
        assert "namespaceSelector" not in spec or spec["namespaceSelector"], "selects its own namespace"
        if mon["kind"] == "PodMonitor":
            for w in workloads(docs):
                labels = w["spec"]["template"]["metadata"]["labels"]
                if not selects(spec["selector"], labels):
                    continue
                ports = {p["name"] for c in containers(w) for p in c.get("ports", [])}
                for ep in spec["podMetricsEndpoints"]:
                    assert ep["port"] in ports, (w["metadata"]["name"], ep["port"])
                    assert ep["path"] == "/metrics"
                scraped.add(component(w))
        else:
            for svc in kind(docs, "Service"):
                if not selects(spec["selector"], svc["metadata"].get("labels", {})):
                    continue
                for ep in spec["endpoints"]:
                    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}
                    assert ep["path"] == "/metrics"
                scraped.add(component(svc))
        for ep in spec.get("podMetricsEndpoints") or spec.get("endpoints"):
            assert ep["port"] == "metrics", "scraped on the metrics port only (issue 19)"
        endpoints = spec.get("podMetricsEndpoints") or spec.get("endpoints")
        for ep in endpoints:
            # Every target carries the "service" label the rules and dashboards group by.
            assert any(r.get("targetLabel") == "service" for r in ep.get("relabelings", []))
    assert scraped == set(SERVICES)
    if overlay == "prod":
        assert all(m["metadata"]["labels"].get("release") for m in monitors)


def test_metrics_port_matches_setting() -> None:
    docs = render("overlays/prod")
    port = int(setting_value("REACHLIVE_METRICS_PORT", config(docs)))
    for w in workloads(docs):
        if component(w) in SERVICES:
            (c,) = w["spec"]["template"]["spec"]["containers"]
            assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in c["ports"]


def test_prod_talks_to_the_outside_over_tls() -> None:
    """KWIKmotion seed: 'Always use secure connections (wss://) in production'; Kaltura over
    https; the Redis template uses TLS (rediss://)."""
    cfg = config(render("overlays/prod"))
    assert str(setting_value("REACHLIVE_KWIKMOTION_URL", cfg)).startswith("wss://")
    assert str(setting_value("REACHLIVE_KALTURA_SERVICE_URL", cfg)).startswith("https://")
    assert str(setting_value("REACHLIVE_GATEWAY_PUBLIC_URL", cfg)).startswith("wss://")
    (secret,) = load_docs(K8S / "base" / "secret.example.yaml")
    assert secret["stringData"]["REACHLIVE_REDIS_URL"].startswith("rediss://")
