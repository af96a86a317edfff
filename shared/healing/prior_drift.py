"""A fraud rate that moved, seen by the frozen model's own posteriors: a CUSUM on their
likelihood ratio.

A fraud rate that doubles moves each informative feature's mean only a little (by the
change of share times the classes' distance), often less than FIDI's false-alarm control
lets it see. The frozen model sees it better: if only the fraud rate moved from ``prior``
to ``q``, a row's density changes by the exact likelihood ratio

    LR(x) = p(x) * q / prior + (1 - p(x)) * (1 - q) / (1 - prior)

where ``p(x)`` is the model's posterior calibrated to the training rate. Page's CUSUM on
``log LR`` for the two alternatives ``q`` (fraud odds times ``ratio``, and divided by it)
is the sequential test that sees such a change soonest for its false-alarm rate: it alarms
when one sum exceeds ``h`` (a false alarm once in about ``exp(h)`` rows when the posteriors
are calibrated; ``h = 14`` is about once in a million). It names the onset too: the row
after the sum last left zero. A change of units moves the posteriors and can set it off
as well; the label-free diagnosis then says what moved.

After an alarm it watches for the way back: the new rate is estimated on the first
``keep`` rows from the onset (Saerens' EM on the posteriors), and a second CUSUM of the
training rate against that estimate says ``recovered`` when it exceeds ``h``. A rate that
keeps moving away (a ramp) never favours the training rate, so it does not recover.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> def posteriors(n, rate):   # one feature, N(0, 1) for normals and N(2, 1) for fraud
...     x = rng.normal(2.0 * (rng.random(n) < rate), 1.0)
...     return 1 / (1 + np.exp(-(np.log(0.05 / 0.95) + 2.0 * x - 2.0)))   # trained at 5%
>>> det = PriorDrift(prior=0.05, ratio=1.5, h=14.0)
>>> det.update(posteriors(50_000, 0.05)), det.drift_detected
(None, False)
>>> for batch in range(1, 100):                        # then twice the fraud, 100 rows a batch
...     if det.update(posteriors(100, 0.10)) == "drift":
...         break
>>> 100 * batch, det.onset_rows, det.drift_detected     # seen 1,600 rows in; onset named 3,114 back
(1600, 3114, True)
>>> det.update(posteriors(20_000, 0.05))                # the rate is back
'recovered'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from shared.errors import ConfigError
from shared.labelfree.prior import em_prior

if TYPE_CHECKING:
    from shared.labelfree import LabelFreeReference


def _odds_times(prior: float, factor: float) -> float:
    odds = prior / (1 - prior) * factor
    return odds / (1 + odds)


def _llr(p: np.ndarray, prior: float, q: float) -> np.ndarray:
    """Per-row log likelihood ratio of fraud rate ``q`` against ``prior``."""
    out: np.ndarray = np.log(p * (q / prior) + (1 - p) * ((1 - q) / (1 - prior)))
    return out


class _Cusum:
    """Page's one-sided CUSUM over a stream of increments; remembers where it last left 0."""

    def __init__(self) -> None:
        self.value = 0.0
        self.since = 0  # rows since the sum last left zero

    def run(self, inc: np.ndarray, h: float) -> int | None:
        """Add ``inc``; the index of the first row where the sum exceeds ``h`` (None: none).
        The sum is vectorised: ``S_t = C_t - min(-S_0, min_{s<=t} C_s)``."""
        c = np.cumsum(inc)
        low = np.minimum.accumulate(np.minimum(c, -self.value))
        s = c - low
        over = np.flatnonzero(s > h)
        end = int(over[0]) + 1 if len(over) else len(inc)
        zero = np.flatnonzero(s[:end] <= 0)
        self.since = end - (int(zero[-1]) + 1) if len(zero) else self.since + end
        self.value = float(s[end - 1]) if end else self.value
        return int(over[0]) if len(over) else None


class PriorDrift:
    def __init__(self, prior: float, ratio: float = 1.5, h: float = 14.0) -> None:
        if not 0 < prior < 1 or ratio <= 1 or h <= 0:
            raise ConfigError(f"need 0 < prior < 1, ratio > 1, h > 0; got {prior}, {ratio}, {h}")
        self.prior, self.ratio, self.h = prior, ratio, h
        self._alternatives = (_odds_times(prior, ratio), _odds_times(prior, 1 / ratio))
        self._sums = (_Cusum(), _Cusum())
        self._back = _Cusum()
        self._since: np.ndarray | None = None  # posteriors since the onset (the first ``keep``), in drift
        self.keep = 2000  # the new rate is estimated on this many rows from the onset, then held
        self._recent = np.empty(0)  # the newest ``keep`` posteriors
        self.rate = prior  # the estimated fraud rate since the onset (the training rate when calm)
        self.onset_rows = 0  # rows back the drift began, when it alarmed

    @classmethod
    def for_reference(cls, ref: LabelFreeReference | None, ratio: float, h: float) -> PriorDrift | None:
        """Against the training fraud rate of the label-free reference (None: no reference)."""
        if ref is None or not 0 < ref.prior0 < 1:
            return None
        return cls(ref.prior0, ratio, h)

    @property
    def drift_detected(self) -> bool:
        return self._since is not None

    def update(self, p: np.ndarray) -> str | None:
        """A batch of posteriors (calibrated to the training rate); ``drift`` or ``recovered``
        on a change of state."""
        p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
        if not len(p):
            return None
        if self._since is not None:
            return self._watch_back(p)
        self._recent = np.concatenate([self._recent, p])[-self.keep :]
        for cusum, q in zip(self._sums, self._alternatives, strict=True):
            hit = cusum.run(_llr(p, self.prior, q), self.h)
            if hit is not None:
                self.onset_rows = cusum.since + (len(p) - hit - 1)
                self._since = self._recent[-min(self.onset_rows, self.keep) :]
                self.rate = em_prior(self._since, self.prior)
                self._back = _Cusum()
                return "drift"
        return None

    def _watch_back(self, p: np.ndarray) -> str | None:
        assert self._since is not None
        if len(self._since) < self.keep:
            self._since = np.concatenate([self._since, p])[: self.keep]
            self.rate = em_prior(self._since, self.prior)
        rate = min(max(self.rate, 1e-6), 1 - 1e-6)
        if self._back.run(-_llr(p, self.prior, rate), self.h) is None:  # the training rate against it
            return None
        self._since, self.rate, self._recent = None, self.prior, np.empty(0)
        self._sums = (_Cusum(), _Cusum())
        return "recovered"
