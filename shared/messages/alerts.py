"""``drift-alerts`` (key: :attr:`Alert.key`): state changes worth a person's attention.

``{"detector", "feature", "statistic", "threshold", "state", "ts", ...}``; what each
detector says:

==============  ========================  ==========================  =================================
detector        feature                   state                       more fields
==============  ========================  ==========================  =================================
``fidi``        ``fidi`` (the summary)    ``drift`` / ``recovered``   ``onset_rows``, ``onset_ts``
``fidi``        a feature name            ``drift`` / ``recovered``   (statistic: its shift in sd)
``conflicts``   ``conflicts``             ``drift`` / ``recovered``   ``onset_rows``
``categories``  ``categories`` (summary)  ``drift`` / ``recovered``   ``onset_rows``, ``onset_ts``
``categories``  a category field          ``drift``                   ``category``, ``share``,
                                                                      ``reference_share`` (statistic:
                                                                      Cohen's w)
``scorer``      ``adapter-weights``       ``rejected``                ``reason``, ``offset``, ``live_version``
``healer``      ``adapter``               ``rollback``                ``from_version``, ``to_version``,
                                                                      ``snapshot``, ``reason``
``healer``      ``labels``                ``suspect`` / ``trusted``   ``reason``, ``quarantined``
``healer``      ``diagnosis``             the diagnosis's action      ``reason``, ``shifted``,
                                          (see below)                 ``unexplained``, ``rows``,
                                                                      ``fraud_rate_features``/``_bbse``,
                                                                      ``flag_rate``(``_raw``,
                                                                      ``_reference``), ``offset``,
                                                                      ``accepted``, ``live_version``
==============  ========================  ==========================  =================================

A diagnosis (label-free healing, :mod:`shared.labelfree.diagnosis`) is published when its
action changes: ``recalibrate``, ``prior``, ``both``, ``nothing``, ``unexplained`` or
``unstable``; its statistic is the EM fraud rate, its threshold the training rate.

The summary alerts (feature ``fidi``, ``conflicts``, ``categories``) open and close the healer's
drift episodes; the monitor publishes state changes only, so the last summary alert of a
detector is its state.

>>> a = Alert("fidi", "fidi", 1.5, 1.0, "drift", ts=1000.0, onset_rows=40)
>>> decode_alert(encode_alert(a)) == a
True
>>> (a.key, a.summary)
('fidi', True)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.messages.record import from_fields, load_object
from shared.messages.reject import Reject

Detail = str | int | float | None
SUMMARY = ("fidi", "conflicts", "categories")  # the features whose alerts open and close drift episodes
_FIELDS = ("detector", "feature", "statistic", "threshold", "state", "ts", "onset_rows", "onset_ts")


def now_ms() -> float:
    return time.time() * 1e3


@dataclass(frozen=True)
class Alert:
    detector: str  # fidi | conflicts | categories | scorer | healer
    feature: str  # fidi, conflicts, a feature name, adapter-weights, adapter, labels
    statistic: float
    threshold: float
    state: str  # drift | recovered | rejected | rollback | suspect | trusted | a diagnosis's action
    ts: float = field(default_factory=now_ms)  # when it was raised, epoch ms
    onset_rows: int | None = None  # how many rows ago the drift began (summary alerts)
    onset_ts: float | None = None  # event time of the first row of that estimate (epoch ms)
    details: Mapping[str, Detail] = field(default_factory=dict)  # what else the detector says

    @property
    def key(self) -> str:
        """The record key: the feature (or detector); the healer's alerts ``healer-<feature>``."""
        if self.detector == "healer":
            return f"healer-{self.feature}"
        return self.feature or self.detector

    @property
    def summary(self) -> bool:
        """A detector's own state (opens or closes a drift episode), not a per-feature detail."""
        return self.feature in SUMMARY

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "detector": self.detector,
            "feature": self.feature,
            "statistic": round(float(self.statistic), 6),
            "threshold": float(self.threshold),
            "state": self.state,
            "ts": int(self.ts),
        }
        if self.onset_rows is not None:
            out["onset_rows"] = int(self.onset_rows)
        if self.onset_ts is not None:
            out["onset_ts"] = int(self.onset_ts)
        return {**out, **{k: v for k, v in self.details.items() if v is not None}}


def encode_alert(alert: Alert) -> bytes:
    return orjson.dumps(alert.to_dict())


def decode_alert(raw: bytes | None) -> Alert | Reject:
    """An alert, or why the record is not one."""
    rec = load_object(raw)
    if isinstance(rec, Reject):
        return rec
    onset_rows, onset_ts = rec.get("onset_rows"), rec.get("onset_ts")
    return from_fields(
        lambda: Alert(
            detector=str(rec["detector"]),
            feature=str(rec["feature"]),
            statistic=float(rec["statistic"]),
            threshold=float(rec["threshold"]),
            state=str(rec["state"]),
            ts=float(rec["ts"]),
            onset_rows=None if onset_rows is None else int(onset_rows),
            onset_ts=None if onset_ts is None else float(onset_ts),
            details={k: v for k, v in rec.items() if k not in _FIELDS and _is_detail(v)},
        )
    )


def _is_detail(v: object) -> bool:
    return v is None or isinstance(v, str | int | float)
