"""A real Prometheus (Debian's package) scraping a running stack with deploy/prometheus's
config and alert rules: every service is up, the series the dashboard reads exist, every
dashboard query evaluates, every rule evaluates, and a drift makes SelfhealDrift fire."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from services.stack import Stack
from tests.kafka_container import fresh_topics
from tests.unit.test_prometheus import PROM, dashboard_queries

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def local_config(ports: dict[str, int]) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the stack's local ports, scraped every second."""
    config: dict[str, Any] = yaml.safe_load((PROM / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROM / name) for name in config["rule_files"]]
    for group in config["scrape_configs"][0]["static_configs"]:
        service = group["labels"]["service"]
        group["targets"] = [f"127.0.0.1:{p}" for name, p in ports.items() if name.startswith(service)]
    return config


@pytest.fixture(scope="module")
def stack(covariate_bundle, tmp_path_factory) -> Iterator[Stack]:
    fresh_topics()
    tmp = tmp_path_factory.mktemp("monitoring")
    path = covariate_bundle.save(tmp / "bundle")
    cwd = Path.cwd()
    os.chdir(tmp)  # the stack's state (.selfheal/) stays in this test's folder
    s = Stack(str(path), scorers=1, log_dir=tmp / "logs", base_port=None).start()
    try:
        s.wait_healthy()
        yield s
    finally:
        s.stop()
        os.chdir(cwd)


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory) -> Iterator[Callable[[str, str], Any]]:
    tmp = tmp_path_factory.mktemp("prometheus")
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(local_config(stack.ports)))
    port = free_port()
    cmd = ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}"]
    cmd += [f"--web.listen-address=127.0.0.1:{port}"]
    with open(tmp / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def api(path: str, query: str = "") -> Any:
        url = f"http://127.0.0.1:{port}/api/v1/{path}"
        if query:
            url += "?" + urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]["result"] if query else body["data"]  # a query: its series

    try:
        yield api
    finally:
        proc.terminate()
        proc.wait(30)


def eventually(check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """``check()``'s first truthy answer; connection errors while Prometheus starts are retried."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if answer := check():
                return answer
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {check.__doc__ or check}")
        time.sleep(1.0)


@pytest.fixture(scope="module")
def drifted(stack: Stack, prometheus: Callable[[str, str], Any]) -> Stack:
    """The covariate drift through the stack, labels 300 transactions late, and two records
    the scorer dead-letters; returns once the monitor says drift."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": stack.settings.bootstrap_servers or ""}
    produce = [sys.executable, "-m", "services.cli", "produce", "--scenario", "covariate"]
    produce += ["--n-pre", "1000", "--n-post", "3000", "--rate", "0", "--label-delay", "300", "--quiet"]
    subprocess.run(produce, env=env, check=True, timeout=120)
    p = Producer(stack.settings.connection())
    for bad in (b"not json", b'{"id": "x-2", "features": {"amount": 1.0}}'):
        p.produce("transactions", bad)
    p.flush(10)
    monitor = stack.children["monitor"]
    eventually(lambda: (monitor.health() or {}).get("in_drift"))
    return stack


def test_every_service_is_scraped_and_every_rule_evaluates(drifted, prometheus):
    def all_up() -> list[Any]:
        """three targets up"""
        up = prometheus("query", 'up{job="selfheal"}')
        return up if len(up) == 3 and all(s["value"][1] == "1" for s in up) else []

    up = eventually(all_up)
    assert {s["metric"]["service"] for s in up} == {"scorer", "monitor", "healer"}

    def evaluated() -> list[Any]:
        """every rule evaluated"""
        rules = [r for g in prometheus("rules")["groups"] for r in g["rules"]]
        return rules if all(r.get("lastEvaluation", "").startswith("2") for r in rules) else []

    rules = eventually(evaluated)
    assert len(rules) == 6
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]


def test_a_drift_makes_the_drift_alert_fire(drifted, prometheus):
    def drift_alert() -> list[Any]:
        """SelfhealDrift pending or firing"""
        alerts = prometheus("alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "SelfhealDrift"]

    (alert,) = eventually(drift_alert)
    assert alert["state"] in ("pending", "firing")  # `for: 1m`: pending first


def test_the_dashboard_queries_evaluate_on_live_series(drifted, prometheus, covariate_bundle):
    def per_feature() -> list[Any]:
        """a drift state for every feature, some in drift"""
        series = prometheus("query", "max by (feature) (selfheal_monitor_feature_drift)")
        drifting = [s for s in series if s["value"][1] == "1"]
        return series if len(series) == len(covariate_bundle.features) and drifting else []

    assert {s["metric"]["feature"] for s in eventually(per_feature)} == set(covariate_bundle.features)
    for _title, expr in dashboard_queries():
        prometheus("query", expr)  # a query Prometheus cannot evaluate raises here
    # the panels a running, drifting stack fills (a rate needs two scrapes: waited for)
    for expr in (
        "sum by (instance) (rate(selfheal_scorer_decisions_total[1m]))",
        "max by (instance) (selfheal_scorer_adapter_version)",
        "max(selfheal_monitor_fidi_index)",
    ):
        assert eventually(partial(prometheus, "query", expr)), expr
    dlq = eventually(lambda: prometheus("query", "sum by (reason) (rate(selfheal_scorer_dlq_total[5m]))"))
    assert {"json", "schema"} <= {s["metric"]["reason"] for s in dlq}
