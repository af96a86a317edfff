"""deploy/compose.yaml is kept correct by reading: every command exists in the CLI and parses."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.cli import build_parser

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


def load():
    return yaml.safe_load(COMPOSE.read_text())


def selfheal_commands(command):
    """Every `selfheal ...` argument list in a compose command (a list, or `sh -c` text)."""
    if command[0] == "selfheal":
        return [command[1:]]
    assert command[:2] == ["sh", "-c"], command
    parts = re.split(r"&&|\|\||[()>]", command[2])
    return [shlex.split(p.strip())[1:] for p in parts if p.strip().startswith("selfheal")]


def test_every_service_command_exists_in_the_cli():
    doc = load()
    parser = build_parser()
    checked = 0
    for _name, svc in doc["services"].items():
        if svc.get("image") != "selfheal:latest":
            continue
        for argv in selfheal_commands(svc["command"]):
            parser.parse_args(argv)  # exits (SystemExit) on an unknown command or option
            checked += 1
    assert checked >= 8


def test_the_stack_has_what_the_design_says():
    services = load()["services"]
    assert {"kafka", "topics", "scorer-1", "scorer-2", "monitor", "healer", "producer"} <= services.keys()
    assert {"prometheus", "grafana"} <= services.keys()  # monitoring, deploy/prometheus and deploy/grafana
    kafka = services["kafka"]
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("scorer-1", "scorer-2", "monitor", "healer"):
        svc = services[name]
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert svc["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert svc["environment"]["SELFHEAL_ADAPTER_KEY_FILE"] == "/keys/adapter.key"
        assert svc["depends_on"]["key"]["condition"] == "service_completed_successfully"
    builds = {svc["build"]["dockerfile"] for svc in services.values() if "build" in svc}
    assert builds == {"deploy/Dockerfile"}  # one image


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_validates_the_file():
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    listed = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "--services"], capture_output=True, text=True
    )
    assert {"prometheus", "grafana"} <= set(listed.stdout.split())
