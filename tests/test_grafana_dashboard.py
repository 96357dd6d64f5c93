"""The Grafana dashboard in the repo loads: valid JSON, every panel on the provisioned data source, every
expression valid PromQL (Prometheus's own ``promtool``) naming only series that ``/metrics`` exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import World

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "config" / "grafana" / "command-centre.json"
DATASOURCES = ROOT / "config" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
METRIC_NAME = re.compile(r"\bcc_[a-z_]+\b")


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return panels


def _exprs() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel["targets"]]


def test_the_dashboard_is_valid_json_with_panels_on_the_provisioned_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    found = re.search(r"^\s+uid: (\S+)$", DATASOURCES.read_text(), re.MULTILINE)
    assert found is not None
    uid = found.group(1)
    panels = dashboard["panels"]
    assert len(panels) >= 10
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert METRIC_NAME.search(target["expr"]), f"{panel['title']}: {target['expr']}"


async def test_every_expression_names_an_exported_series(world: World) -> None:
    response = await world.client.get("/metrics", headers=world.auth("admin"))
    assert response.status == 200
    exported: set[str] = set()
    for family in text_string_to_metric_families(await response.text()):  # a family without samples yet counts
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        exported.update(family.name + suffix for suffix in suffixes)
    unknown = {name for expr in _exprs() for name in METRIC_NAME.findall(expr)} - exported
    assert not unknown, f"the dashboard draws series /metrics does not export: {sorted(unknown)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian prometheus)")
def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, expr in enumerate(_exprs())
    ]}]}  # fmt: skip
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    checked = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
