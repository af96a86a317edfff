"""Throughput phases: a backlog through the passthrough, one scorer, one scorer beside a
healer healing flat out, two scorers, the monitor; and a scorer under py-spy."""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from services.bench.harness import DECIDED, Harness
from services.bench.loads import PASSED
from services.bench.measure import metric, profile_summary, rate_after
from services.processes import Child, assigned
from shared.errors import SelfhealError
from shared.kafka import Topics, TrackedProducer


def throughput(h: Harness) -> None:
    """Rounds of: a backlog through the passthrough, through one scorer, and through the
    same scorer with the heal load running (it is SIGSTOPped in between). Interleaved, so
    that every ratio compares runs seconds apart (this machine's CPU steal varies by the
    minute); the figures are medians over the rounds."""
    cfg = h.cfg
    tp, ts = h.topics("passthrough"), h.topics("scorer1")
    passthrough = h.passthrough(tp, "passthrough")
    scorer = h.scorer(ts, "scorer1")
    loader = Child(
        "heal-load",
        ["-m", "services.bench", "heal-load", str(h.bundle_path), cfg.scenario],
        h.env(ts),
        h.logs,
    )
    rounds: list[dict[str, float]] = []
    try:
        passthrough.wait(assigned, "partitions")
        scorer.wait(assigned, "partitions")
        loader.wait(lambda health: health.get("cycles", 0) > 0, "heal cycles")
        loader.proc.send_signal(signal.SIGSTOP)
        for k in range(cfg.rounds):
            h.say(f"round {k + 1}/{cfg.rounds}: passthrough, scorer, scorer beside a healer")
            rounds.append(_round(h, k, tp.transactions, ts.transactions, passthrough, scorer, loader))
        healed = _healed(h, ts, scorer)
        h.note_rss("scorer", scorer)
    finally:
        loader.proc.send_signal(signal.SIGCONT)
        for c in (passthrough, scorer, loader):
            c.stop()
    out_s = h.stamps_by_prefix(ts.decisions)
    _rates(h, rounds, h.stamps_by_prefix(tp.decisions), out_s)
    h.results["scorer_tps_healed"] = round(rate_after(out_s["healed"], healed)[0])


def _healed(h: Harness, t: Topics, scorer: Child) -> float:
    """One more backlog with a healed adapter live (the rounds score with the bundle's own,
    so the live and the shadow scores are one computation there; here they are two)."""
    h.say("a healed adapter live: one more backlog through the scorer")
    data, headers = h.signed_adapter(2000)
    producer = TrackedProducer(h.settings)
    producer.produce(t.weights, data, key=h.bundle.id, headers=headers)
    producer.flush()
    scorer.wait(lambda health: health.get("adapter_version") == 2000, "the healed adapter")
    h.quiet()
    mark = backlog(h, [scorer], t.transactions, "healed")
    h.wait_count([scorer], DECIDED, (2 * h.cfg.rounds + 1) * h.cfg.rows)
    return mark


def _round(
    h: Harness, k: int, to_passthrough: str, to_scorer: str, passthrough: Child, scorer: Child, loader: Child
) -> dict[str, float]:
    """One round's backlogs; returns when each was complete (epoch ms), by key prefix."""
    rows, marks = h.cfg.rows, {}
    h.quiet()
    marks[f"pt{k}"] = backlog(h, [passthrough], to_passthrough, f"pt{k}")
    h.wait_count([passthrough], PASSED, (k + 1) * rows)
    h.quiet()
    marks[f"idle{k}"] = backlog(h, [scorer], to_scorer, f"idle{k}")
    h.wait_count([scorer], DECIDED, (2 * k + 1) * rows)
    h.quiet()
    loader.proc.send_signal(signal.SIGCONT)
    time.sleep(0.5)
    marks[f"heal{k}"] = backlog(h, [scorer], to_scorer, f"heal{k}")
    h.wait_count([scorer], DECIDED, (2 * k + 2) * rows)
    loader.proc.send_signal(signal.SIGSTOP)
    return marks


def backlog(h: Harness, consumers: list[Child], topic: str, prefix: str) -> float:
    """The whole backlog onto ``topic`` while its consumers are stopped (SIGSTOP), then
    let them go; returns when (epoch ms). Every message waits before the clock starts, so
    the rate is the consumers' own: a consumer that keeps up with the producer while the
    backlog is written would be timed on the last few messages only."""
    for c in consumers:
        c.proc.send_signal(signal.SIGSTOP)
    try:
        h.fill(topic, prefix)
    finally:
        start = time.time() * 1e3
        for c in consumers:
            c.proc.send_signal(signal.SIGCONT)
    return start


def _rates(
    h: Harness, rounds: list[dict[str, float]], out_p: dict[str, list[float]], out_s: dict[str, list[float]]
) -> None:
    per: dict[str, list[float]] = {"passthrough": [], "idle": [], "healing": []}
    for k, marks in enumerate(rounds):
        per["passthrough"].append(rate_after(out_p[f"pt{k}"], marks[f"pt{k}"])[0])
        per["idle"].append(rate_after(out_s[f"idle{k}"], marks[f"idle{k}"])[0])
        per["healing"].append(rate_after(out_s[f"heal{k}"], marks[f"heal{k}"])[0])
    r = h.results
    r["rounds"] = {name: [round(x) for x in xs] for name, xs in per.items()}
    r["passthrough_tps"] = round(statistics.median(per["passthrough"]))
    r["scorer_tps_1"] = round(statistics.median(per["idle"]))
    ratios = [s / p for s, p in zip(per["idle"], per["passthrough"], strict=True)]
    r["scorer_ratio"] = round(statistics.median(ratios), 3)
    r["scorer_tps_healing"] = round(statistics.median(per["healing"]))
    drops = [1 - x / i for x, i in zip(per["healing"], per["idle"], strict=True)]
    r["healing_throughput_drop"] = round(statistics.median(drops), 3)


def two_scorers(h: Harness) -> None:
    cfg = h.cfg
    t = h.topics("scorer2")
    children = [h.scorer(t, f"scorer2-{i}") for i in range(2)]
    marks = {}
    try:
        for c in children:
            c.wait(assigned, "partitions")
        for k in range(cfg.rounds):
            h.say(f"round {k + 1}/{cfg.rounds}: {cfg.rows:,} transactions through two scorers")
            h.quiet()
            marks[f"two{k}"] = backlog(h, children, t.transactions, f"two{k}")
            h.wait_count(children, DECIDED, (k + 1) * cfg.rows)
        split = [metric(c.metrics(), "selfheal_scorer_transactions_total") for c in children]
        h.results["scorer_split_2"] = [int(x) for x in split]
        for c in children:
            h.note_rss("scorer", c)
    finally:
        for c in children:
            c.stop()
    out = h.stamps_by_prefix(t.decisions)
    rates = [rate_after(out[k], since)[0] for k, since in marks.items()]
    h.results["rounds"]["two_scorers"] = [round(x) for x in rates]
    h.results["scorer_tps_2"] = round(statistics.median(rates))


def monitor(h: Harness) -> None:
    """A backlog through the monitor (FIDI on every row) and the healer (its buffer)."""
    t = h.topics("monitor")
    state = ["--state-dir", str(h.out / "healer-state")]  # not the working directory's .selfheal/
    mon, healer = h.service("monitor", t, "monitor"), h.service("healer", t, "healer", *state)
    try:
        mon.wait(assigned, "partitions")
        healer.wait(assigned, "partitions")
        h.say(f"monitor: {h.cfg.rows:,} transactions through FIDI")
        done = backlog(h, [mon, healer], t.transactions, "m")  # timed from their release
        polls: list[tuple[float, float]] = [(done, 0.0)]  # (epoch ms, transactions seen)
        deadline = time.monotonic() + 300
        while polls[-1][1] < h.cfg.rows and time.monotonic() < deadline:
            text = mon.metrics()
            if text:
                polls.append((time.time() * 1e3, metric(text, "selfheal_monitor_transactions_total")))
            time.sleep(0.05)
        if len(polls) == 1:
            raise SelfhealError(f"the monitor's /metrics never answered; see {mon.log}")
        at_done = next((n for ts, n in polls[1:] if ts >= done), polls[-1][1])
        end_ts = polls[-1][0]
        h.results["monitor_tps"] = round((h.cfg.rows - at_done) / max(1e-3, (end_ts - done) / 1e3))
        h.wait_count([healer], "selfheal_healer_transactions_total", h.cfg.rows)
        h.note_rss("monitor", mon)
        h.note_rss("healer", healer)
    finally:
        mon.stop()
        healer.stop()


def profile(h: Harness) -> None:
    """py-spy attached to a scorer while it works through one backlog: samples of the
    threads holding the GIL only (start-up and idle threads are not in it)."""
    h.say("profile: a scorer under py-spy")
    raw = h.out / "profile-scorer.txt"
    raw.unlink(missing_ok=True)
    t = h.topics("profile")
    scorer = h.scorer(t, "scorer-profiled")
    spy_bin = str(Path(sys.executable).with_name("py-spy"))
    try:
        scorer.wait(assigned, "partitions")
        spy_args = ["record", "--pid", str(scorer.pid), "--gil", "--nonblocking", "--format", "raw"]
        with (h.logs / "py-spy.log").open("ab") as log:
            cmd = [spy_bin, *spy_args, "--output", str(raw)]
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)  # noqa: S603
        time.sleep(1.0)  # attached
        since = h.fill(t.transactions, "prof")
        h.wait_count([scorer], DECIDED, h.cfg.rows)
        spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        spy.wait(60)
    finally:
        scorer.stop()
    tps = rate_after(h.stamps_by_prefix(t.decisions)["prof"], since)[0]
    h.results["profile"] = {
        "scorer_tps_sampled": round(tps),
        "raw": str(raw),
        **(profile_summary(raw.read_text()) if raw.is_file() else {}),
    }
