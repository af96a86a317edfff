"""Label intake: joined labels pass the label guard before the training set sees them.

Labels that found their transaction are held in chunks by the
:class:`~shared.healing.label_guard.LabelGuard` (one place for labels not yet judged). A
trusted chunk goes into the training set (:meth:`LabelJoin.accept`) and comes back to the
healer, which measures live quality and the shadow's cost on it. A suspect chunk never
reaches the training set: it is kept, since a hold long enough may turn out to be a change
of concept (then the kept chunks are released first). On the first suspect chunk the chunk
released just before it is withdrawn too (it may hold the burst's first labels), and the
intake says from which registry position on healed adapters may have learned from them:
what to roll back is the healer's call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from shared.healing.events import LabelsJudged
from shared.healing.featurelog import DECIDED, SHADOW_FRAUD
from shared.healing.join import Joined, LabelJoin
from shared.healing.label_guard import HeldLabel, LabelGuard, LabelGuardConfig


@dataclass(frozen=True)
class Withdrawn:
    """The first suspect chunk since labels were trusted: the chunk released just before it
    is out of the training set again; adapters healed from registry position ``since`` on
    may have learned from it."""

    since: int
    reason: str


Step = LabelsJudged | Joined | Withdrawn  # a verdict to report, a trusted chunk, a withdrawal


class LabelIntake:
    def __init__(self, join: LabelJoin, cfg: LabelGuardConfig, chunk: int) -> None:
        """``chunk``: labels judged together (the healer's ``quality_rows``)."""
        self.join, self.cfg = join, cfg
        self.guard = LabelGuard(chunk, cfg.kappa_min, cfg.min_known, cfg.resume_chunks, cfg.concept_chunks)
        self._suspects: deque[Joined] = deque(maxlen=cfg.concept_chunks or 1)  # quarantined chunks
        # the ids of the last chunk released into the training set, and the registry's length then
        self._last_release: tuple[list[str], int] = ([], 0)

    @property
    def hold(self) -> str | None:
        """Why healing waits on the labels (None: they are trusted)."""
        return self.guard.hold

    @property
    def quarantined(self) -> int:
        return self.guard.quarantined

    def add(self, joined: Joined, seq: Callable[[], int]) -> Iterator[Step]:
        """Judge ``joined`` (``seq()``: the registry's length as each chunk is released). The
        steps come in order and lazily: each is the healer's to act on before the next."""
        if not len(joined):
            return
        if not self.cfg.on:
            yield self._release(joined, seq())
            return
        held, shadow = [], {}
        for tx_id, y, row in zip(joined.ids, joined.labels.tolist(), joined.rows, strict=True):
            held.append(HeldLabel(tx_id, y, row))
            shadow[tx_id] = bool(row["flags"] & SHADOW_FRAUD) if row["flags"] & DECIDED else None
        for judged in self.guard.add(held, shadow.get):
            rows = self._joined(judged.labels)
            if judged.suspect:
                self._suspects.append(rows)
                yield LabelsJudged("suspect", judged.kappa, self.cfg.kappa_min, judged.reason, len(rows))
                if judged.first_suspect:
                    prev_ids, since = self._last_release
                    self.join.forget(prev_ids)
                    yield Withdrawn(since, judged.reason)
                continue
            if judged.trusted_again:  # on a concept change, the kept chunks first
                state = "concept" if judged.concept else "trusted"
                yield LabelsJudged(state, self.guard.kappa, self.cfg.kappa_min, judged.reason)
                for kept in list(self._suspects) if judged.concept else []:
                    yield self._release(kept, seq())
                self._suspects.clear()
            yield self._release(rows, seq())

    def _release(self, joined: Joined, seq: int) -> Joined:
        self.join.accept(joined)
        self._last_release = (joined.ids, seq)
        return joined

    def _joined(self, labels: list[HeldLabel]) -> Joined:
        rows = np.array([h.row for h in labels], dtype=self.join.log.dtype)
        return Joined([h.id for h in labels], np.array([h.label for h in labels], np.float32), rows)
