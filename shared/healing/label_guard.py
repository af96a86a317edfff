"""The label guard: arriving labels are held in chunks and judged before they are used.

A burst of flipped labels (a poisoned or broken feed) shows as labels that disagree with
the bundle's own frozen model beyond chance: Cohen's kappa of the chunk's labels against
the shadow's verdicts on the same transactions below ``kappa_min``. Drift does not do that
(per-chunk kappa stays above 0.06 on every card scenario; flipped chunks fall to -0.03 to
-0.7). A suspect chunk never reaches the buffer; healing waits until ``resume_chunks``
clean chunks have followed.

A burst ends; a change of concept does not. When healing has waited ``concept_chunks``
chunks and the labels of those chunks still disagree with the frozen model on average
(mean kappa below ``kappa_min``), they are read as a concept change (what the frozen model
learned no longer holds: a new fraud pattern, a rule of the game that flipped) instead of
a broken feed: the guard stops judging against the frozen model, every label is used
again (the healer releases the suspect chunks it kept; its gate and shadow guard judge
what it trains on them), until the mean kappa of the last ``concept_chunks`` chunks is
back above ``concept_exit`` (above ``kappa_min`` by a margin: after a concept switch the
frozen model's kappa wanders around chance, and a mean that crosses ``kappa_min`` now and
then read as "agree again" let a later chunk trip the burst logic and roll a good
adapter back). A feed broken for that long is indistinguishable from a concept
change by labels alone; the suspect alert has been out all that time.

>>> guard = LabelGuard(chunk=4, min_known=4)
>>> shadow = {"a": True, "b": False, "c": True, "d": False}.get
>>> [j.suspect for j in guard.add([("a", 0.0), ("b", 1.0), ("c", 0.0), ("d", 1.0)], shadow)]
[True]
>>> guard.hold is not None
True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from shared.evaluation import cohen_kappa


class HeldLabel(NamedTuple):
    """A label the guard holds, with whatever its owner needs back with it (the healer: the
    transaction's feature-log row): one place for labels not yet judged."""

    id: str
    label: float
    row: Any = None


LabelRows = list[HeldLabel]


@dataclass(frozen=True)
class Judged:
    """One chunk's verdict."""

    labels: LabelRows
    kappa: float  # the shadow's agreement with the chunk's labels (NaN: too few known verdicts)
    known: int  # labels whose transaction's shadow verdict is known
    suspect: bool
    first_suspect: bool  # the first suspect chunk since the labels were last trusted
    trusted_again: bool  # a clean chunk that ends a hold
    reason: str
    concept: bool = False  # this chunk made the guard read the hold's labels as a concept change


@dataclass(frozen=True)
class LabelGuardConfig:
    on: bool = True  # hold labels in chunks (HealerConfig.quality_rows) until judged: poisoned bursts
    kappa_min: float = -0.05  # the frozen shadow's agreement with a chunk's labels below this: suspect
    min_known: int = 50  # labels with a known shadow verdict needed to judge a chunk
    resume_chunks: int = 2  # clean chunks after a suspect one before healing resumes
    concept_chunks: int | None = 15  # a hold this long that still disagrees: a concept change


class LabelGuard:
    def __init__(
        self,
        chunk: int = 100,
        kappa_min: float = LabelGuardConfig.kappa_min,
        min_known: int = LabelGuardConfig.min_known,
        resume_chunks: int = LabelGuardConfig.resume_chunks,
        concept_chunks: int | None = LabelGuardConfig.concept_chunks,
        concept_exit: float = 0.05,
    ) -> None:
        self.chunk, self.kappa_min, self.min_known, self.resume_chunks = (
            chunk,
            kappa_min,
            min_known,
            resume_chunks,
        )
        self.concept_chunks = concept_chunks  # chunks of a hold before its labels can mean a concept change
        self.concept_exit = concept_exit  # the mean kappa of as many chunks that ends the concept
        self.concept = False  # labels are used although they disagree with the frozen model
        self._recent: deque[float] = deque(maxlen=concept_chunks or 1)  # kappas during a hold / the concept
        self.held: LabelRows = []  # labels waiting for their chunk to fill
        self.hold: str | None = None  # why healing waits for trustworthy labels
        self.kappa = float("nan")  # the shadow's agreement with the last judged chunk
        self.quarantined = 0
        self._clean = 0  # clean chunks since the last suspect one

    def add(
        self, labels: Sequence[tuple[str, float] | HeldLabel], shadow: Callable[[str], bool | None]
    ) -> list[Judged]:
        """Hold ``labels`` ((id, label), or a :class:`HeldLabel` with a row to give back);
        judge every chunk that fills. ``shadow`` gives the frozen model's verdict on a
        transaction, None when not known."""
        out: list[Judged] = []
        for row in labels:
            self.held.append(row if isinstance(row, HeldLabel) else HeldLabel(*row))
            if len(self.held) >= self.chunk:
                chunk, self.held = self.held, []
                out.append(self._judge(chunk, shadow))
        return out

    def _judge(self, chunk: LabelRows, shadow: Callable[[str], bool | None]) -> Judged:
        pairs = [(h.label >= 0.5, sf) for h in chunk if (sf := shadow(h.id)) is not None]
        kappa = float("nan")
        if len(pairs) >= self.min_known:
            kappa = self.kappa = cohen_kappa([y for y, _ in pairs], [sf for _, sf in pairs])
            if self.hold is not None or self.concept or kappa < self.kappa_min:
                self._recent.append(kappa)  # the chunks of a hold (from its first) or of a concept
            if self.concept:
                return self._in_concept(chunk, kappa, len(pairs))
            if self._concept_now():
                return self._to_concept(chunk, kappa, len(pairs))
            if kappa < self.kappa_min:
                return self._suspect(chunk, kappa, len(pairs))
        self._clean += 1
        again = self.hold is not None and self._clean >= self.resume_chunks
        if again:
            self.hold = None
            self._recent.clear()
        reason = "labels agree with the shadow again" if again else ""
        return Judged(chunk, kappa, len(pairs), False, False, again, reason)

    def _concept_now(self) -> bool:
        """A hold as long as ``concept_chunks`` whose labels disagree on average."""
        n = self.concept_chunks
        return n is not None and len(self._recent) >= n and float(np.mean(self._recent)) < self.kappa_min

    def _to_concept(self, chunk: LabelRows, kappa: float, known: int) -> Judged:
        self.concept, self.hold = True, None
        mean = float(np.mean(self._recent))
        reason = (
            f"labels have disagreed with the bundle's own model for {len(self._recent)} chunks "
            f"(mean kappa {mean:.2f} < {self.kappa_min}): a concept change, not a burst; "
            "labels are used again"
        )
        return Judged(chunk, kappa, known, False, False, True, reason, concept=True)

    def _in_concept(self, chunk: LabelRows, kappa: float, known: int) -> Judged:
        """Every chunk is used; the concept ends when the recent chunks agree again on average."""
        back = len(self._recent) == self._recent.maxlen and float(np.mean(self._recent)) >= self.concept_exit
        if back:
            self.concept = False
            self._recent.clear()
        reason = "labels agree with the bundle's own model again" if back else ""
        return Judged(chunk, kappa, known, False, False, back, reason)

    def _suspect(self, chunk: LabelRows, kappa: float, known: int) -> Judged:
        self.quarantined += len(chunk)
        reason = (
            f"labels disagree with the bundle's own model beyond chance: kappa {kappa:.2f} < "
            f"{self.kappa_min} over {known} labels (a poisoned or broken label feed?)"
        )
        first = self.hold is None
        self.hold = f"healing paused: {reason}"
        self._clean = 0
        return Judged(chunk, kappa, known, True, first, False, reason)
