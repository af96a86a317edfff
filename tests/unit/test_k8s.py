"""deploy/k8s, checked offline: every Kubernetes object against the API's schema
(kubernetes-validate, strict: no unknown fields), the KEDA ScaledObject against the shape of
KEDA's CRD and the Kafka scaler's parameters, and the manifests against selfheal itself:
commands the CLI accepts, probes on the metrics port, one healer and one monitor, scorers
capped at the partition count, requests above the bench's RSS, a placeholder key no
service accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.cli import build_parser
from shared.errors import SelfhealError
from shared.kafka.config import Topics
from shared.signing import Signer

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES = "1.30.0"  # the oldest version still supported upstream when written
RSS_MB = {"scorer": 363.4, "monitor": 329.3, "healer": 357.6}  # make bench, 2026-11-30 (docs/performance.md)

# The part of KEDA's ScaledObject CRD (keda.sh/v1alpha1) these manifests use, as its
# openAPIV3Schema states it: scaleTargetRef.name and triggers required, each trigger a type
# and a metadata map of strings, replica counts and intervals int32.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {k: {"type": "string"} for k in ("apiVersion", "kind", "name", "envSourceContainerName")},  # noqa: E501
                },
                **{k: {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
                   for k in ("minReplicaCount", "maxReplicaCount", "idleReplicaCount", "pollingInterval", "cooldownPeriod")},  # noqa: E501
                "advanced": {"type": "object"},
                "fallback": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": {"type": "object", "required": ["name"]},
                        },
                    },
                },
            },
        },
    },
}  # fmt: skip
# The Kafka scaler's parameters (keda.sh/docs/2.x/scalers/apache-kafka)
KAFKA_SCALER = {
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag",
    "limitToPartitionsWithLag", "partitionLimitation", "version", "sasl", "tls",
}  # fmt: skip


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def the(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(deployment: str) -> dict[str, Any]:
    (c,) = the("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return dict(c)


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1.0, "Gi": 1024.0}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_object_matches_its_schema(doc: dict[str, Any]) -> None:
    if doc["kind"] == "ScaledObject":
        jsonschema.validate(doc, SCALED_OBJECT)
        for trigger in doc["spec"]["triggers"]:
            assert trigger["type"] == "kafka" and set(trigger["metadata"]) <= KAFKA_SCALER
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_a_broken_manifest_is_caught() -> None:
    """The validators above can fail: a misspelt field and a missing scale target."""
    bad = the("Deployment", "selfheal-healer")
    bad["spec"]["strategy"] = {"tpye": "Recreate"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES, strict=True)
    scaled = the("ScaledObject", "selfheal-scorer")
    del scaled["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, SCALED_OBJECT)


def test_every_command_is_one_the_cli_accepts_and_probes_read_its_health_port() -> None:
    for job in ("selfheal-scorer", "selfheal-monitor", "selfheal-healer"):
        c = container(job)
        assert c["command"][0] == "selfheal"
        args = build_parser().parse_args(c["command"][1:])  # exits on an unknown option
        assert args.command == job.removeprefix("selfheal-")
        port = c["command"][c["command"].index("--metrics-port") + 1]
        assert [p["containerPort"] for p in c["ports"]] == [int(port)]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/health", "port": "metrics"}, (job, probe)
    (topics,) = the("Job", "selfheal-topics")["spec"]["template"]["spec"]["containers"]
    assert build_parser().parse_args(topics["command"][1:]).command == "topics"


def test_one_healer_and_one_monitor_never_two_and_scorers_at_most_one_per_partition() -> None:
    for single in ("selfheal-healer", "selfheal-monitor"):
        spec = the("Deployment", single)["spec"]
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert "replicas" not in the("Deployment", "selfheal-scorer")["spec"]  # KEDA owns it
    config = the("ConfigMap", "selfheal-config")["data"]
    scaled = the("ScaledObject", "selfheal-scorer")["spec"]
    (kafka,) = scaled["triggers"]
    assert scaled["scaleTargetRef"]["name"] == "selfheal-scorer"
    assert (
        1
        <= scaled["minReplicaCount"]
        <= scaled["maxReplicaCount"]
        <= int(config["SELFHEAL_TOPIC_PARTITIONS"])
    )
    assert kafka["metadata"]["allowIdleConsumers"] == "false"
    assert kafka["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    assert kafka["metadata"]["topic"] == Topics().transactions
    assert kafka["metadata"]["consumerGroup"] == build_parser().parse_args(["scorer", "--bundle", "b"]).group


def test_requests_cover_the_measured_memory_and_every_pod_gets_its_settings() -> None:
    for kind, rss in RSS_MB.items():
        c = container(f"selfheal-{kind}")
        assert mebibytes(c["resources"]["requests"]["memory"]) * 1.048576 >= rss * 1.2, (
            kind
        )  # MiB -> MB, 20% room
        assert "cpu" not in c["resources"].get("limits", {}), kind  # throttling adds latency
        assert c["envFrom"] == [{"configMapRef": {"name": "selfheal-config"}}]
    key_file = Path(the("ConfigMap", "selfheal-config")["data"]["SELFHEAL_ADAPTER_KEY_FILE"])
    for signs in ("selfheal-scorer", "selfheal-healer"):
        mount = next(m for m in container(signs)["volumeMounts"] if m["name"] == "adapter-key")
        assert Path(mount["mountPath"]) == key_file.parent
    assert key_file.name in the("Secret", "selfheal-adapter-key")["stringData"]


def test_the_placeholder_key_is_refused_so_a_forgotten_secret_stops_the_stack() -> None:
    placeholder = the("Secret", "selfheal-adapter-key")["stringData"]["adapter-key"]
    with pytest.raises(SelfhealError):
        Signer(placeholder.encode())


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_builds_the_kustomization_with_the_image_set() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(built) == len(documents())
    images = {
        c["image"]
        for d in built
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"selfheal:bundle-demo"}
