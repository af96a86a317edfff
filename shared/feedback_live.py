"""The feedback model (:mod:`shared.feedback`) through the stack: the analysts check the
alerts the *live* scorers raised, so their labels can only be drawn from the decisions topic.

:class:`LiveFeedback` takes decisions as the topic delivers them (from any scorer, in any
order, redelivered or not), puts them back in the stream's order and hands them to a
:class:`~shared.feedback.FeedbackStream`, exactly as the offline run hands it each batch;
:meth:`LiveFeedback.due` returns the labels whose event time has come, as ``labels`` records
(``source`` and ``ts`` set). It knows the truth of every transaction because whoever replays
a stream does; it never reads labels.

A decision that never comes (a transaction dead-lettered, a record lost) would hold every
later one back: once ``max_wait`` later decisions are waiting behind a missing one, it is
passed over, counted in ``skipped``, and gets no label.

>>> from shared.feedback import FeedbackModel
>>> live = LiveFeedback(FeedbackModel.parse("analyst:1/10ms:5ms,implied:30ms"),
...                     ids=["a", "b", "c"], y=[1, 0, 0], ts=[0.0, 1.0, 2.0])
>>> live.decided("c", 0.9, True); live.decided("a", 0.8, True)   # "b" not decided yet: "c" waits
>>> live.released, live.waiting
(1, 1)
>>> live.decided("b", 0.1, False); live.released
3
>>> [(lb.id, lb.label, lb.source, lb.ts) for lb in live.due(now=10.0)]
[('a', 1, 'analyst', 5.0)]
>>> [(lb.id, lb.source) for lb in live.rest()]
[('b', 'implied'), ('c', 'implied')]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.feedback import FeedbackModel, FeedbackStream
from shared.messages import Label


class LiveFeedback:
    def __init__(
        self,
        model: FeedbackModel,
        ids: Sequence[str],
        y: Sequence[int] | np.ndarray,
        ts: Sequence[float] | np.ndarray,
        seed: int = 0,
        drift_at: int | None = None,  # where :attr:`first` starts watching (None: the stream's start)
        max_wait: int = 5000,  # decisions held behind a missing one before it is passed over
    ) -> None:
        self.stream = FeedbackStream(model, seed)
        self.ids = [str(i) for i in ids]
        self.position = {tx: i for i, tx in enumerate(self.ids)}
        self.y = np.asarray(y, dtype=np.float64)
        self.ts = np.asarray(ts, dtype=np.float64)
        self.drift_at = drift_at or 0
        self.max_wait = max_wait
        self.released = 0  # stream positions below this went to the feedback model
        self.skipped = 0  # positions passed over: their decision never came in time
        self.unknown = 0  # decisions of ids not in the stream
        # per source: the stream position (by event time) when its first label from drift_at on came
        self.first: dict[str, int] = {}
        self._waiting: dict[int, tuple[float, bool]] = {}  # position -> (score, alert)

    @property
    def waiting(self) -> int:
        """Decisions held behind one that has not come yet."""
        return len(self._waiting)

    @property
    def counts(self) -> dict[str, int]:
        """Labels drawn so far, by source."""
        return dict(self.stream.counts)

    def decided(self, tx_id: str, score: float, alert: bool) -> None:
        """One decision as the topic delivered it (a redelivered one changes nothing)."""
        pos = self.position.get(tx_id)
        if pos is None:
            self.unknown += 1
            return
        if pos < self.released or pos in self._waiting:
            return
        self._waiting[pos] = (score, alert)
        while self._waiting:
            lo = hi = self.released
            while hi in self._waiting:
                hi += 1
            if hi > lo:
                got = [self._waiting.pop(p) for p in range(lo, hi)]
                scores = np.array([g[0] for g in got])
                alerts = np.array([g[1] for g in got], bool)
                self.stream.decided(np.arange(lo, hi), self.ts[lo:hi], scores, alerts, self.y[lo:hi])
                self.released = hi
            elif len(self._waiting) >= self.max_wait:  # the decision at ``lo`` is not coming
                self.skipped += 1
                self.released = lo + 1
            else:
                return

    def due(self, now: float) -> list[Label]:
        """The labels whose event time is at most ``now`` (epoch ms, as the stream's ``ts``)."""
        got = self.stream.due(now)
        out = []
        for r, label, at, source in zip(
            got.rows.tolist(), got.labels.tolist(), got.at.tolist(), got.sources, strict=True
        ):
            out.append(Label(self.ids[r], int(label), float(at), source))
            if r >= self.drift_at and source not in self.first:  # where the stream was when it came
                self.first[source] = int(np.searchsorted(self.ts, at, side="right"))
        return out

    def rest(self) -> list[Label]:
        """Every label still owed (the stream has ended)."""
        return self.due(float("inf"))
