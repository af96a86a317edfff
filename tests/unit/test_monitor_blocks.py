"""Monitors that each read part of a stream, judged as one from their blocks' sums."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data import build
from shared.drift import FIDI
from shared.drift.categories import CategoryGroup, CategoryShift
from shared.experiment.monitor_group import compare
from shared.messages.monitor_stats import MonitorStats, decode_stats, encode_stats
from shared.messages.reject import Reject
from shared.monitoring import Blocks, DriftMonitor


def _fidi() -> FIDI:
    rng = np.random.default_rng(0)
    q = np.quantile(rng.normal(size=(5000, 4)), (np.arange(101) + 0.5) / 101, axis=0).T
    return FIDI(np.zeros(4), np.ones(4), quantiles=q)


def _stream(seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(6000, 4))
    x[3000:, 1] += 0.4
    return x


def test_blocks_of_one_row_judge_as_rows_do():
    rows, blocks, x = _fidi(), _fidi(), _stream()
    for i in range(0, len(x), 250):
        rows.update(x[i : i + 250])
        blocks.update_blocks(*blocks.summarise(x[i : i + 250], 1))
        assert blocks.index == pytest.approx(rows.index, rel=1e-12)
        assert blocks.in_drift == rows.in_drift


def test_sums_of_two_sources_add_up_to_the_blocks_of_one():
    """The windows of the combined stream, whichever monitor read each half of a block."""
    whole, merged, x = _fidi(), _fidi(), _stream(2)
    for i in range(0, len(x), 160):
        whole.update_blocks(*whole.summarise(x[i : i + 160], 16))
        a, b = merged.summarise(x[i : i + 160 : 2], 8), merged.summarise(x[i + 1 : i + 160 : 2], 8)
        merged.update_blocks(a[0] + b[0], a[1] + b[1])
        assert merged.index == pytest.approx(whole.index, rel=1e-9)
    assert whole.rows_seen == merged.rows_seen == len(x) and whole.drifting_features == ["1"]


def test_blocks_alarm_within_a_block_of_the_rows_on_a_clear_shift():
    rows, blocks, x = _fidi(), _fidi(), _stream(3)
    at: dict[str, int] = {}
    for i in range(0, len(x), 500):
        rows.update(x[i : i + 500])
        blocks.update_blocks(*blocks.summarise(x[i : i + 500], 16))
        for name, det in (("rows", rows), ("blocks", blocks)):
            if det.drift_detected:
                at[name] = i + (det.detected_at or 0)
    assert 3000 <= at["rows"] <= at["blocks"] <= at["rows"] + 32


def test_bad_blocks_are_refused_with_the_reason():
    fidi = _fidi()
    with pytest.raises(ValueError, match="row counts"):
        fidi.update_blocks([16, 0], np.zeros((2, 4)))
    with pytest.raises(ValueError, match="finite"):
        fidi.update_blocks([16], np.full((1, 4), np.nan))


def test_category_blocks_of_one_row_judge_as_rows_do():
    rng = np.random.default_rng(4)
    group = CategoryGroup("c", (0, 1, 2), ("a", "b", "<other>"), (0.6, 0.4, 0.0))
    rows, blocks = CategoryShift([group]), CategoryShift([group])
    x = np.eye(3)[rng.choice(3, size=4000, p=[0.6, 0.4, 0.0])]
    x[2000:] = np.eye(3)[rng.choice(3, size=2000, p=[0.5, 0.4, 0.1])]
    for i in range(0, len(x), 200):
        rows.update(x[i : i + 200])
        blocks.update_blocks(*blocks.summarise(x[i : i + 200], 1))
        assert blocks.index == pytest.approx(rows.index, rel=1e-12)
    assert rows.moved == blocks.moved and rows.onset_rows() == blocks.onset_rows()


def test_a_group_raises_the_alerts_of_one_monitor(covariate_bundle):
    """Two monitors on four partitions and their judge: the same alerts, the alarm within
    the window it was raised on."""
    result = compare(covariate_bundle, build("covariate"))
    assert result["same_alerts"] == {"blocks": True, "group": True}
    (one,) = [e for e in result["alerts"]["one"] if e["state"] == "drift"]
    (shift,) = result["alarm_shift_rows"]["group"]
    assert 0 <= shift <= one["window"]


def test_a_group_stays_quiet_on_the_control(covariate_bundle):
    result = compare(covariate_bundle, build("control", n_post=30_000))
    assert all(events == [] for events in result["alerts"].values())


def test_statistics_travel_as_safetensors_and_bad_records_are_refused(covariate_bundle):
    mon = DriftMonitor(covariate_bundle)
    X = build("covariate").stream.X[:100]
    blocks = mon.summarise(X, [1000.0 + i for i in range(100)])
    back = decode_stats(encode_stats(MonitorStats(covariate_bundle.id, "m-1", blocks, [(3, 100)])))
    assert not isinstance(back, Reject)
    assert back.blocks.rows.tolist() == [16] * 6 + [4] and back.blocks.ts[1] == 1016.0
    assert np.array_equal(back.blocks.fidi, blocks.fidi) and back.conflicts == [(3, 100)]
    assert isinstance(decode_stats(b"not safetensors"), Reject)
    assert isinstance(decode_stats(None), Reject)
    wrong = Blocks(np.array([16, 16]), np.array([1.0]), np.zeros((2, 3)), None)
    assert "shapes" in str(decode_stats(encode_stats(MonitorStats("b", "m", wrong, []))))


def test_a_judge_that_forgets_starts_again_from_the_reference(covariate_bundle):
    """A monitor that becomes its group's judge again drops the windows of its earlier turn."""
    mon = DriftMonitor(covariate_bundle)
    stream = build("covariate").stream.X
    alerts = mon.add_blocks(mon.summarise(stream[:6000]))
    assert mon.fidi.in_drift and any(a.state == "drift" for a in alerts)
    mon.conflict_counts([True] * 30)  # read, not yet a full chunk: kept
    mon.forget_judged()
    assert not mon.fidi.in_drift and mon.rows == 0 and mon.alarm_rows == [] and mon.fidi.rows_seen == 0
    assert mon.conflict_counts([False] * 70) == [(30, 100)]
