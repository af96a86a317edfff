"""Drawn streams through the stack: ``selfheal experiment robustness --stack``.

Each seed's stream (:func:`shared.data.family.sample`, the same rows the offline run
judges) goes through :func:`services.demo.run_demo`: a bundle trained on its training rows,
the embedded broker, the scorers, the monitor and the healer as processes, labels
``label_delay`` transactions late. The demo's report holds the same windows the offline
protocol measures (:mod:`shared.experiment.windows`); :func:`stack_stream` turns it into a
record of the robustness table (:mod:`shared.experiment.robustness`), so the two tables are
read the same way. One stream at a time: each stack takes the whole machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shared.data.family import sample
from shared.experiment.config import ExperimentConfig
from shared.experiment.robustness import judge_rows, judge_window
from shared.units import Delay


def stack_stream(seed: int, label_delay: int, rate: float, out: Path) -> dict[str, Any]:
    """Stream ``seed`` through a stack of its own at ``rate`` tx/s (its report under
    ``out/seed-N``); a record as :func:`shared.experiment.robustness.run_stream` writes."""
    from services.demo import DemoConfig, run_demo

    t0 = time.monotonic()
    cfg = ExperimentConfig(label_delay=label_delay, seed=seed)
    fs = sample(seed, n_pre=cfg.n_pre, n_post=cfg.stream_post)
    record: dict[str, Any] = {"seed": seed, "label_delay": label_delay, "kind": fs.kind, "params": fs.params}
    demo = DemoConfig(
        f"family:{seed}",
        rate=rate,
        feedback=None,
        label_delay=Delay(rows=label_delay),
        n_pre=cfg.n_pre,
        n_post=cfg.stream_post,
        adapt_window=cfg.adapt_window,
    )
    try:
        summary = run_demo(demo, out / f"seed-{seed}")
        after = summary["after_drift"]
        windows = after.get("windows", {})
        record["windows"] = {k: judge_window(windows.get(k)) for k in ("before_labels", "after_labels")}
        record["overall"] = judge_rows(after["rows"])
        record["exit_codes"] = summary["exit_codes"]
    except Exception as exc:  # recorded, never dropped: the table counts it as failed
        record["error"] = f"{type(exc).__name__}: {exc}"
    record["diagnosis"] = {}  # the stack's diagnoses are on drift-alerts, in the stream's report
    record["seconds"] = time.monotonic() - t0
    return record
