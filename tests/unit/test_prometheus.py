"""deploy/prometheus and deploy/grafana: the scrape config names every service of the compose
stack at its metrics port, every metric an alert or a dashboard panel reads is one a service
exports, promtool (Debian's prometheus package; installed by .ci/run) accepts the config and
the rules and holds each alert to its scenario (alerts_test.yml), and the dashboard is
provisioned from the data source it names. (tests/e2e/test_monitoring.py runs them against
a live stack.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROM = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "selfheal.json"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")


def test_every_service_is_scraped_at_its_metrics_port() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    targets = {
        t for sc in config["scrape_configs"] for group in sc["static_configs"] for t in group["targets"]
    }
    for name in ("scorer-1", "scorer-2", "monitor", "healer"):
        port = compose[name]["command"][compose[name]["command"].index("--metrics-port") + 1]
        assert f"{name}:{port}" in targets
    mounted = compose["prometheus"]["volumes"][0].split(":")[0]
    assert (DEPLOY / mounted / "prometheus.yml").is_file() and config["rule_files"] == ["alerts.yml"]


def exported_metrics() -> set[str]:
    """Every metric name the services' source defines."""
    exported = set()
    for path in Path(__file__).resolve().parents[2].glob("s*/**/*.py"):
        exported |= set(re.findall(r'"(selfheal_[a-z_]+)"', path.read_text()))
    return exported | {f"selfheal_{s}_consumer_lag" for s in ("scorer", "monitor", "healer")}  # lag_gauge


def metric_names(expr: str) -> list[str]:
    """The selfheal metrics a PromQL expression reads, without the counter/histogram suffixes."""
    return [re.sub(r"_(total|bucket|count|sum)$", "", n) for n in re.findall(r"selfheal_[a-z_]+", expr)]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the provisioned dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p["targets"]]


def test_every_metric_an_alert_reads_is_exported() -> None:
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]
    exported = exported_metrics()
    for rule in rules:
        for name in metric_names(rule["expr"]):
            assert name in exported, (rule["alert"], name)
    assert {r["alert"] for r in rules} == {
        "SelfhealDrift", "SelfhealRollback", "SelfhealLabelFeedSuspect",
        "SelfhealAdapterRefused", "SelfhealDeadLetters", "SelfhealConsumerLag",
    }  # fmt: skip


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
)
def test_promtool_accepts_the_config_and_the_rules_and_every_alert_fires_on_its_scenario(
    args: list[str],
) -> None:
    result = subprocess.run(["promtool", *args], cwd=PROM, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_dashboard_reads_only_exported_metrics_from_the_provisioned_data_source() -> None:
    exported = exported_metrics()
    queries = dashboard_queries()
    for title, expr in queries:
        assert metric_names(expr), (title, expr)
        for name in metric_names(expr):
            assert name in exported, (title, name)
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = sources["datasources"][0]["uid"]
    dash = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {uid}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    # what the dashboard must show, each with the question it answers
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("throughput", "latency", "dead letters by reason", "drift state per feature",
                  "adapter version", "heals accepted and refused", "rollbacks", "label delay",
                  "estimated vs realised cost"):  # fmt: skip
        assert topic in titles, topic
    assert all(p["description"].strip() for p in dash["panels"])


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, p["title"]
        cells |= mine


def test_compose_provisions_grafana_from_the_repository() -> None:
    grafana = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert {"./grafana/provisioning", "./grafana/dashboards"} <= mounts.keys()
    for source in mounts:
        assert (DEPLOY / source).is_dir(), source
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "selfheal.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["./grafana/dashboards"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == mounts["./grafana/dashboards"] + "/" + DASHBOARD.name
