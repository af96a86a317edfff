"""Running the stack on one machine: the embedded broker (unless a cluster is configured)
and the services as separate processes; and starting one service in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from shared.errors import SelfhealError
from shared.kafka import EmbeddedBroker, KafkaSettings, Topics, create_topics
from shared.kafka.broker import free_port
from shared.signing import KEY_ENV, KEY_FILE_ENV, Signer, new_key

STATE = Path(".selfheal/stack.json")  # where `selfheal up` leaves the broker address for other commands


def resolve_settings() -> KafkaSettings:
    """The environment's cluster, else the broker a running `selfheal up` started."""
    settings = KafkaSettings.from_env()
    if settings.bootstrap_servers:
        return settings
    if STATE.is_file():
        state = json.loads(STATE.read_text())
        return settings.with_bootstrap(state["bootstrap"])
    raise SelfhealError("no broker: run `selfheal up` first, or set KAFKA_BOOTSTRAP_SERVERS")


def resolve_signer() -> Signer:
    """The environment's adapter key, else the one a running `selfheal up` generated."""
    if not (os.environ.get(KEY_ENV) or os.environ.get(KEY_FILE_ENV)) and STATE.is_file():
        key = json.loads(STATE.read_text()).get("adapter_key")
        if key:
            return Signer(key.encode())
    return Signer.from_env()


def background_priority() -> None:
    """Healing is background work: on a machine it shares with scorers, the scheduler should
    prefer them (``SELFHEAL_HEALER_NICE``, default 10; 0 leaves the priority alone)."""
    step = int(os.environ.get("SELFHEAL_HEALER_NICE", "10"))
    if step > 0:
        os.nice(step)


def run_service(
    kind: str, bundle_path: str, metrics_port: int | None, group: str | None = None, **options: Any
) -> int:
    """One service in this process, until SIGTERM/SIGINT (exit 0 after a clean stop)."""
    import torch

    from services.healer.service import HealerService, HealerServiceConfig
    from services.monitor.service import MonitorConfig, MonitorService
    from services.scorer.service import ScorerConfig, ScorerService
    from shared.bundle import Bundle
    from shared.healing.healer import HealerConfig
    from shared.kafka.runtime import StopFlag, kafka_session
    from shared.log import get_logger

    torch.set_num_threads(int(os.environ.get("SELFHEAL_TORCH_THREADS", "1")))
    bundle = Bundle.load(bundle_path)
    topics = Topics.from_env()
    signer = Signer.from_env() if kind != "monitor" else None
    named: dict[str, Any] = {"group": group} if group else {}  # else the service's default group
    stop = StopFlag()
    log = get_logger(kind, bundle=bundle.id)
    with kafka_session(KafkaSettings.from_env(), topics, log) as settings:
        service: Any
        if kind == "scorer":
            assert signer is not None
            service = ScorerService(
                bundle,
                settings,
                topics,
                ScorerConfig(metrics_port=metrics_port, group=group or "selfheal-scorer", **options),
                signer,
            )
        elif kind == "monitor":
            service = MonitorService(
                bundle, settings, topics, MonitorConfig(metrics_port=metrics_port, **named)
            )
        else:
            background_priority()
            cfg = HealerServiceConfig(metrics_port=metrics_port, healer=HealerConfig(**options), **named)
            assert signer is not None
            service = HealerService(bundle, settings, topics, cfg, signer)
        service.run(stop)
    return 0


def health(port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data
    except (OSError, ValueError):
        return None


class Stack:
    """Broker (if needed) + scorers + monitor + healer as child processes."""

    def __init__(
        self, bundle: str, scorers: int = 1, log_dir: str | Path = "runs/logs", base_port: int | None = 9101
    ) -> None:
        self.bundle, self.scorers = bundle, scorers
        self.log_dir = Path(log_dir)
        self.base_port = base_port
        self.broker: EmbeddedBroker | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.settings = KafkaSettings.from_env()
        self.adapter_key: str | None = None

    def start(self) -> Stack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.settings.bootstrap_servers:
            self.broker = EmbeddedBroker(log_path=self.log_dir / "broker.log").start()
            self.settings = self.settings.with_bootstrap(self.broker.bootstrap)
        create_topics(self.settings, Topics.from_env().specs(self.settings.replication))
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers or ""}
        if not (env.get(KEY_ENV) or env.get(KEY_FILE_ENV)):
            env[KEY_ENV] = self.adapter_key = new_key()  # one machine, one run: a fresh key
        names = [f"scorer-{i + 1}" for i in range(self.scorers)] + ["monitor", "healer"]
        for i, name in enumerate(names):
            port = free_port() if self.base_port is None else self.base_port + i
            kind = name.split("-")[0]
            cmd = [
                sys.executable,
                "-m",
                "services.cli",
                kind,
                "--bundle",
                self.bundle,
                "--metrics-port",
                str(port),
            ]
            out = (self.log_dir / f"{name}.log").open("ab")
            self.procs[name] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
            self.ports[name] = port
        STATE.parent.mkdir(exist_ok=True)
        state = {
            "bootstrap": self.settings.bootstrap_servers,
            "ports": self.ports,
            "pids": {n: p.pid for n, p in self.procs.items()},
            "adapter_key": self.adapter_key,  # generated for this stack (None: the environment's)
        }
        STATE.touch(mode=0o600)  # it may hold the key: readable by this user only
        STATE.chmod(0o600)
        STATE.write_text(json.dumps(state))
        return self

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        pending = dict(self.ports)
        while pending:
            for name, port in list(pending.items()):
                if self.procs[name].poll() is not None:
                    raise SelfhealError(
                        f"{name} exited with {self.procs[name].returncode}; see {self.log_dir}/{name}.log"
                    )
                if health(port) is not None:
                    del pending[name]
            if time.monotonic() > deadline:
                raise SelfhealError(f"not healthy after {timeout:.0f} s: {', '.join(pending)}")
            time.sleep(0.2)

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def stop(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM every service (each finishes its batch and commits), then the broker."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + timeout
        for name, p in self.procs.items():
            try:
                codes[name] = p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                codes[name] = p.wait()
        if self.broker is not None:
            self.broker.stop()
        STATE.unlink(missing_ok=True)
        return codes
