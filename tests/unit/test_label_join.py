"""The label join sized in event time: memory, then the feature log on disk, a horizon,
a byte budget with a deterministic sample, and a restart that keeps what it had."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from shared.healing.featurelog import DECIDED, FLAGGED, FRAUD, SHADOW_FRAUD, FeatureLog, id_hash
from shared.healing.join import LabelJoin

HOUR = 3_600_000.0


def ids(n: int, prefix: str = "t") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_labels_join_in_memory_and_on_disk_and_measure_their_delay():
    join = LabelJoin(FeatureLog(None, 2, horizon_ms=HOUR, budget_bytes=1 << 30), recent_rows=4)
    X = np.arange(20.0).reshape(10, 2)
    join.add_transactions(ids(10), X, [1000.0 + i for i in range(10)])
    join.add_decisions(["t2", "t9"], [True, False], [3, 3], [False, False])  # t2 left memory already
    got = join.add_labels(["t2", "t9"], [1.0, 0.0], ts=[1500.0, 1600.0])
    assert got.ids == ["t2", "t9"] and got.rows["x"].tolist() == [[4.0, 5.0], [18.0, 19.0]]
    assert join.stats()["late_decisions"] == 1  # t2's decision came after it left memory
    assert int(got.rows["version"][1]) == 3
    assert join.stats()["label_delay_ms_p50"] == pytest.approx(((1500 - 1002) + (1600 - 1009)) / 2)


def test_early_labels_wait_bounded_and_join_when_their_transaction_comes():
    join = LabelJoin(FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30), max_pending=2)
    assert not join.add_labels(["a", "b", "c"], [1.0, 0.0, 0.0])  # none seen yet
    assert join.stats()["labels_pending"] == 2 and join.stats()["labels_dropped"] == 1  # "a" dropped
    early = join.add_transactions(["b", "c", "c"], np.ones((3, 1)), [1.0, 2.0, 2.0])  # c redelivered
    assert early.ids == ["b", "c"] and join.seen == 2


def test_rows_older_than_the_horizon_are_gone_in_whole_segments():
    log = FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30, segments=4)
    join = LabelJoin(log, recent_rows=1)
    join.add_transactions(["old"], np.zeros((1, 1)), [0.0])
    join.add_transactions(["new"], np.zeros((1, 1)), [0.5 * HOUR])
    assert join.add_labels(["old"], [1.0]).ids == ["old"]  # within the horizon
    join.add_transactions(["later"], np.zeros((1, 1)), [1.3 * HOUR])
    join.add_transactions(["latest"], np.zeros((1, 1)), [1.4 * HOUR])
    assert log.dropped_segments == 1
    assert not join.add_labels(["old"], [1.0]) and join.add_labels(["new"], [0.0]).ids == ["new"]


def test_past_the_budget_a_deterministic_sample_is_kept_plus_every_flagged_row(tmp_path: Path):
    log = FeatureLog(tmp_path / "features", 8, horizon_ms=HOUR, budget_bytes=400_000)
    join = LabelJoin(log, recent_rows=100)
    n = 20_000
    rng = np.random.default_rng(0)
    flagged = rng.random(n) < 0.05
    for lo in range(0, n, 1000):
        join.add_transactions(
            ids(n)[lo : lo + 1000],
            rng.normal(size=(1000, 8)),
            list(range(lo, lo + 1000)),
            flagged[lo : lo + 1000].tolist(),
        )
    join.flush()
    assert log.sample < 1 and log.used_bytes() <= 400_000
    kept = set(log.get(ids(n)))
    sampled = {i for i in ids(n) if id_hash(i) < log.sample * 2**32}
    flagged_ids = {i for i, f in zip(ids(n), flagged, strict=True) if f}
    assert kept == sampled | flagged_ids  # exactly the sample and the flagged rows
    assert log.not_kept == n - len(kept)
    out = next(i for i in ids(n) if i not in kept)
    assert not join.add_labels([out], [1.0]) and join.stats()["labels_sampled_out"] == 1
    assert all(int(r) & FLAGGED for r in log.decode(log.get(sorted(flagged_ids - sampled)).values())["flags"])


def test_a_restart_keeps_the_log_and_the_training_set(tmp_path: Path):
    path = tmp_path / "features"
    join = LabelJoin(FeatureLog(path, 1, horizon_ms=HOUR, budget_bytes=1 << 30), recent_rows=10)
    join.add_transactions(ids(5), np.arange(5.0).reshape(5, 1), [float(i) for i in range(5)])
    join.accept(join.add_labels(["t1"], [1.0]))
    join.flush()
    join.log.close()
    again = LabelJoin(FeatureLog(path, 1, horizon_ms=HOUR, budget_bytes=1 << 30), recent_rows=10)
    assert again.stats()["labels_restored"] == 1 and again.labelled_since(0.0) == 1
    assert again.add_labels(["t3"], [0.0]).rows["x"].ravel().tolist() == [3.0]  # a label still to come


def test_the_heal_batch_weighs_recent_labels_more_and_forgets_withdrawn_ones():
    join = LabelJoin(FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30), recent_rows=3)
    join.add_transactions(ids(10), np.arange(10.0).reshape(10, 1), [float(i) for i in range(10)])
    join.accept(join.add_labels(["t1", "t4", "t6"], [1.0, 0.0, 1.0]))
    batch = join.batch(since_ts=2.0, half_life=1.0)
    assert batch.X.ravel().tolist() == [4.0, 6.0, 7.0, 8.0, 9.0]  # labelled since 2, then unlabelled
    assert batch.w is not None and batch.w[:2].tolist() == [0.5, 1.0]
    assert join.forget(["t6"]) == 1 and join.labelled_since(2.0) == 1


def test_flagged_rows_alone_over_the_budget_shorten_the_horizon_not_fill_the_disk(tmp_path: Path):
    log = FeatureLog(tmp_path / "features", 8, horizon_ms=HOUR, budget_bytes=300_000, segments=8)
    rng = np.random.default_rng(0)
    n = 20_000
    rows = log.encode(
        rng.normal(size=(n, 8)), ts=np.linspace(0, HOUR * 0.99, n).tolist(), flags=[FLAGGED] * n
    )
    for lo in range(0, n, 1000):
        log.put(ids(n)[lo : lo + 1000], rows[lo : lo + 1000])
    log.commit(force=True)
    assert log.used_bytes() <= 300_000 and log.early_drops > 0
    assert log.get(["t0"]) == {} and log.get([f"t{n - 1}"])  # the oldest went, the newest stayed


def test_a_heal_batch_reaches_back_until_it_holds_enough_frauds():
    """Rare fraud: the newest rows hold too few frauds to learn from, so the batch reaches
    back (within the episode, up to a cap) until it holds ``min_frauds``."""
    join = LabelJoin(FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30), recent_rows=1)
    n = 100
    join.add_transactions(ids(n), np.arange(float(n)).reshape(n, 1), [float(i) for i in range(n)])
    labels = [1.0 if i % 20 == 0 else 0.0 for i in range(n)]  # 5 frauds: rows 0, 20, 40, 60, 80
    join.accept(join.add_labels(ids(n), labels))
    assert join.frauds_since(0.0) == 5
    newest = join.batch(since_ts=0.0, max_labelled=10)
    assert int(np.nansum(newest.y)) == 0  # the newest ten hold no fraud
    enough = join.batch(since_ts=0.0, max_labelled=10, min_frauds=3)
    assert enough.n_labelled == 60 and int(np.nansum(enough.y)) == 3  # back to row 40
    capped = join.batch(since_ts=0.0, max_labelled=10, min_frauds=3, max_rows=30)
    assert capped.n_labelled == 30
    assert join.batch(since_ts=50.0, max_labelled=10, min_frauds=3).n_labelled == 50  # the episode's start


def test_labels_are_counted_by_source_with_unknown_and_a_bounded_rest():
    join = LabelJoin(FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30), recent_rows=10)
    join.add_transactions(ids(5), np.zeros((5, 1)), [float(i) for i in range(5)])
    join.add_labels(ids(3), [1.0, 0.0, 0.0], sources=["analyst", "implied", None])
    join.add_labels([f"x{i}" for i in range(20)], [0.0] * 20, sources=[f"bank{i}" for i in range(20)])
    by = join.stats()["labels_by_source"]
    assert by["analyst"] == 1 and by["implied"] == 1 and by["unknown"] == 1
    assert sum(by.values()) == 23 and len(by) == 16 + 1 and by["other"] == 23 - 16
    assert join.stats()["frauds_by_source"] == {"analyst": 1} | {k: 0 for k in by if k != "analyst"}


def test_a_cohort_hold_releases_labels_once_their_transaction_is_old_enough():
    """Labels held for 100 ms of event time after their transaction: an analyst's early
    verdict waits for the rest of its cohort, then both reach healing in transaction order."""
    log = FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30)
    join = LabelJoin(log, recent_rows=50, settle_ms=100.0)
    join.add_transactions(ids(10), np.zeros((10, 1)), [float(i) for i in range(10)])
    assert len(join.add_labels(["t5", "t1"], [1.0, 0.0], sources=["analyst", "analyst"])) == 0
    assert join.stats()["labels_settling"] == 2
    released = join.add_transactions(["u0"], np.zeros((1, 1)), [103.0])  # t1's cohort (ts 1) has closed
    assert released.ids == ["t1"] and join.stats()["labels_settling"] == 1
    assert join.add_labels(["t7"], [0.0]).ids == []  # t5 and t7 still wait
    assert join.add_transactions(["u1"], np.zeros((1, 1)), [200.0]).ids == ["t5", "t7"]


def test_a_sqlite_log_an_older_version_kept_is_read_in_once(tmp_path: Path):
    """Older versions kept the log in SQLite (``features.sqlite``, a table per segment):
    the first start reads it in, rows, training set, sample and watermark."""
    fresh = FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30, segments=4)
    rows = fresh.encode(np.arange(3.0).reshape(3, 1), ts=[10.0, 20.0, 30.0], flags=[0, FLAGGED, 0])
    fresh.close()
    old = sqlite3.connect(str(tmp_path / "features.sqlite"))
    old.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value REAL)")
    old.executemany("INSERT INTO meta VALUES (?, ?)", [("sample", 0.5), ("watermark", 30.0)])
    old.execute("CREATE TABLE seg_0 (h INTEGER, id TEXT, row BLOB, PRIMARY KEY (h, id))")
    old.executemany(
        "INSERT INTO seg_0 VALUES (?, ?, ?)",
        [(id_hash(i), i, rows[k].tobytes()) for k, i in enumerate(ids(3))],
    )
    old.execute(
        "CREATE TABLE joined (h INTEGER, id TEXT, ts REAL, label REAL, row BLOB, PRIMARY KEY (h, id))"
    )
    old.execute(
        "INSERT INTO joined VALUES (?, ?, ?, ?, ?)", (id_hash("t1"), "t1", 20.0, 1.0, rows[1].tobytes())
    )
    old.commit()
    old.close()

    log = FeatureLog(tmp_path / "features", 1, horizon_ms=HOUR, budget_bytes=1 << 30, segments=4)
    assert (log.sample, log.watermark) == (0.5, 30.0)
    assert log.decode(log.get(["t2"])["t2"])["x"].ravel().tolist() == [2.0]
    assert log.load_joined(10)[0] == ["t1"]
    assert not (tmp_path / "features.sqlite").exists() and (tmp_path / "features.sqlite.imported").exists()
    log.close()
    again = FeatureLog(tmp_path / "features", 1, horizon_ms=HOUR, budget_bytes=1 << 30, segments=4)
    assert sorted(again.get(ids(3))) == ids(3)  # read in once, kept since
    again.close()


def test_at_the_chargeback_delay_the_unlabelled_are_implied_genuine_and_later_genuine_labels_skipped():
    """``imply_ms``: a cohort is released once its transactions are that old, with every
    transaction nobody labelled as genuine (in memory or on disk); a genuine label that comes
    for one of them later (the team's own implied label) is not passed on twice, a late
    chargeback is (it replaces the implied genuine)."""
    log = FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30, by_time=True)
    join = LabelJoin(log, recent_rows=3, imply_ms=10.0)
    join.add_transactions(ids(6), np.arange(6.0).reshape(6, 1), [float(i) for i in range(6)])  # t0-t2 on disk
    assert not join.add_labels(["t1"], [1.0])  # an analyst's verdict: held until t1 is 10 old
    got = join.add_transactions(["t12"], np.zeros((1, 1)), [12.0])  # t0-t2 are 10 old now
    assert got.ids == ["t0", "t1", "t2"] and got.labels.tolist() == [0.0, 1.0, 0.0]
    assert got.rows["x"].ravel().tolist() == [0.0, 1.0, 2.0]
    join.accept(got)
    assert not join.add_labels(["t0"], [0.0])  # implied already
    late = join.add_labels(["t2"], [1.0])  # a chargeback after the implied window: passed on
    assert late.ids == ["t2"] and late.labels.tolist() == [1.0]
    join.accept(late)
    got = join.add_transactions(["t20"], np.zeros((1, 1)), [20.0])  # t3-t5 are 10 old now (t12 is not)
    assert got.ids == ["t3", "t4", "t5"] and got.labels.tolist() == [0.0, 0.0, 0.0]
    stats = join.stats()
    assert (stats["labels_implied"], stats["labels_implied_before"]) == (5, 1)  # t0 t2 t3 t4 t5; t0 again
    assert join.labelled_since(0.0) == 3  # t0, t1, t2 (t2 now fraud); t3-t5 not accepted yet


def test_implying_genuine_needs_a_log_indexed_by_time():
    with pytest.raises(ValueError, match="by_time"):
        LabelJoin(FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30), imply_ms=10.0)


def test_above_the_rate_the_log_may_write_a_sample_is_logged_the_flagged_rows_all_and_every_row_counted():
    from shared.healing.log_rate import LogRate

    log = FeatureLog(None, 2, horizon_ms=HOUR, budget_bytes=1 << 30)
    join = LabelJoin(log, recent_rows=100)
    rate = LogRate(capacity=2_500.0)
    n = 10_000
    flagged = np.arange(n) % 50 == 0
    for lo in range(0, n, 1000):  # 10,000 transactions produced within one second: 4x the capacity
        log.rate_sample = rate.observe([lo / 10, (lo + 999) / 10], rows=1000)
        join.add_transactions(
            ids(n)[lo : lo + 1000], np.ones((1000, 2)), [float(lo)] * 1000, flagged[lo : lo + 1000]
        )
    join.flush()
    assert log.rate_sample == 0.25 and log.sample == 1.0  # the rate's sample, not the budget's
    kept = set(log.get(ids(n)))
    flagged_ids = {i for i, f in zip(ids(n), flagged, strict=True) if f}
    assert flagged_ids <= kept
    assert log.not_kept == log.rate_not_kept == n - len(kept) > n / 3  # the first batches: every row
    out = [i for i in ids(200) if i not in kept]
    assert not join.add_labels(out, [0.0] * len(out))
    assert join.stats()["labels_sampled_out"] == len(out)  # counted, not left waiting or dropped


def test_the_rate_sample_follows_the_measured_cost_of_a_row_and_rises_only_with_room_to_spare():
    from shared.healing.log_rate import LogRate

    rate = LogRate(share=0.5)
    assert rate.observe([0.0, 1000.0], rows=50_000) == 1.0  # no cost measured yet: every row
    rate.cost(seconds=1.0, rows=100_000)  # 10 us a row: half a core writes 50,000 a second
    assert rate.capacity == 50_000.0
    assert rate.observe([1000.0, 2000.0], rows=60_000) == 0.5  # 55,000 a second over the window
    assert rate.observe([2000.0, 3000.0], rows=45_000) == 0.5  # 51,667: not room enough for all
    for t in range(3, 14):
        rate.observe([t * 1000.0, (t + 1) * 1000.0], rows=35_000)
    assert rate.ratio == 1.0 and rate.input_rate == pytest.approx(35_000, rel=0.05)
    with pytest.raises(ValueError, match="capacity"):
        LogRate(capacity=0)


def test_decisions_mark_their_rows_and_a_row_decided_twice_in_a_batch_stays_flagged():
    join = LabelJoin(FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30), recent_rows=10)
    join.add_transactions(ids(3), np.zeros((3, 1)), [1.0, 2.0, 3.0])
    join.add_decisions(
        ["t0", "t1", "t0", "gone"], [True, False, False, True], [1, 1, 2, 1], [False, True, False, True]
    )
    join.flush()
    rows = {i: join.log.decode(v) for i, v in join.log.get(ids(3)).items()}
    assert (
        int(rows["t0"]["flags"][0]) & FLAGGED and int(rows["t0"]["version"][0]) == 2
    )  # flagged once, stays so
    assert not int(rows["t0"]["flags"][0]) & FRAUD  # the later verdict
    assert int(rows["t1"]["flags"][0]) == DECIDED | SHADOW_FRAUD and int(rows["t2"]["flags"][0]) == 0
    assert join.stats()["late_decisions"] == 1


def test_rows_implied_from_a_sampled_log_each_stand_for_the_rows_the_sample_left_out():
    """The log keeps every flagged row and a sample of the rest: implied genuine (and
    labelled) rows from it are weighted by the inverse of the share they were kept at, so
    the training set is not tilted towards what the scorer flagged."""
    from shared.healing.featurelog import inverse_share

    log = FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30, by_time=True)
    log.rate_sample = 0.25
    join = LabelJoin(log, recent_rows=100, imply_ms=1000.0)
    n = 2000
    flagged = np.arange(n) % 10 == 0
    join.add_transactions(
        ids(n), np.zeros((n, 1)), [float(i) for i in range(n)], flagged
    )  # up to 999 implied
    got = join.add_transactions(["late"], np.zeros((1, 1)), [2500.0])  # then the rest up to 1,500
    kept_unflagged = [k for k, i in enumerate(got.ids) if not flagged[int(i[1:])]]
    w = inverse_share(got.rows)
    assert set(w[kept_unflagged].tolist()) == {4.0}  # one kept for four
    assert set(w[[k for k in range(len(got)) if k not in kept_unflagged]].tolist()) == {1.0}  # flagged
    assert 0.8 < w.sum() / 501 < 1.2  # the 501 transactions stamped 1,000-1,500, as many as were there
    join.accept(got)
    weights = join.batch(since_ts=0.0).w
    assert weights is not None and np.array_equal(weights[: len(got)], w)
    log.sample = 0.125  # the byte budget halved since: the rows left stand for eight
    assert set(inverse_share(log.read(log.get(["t1"]).values())).tolist()) <= {8.0}
    plain = LabelJoin(FeatureLog(None, 1, horizon_ms=HOUR, budget_bytes=1 << 30), recent_rows=100)
    plain.log.rate_sample = 0.25
    plain.add_transactions(ids(n), np.zeros((n, 1)), [float(i) for i in range(n)])
    on_disk = next(i for i in ids(1000) if plain.log.sampled(i))
    got = plain.add_labels([on_disk, "t1999"], [0.0, 1.0])  # one from the log, one still in memory
    assert inverse_share(got.rows).tolist() == [4.0, 1.0]
