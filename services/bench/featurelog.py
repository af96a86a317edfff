"""The feature log in ``make bench``: write rate through the healer's own label join, label
lookup latency, disk per million rows, and the healer's memory with a million rows kept;
beside it the same rows written straight into RocksDB in raw batches (what the store
itself can take: the join's overhead is the difference).

Run in a child process (``python -m services.bench.featurelog ROWS DIR``) so that its
resident memory is the healer's alone; it prints one JSON object. ``bench.json`` keys:
``feature_log.log`` (the healer's log), ``feature_log.rocksdb`` (raw batches) and
``feature_log.intake``: the healer's whole intake of a transaction, as its loop does it
(the encoded transaction and its decision decoded, both into the join), with every row
logged and with the rate sample at 1/8 (what a healer past its log's capacity does).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from services.processes import vm_rss_mb
from shared.healing.featurelog import FeatureLog
from shared.healing.join import LabelJoin

N_FEATURES = 10  # the covariate bundle's
BATCH = 1000  # rows per write, as the healer's loop hands them over


def own_rss() -> float:
    """This process's resident memory now, MB."""
    return vm_rss_mb(os.getpid()) or 0.0


def _rows(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"tx-{i:09d}" for i in range(n)], rng.normal(size=(n, N_FEATURES)).astype(np.float32)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure_log(rows: int, folder: Path) -> dict[str, Any]:
    """Rows through the healer's own join (memory, then the log on disk), then label lookups."""
    shutil.rmtree(folder, ignore_errors=True)
    rss0 = own_rss()
    ids, X = _rows(rows)
    data_mb = own_rss() - rss0  # the test rows themselves, not the healer's
    before_store = own_rss()
    log = FeatureLog(folder / "features", N_FEATURES, horizon_ms=1e12, budget_bytes=1 << 40)
    join = LabelJoin(log)
    t0 = time.perf_counter()
    for lo in range(0, rows, BATCH):
        join.add_transactions(ids[lo : lo + BATCH], X[lo : lo + BATCH], list(range(lo, lo + BATCH)))
    join.flush()
    write_s = time.perf_counter() - t0
    store_mb = own_rss() - before_store
    rng = np.random.default_rng(1)
    single = []
    for k in rng.integers(0, rows - 5000, 2000):
        t = time.perf_counter()
        assert join.add_labels([ids[k]], [1.0])
        single.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    picks = rng.integers(0, rows - 5000, 10_000)
    for lo in range(0, len(picks), 100):
        join.add_labels([ids[k] for k in picks[lo : lo + 100]], [0.0] * 100)
    batch_us = (time.perf_counter() - t) / len(picks) * 1e6
    log.close()
    return {
        "rows": rows,
        "write_rows_per_s": round(rows / write_s),
        "lookup_ms_p50": round(float(np.percentile(single, 50)), 3),
        "lookup_ms_p99": round(float(np.percentile(single, 99)), 3),
        "lookup_us_per_label_in_100s": round(batch_us, 1),
        "disk_mb_per_million_rows": round(_dir_bytes(folder) / 1e6 * 1e6 / rows, 1),
        "healer_rss_mb": round(own_rss() - data_mb, 1),
        "store_rss_mb": round(store_mb, 1),
    }


def measure_rocksdb(rows: int, folder: Path) -> dict[str, Any] | None:
    """The same rows, keys and values in RocksDB (``rocksdict``), written in batches of 1,000."""
    try:
        from rocksdict import Options, Rdict, WriteBatch
    except ImportError:
        return None
    shutil.rmtree(folder, ignore_errors=True)
    ids, X = _rows(rows)
    values = [x.tobytes() + bytes(13) for x in X]  # the log's row: features, ts, flags, version
    rss0 = own_rss()
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    db = Rdict(str(folder), opts)
    t0 = time.perf_counter()
    for lo in range(0, rows, BATCH):
        wb = WriteBatch(raw_mode=True)
        for k in range(lo, min(lo + BATCH, rows)):
            wb.put(ids[k].encode(), values[k])
        db.write(wb)
    db.flush()
    write_s = time.perf_counter() - t0
    lat = []
    for k in np.random.default_rng(1).integers(0, rows, 2000):
        t = time.perf_counter()
        assert db.get(ids[k].encode()) is not None
        lat.append((time.perf_counter() - t) * 1e3)
    db.compact_range(None, None)
    out = {
        "write_rows_per_s": round(rows / write_s),
        "lookup_ms_p99": round(float(np.percentile(lat, 99)), 3),
        "disk_mb_per_million_rows": round(_dir_bytes(folder) / 1e6 * 1e6 / rows, 1),
        "store_rss_mb": round(own_rss() - rss0, 1),
    }
    db.close()
    return out


def measure_intake(rows: int, folder: Path) -> dict[str, Any]:
    """Transactions a second through the healer's intake: encoded transactions and their
    decisions decoded (:func:`decode_transactions`, :func:`decode_decisions`) and added to
    the join, every row logged and one in eight (``log_rate_sample``)."""
    from shared.messages import (
        Decision,
        Transaction,
        decode_decisions,
        decode_transactions,
        encode_decision,
        encode_transaction,
    )

    ids, X = _rows(rows)
    names = [f"V{i}" for i in range(1, N_FEATURES + 1)]
    tx = [
        encode_transaction(Transaction.from_row(i, names, x.tolist(), 1e12 + k))
        for k, (i, x) in enumerate(zip(ids, X, strict=True))
    ]
    dec = [
        encode_decision(Decision(i, 0.1, k % 50 == 0, 0.5, 1, "b", (), False, 0.1, 1.0))
        for k, i in enumerate(ids)
    ]
    out: dict[str, Any] = {"rows": rows}
    for key, share in (("tx_per_s", 1.0), ("tx_per_s_sampled_8", 0.125)):
        shutil.rmtree(folder, ignore_errors=True)
        log = FeatureLog(folder, N_FEATURES, horizon_ms=1e15, budget_bytes=1 << 40)
        log.rate_sample = share
        join = LabelJoin(log)
        t0 = time.perf_counter()
        for lo in range(0, rows, BATCH):
            batch = decode_transactions(tx[lo : lo + BATCH], names)
            ts = [t if t is not None else 0.0 for t in batch.ts]  # as the healer: else the record's
            join.add_transactions(batch.ids, batch.X, ts)
            ds = [d for d in decode_decisions(dec[lo : lo + BATCH]) if isinstance(d, Decision)]
            join.add_decisions(
                [d.id for d in ds],
                [d.fraud for d in ds],
                [d.adapter_version for d in ds],
                [d.shadow_fraud for d in ds],
            )
        join.flush()
        out[key] = round(rows / (time.perf_counter() - t0))
        log.close()
    return out


def feature_log(rows: int, folder: Path, say: Any) -> dict[str, Any]:
    """The three measurements, each in a child process of its own (``bench.json``: ``feature_log``)."""
    import subprocess

    out: dict[str, Any] = {}
    for which in ("log", "rocksdb", "intake"):
        say(f"feature log: {rows:,} rows through {which}")
        cmd = [sys.executable, "-m", "services.bench.featurelog", str(rows), str(folder), which]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)  # noqa: S603
        out[which] = orjson.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    rows, folder = int(sys.argv[1]), Path(sys.argv[2])
    which = sys.argv[3] if len(sys.argv) > 3 else "log"
    measure = {"log": measure_log, "rocksdb": measure_rocksdb, "intake": measure_intake}[which]
    result = measure(rows, folder / which)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
