"""Latency phases: produce -> output received at fixed offered rates, through the
passthrough and through a scorer; then adapters hot-swapped while the scorer works."""

from __future__ import annotations

import gc
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Message

from services.bench.harness import Harness
from services.bench.measure import batch_times, median_rounds, percentiles, swap_gaps
from services.processes import Child, assigned
from shared.errors import SelfhealError
from shared.kafka import Topics, TrackedProducer
from shared.kafka.tail import TopicTail
from shared.kafka.timeline import FIELDS, summarise
from shared.messages import Decision, decode_decision

Received = dict[str, tuple[float, int, float]]  # id -> (received epoch ms, adapter version, latency_ms)


class Outputs:
    """What comes out on a decisions topic, by id. The passthrough's outputs are the
    transactions themselves: no version or latency (-1)."""

    def __init__(self) -> None:
        self.got: Received = {}

    def __call__(self, msgs: list[Message], received_ms: float) -> None:
        for m in msgs:
            d = decode_decision(m.value())
            tx_id = (m.key() or b"").decode()
            self.got[tx_id] = (
                (received_ms, d.adapter_version, d.latency_ms)
                if isinstance(d, Decision)
                else (received_ms, -1, -1.0)
            )

    def wait_for(self, ids: dict[str, float], timeout: float) -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(i in self.got for i in ids):
            time.sleep(0.05)
        return dict(self.got)


def latency(h: Harness) -> None:
    """Produce -> output received, through the passthrough and through a scorer, at each
    offered rate, in interleaved rounds; then the hot swap. A percentile is the median of
    the rounds' (one broker stall in one round must not decide a ratio). Every round runs
    on fresh topics with fresh children: the embedded broker's fetch costs grow with the
    record batches a partition holds (60,000 messages in small batches double its CPU),
    so a topic reused from round to round would make every round slower than the last.
    The children keep loop timelines: the gaps between batches and what filled them."""
    cfg = h.cfg
    lat: dict[str, Any] = {}
    base: dict[str, Any] = {}
    pids: list[tuple[str, int]] = []
    for rate in cfg.rates:
        n = cfg.latency_rounds
        h.say(f"latency at {rate:,} tx/s: {n} rounds of {cfg.latency_seconds:.0f} s through each")
        runs: dict[str, list[dict[str, float]]] = {"passthrough": [], "scorer": []}
        with h.steal(f"latency_{rate}"):
            for k in range(n):
                with _pair(h, f"latency{rate}r{k}", pids) as (topics, outputs, children, done):
                    for role in ("passthrough", "scorer"):
                        runs[role].append(
                            _run(h, topics[role], outputs[role], f"{role[0]}{rate}r{k}", rate, children)
                        )
                        done(role)
        base[str(rate)], lat[str(rate)] = median_rounds(runs["passthrough"]), median_rounds(runs["scorer"])
    h.results["latency_ms"] = lat
    h.results["passthrough_latency_ms"] = base
    with h.steal("swap"), _pair(h, "swap", pids) as (topics, outputs, children, done):
        _passthrough_at_swap_rate(h, topics["passthrough"], outputs["passthrough"])
        done("passthrough")
        swap(h, topics["scorer_topics"], outputs["scorer"])
        h.note_rss("scorer", children["scorer"])
    h.results["timeline"] = timelines(h, pids)


Pair = tuple[dict[str, Any], dict[str, Outputs], dict[str, Child], Callable[[str], None]]


@contextmanager
def _pair(h: Harness, tag: str, pids: list[tuple[str, int]], passthrough: bool = True) -> Iterator[Pair]:
    """A scorer (and the passthrough) on fresh topics, each output read by a tail; yields
    ({role: input topic, "scorer_topics": Topics}, {role: Outputs}, {role: Child}, done).

    ``done(role)`` stops that role's tail and pauses its child (SIGSTOP) once its run is
    over: an idle consumer at the end of a grown topic still costs the embedded broker a
    search through the partition's batches every 5 ms (measured: the run after another
    had a p99 twice as long while the first one's consumers idled)."""
    t = {"scorer": h.topics(tag)} | ({"passthrough": h.topics(f"{tag}-p")} if passthrough else {})
    children = {"scorer": h.scorer(t["scorer"], f"scorer-{tag}", timeline=True)}
    if passthrough:
        children["passthrough"] = h.passthrough(t["passthrough"], f"passthrough-{tag}", timeline=True)
    outputs = {role: Outputs() for role in t}
    fast = 5  # ms: the instrument reads like the scorer (a fetch answered within 5 ms)
    tails = {r: TopicTail(h.settings, [t[r].decisions], outputs[r], fetch_wait_ms=fast) for r in t}
    paused: set[str] = set()

    def done(role: str) -> None:
        tails.pop(role).stop()
        children[role].proc.send_signal(signal.SIGSTOP)
        paused.add(role)

    try:
        for c in children.values():
            c.wait(assigned, "partitions")
        for tail in tails.values():
            tail.start()
        yield {r: t[r].transactions for r in t} | {"scorer_topics": t["scorer"]}, outputs, children, done
    finally:
        for tail in tails.values():
            tail.stop()
        for role, c in children.items():
            if role in paused:
                c.proc.send_signal(signal.SIGCONT)
            c.stop()
            pids.append((role, c.pid))


def timelines(h: Harness, pids: list[tuple[str, int]]) -> dict[str, dict[str, Any]]:
    """Per phase and role, the gaps between batches and their causes
    (:func:`shared.kafka.timeline.summarise`) from the children's loop timelines."""
    runs: dict[tuple[str, str], list[np.ndarray]] = {}
    pauses: dict[tuple[str, str], list[Any]] = {}
    for role, pid in pids:
        found = list(h.timelines.glob(f"*-{pid}.json"))
        if not found:
            continue
        doc = orjson.loads(found[0].read_bytes())
        passes = np.asarray(doc["passes"], dtype=np.float64).reshape(-1, len(FIELDS))
        for key, spans in h.windows.items():
            r, phase = key.split(":", 1)
            if r != role:
                continue
            for lo, hi in spans:
                inside = passes[(passes[:, 0] >= lo) & (passes[:, 0] <= hi)]
                if len(inside):
                    runs.setdefault((phase, role), []).append(inside)
                    pauses.setdefault((phase, role), []).extend(
                        p for p in doc["gc_pauses"] if lo <= p[0] <= hi
                    )
    out: dict[str, dict[str, Any]] = {}
    for (phase, role), found_runs in runs.items():
        out.setdefault(phase, {})[role] = summarise(found_runs, pauses[(phase, role)], top=5)
    return out


def _run(
    h: Harness, topic: str, outputs: Outputs, prefix: str, rate: int, children: dict[str, Child]
) -> dict[str, float]:
    h.quiet()
    role = "passthrough" if prefix.startswith("p") else "scorer"
    phase = f"latency_{rate}"
    with h.cpu_of(f"{role}:{phase}", {name: c.pid for name, c in children.items()}) as cores, no_gc():
        t0 = time.monotonic()
        load = offered(h, topic, prefix, rate, h.cfg.latency_seconds)
        cores["generator"] = load.cores
        sent = load.sent
        got = outputs.wait_for(sent, timeout=30)
        h.windows.setdefault(f"{role}:{phase}", []).append((t0, time.monotonic()))
    warm = min(sent.values()) + h.cfg.warmup_seconds * 1e3
    kept = [i for i, t in sent.items() if t >= warm and i in got]
    out = {**percentiles([got[i][0] - sent[i] for i in kept]), "lost": sum(1 for i in sent if i not in got)}
    made = [got[i][2] for i in kept if got[i][2] >= 0]
    if made:  # sent -> decision made, on the scorer's clock: the rest is the way back
        made_p = percentiles(made)
        out["to_scorer_p50"], out["to_scorer_p99"] = made_p["p50"], made_p["p99"]
    acked = percentiles(load.acked_ms)  # sent -> the broker acknowledged it: the first leg's write
    out["acked_p50"], out["acked_p99"] = acked["p50"], acked["p99"]
    return out


@dataclass(frozen=True)
class Offered:
    """What the load generator did: when it sent each transaction (epoch ms), how long the
    broker took to acknowledge each, and the cores' worth of CPU it used while sending."""

    sent: dict[str, float]
    acked_ms: list[float]
    cores: float


def offered(
    h: Harness,
    topic: str,
    prefix: str,
    rate: int,
    seconds: float,
    during: Callable[[float], None] | None = None,
) -> Offered:
    """Send at ``rate``/s for ``seconds`` from a child process (the load must not take the
    GIL from the readers timing the outputs), each transaction stamped as it is sent;
    ``during`` gets the elapsed seconds every 2 ms meanwhile."""
    out = h.logs / f"offered-{prefix}.json"
    started = Path(f"{out}.started")
    for f in (out, started):
        f.unlink(missing_ok=True)
    args = [str(h.bundle_path), h.cfg.scenario, topic, prefix, str(rate), str(seconds), str(out)]
    child = Child(f"offer-{prefix}", ["-m", "services.bench", "offer", *args], h.env(), h.logs)
    while not started.exists():
        if not child.alive:
            raise SelfhealError(f"the load generator exited early; see {child.log}")
        time.sleep(0.005)
    start = time.monotonic()
    while child.alive:
        if during is not None:
            during(time.monotonic() - start)
        time.sleep(0.002)
    if child.join(10) != 0 or not out.is_file():
        raise SelfhealError(f"the load generator failed; see {child.log}")
    doc = orjson.loads(out.read_bytes())
    return Offered(doc["sent"], doc["acked_ms"], doc["cpu_s"] / max(1e-3, doc["seconds"]))


@contextmanager
def no_gc() -> Iterator[None]:
    """The instruments (the tails stamping arrivals) must not stop for a collection of this
    process's heap (the backlog, the outputs of earlier runs) in the middle of a run."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _signed_adapters(h: Harness) -> dict[int, tuple[bytes, list[tuple[str, bytes]]]]:
    """Versions 1000, 1001, ...: payloads and signatures built before the clock runs (the
    sender must not pause at a swap)."""
    return {1000 + k: h.signed_adapter(1000 + k, seed=k) for k in range(h.cfg.swaps)}


def _passthrough_at_swap_rate(h: Harness, topic: str, outputs: Outputs) -> None:
    """The passthrough at the swap phase's rate for as long (no adapters): the loop gaps
    the scorer's in that phase are compared with."""
    cfg = h.cfg
    h.quiet()
    t0 = time.monotonic()
    with no_gc():
        sent = offered(h, topic, "pswap", cfg.swap_rate, (cfg.swaps + 1) * cfg.swap_every).sent
    outputs.wait_for(sent, timeout=30)
    h.windows["passthrough:swap"] = [(t0, time.monotonic())]


def swap(h: Harness, t: Topics, outputs: Outputs) -> None:
    cfg = h.cfg
    h.say(f"hot swap: {cfg.swaps} adapters at {cfg.swap_rate:,} tx/s")
    producer = TrackedProducer(h.settings)
    adapters = _signed_adapters(h)
    published: dict[int, float] = {}

    def publish(elapsed: float) -> None:
        k = len(published)
        if k < cfg.swaps and elapsed >= (k + 1) * cfg.swap_every:
            published[1000 + k] = time.time() * 1e3
            data, headers = adapters[1000 + k]
            producer.produce(t.weights, data, key=h.bundle.id, headers=headers)
            producer.poll(0)

    h.quiet()
    t0 = time.monotonic()
    seconds = (cfg.swaps + 1) * cfg.swap_every
    with no_gc():
        sent = offered(h, t.transactions, "swap", cfg.swap_rate, seconds, during=publish).sent
    producer.flush()
    h.windows["scorer:swap"] = [(t0, time.monotonic())]
    got = outputs.wait_for(sent, timeout=30)
    scored = {i: sent[i] + got[i][2] for i in sent if i in got}  # scorer clock: ts + latency_ms
    _swap_figures(h, published, scored, {i: got[i][1] for i in scored})


def _swap_figures(
    h: Harness, published: dict[int, float], scored: dict[str, float], version_of: dict[str, int]
) -> None:
    batches = batch_times(list(scored.values()))
    gaps = [b - a for a, b in pairwise(batches)]
    to_use, worst, during = [], 0.0, set()
    for version, at in published.items():
        first = min((s for i, s in scored.items() if version_of[i] == version), default=None)
        if first is None:
            continue  # a newer adapter overtook it
        to_use.append(first - at)
        worst = max([worst, *swap_gaps(batches, at, first)])
        during |= {a for a, b in pairwise(batches) if b >= at and a <= first}
    outside = [b - a for a, b in pairwise(batches) if a not in during]
    r = h.results
    r["batch_max_gap_ms_outside_swaps"] = round(max(outside), 2) if outside else None
    r["swap_publish_to_use_ms"] = round(max(to_use), 1) if to_use else None
    r["swap_publish_to_use_ms_all"] = [round(x, 1) for x in to_use]
    r["swap_max_gap_ms"] = round(worst, 2)
    r["batch_median_gap_ms"] = round(statistics.median(gaps), 2) if gaps else None
    r["swaps_used"] = len(to_use)
