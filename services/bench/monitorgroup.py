"""Monitors in a group: their throughput through the broker, and whether they alarm where
one monitor does (offline, :mod:`shared.experiment.monitor_group`)."""

from __future__ import annotations

import time
from typing import Any

from services.bench.harness import Harness
from services.bench.measure import metric
from services.bench.throughput import backlog
from services.processes import assigned
from shared.bundle import Bundle
from shared.data import build
from shared.errors import SelfhealError
from shared.experiment.monitor_group import compare
from shared.training import scenario_bundle

JUDGED = "selfheal_monitor_judged_rows_total"
AGREEMENT = (("covariate", 8000), ("new-pattern", 8000), ("control", 198_000))  # (scenario, drifted rows)


def monitor_group(h: Harness) -> None:
    """A backlog through two monitors in one group (``--scale-out``): transactions a second
    until the judge has judged them all."""
    t = h.topics("monitorgroup")
    args = ("--scale-out", "--group", f"{t.transactions}.g")
    monitors = [h.service("monitor", t, f"monitor-group-{i + 1}", *args) for i in range(2)]
    try:
        for m in monitors:
            m.wait(assigned, "partitions")
        h.say(f"two monitors in a group: {h.cfg.rows:,} transactions")
        start = backlog(h, monitors, t.transactions, "g")
        deadline = time.monotonic() + 300
        while sum(metric(m.metrics(), JUDGED) for m in monitors) < h.cfg.rows:
            if time.monotonic() > deadline:
                raise SelfhealError(
                    f"the monitor group did not judge {h.cfg.rows:,} rows; see {monitors[0].log}"
                )
            time.sleep(0.05)
        seconds = max(1e-3, time.time() - start / 1e3)
        read = [int(metric(m.metrics(), "selfheal_monitor_transactions_total")) for m in monitors]
        h.results["monitor_group_tps"] = round(h.cfg.rows / seconds)
        h.results["monitor_group_split"] = read
        for m in monitors:
            h.note_rss("monitor", m)
    finally:
        for m in monitors:
            m.stop()


def agreement(say: Any) -> dict[str, Any]:
    """One monitor, one judging blocks, and two in a group with their judge, on the same
    streams (the library's seed 42): their alerts and how far the alarms moved."""
    out: dict[str, Any] = {}
    for name, drifted in AGREEMENT:
        say(f"monitor group agreement: {name} ({2000 + drifted:,} rows)")
        bundle = Bundle.load(scenario_bundle(name))
        r = compare(bundle, build(name, n_post=drifted))
        alarms = [e for e in r["alerts"]["one"] if e["detector"] == "fidi" and e["state"] == "drift"]
        out[name] = {
            "rows": r["rows"],
            "same_alerts": r["same_alerts"],
            "alarm_rows": {k: [e["row"] for e in v if e["state"] == "drift"] for k, v in r["alerts"].items()},
            "alarm_window_rows": [e["window"] for e in alarms],
            "alarm_shift_rows": r["alarm_shift_rows"],
            "alerts": {k: len(v) for k, v in r["alerts"].items()},
        }
    return out
