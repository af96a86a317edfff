"""The label join: transactions in, late labels in, labelled rows out, sized in event time.

The newest ``recent_rows`` transactions wait in memory, where their decisions catch up
with them (the live verdict, the shadow's, whether the scorer flagged it). As a row leaves
that window it goes to the :class:`~shared.healing.featurelog.FeatureLog`, on disk for
the label horizon, sampled past the byte budget (a flagged row or one a rule fired on is
always kept). A label finds its transaction in the window or in the log; one that arrives
before its transaction waits (bounded). What joined becomes the *training set*: the
labelled rows, newest ``max_joined`` kept, which outlive a restart in the log.

>>> import numpy as np
>>> from shared.healing.featurelog import FeatureLog
>>> log = FeatureLog(None, n_features=1, horizon_ms=10_000.0, budget_bytes=1 << 30)
>>> join = LabelJoin(log, recent_rows=2)
>>> _ = join.add_transactions(["a", "b", "c"], np.array([[1.0], [2.0], [3.0]]), [0.0, 1.0, 2.0])
>>> got = join.add_labels(["a", "c", "z"], [1.0, 0.0, 1.0])   # "a" is on disk, "c" in memory
>>> got.ids, got.rows["x"].ravel().tolist(), join.stats()["labels_pending"]
(['a', 'c'], [1.0, 3.0], 1)
>>> join.accept(got)
>>> batch = join.batch(since_ts=0.0)   # the labelled rows, then the recent unlabelled ones
>>> batch.X.ravel().tolist(), batch.y.tolist()
([1.0, 3.0, 2.0], [1.0, 0.0, nan])
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.healing.cycle import HealBatch
from shared.healing.featurelog import DECIDED, FLAGGED, FRAUD, SHADOW_FRAUD, FeatureLog, inverse_share
from shared.healing.settle import CohortHold

MAX_SOURCES = 16  # distinct label sources counted by name; the rest count as "other"


@dataclass(frozen=True)
class Joined:
    """Labels that found their transaction: ids, labels and the logged rows."""

    ids: list[str]
    labels: np.ndarray  # (n,) float32
    rows: np.ndarray  # FeatureLog rows: ts, flags, version, x

    def __len__(self) -> int:
        return len(self.ids)


class LabelJoin:
    def __init__(
        self,
        log: FeatureLog,
        recent_rows: int = 2000,
        max_pending: int = 10_000,
        max_joined: int = 50_000,
        settle_ms: float | None = None,
        imply_ms: float | None = None,
    ) -> None:
        """``settle_ms``: hold each joined label until its transaction is this old in event
        time (:class:`~shared.healing.settle.CohortHold`); None: pass labels on as they join.
        ``imply_ms``: settle at this age instead, and take every logged transaction that has
        no label by then as genuine (your chargeback window: fraud nobody checked has charged
        back by then, or never will). Needs a log indexed by time (``by_time``)."""
        if recent_rows < 1:
            raise ValueError("recent_rows must be >= 1")
        if imply_ms is not None and not log.by_time:
            raise ValueError("imply_ms needs a feature log indexed by time (FeatureLog(by_time=True))")
        self.log = log
        hold = imply_ms if imply_ms is not None else settle_ms
        self.settle = CohortHold(hold) if hold is not None else None
        self.imply_ms = imply_ms
        self.implied_to = log.implied_to  # transactions up to this event time were implied genuine
        self.newest_ts = float("-inf")  # the newest transaction's event time (the log's lags by memory)
        self.capacity, self.max_pending, self.max_joined = recent_rows, max_pending, max_joined
        self._recent = np.zeros(recent_rows, dtype=log.dtype)
        self._ids: list[str | None] = [None] * recent_rows
        self._slot: dict[str, int] = {}
        self._seen = 0
        self.decided = 0  # decisions received
        self._pending: OrderedDict[str, tuple[float, float | None]] = OrderedDict()  # id -> (label, ts)
        self._delays_ms: deque[float] = deque(maxlen=1000)
        ids, labels, rows = log.load_joined(max_joined)  # a restart keeps what had joined
        self._train_ids, self._train_y, self._train_rows = ids, labels, rows
        self.counts = dict.fromkeys(
            (
                "joined", "dropped", "sampled_out", "withdrawn", "late_decisions", "restored",
                "implied",  # transactions implied genuine (imply_ms)
                "implied_before",  # genuine labels that came after the join had implied them
            ),
            0,
        )  # fmt: skip
        self.counts["restored"] = len(ids)
        self.sources: Counter[str] = Counter()  # labels received by source (shared.feedback)
        self.fraud_sources: Counter[str] = Counter()  # ... of them fraud: analysts' share is alert precision

    @property
    def seen(self) -> int:
        """Transactions added so far."""
        return self._seen

    @property
    def watermark(self) -> float:
        """The newest event time seen (ms)."""
        return self.log.watermark

    # -- transactions and their decisions
    def add_transactions(
        self, ids: Sequence[str], X: np.ndarray, ts: Sequence[float], flagged: Sequence[bool] | None = None
    ) -> Joined:
        """Rows in (``flagged``: a rule fired); returns early labels that now found them."""
        if len(ts):
            self.newest_ts = max(self.newest_ts, float(max(ts)))
        ids = list(ids)
        unique = set(ids)
        fresh: Sequence[int]
        if len(unique) == len(ids) and self._slot.keys().isdisjoint(unique):
            fresh = range(len(ids))  # the usual batch: every row new
            first = ids
        else:  # redeliveries: the first of each id, and none already in memory
            seen: dict[str, int] = {}
            for k, i in enumerate(ids):
                seen.setdefault(i, k)
            fresh = [k for k, i in enumerate(ids) if i not in self._slot and seen[i] == k]
            first = list(seen)
        X = np.asarray(X, np.float32)
        every = len(fresh) == len(ids)
        rows = self.log.encode(
            X if every else X[fresh],
            ts if every else [ts[k] for k in fresh],
            None if flagged is None else [FLAGGED if flagged[k] else 0 for k in fresh],
        )
        new_ids = ids if every else [ids[k] for k in fresh]
        for lo in range(0, len(new_ids), self.capacity):  # a batch larger than memory passes through
            part = new_ids[lo : lo + self.capacity]
            self._evict(len(part))
            start = self._seen % self.capacity
            slots = (start + np.arange(len(part))) % self.capacity
            self._recent[slots] = rows[lo : lo + self.capacity]
            slot_list = slots.tolist()
            for slot, i in zip(slot_list, part, strict=True):
                self._ids[slot] = i
            self._slot.update(zip(part, slot_list, strict=True))
            self._seen += len(part)
        early = [i for i in first if i in self._pending]
        found = self._found(early, [self._pending.pop(i) for i in early]) if early else self._none()
        return self._settled(found)

    def _settled(self, joined: Joined) -> Joined:
        """With a cohort hold: the labels whose cohort is complete now, ``joined`` held;
        with ``imply_ms``, beside them the unlabelled transactions of those cohorts as
        genuine (a genuine label that comes for one later is not passed on again)."""
        if self.settle is None:
            return joined
        self.settle.add(joined.ids, joined.labels, joined.rows)
        due = self.settle.due(self.newest_ts)
        out = Joined(*due) if due is not None else self._none()
        if self.imply_ms is None:
            return out
        again = (out.rows["ts"] <= self.implied_to) & (out.labels < 0.5)
        if again.any():
            self.counts["implied_before"] += int(again.sum())
            keep = np.flatnonzero(~again)
            out = Joined([out.ids[k] for k in keep], out.labels[keep], out.rows[keep])
        cut = self.newest_ts - self.imply_ms
        if cut <= self.implied_to:
            return out
        implied = self._unlabelled(self.implied_to, cut, set(out.ids))
        self.implied_to = cut
        self.log.set_implied_to(cut)
        self.counts["implied"] += len(implied)
        ids, labels = out.ids + implied.ids, np.concatenate([out.labels, implied.labels])
        rows = np.concatenate([out.rows, implied.rows])
        order = np.argsort(rows["ts"], kind="stable")
        return Joined([ids[k] for k in order], labels[order], rows[order])

    def _unlabelled(self, after: float, until: float, labelled: set[str]) -> Joined:
        """The transactions stamped in ``(after, until]`` (in memory or in the log) that are
        not in ``labelled``, as genuine."""
        ts = self._recent["ts"]
        span = np.flatnonzero((ts > after) & (ts <= until)).tolist()
        in_memory = [s for s in span if (i := self._ids[s]) is not None and i not in labelled]
        on_disk_ids = [
            i for i in self.log.ids_between(after, until) if i not in labelled and i not in self._slot
        ]
        on_disk = self.log.get(on_disk_ids)
        ids = [str(self._ids[s]) for s in in_memory] + [i for i in on_disk_ids if i in on_disk]
        rows = np.concatenate(
            [self._recent[in_memory], self.log.read([on_disk[i] for i in ids[len(in_memory) :]])]
        )
        return Joined(ids, np.zeros(len(ids), np.float32), rows)

    def _evict(self, n: int) -> None:
        """Make room for ``n`` rows: the oldest leave memory for the feature log."""
        slots = [(self._seen + k) % self.capacity for k in range(min(n, self.capacity))]
        present = [s for s in slots if self._ids[s] is not None]
        if not present:
            return
        leaving = [str(self._ids[s]) for s in present]
        self.log.put(leaving, self._recent[present])
        pop = self._slot.pop
        for i in leaving:
            pop(i)
        for s in present:
            self._ids[s] = None

    def add_decisions(
        self, ids: Sequence[str], fraud: Sequence[bool], versions: Sequence[int], shadow: Sequence[bool]
    ) -> None:
        """The scorer's decisions: kept with the row (a flagged row is always logged)."""
        self.decided += len(ids)
        get = self._slot.get
        slots = np.array([get(i, -1) for i in ids], dtype=np.int64)
        known = slots >= 0
        self.counts["late_decisions"] += int((~known).sum())  # their rows already left memory
        at = slots[known]
        if len(np.unique(at)) < len(at):  # one row decided twice in the batch: in order
            for slot, f, v, s in zip(slots.tolist(), fraud, versions, shadow, strict=True):
                if slot >= 0:
                    self._decide(np.array([slot]), np.array([f]), np.array([v]), np.array([s]))
            return
        self._decide(
            at, np.asarray(fraud, bool)[known], np.asarray(versions)[known], np.asarray(shadow, bool)[known]
        )

    def _decide(self, at: np.ndarray, fraud: np.ndarray, versions: np.ndarray, shadow: np.ndarray) -> None:
        """Rows ``at`` (slots in memory) take their decisions: the verdicts' bits (a row the
        scorer flagged stays flagged) and the adapter version."""
        flags = self._recent["flags"]
        bits = DECIDED | np.where(fraud, FRAUD | FLAGGED, 0) | np.where(shadow, SHADOW_FRAUD, 0)
        flags[at] = (flags[at] & FLAGGED) | bits
        self._recent["version"][at] = versions

    def flush(self) -> None:
        """Everything in memory to the log (before a clean stop)."""
        self._evict(self.capacity)
        self.log.commit(force=True)

    # -- labels
    def add_labels(
        self,
        ids: Sequence[str],
        labels: Sequence[float],
        ts: Sequence[float] | None = None,
        sources: Sequence[str | None] | None = None,
    ) -> Joined:
        """Labels in; returns those whose transaction was found. The rest wait for their
        transaction (bounded: the oldest are dropped and counted), unless the sample left
        them out. ``sources`` are counted (none: ``unknown``; past ``MAX_SOURCES`` words:
        ``other``)."""
        for src, y in zip(sources if sources is not None else [None] * len(ids), labels, strict=True):
            key = src or "unknown"
            key = key if key in self.sources or len(self.sources) < MAX_SOURCES else "other"
            self.sources[key] += 1
            self.fraud_sources[key] += int(y >= 0.5)
        stamps: list[float | None] = list(ts) if ts is not None else [None] * len(ids)
        on_disk = self.log.get([i for i in ids if i not in self._slot])
        found: list[str] = []
        values: list[tuple[float, float | None]] = []
        for tx_id, y, when in zip(ids, labels, stamps, strict=True):
            if tx_id in self._slot or tx_id in on_disk:
                found.append(tx_id)
                values.append((float(y), when))
            elif not self.log.sampled(tx_id):
                self.counts["sampled_out"] += 1
            else:
                self._pending[tx_id] = (float(y), when)
                while len(self._pending) > self.max_pending:
                    self._pending.popitem(last=False)
                    self.counts["dropped"] += 1
        return self._settled(self._found(found, values, on_disk))

    def _found(
        self,
        ids: list[str],
        values: list[tuple[float, float | None]],
        on_disk: dict[str, bytes] | None = None,
    ) -> Joined:
        if not ids:
            return self._none()
        rows = np.zeros(len(ids), dtype=self.log.dtype)
        for k, tx_id in enumerate(ids):
            slot = self._slot.get(tx_id)
            rows[k] = self._recent[slot] if slot is not None else self.log.read((on_disk or {})[tx_id])[0]
        for (_, when), t in zip(values, rows["ts"], strict=True):
            if when is not None:
                self._delays_ms.append(when - float(t))
        return Joined(ids, np.array([y for y, _ in values], dtype=np.float32), rows)

    def _none(self) -> Joined:
        return Joined([], np.zeros(0, np.float32), np.zeros(0, dtype=self.log.dtype))

    # -- the training set
    def accept(self, joined: Joined) -> None:
        """Trusted labelled rows into the training set (and the log, for a restart)."""
        if not len(joined):
            return
        self.log.put_joined(joined.ids, joined.labels.tolist(), joined.rows)
        again = set(joined.ids)
        keep = [k for k, i in enumerate(self._train_ids) if i not in again]  # a newer label replaces
        ids = [self._train_ids[k] for k in keep] + joined.ids
        y = np.concatenate([self._train_y[keep], joined.labels])
        rows = np.concatenate([self._train_rows[keep], joined.rows])
        order = np.argsort(rows["ts"], kind="stable")[-self.max_joined :]
        self._train_ids, self._train_y, self._train_rows = [ids[k] for k in order], y[order], rows[order]
        self.counts["joined"] += len(joined)

    def forget(self, ids: Sequence[str]) -> int:
        """Withdraw labels found untrustworthy; returns how many were in the training set."""
        gone = set(ids)
        keep = [k for k, i in enumerate(self._train_ids) if i not in gone]
        n = len(self._train_ids) - len(keep)
        self._train_ids = [self._train_ids[k] for k in keep]
        self._train_y, self._train_rows = self._train_y[keep], self._train_rows[keep]
        self.log.forget_joined(list(gone))
        self.counts["withdrawn"] += n
        return n

    def frauds_since(self, since_ts: float) -> int:
        """Fraud labels in the training set stamped from ``since_ts`` on."""
        return int(((self._train_rows["ts"] >= since_ts) & (self._train_y == 1)).sum())

    def labelled_since(self, since_ts: float) -> int:
        return int((self._train_rows["ts"] >= since_ts).sum())

    def batch(
        self,
        since_ts: float,
        max_labelled: int = 20_000,
        half_life: float | None = None,
        min_frauds: int = 0,
        max_rows: int | None = None,
        max_unlabelled: int | None = None,
    ) -> HealBatch:
        """The episode's rows: its labelled rows (the newest ``max_labelled``, or as many
        more, up to ``max_rows``, as it takes to hold ``min_frauds`` frauds; oldest first,
        weighted ``0.5 ** (rank from the newest / half_life)``), then the unlabelled rows
        still in memory (the newest ``max_unlabelled``). ``y`` is NaN where no label has arrived."""
        episode = np.flatnonzero(self._train_rows["ts"] >= since_ts)
        take = max_labelled
        if min_frauds > 0 and len(episode) > max_labelled:
            frauds_back = np.cumsum(self._train_y[episode][::-1] == 1)  # frauds in the newest k + 1
            enough = int(np.searchsorted(frauds_back, min_frauds)) + 1
            take = max(max_labelled, min(enough, max_rows or len(episode)))
        lab = episode[-take:]
        labelled = set(self._train_ids[k] for k in lab)
        recent = [
            s
            for s in np.argsort(self._recent["ts"], kind="stable")
            if (i := self._ids[s]) is not None and i not in labelled and self._recent["ts"][s] >= since_ts
        ]
        recent = recent[len(recent) - min(len(recent), max_unlabelled or len(recent)) :]
        X = np.concatenate([self._train_rows["x"][lab], self._recent["x"][recent]]).astype(np.float32)
        y = np.concatenate([self._train_y[lab], np.full(len(recent), np.nan, np.float32)])
        w = np.ones(len(y), dtype=np.float32)
        w[: len(lab)] = inverse_share(self._train_rows[lab])  # a sampled log: each row for its kind
        if half_life is not None and len(lab):
            w[: len(lab)] *= 0.5 ** (np.arange(len(lab))[::-1] / half_life)
        return HealBatch(X, y, w)

    def newest(self, since_ts: float, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Features of the newest ``n`` labelled rows stamped from ``since_ts`` on, and of the
        newest ``n`` rows in memory: what the labels describe, and what the stream is now."""
        lab = np.flatnonzero(self._train_rows["ts"] >= since_ts)[-n:]
        return self._train_rows["x"][lab], self.recent(float("-inf"), n)

    def recent(self, since_ts: float, n: int) -> np.ndarray:
        """Features of the newest ``n`` rows in memory stamped from ``since_ts`` on, oldest first."""
        held = np.flatnonzero(np.array([i is not None for i in self._ids]))
        held = held[self._recent["ts"][held] >= since_ts]
        rows = held[np.argsort(self._recent["ts"][held], kind="stable")][-n:]
        out: np.ndarray = self._recent["x"][rows].astype(np.float32)
        return out

    def ts_back(self, rows: int) -> float:
        """Event time of the transaction ``rows`` back (the oldest in memory if further)."""
        n = min(rows, self._seen, self.capacity)
        if n == 0:
            return self.watermark if self.watermark > float("-inf") else 0.0
        return float(self._recent["ts"][(self._seen - n) % self.capacity])

    def stats(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "seen": self._seen,
            "labelled": len(self._train_ids),
            **{f"labels_{k}": v for k, v in self.counts.items() if k != "late_decisions"},
            "labels_pending": len(self._pending),
            "labels_by_source": dict(self.sources),
            "frauds_by_source": dict(self.fraud_sources),
            "labels_settling": self.settle.held if self.settle is not None else 0,
            "late_decisions": self.counts["late_decisions"],
            **self.log.stats(),
        }
        if self._delays_ms:
            d["label_delay_ms_p50"] = float(np.median(self._delays_ms))
        return d
