"""Running the stack on one machine: the embedded broker (unless a cluster is configured)
and the services as separate processes; and starting one service in this process."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from services.processes import Child, stop_all
from shared.errors import SelfhealError
from shared.kafka import EmbeddedBroker, KafkaSettings, Topics, create_topics
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
                bundle, settings, topics, MonitorConfig(metrics_port=metrics_port, **named, **options)
            )
        else:
            background_priority()
            state_dir = options.pop("state_dir", None)
            healer = HealerConfig(**options)
            cfg = HealerServiceConfig(metrics_port=metrics_port, healer=healer, state_dir=state_dir, **named)
            assert signer is not None
            service = HealerService(bundle, settings, topics, cfg, signer)
        service.run(stop)
    return 0


class Stack:
    """Broker (if needed) + scorers + monitors + healer as child processes."""

    def __init__(
        self,
        bundle: str,
        scorers: int = 1,
        log_dir: str | Path = "runs/logs",
        base_port: int | None = 9101,
        healer_args: tuple[str, ...] = (),
        monitors: int = 1,
    ) -> None:
        """``healer_args``: more ``selfheal healer`` options (``--state-dir``, ``--label-horizon``);
        ``monitors``: more than one runs them as a group (``selfheal monitor --scale-out``)."""
        self.bundle, self.scorers, self.monitors = bundle, scorers, monitors
        self.healer_args = healer_args
        self.log_dir = Path(log_dir)
        self.base_port = base_port
        self.broker: EmbeddedBroker | None = None
        self.children: dict[str, Child] = {}
        self.settings = KafkaSettings.from_env()
        self.adapter_key: str | None = None

    @property
    def ports(self) -> dict[str, int]:
        return {name: c.port for name, c in self.children.items()}

    def start(self) -> Stack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.settings.bootstrap_servers:
            self.broker = EmbeddedBroker(log_path=self.log_dir / "broker.log").start()
            self.settings = self.settings.with_bootstrap(self.broker.bootstrap)
        create_topics(self.settings, self.settings.specs(Topics.from_env()))
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers or ""}
        if not (os.environ.get(KEY_ENV) or os.environ.get(KEY_FILE_ENV)):
            env[KEY_ENV] = self.adapter_key = new_key()  # one machine, one run: a fresh key
        monitors = ["monitor"] if self.monitors == 1 else [f"monitor-{i + 1}" for i in range(self.monitors)]
        names = [f"scorer-{i + 1}" for i in range(self.scorers)] + monitors + ["healer"]
        for i, name in enumerate(names):
            port = None if self.base_port is None else self.base_port + i
            kind = name.split("-")[0]
            options = {"healer": self.healer_args, "monitor": ("--scale-out",) if self.monitors > 1 else ()}
            extra = options.get(kind, ())
            self.children[name] = Child.service(kind, self.bundle, env, self.log_dir, name, *extra, port=port)
        self._write_state()
        return self

    def _write_state(self) -> None:
        """Where other commands (``selfheal produce``, ``registry``, ``report``) find this stack."""
        STATE.parent.mkdir(exist_ok=True)
        state = {
            "bootstrap": self.settings.bootstrap_servers,
            "ports": self.ports,
            "pids": {n: c.pid for n, c in self.children.items()},
            "adapter_key": self.adapter_key,  # generated for this stack (None: the environment's)
        }
        STATE.touch(mode=0o600)  # it may hold the key: readable by this user only
        STATE.chmod(0o600)
        STATE.write_text(json.dumps(state))

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        for c in self.children.values():
            c.wait(lambda _h: True, "health", timeout=max(0.1, deadline - time.monotonic()))

    def dead(self) -> list[str]:
        return [n for n, c in self.children.items() if not c.alive]

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """SIGTERM every service (each finishes its batch and commits), then the broker."""
        codes = stop_all(self.children, timeout)
        if self.broker is not None:
            self.broker.stop()
        STATE.unlink(missing_ok=True)
        return codes
