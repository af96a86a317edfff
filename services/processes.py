"""The stack's processes: each service (or a benchmark load) as a child process that logs to
a file and answers ``/health`` and ``/metrics`` on its own port. One supervisor for
``selfheal up``, the demo, the benchmark and the crash tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared.errors import SelfhealError
from shared.kafka.broker import free_port


def health(port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    """A service's ``/health``; None when it does not answer (yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data
    except (OSError, ValueError):
        return None


def _status_mb(pid: int, field: str) -> float | None:
    """A memory field of a live process's ``/proc/PID/status`` (``VmHWM``, ``VmRSS``), MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident memory of a live process (Linux ``VmHWM``)."""
    mb = _status_mb(pid, "VmHWM")
    return None if mb is None else round(mb, 1)


def vm_rss_mb(pid: int) -> float | None:
    """Resident memory of a live process now (Linux ``VmRSS``)."""
    return _status_mb(pid, "VmRSS")


def assigned(h: dict[str, Any]) -> bool:
    """A ``/health`` that says the service owns partitions (its group has formed)."""
    return int(h.get("partitions", 0)) > 0


class Child:
    """``python ARGS --metrics-port PORT`` with ``env`` over this process's environment;
    output in ``LOG_DIR/NAME.log``."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: Mapping[str, str],
        log_dir: Path,
        port: int | None = None,
    ) -> None:
        self.name, self.port = name, port if port is not None else free_port()
        self.log = log_dir / f"{name}.log"
        cmd = [sys.executable, *args, "--metrics-port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603

    @classmethod
    def service(
        cls,
        kind: str,
        bundle: str | Path,
        env: Mapping[str, str],
        log_dir: Path,
        name: str | None = None,
        *extra: str,
        port: int | None = None,
    ) -> Child:
        """``selfheal KIND --bundle BUNDLE ...`` (scorer, monitor or healer)."""
        args = ["-m", "services.cli", kind, "--bundle", str(bundle), *extra]
        return cls(name or kind, args, env, log_dir, port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def health(self) -> dict[str, Any] | None:
        return health(self.port)

    def metrics(self) -> str:
        """Its /metrics text; empty when it does not answer in time (a busy or starved child)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def wait(self, ready: Callable[[dict[str, Any]], bool], what: str, timeout: float = 90.0) -> None:
        """Until its ``/health`` satisfies ``ready``; raises if it exits or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise SelfhealError(
                    f"{self.name} exited with {self.proc.returncode} before {what}; see {self.log}"
                )
            h = self.health()
            if h is not None and ready(h):
                return
            time.sleep(0.1)
        raise SelfhealError(f"{self.name}: no {what} after {timeout:.0f} s")

    def hwm_mb(self) -> float | None:
        return vm_hwm_mb(self.pid)

    def terminate(self) -> None:
        """SIGTERM: the service finishes its batch, delivers, commits and exits."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)

    def join(self, timeout: float = 30.0) -> int:
        """Its exit code; killed when it has not exited within ``timeout``."""
        try:
            return self.proc.wait(max(0.1, timeout))
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        self.proc.kill()
        return self.proc.wait()

    def stop(self, timeout: float = 30.0) -> int:
        self.terminate()
        return self.join(timeout)


def stop_all(children: Mapping[str, Child], timeout: float = 30.0) -> dict[str, int]:
    """SIGTERM every child at once, then collect their exit codes (killing stragglers)."""
    for c in children.values():
        c.terminate()
    deadline = time.monotonic() + timeout
    return {name: c.join(deadline - time.monotonic()) for name, c in children.items()}
