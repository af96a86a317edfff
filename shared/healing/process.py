"""Heal cycles in a child process, where the consumer loop cannot starve them.

A heal cycle on a thread of the healer service competes with its consumer loop for the
GIL: measured on this project's machines, a 300 ms cycle took 10 s beside a busy Python
thread (1 s with a 0.5 ms switch interval), which is why a healer reading 2,000 tx/s
healed once in 4.9 s. :class:`HealProcess` is an :class:`~concurrent.futures.Executor`
for :meth:`~shared.healing.healer.Healer.run`: the job goes to a child process over a
pipe (one frame of safetensors: the adapter, the rows, the labels and their weights), the
child runs :func:`~shared.healing.cycle.heal_cycle` with the bundle and heal settings it
was started with, and the candidate comes back the same way. No pickle crosses the pipe.
The child starts with the executor and runs one warm-up cycle, so the first heal of a
drift is not torch's first (1.2 s instead of 0.1 s). A child that dies fails the job's
future with :class:`~shared.errors.HealingError`; the next job starts a new one.

Frames: 8 bytes of big-endian length, then the payload. Tensors ``adapter.*``, ``X``,
``y``, ``w`` go in; ``candidate.*`` and the JSON metadata (accepted, reason, terms,
metrics, duration_ms) come out.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import orjson
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from shared.bundle import Bundle
from shared.errors import HealingError
from shared.healing.cycle import HealBatch, HealConfig, HealResult, heal_cycle
from shared.healing.events import HealJob
from shared.healing.gate import GateEvidence, Verdict
from shared.healing.jobs import JobRunner
from shared.healing.types import HealKind
from shared.labelfree import LabelFreeConfig
from shared.model import safetensors_metadata

T = TypeVar("T")
STOP_WAIT_S = 20.0  # on stop, a heal in progress gets this long (the stack kills a service after 30 s)


def write_frame(out: IO[bytes], payload: bytes) -> None:
    out.write(len(payload).to_bytes(8, "big") + payload)
    out.flush()


def read_frame(src: IO[bytes]) -> bytes | None:
    """One frame, or None at the end of the stream."""
    head = src.read(8)
    if len(head) < 8:
        return None
    n = int.from_bytes(head, "big")
    data = src.read(n)
    if len(data) < n:
        return None
    return data


def encode_job(job: HealJob) -> bytes:
    b = job.batch
    w = b.w if b.w is not None else np.ones(len(b.y), np.float32)
    tensors = {f"adapter.{k}": v.detach().contiguous() for k, v in job.model.adapter_state().items()}
    tensors |= {"X": torch.as_tensor(np.ascontiguousarray(b.X, dtype=np.float32))}
    tensors |= {"y": torch.as_tensor(np.ascontiguousarray(b.y, dtype=np.float32))}
    tensors |= {"w": torch.as_tensor(np.ascontiguousarray(w, dtype=np.float32))}
    return st_save(tensors, metadata={"number": str(job.number), "kind": str(job.kind)})


def encode_result(result: HealResult) -> bytes:
    meta = {
        "accepted": result.accepted,
        "reason": result.reason,
        "terms": result.terms,
        "metrics": result.metrics,
        "duration_ms": result.duration_ms,
        "diagnosis": result.diagnosis,
        "verdict": None if result.verdict is None else result.verdict.value,
        "evidence": None if result.evidence is None else result.evidence.to_dict(),
    }
    tensors = {f"candidate.{k}": v.detach().contiguous() for k, v in result.adapter.items()}
    return st_save(tensors, metadata={"result": orjson.dumps(meta).decode()})


def decode_result(data: bytes) -> HealResult:
    tensors = st_load(data)
    meta = orjson.loads(safetensors_metadata(data)["result"])
    adapter = {k.removeprefix("candidate."): v for k, v in tensors.items()}
    return HealResult(
        adapter,
        bool(meta["accepted"]),
        meta["reason"],
        meta["terms"],
        meta["metrics"],
        meta["duration_ms"],
        meta.get("diagnosis"),
        None if meta.get("verdict") is None else Verdict(meta["verdict"]),
        None if meta.get("evidence") is None else GateEvidence.from_dict(meta["evidence"]),
    )


def warm_up(bundle: Bundle, config: HealConfig) -> None:
    """One cycle on made-up rows, so that the first real one is not also torch's first (it
    took 1.2 s instead of 0.1 s)."""
    rng = np.random.default_rng(0)
    X = (bundle.reference_mean + rng.normal(size=(256, len(bundle.features))) * bundle.reference_std).astype(
        np.float32
    )
    y = (rng.random(256) < 0.2).astype(np.float32)
    heal_cycle(bundle.new_model(), HealBatch(X, y), bundle.rules, bundle.threshold, bundle.costs, config)


def serve(
    bundle: Bundle, config: HealConfig, before: LabelFreeConfig, src: IO[bytes], out: IO[bytes]
) -> None:
    """The child's loop: a job in, a result out, until the pipe closes."""
    warm_up(bundle, config)
    runner = JobRunner(bundle, config, before)
    while (frame := read_frame(src)) is not None:
        tensors = st_load(frame)
        adapter = {k.removeprefix("adapter."): v for k, v in tensors.items() if k.startswith("adapter.")}
        batch = HealBatch(tensors["X"].numpy(), tensors["y"].numpy(), tensors["w"].numpy())
        meta = safetensors_metadata(frame)
        kind = HealKind(meta.get("kind", HealKind.LABELS))
        job = HealJob(int(meta["number"]), bundle.new_model(adapter), batch, -1, kind)
        write_frame(out, encode_result(runner(job)))


class HealProcess(Executor):
    """Runs :meth:`Healer.run` jobs in one child process, one at a time."""

    def __init__(self, bundle: Bundle, config: HealConfig, before: LabelFreeConfig | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="selfheal-heal-")
        self.bundle_path = bundle.save(Path(self._dir.name) / "bundle")
        self.config = config
        self.before = before or LabelFreeConfig()
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._reply: threading.Thread | None = None
        self._writing = False  # a job is being written to a child that has not read it all yet
        self.started = 0  # children started (a restart after a crash adds one)
        self._closed = False  # shut down: no child is started again
        self.job_in_flight = False  # a job has been handed to the child, its reply not yet read
        with self._lock:
            self._ensure_child()  # now: torch's import and a warm-up cycle happen before any job

    def _ensure_child(self) -> subprocess.Popen[bytes]:
        if self._closed:
            raise HealingError("the heal process was shut down")
        if self._child is None or self._child.poll() is not None:
            cmd = [sys.executable, "-m", "shared.healing.process", str(self.bundle_path)]
            child = self._child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: S603
            if self._closed:  # shut down while it started: it is nobody's to stop but ours
                child.kill()
                raise HealingError("the heal process was shut down")
            assert child.stdin is not None
            configs = {"heal": self.config.to_dict(), "before_labels": self.before.to_dict()}
            write_frame(child.stdin, orjson.dumps(configs))
            self.started += 1
        return self._child

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """``fn`` is ``Healer.run`` and ``args`` its one job: the child runs the same cycle.
        The job is written on the reply thread: a job larger than the pipe's buffer waits
        there for the child to read it (a child still starting, or restarting), never in the
        service's loop."""
        (job,) = args
        future: Future[T] = Future()
        self._reply = threading.Thread(
            target=self._await, args=(encode_job(job), future), daemon=True, name="heal-reply"
        )
        self._reply.start()
        return future

    def _await(self, payload: bytes, future: Future[Any]) -> None:
        with self._lock:
            try:
                child = self._ensure_child()
            except HealingError as exc:
                future.set_exception(exc)
                return
            assert child.stdin is not None and child.stdout is not None
            self._writing = True
            try:
                write_frame(child.stdin, payload)
            except (BrokenPipeError, OSError, ValueError) as exc:  # the child died, or a stop killed it
                future.set_exception(HealingError(f"the heal process is gone: {exc}"))
                return
            finally:
                self._writing = False
        self.job_in_flight = True
        try:
            reply = read_frame(child.stdout)
        finally:
            self.job_in_flight = False
        if reply is None:
            future.set_exception(HealingError(f"the heal process exited (code {child.wait()})"))
        else:
            future.set_result(decode_result(reply))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the child: at once when it holds no job (it may still be warming up, which at
        idle priority on a busy machine can take minutes), else after its heal (its result is
        recorded) or ``STOP_WAIT_S``, inside the stack's own stop timeout."""
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            assert child.stdin is not None
            busy = self.job_in_flight
            if self._writing or not busy:  # no heal to wait for
                child.kill()
            else:
                child.stdin.close()  # the child's loop ends at the end of its input
            try:
                child.wait(timeout=STOP_WAIT_S if wait else 0.1)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self._reply is not None:
            self._reply.join(timeout=5)  # the last job's reply is recorded before the stop
        self._dir.cleanup()


def heal_priority() -> str:
    """Heal cycles take only the CPU the scorers leave. ``SELFHEAL_HEAL_PRIORITY``:
    ``idle`` (the default: Linux's ``SCHED_IDLE``, CPU nobody else wants; nice 19 where the
    OS has no such policy), ``low`` (nice 19) or ``normal`` (the healer's own). Measured
    beside a scorer working through a backlog on two cores, a healer healing flat out cost
    it 7.6-9.3% of its throughput under ``SCHED_IDLE``, 19-22% at nice 19 and 13-20% at nice
    10: a waking scorer or broker must wait for a niced heal, not for an idle one. The price:
    on a machine busy to the last core no heal finishes; a healer on a pod of its own runs
    ``normal`` (its pod's CPU request does the sharing). Returns what was set."""
    import os

    wanted = os.environ.get("SELFHEAL_HEAL_PRIORITY", "idle")
    if wanted == "normal":
        return "normal"
    if wanted == "idle" and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except OSError:
            pass
    os.nice(19 - os.nice(0))
    return "nice 19"


def main() -> None:
    heal_priority()
    torch.set_num_threads(1)
    bundle = Bundle.load(sys.argv[1])
    first = read_frame(sys.stdin.buffer)
    if first is None:
        return
    configs = orjson.loads(first)
    heal, before = HealConfig(**configs["heal"]), LabelFreeConfig.from_dict(configs["before_labels"])
    serve(bundle, heal, before, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
