"""Latency phases: produce -> output received at fixed offered rates, through the
passthrough and through a scorer; then adapters hot-swapped while the scorer works."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import torch
from confluent_kafka import Message

from services.bench.harness import Harness
from services.bench.measure import batch_times, percentiles, swap_gaps
from services.processes import assigned
from shared.kafka import Topics, TrackedProducer
from shared.kafka.tail import TopicTail
from shared.messages import Decision, Transaction, decode_decision, encode_transaction
from shared.messages.adapters import encode_adapter
from shared.signing import ADAPTER

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
    offered rate (interleaved); then the hot swap on the same scorer."""
    cfg = h.cfg
    tp, ts = h.topics("latency-passthrough"), h.topics("latency")
    passthrough, scorer = h.passthrough(tp, "passthrough-latency"), h.scorer(ts, "scorer-latency")
    out_p, out_s = Outputs(), Outputs()
    try:
        passthrough.wait(assigned, "partitions")
        scorer.wait(assigned, "partitions")
        fast = 5  # ms: the instrument reads like the scorer (a fetch answered within 5 ms)
        with (
            TopicTail(h.settings, [tp.decisions], out_p, fetch_wait_ms=fast),
            TopicTail(h.settings, [ts.decisions], out_s, fetch_wait_ms=fast),
        ):
            lat: dict[str, Any] = {}
            base: dict[str, Any] = {}
            for rate in cfg.rates:
                h.say(f"latency at {rate:,} tx/s: {cfg.latency_seconds:.0f} s through each")
                with h.steal(f"latency_{rate}"):
                    base[str(rate)] = _run(h, tp.transactions, out_p, f"p{rate}", rate)
                    lat[str(rate)] = _run(h, ts.transactions, out_s, f"l{rate}", rate)
            h.results["latency_ms"] = lat
            h.results["passthrough_latency_ms"] = base
            with h.steal("swap"):
                swap(h, ts, out_s)
        h.note_rss("scorer", scorer)
    finally:
        passthrough.stop()
        scorer.stop()


def _run(h: Harness, topic: str, outputs: Outputs, prefix: str, rate: int) -> dict[str, float]:
    h.quiet()
    sent = offered(h, topic, prefix, rate, h.cfg.latency_seconds)
    got = outputs.wait_for(sent, timeout=30)
    warm = min(sent.values()) + h.cfg.warmup_seconds * 1e3
    kept = [i for i, t in sent.items() if t >= warm and i in got]
    out = {**percentiles([got[i][0] - sent[i] for i in kept]), "lost": sum(1 for i in sent if i not in got)}
    made = [got[i][2] for i in kept if got[i][2] >= 0]
    if made:  # sent -> decision made, on the scorer's clock: the rest is the way back
        made_p = percentiles(made)
        out["to_scorer_p50"], out["to_scorer_p99"] = made_p["p50"], made_p["p99"]
    return out


def offered(
    h: Harness,
    topic: str,
    prefix: str,
    rate: int,
    seconds: float,
    during: Callable[[float], None] | None = None,
) -> dict[str, float]:
    """Send at ``rate``/s for ``seconds``, each transaction stamped as it is sent; ``during``
    gets the elapsed seconds after every tick. Returns {id: sent epoch ms}."""
    producer = TrackedProducer(h.settings)  # a client as librdkafka configures it (linger 5 ms)
    features = list(h.bundle.features)
    sent: dict[str, float] = {}
    start, i, tick = time.monotonic(), 0, 0.002
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while i < due:
            tx_id = f"{prefix}-{i}"
            now = time.time() * 1e3
            tx = Transaction.from_row(tx_id, features, h.rows[i % len(h.rows)], now)
            producer.produce(topic, encode_transaction(tx), key=tx_id)
            sent[tx_id] = now
            i += 1
        producer.poll(0)
        if during is not None:
            during(elapsed)
        time.sleep(tick)
    producer.flush()
    return sent


def _signed_adapters(h: Harness) -> dict[int, tuple[bytes, list[tuple[str, bytes]]]]:
    """Versions 1000, 1001, ...: payloads and signatures built before the clock runs (the
    sender must not pause at a swap)."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for k in range(h.cfg.swaps):
        state = {n: w + 0.01 * torch.randn(w.shape, generator=gen) for n, w in h.bundle.adapter_state.items()}
        data = encode_adapter(state, h.bundle.id, 1000 + k, parent=999 + k)
        out[1000 + k] = (data, h.signer.headers(ADAPTER, h.bundle.id, data))
    return out


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
    sent = offered(h, t.transactions, "swap", cfg.swap_rate, (cfg.swaps + 1) * cfg.swap_every, during=publish)
    producer.flush()
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
