"""The feedback model: which transactions analysts check, which fraud charges back, what is
implied genuine, and when each label arrives."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import ConfigError
from shared.feedback import FeedbackModel, FeedbackStream, precision_at_k
from shared.feedback_live import LiveFeedback


@pytest.mark.parametrize(
    "spec",
    ["", "analyst:100:4h", "analyst:0/1d:4h", "chargeback:7d:1.5", "implied", "refunds:3d", "implied:soon"],
)
def test_a_bad_spec_says_what_it_could_not_read(spec: str) -> None:
    with pytest.raises(ConfigError):
        FeedbackModel.parse(spec)


def test_the_horizon_is_the_latest_label() -> None:
    m = FeedbackModel.parse("analyst:100/1d:4h,chargeback:7d:0.8")
    assert m.implied is None and m.horizon_ms == 7 * 86_400_000


def stream(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A decided stream: one transaction a ms, 5% fraud, fraud scored higher, a 10% alert rate."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    scores = np.clip(rng.normal(0.2 + 0.5 * y, 0.15), 0, 1)
    return np.arange(n), np.arange(n, dtype=float), scores, scores >= np.quantile(scores, 0.9)


def test_analysts_check_their_capacity_of_the_top_alerts_and_blocked_fraud_never_charges_back() -> None:
    rows, ts, scores, alerts = stream()
    y = (scores > 0.45).astype(int)  # truth follows the score here: checked alerts are mostly fraud
    fb = FeedbackStream(FeedbackModel.parse("analyst:50/1s:200ms,chargeback:5s:1,implied:8s"), seed=1)
    fb.decided(rows, ts, scores, alerts, y)
    checked = fb.checked
    per_period = np.bincount((ts[checked] // 1000).astype(int))
    assert per_period.max() <= 50 and per_period[1:].min() >= 25  # capacity, and the cut keeps them busy
    assert scores[checked].mean() > scores[alerts & ~checked].mean()  # the highest alerts are checked
    got = fb.due(1e9)
    src = np.array(got.sources)
    assert set(got.rows[src == "analyst"]) == set(rows[checked])
    assert not set(got.rows[src == "chargeback"]) & set(rows[checked])  # checked fraud was blocked
    assert set(got.rows[src == "chargeback"]) == set(rows[(y == 1) & ~checked])  # probability 1
    assert len(got) == len(rows)  # everything else is implied genuine
    analyst = src == "analyst"
    assert np.all(got.at[analyst] == ts[got.rows[analyst]] + 200)


def test_chargebacks_come_with_their_probability_and_the_rest_is_implied_genuine() -> None:
    rows, ts, scores, alerts = stream(seed=2)
    y = (np.random.default_rng(3).random(len(rows)) < 0.05).astype(int)
    fb = FeedbackStream(FeedbackModel.parse("chargeback:5s:0.8,implied:8s"), seed=4)
    fb.decided(rows, ts, scores, alerts, y)
    early = fb.due(7_999.0)  # chargebacks of the first 3,000 transactions, nothing implied yet
    assert set(early.sources) == {"chargeback"}
    got = fb.due(1e9)
    implied_fraud = [r for r, s in zip(got.rows, got.sources, strict=True) if s == "implied" and y[r] == 1]
    share = len(early) / max(int(y[:3000].sum()), 1)
    assert 0.65 < share < 0.95 and implied_fraud  # unreported fraud is taken as genuine
    assert fb.counts["chargeback"] + fb.counts["implied"] == len(rows)


def test_precision_at_k_is_per_period() -> None:
    _, ts, scores, _ = stream()
    y = (scores > 0.5).astype(int)
    p = precision_at_k(scores, y, ts, 20, 1000.0)
    assert len(p) == 20 and p.min() == 1.0
    assert precision_at_k(-scores, y, ts, 20, 1000.0).max() == 0.0


def _decisions(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    scores = np.clip(0.5 * y + rng.random(n) * 0.6, 0, 1)
    return [f"tx-{i}" for i in range(n)], y, scores, scores >= 0.5, np.arange(n, dtype=float)


def test_live_feedback_draws_the_labels_the_offline_stream_draws_whatever_order_decisions_come_in():
    model = FeedbackModel.parse("analyst:10/200ms:50ms,chargeback:300ms:0.8,implied:400ms")
    ids, y, scores, alerts, ts = _decisions(2000, seed=3)
    offline = FeedbackStream(model, seed=0)
    offline.decided(np.arange(2000), ts, scores, alerts, y)
    want = offline.due(float("inf"))

    live = LiveFeedback(model, ids, y, ts, seed=0)
    order = np.random.default_rng(1).permutation(2000)  # two scorers' partitions, interleaved
    got = []
    for k, i in enumerate(order):
        live.decided(ids[i], float(scores[i]), bool(alerts[i]))
        live.decided(ids[i], float(scores[i]), bool(alerts[i]))  # redelivered: no second label
        if k % 100 == 0 and live.released:
            got += live.due(ts[live.released - 1])
    got += live.rest()

    assert live.released == 2000 and live.waiting == 0 and live.skipped == 0
    assert sorted((lb.id, lb.label, lb.source, lb.ts) for lb in got) == sorted(
        (ids[r], int(lab), src, at)
        for r, lab, src, at in zip(want.rows, want.labels, want.sources, want.at, strict=True)
    )
    assert live.counts == dict(offline.counts)


def test_a_decision_that_never_comes_is_passed_over_once_enough_wait_behind_it():
    model = FeedbackModel.parse("implied:1ms")
    ids, y, scores, alerts, ts = _decisions(50, seed=4)
    live = LiveFeedback(model, ids, y, ts, max_wait=10)
    for i in range(1, 50):  # tx-0 is dead-lettered: its decision never comes
        live.decided(ids[i], float(scores[i]), bool(alerts[i]))
    live.decided("not-in-the-stream", 0.5, True)
    assert (live.skipped, live.released, live.waiting, live.unknown) == (1, 50, 0, 1)
    labelled = {lb.id for lb in live.rest()}
    assert labelled == set(ids[1:])  # everything but the missing one, once
