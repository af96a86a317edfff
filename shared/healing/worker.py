"""Running a healer's heal cycles between batches, the same way offline and in the service.

Each :meth:`HealWorker.step`: hand over what the healer noticed (episodes, label
verdicts), collect a finished heal, start the next one when it is due and ready, collect
it at once if it has already finished (an inline executor runs it in ``submit``), then
check live quality for a rollback. The offline runner and the tests run heals inline
(:class:`InlineExecutor`); the healer service in a child process
(:class:`~shared.healing.process.HealProcess`), so that its loop keeps consuming while a
heal runs and no scorer ever waits for it. A heal whose child died (or that a stop killed
before the child read it) is logged and dropped: the next heal starts a new child.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from shared.errors import HealingError
from shared.healing.before_labels import Diagnosed
from shared.healing.cycle import HealResult
from shared.healing.events import HealerEvent, HealJob
from shared.healing.healer import Healer
from shared.log import get_logger

T = TypeVar("T")


class InlineExecutor(Executor):
    """Runs each call at once, in the caller's thread."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


class HealWorker:
    def __init__(self, healer: Healer, executor: Executor | None = None) -> None:
        self.healer = healer
        self.executor = executor or InlineExecutor()
        self.running: tuple[HealJob, Future[HealResult]] | None = None

    def step(self) -> list[HealerEvent | Diagnosed]:
        """What happened since the last step, in order."""
        events = self.healer.drain_events()
        self._collect(events)
        if self.running is None and self.healer.due():
            job = self.healer.prepare()
            if job is not None:
                self.running = (job, self.executor.submit(self.healer.run, job))
                self._collect(events)
        rollback = self.healer.check_rollback()
        if rollback is not None:
            events.append(rollback)
        return events

    def _collect(self, events: list[HealerEvent | Diagnosed]) -> None:
        if self.running is not None and self.running[1].done():
            job, future = self.running
            self.running = None
            try:
                result = future.result()
            except HealingError as exc:
                get_logger("healer").warning("heal dropped", heal=job.number, kind=job.kind, error=str(exc))
                return
            events.extend(self.healer.conclude(job, result))

    def close(self) -> list[HealerEvent | Diagnosed]:
        """Wait for a heal still running and record it (a clean stop loses no heal)."""
        self.executor.shutdown(wait=True)
        events: list[HealerEvent | Diagnosed] = []
        self._collect(events)
        return events
