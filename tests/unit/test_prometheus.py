"""deploy/prometheus: the scrape config names every service of the compose stack at its
metrics port, every metric an alert reads is one a service exports, and promtool (Debian's
prometheus package; installed by .ci/run) accepts the config and the rules and holds each
alert to its scenario (alerts_test.yml)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROM = DEPLOY / "prometheus"
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


def test_every_metric_an_alert_reads_is_exported() -> None:
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]
    exported = set()
    for path in Path(__file__).resolve().parents[2].glob("s*/**/*.py"):
        exported |= set(re.findall(r'"(selfheal_[a-z_]+)"', path.read_text()))
    exported |= {f"selfheal_{s}_consumer_lag" for s in ("scorer", "monitor", "healer")}  # lag_gauge
    for rule in rules:
        for name in re.findall(r"selfheal_[a-z_]+", rule["expr"]):
            assert name.removesuffix("_total") in exported, (rule["alert"], name)
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
