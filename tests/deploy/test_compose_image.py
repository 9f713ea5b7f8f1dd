"""docker-compose.yml and deploy/Dockerfile, checked statically (no Docker engine in CI).

The image is built where a Docker engine exists: ``docker build -f deploy/Dockerfile .``."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import yaml

from shared.cli import COMMANDS
from tests.deploy.manifests import DEPLOY, ROOT, setting_value

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = ("poller", "worker", "ingest", "relay", "gateway")


def _env(svc: dict) -> dict[str, str]:
    out = {}
    for k, v in (svc.get("environment") or {}).items():
        v = str(v)
        if v.startswith("${") and v.endswith("}"):
            v = v[2:-1].partition(":-")[2]
        out[k] = v
    return out


def test_compose_file_follows_the_compose_spec() -> None:
    """Validated against the Compose Specification's JSON schema (vendored by check-jsonschema)."""
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert not errors, errors
    bad = {**COMPOSE, "services": {**COMPOSE["services"], "relay": {**COMPOSE["services"]["relay"], "replica": 2}}}
    assert list(validator.iter_errors(bad)), "the schema refuses an unknown service key"


def test_compose_runs_every_service_on_the_one_image() -> None:
    services = COMPOSE["services"]
    image = services["poller"]["image"]
    for name in SERVICES:
        svc = services[name]
        assert svc["image"] == image and svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert svc["command"][0] == name and name in COMMANDS
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        env = _env(svc)
        assert env["REACHLIVE_REDIS_URL"].startswith("redis://redis:")
        assert "redis" in svc["depends_on"]
    # Horizontal scale shown: two relays, two gateways (behind the nginx LB), two beats (one active).
    for name in ("relay", "gateway", "poller"):
        assert services[name]["deploy"]["replicas"] >= 2
    assert "ports" not in services["gateway"], "replicas cannot share a host port: the LB publishes it"
    assert services["ingest"]["ports"] == ["1935:1935"]
    assert _env(services["ingest"])["REACHLIVE_INGEST_LISTEN"].endswith(":1935")
    assert _env(services["gateway"])["REACHLIVE_GATEWAY_LISTEN"].endswith(":8080")


def test_compose_emulators_behind_a_profile_and_wired() -> None:
    services = COMPOSE["services"]
    env = _env(services["relay"])
    for name, var in (
        ("kaltura-emulator", "REACHLIVE_KALTURA_SERVICE_URL"),
        ("kwikmotion-emulator", "REACHLIVE_KWIKMOTION_URL"),
    ):
        svc = services[name]
        assert svc["profiles"] == ["emulators"]
        assert svc["command"][:2] == ["emulate", name.split("-")[0]]
        port = svc["command"][svc["command"].index("--listen") + 1].rpartition(":")[2]
        assert f"//{name}:{port}" in env[var]
    for name in SERVICES:
        assert "profiles" not in services[name]
    # The Kaltura emulator accepts the vendor credentials the services log in with.
    cmd = [_env({"environment": {"x": a}})["x"] for a in services["kaltura-emulator"]["command"]]
    assert cmd[cmd.index("--partner-id") + 1] == env["REACHLIVE_KALTURA_PARTNER_ID"]
    assert cmd[cmd.index("--admin-secret") + 1] == env["REACHLIVE_KALTURA_ADMIN_SECRET"]
    # The KWIKmotion emulator reads the relays' token from the same variable.
    assert _env(services["kwikmotion-emulator"])["REACHLIVE_KWIKMOTION_TOKEN"] == env["REACHLIVE_KWIKMOTION_TOKEN"]


def test_compose_gateway_lb_outlasts_the_two_hour_limit() -> None:
    lb = COMPOSE["services"]["gateway-lb"]
    conf_host = lb["volumes"][0].split(":")[0]
    conf = (ROOT / conf_host).read_text()
    max_conn = float(setting_value("REACHLIVE_GATEWAY_MAX_CONNECTION_SECONDS", _env(COMPOSE["services"]["gateway"])))
    for key in ("proxy_read_timeout", "proxy_send_timeout"):
        (value,) = re.findall(rf"{key}\s+(\d+)s;", conf)
        assert float(value) > max_conn
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    port = _env(COMPOSE["services"]["gateway"])["REACHLIVE_GATEWAY_LISTEN"].rpartition(":")[2]
    assert f"gateway:{port}" in conf


def test_compose_gateway_exposes_only_captions_and_logs_no_token() -> None:
    """Issue 19: the LB proxies the caption path alone; the gateways' probes and metrics are on
    the metrics port; the access log never has the query (?token=); the gateway keys its
    failed-auth limit on the address the LB appends to X-Forwarded-For."""
    services = COMPOSE["services"]
    gateway = services["gateway"]
    env = _env(gateway)
    metrics_port = env["REACHLIVE_METRICS_PORT"]
    check = " ".join(gateway["healthcheck"]["test"])
    assert f"127.0.0.1:{metrics_port}/readyz" in check, check
    listen_port = env["REACHLIVE_GATEWAY_LISTEN"].rpartition(":")[2]
    assert f":{listen_port}/" not in check
    conf_host = services["gateway-lb"]["volumes"][0].split(":")[0]
    conf = re.sub(r"#.*", "", (ROOT / conf_host).read_text())
    public_path = urlsplit(env["REACHLIVE_GATEWAY_PUBLIC_URL"]).path
    proxied = re.findall(r"location\s+([^{]*?)\s*\{([^}]*)\}", conf)
    assert [loc for loc, body in proxied if "proxy_pass" in body] == [f"= {public_path}"]
    assert all("return 404" in body for loc, body in proxied if "proxy_pass" not in body)
    # Every access log has a named format, and no format holds the query string.
    formats = dict(re.findall(r"log_format\s+(\w+)\s+((?:'[^']*'\s*)+);", conf))
    assert formats
    for name, fmt in formats.items():
        for var in ("$request", "$request_uri", "$args", "$query_string", "$http_referer"):
            assert not re.search(re.escape(var) + r"\b", fmt), (name, var)
        assert "$arg_" not in fmt, name
    logs = re.findall(r"access_log\s+(\S+)(?:\s+(\w+))?\s*;", conf)
    assert logs and all(fmt in formats for _, fmt in logs), logs
    assert re.search(r"error_log\s+\S+\s+crit;", conf), "error lines carry the request line"
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    assert env["REACHLIVE_GATEWAY_TRUSTED_PROXY_HOPS"] == "1"


def test_compose_mounts_exist_and_prometheus_scrapes_every_service() -> None:
    services = COMPOSE["services"]
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), (name, src)
    prom_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("./"))
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    inside = {c: h for h, c in prom_mounts.items()}
    for rule_file in prom["rule_files"]:
        assert rule_file in inside, f"rule file {rule_file} not mounted"
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "reachlive"]
    scraped: dict[str, int] = {}
    for sd in job["dns_sd_configs"]:
        for n in sd["names"]:
            scraped[n] = sd["port"]
    assert set(scraped) == set(SERVICES)
    metrics_port = int(_env(services["relay"])["REACHLIVE_METRICS_PORT"])
    for name, port in scraped.items():
        assert port == metrics_port, name  # the gateway too: never its public port (issue 19)
    assert any(r["target_label"] == "service" for r in job["relabel_configs"])


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    services = COMPOSE["services"]
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"] if v.startswith("./"))
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/reachlive.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    host = {c: h for h, c in mounts.items()}[path]
    assert sorted((ROOT / host).glob("*.json"))
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == "prometheus"


# --- Dockerfile ---------------------------------------------------------------------------
def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions (continuations joined; heredoc bodies skipped)."""
    out: list[tuple[str, str]] = []
    lines = iter(text.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        heredoc = re.search(r"<<'?(\w+)'?", rest)
        if heredoc:
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break
    return out


def _dockerignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics: the last matching pattern wins, ``!`` re-includes, a
    pattern matching a directory covers what is under it."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        neg = raw.startswith("!")
        pat = raw[1:] if neg else raw
        pat = pat.rstrip("/")
        regex = re.escape(pat).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, p) for p in prefixes):
            ignored = not neg
    return ignored


def test_dockerfile_is_multistage_nonroot_and_compiler_free() -> None:
    instrs = _instructions((DEPLOY / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for word, rest in instrs:
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, rest))
    assert len(stages) >= 2, "multi-stage"
    final = stages[-1]
    runs = " ".join(rest for word, rest in final if word == "RUN")
    for tool in ("build-essential", "gcc", "g++", "make ", "pip install"):
        assert tool not in runs, f"{tool} in the final stage"
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies), "final stage copies only built artifacts"
    (user,) = [rest for word, rest in final if word == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "numeric non-root user (runAsNonRoot can verify it)"
    (entry,) = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entry == '["reachlive"]'
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "REACHLIVE_DATA_DIR=/tmp/" in env, "the embedded data dir must be writable with a read-only root"
    # The k8s manifests run the image as this uid.
    k8s_uid = yaml.safe_load_all((ROOT / "k8s/base/relay.yaml").read_text())
    assert next(iter(k8s_uid))["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_dockerfile_copies_the_whole_package_and_dockerignore_lets_it_through() -> None:
    instrs = _instructions((DEPLOY / "Dockerfile").read_text())
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources: list[str] = []
    for word, rest in instrs:
        if word == "COPY" and not rest.startswith("--from="):
            *srcs, _dest = rest.split()
            sources += srcs
    for src in sources:
        path = ROOT / src
        assert path.exists(), src
        assert not _dockerignored(src, patterns), f"{src} is excluded by .dockerignore"
        files = [p for p in path.rglob("*.py")] if path.is_dir() else [path]
        for f in files:
            rel = str(f.relative_to(ROOT))
            if "__pycache__" not in rel:
                assert not _dockerignored(rel, patterns), rel
    # Every package setuptools installs is copied in.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pkg in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pkg.rstrip("*") in sources, pkg
    for name in ("pyproject.toml", "README.md"):  # setuptools reads the readme
        assert name in sources
    # Heavy or secret paths stay out of the build context.
    for rel in (".venv/bin/python", ".git/config", ".reachlive/x", "tests/conftest.py", "services/__pycache__/x.pyc"):
        assert _dockerignored(rel, patterns), rel
    # The media sample the emulators and demo read ships as package data.
    assert any(fnmatch.fnmatch("jfk.flac", p) for p in pyproject["tool"]["setuptools"]["package-data"]["*"])
    assert Path(ROOT / "emulators/media/jfk.flac").exists()
