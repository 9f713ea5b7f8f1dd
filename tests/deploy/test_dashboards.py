"""The Grafana dashboards: valid JSON models, generated from deploy/grafana/build_dashboards.py,
one for the pipeline and one per service, every query valid PromQL (issue 9)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.deploy.manifests import DEPLOY
from tests.deploy.promql import DASHBOARDS, dashboard_exprs, parse, selectors

SERVICES = ("poller", "ingest", "relay", "gateway")


def _builder():
    spec = importlib.util.spec_from_file_location("build_dashboards", DEPLOY / "grafana" / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_overview_and_one_per_service() -> None:
    names = {p.name for p in DASHBOARDS}
    assert "reachlive-overview.json" in names
    for svc in SERVICES:
        assert f"reachlive-{svc}.json" in names


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_model(path) -> None:
    dash = json.loads(path.read_text())
    assert dash["uid"] == path.stem and len(dash["uid"]) <= 40
    assert dash["title"].startswith("reachlive")
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert "datasource" in variables
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            for var in ("$instance",):
                if var in target["expr"]:
                    assert var[1:] in variables
    # No two panels overlap on the grid.
    cells = set()
    for panel in dash["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_every_query_parses() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) > 50
    for name, title, expr in exprs:
        try:
            parse(expr)
        except ValueError as exc:
            raise AssertionError(f"{name} / {title}: {exc}: {expr}") from None
        assert selectors(expr), (name, title)


def test_files_match_their_generator() -> None:
    builder = _builder()
    assert set(builder.DASHBOARDS) == {p.name for p in DASHBOARDS}
    for path in DASHBOARDS:
        assert path.read_text() == builder.render(path.name), (
            f"{path.name} differs from its generator: python deploy/grafana/build_dashboards.py"
        )
