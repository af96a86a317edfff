"""Working with a running stack: ``produce`` a scenario, ``watch`` alerts or decisions,
``registry list|rollback``, the stream ``report``, and ``kcat`` pointed at the stack."""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shared.errors import SelfhealError
from shared.progress import Progress


def register(sub: Any) -> None:
    pr = sub.add_parser("produce", help="stream a scenario to the transactions topic, labels later")
    pr.add_argument("--scenario", default="covariate")
    pr.add_argument("--rate", type=float, default=1000.0, help="transactions per second (0: flat out)")
    pr.add_argument(
        "--label-delay",
        default="500",
        help="how late labels come: transactions (500) or event time (20s, 2h); 'none' sends none",
    )
    pr.add_argument(
        "--event-rate",
        type=float,
        default=None,
        help="stamp transactions as if this many a second happened (event time; default: the wall clock)",
    )
    pr.add_argument("--n-pre", type=int, default=2000)
    pr.add_argument("--n-post", type=int, default=8000)
    pr.add_argument("--seed", type=int, default=42)
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=cmd_produce)

    w = sub.add_parser("watch", help="a readable tail of alerts or decisions")
    w.add_argument("what", choices=("alerts", "decisions"))
    w.add_argument("--max", type=int, default=None, help="stop after this many")
    w.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    w.set_defaults(func=cmd_watch)

    r = sub.add_parser("registry", help="list adapter snapshots, or roll back to one")
    r.add_argument("action", choices=("list", "rollback"))
    r.add_argument("snapshot", nargs="?")
    r.add_argument("--bundle", required=True)
    r.set_defaults(func=cmd_registry)

    rep = sub.add_parser("report", help="read decisions and labels from the topics; write a report")
    rep.add_argument("--out", default="runs/report")
    rep.set_defaults(func=cmd_report)

    kc = sub.add_parser(
        "kcat",
        help="run kcat against the stack: its broker and security settings, confluent-kafka's librdkafka",
        prefix_chars="+",  # no options of its own: every -flag after `kcat` is kcat's
    )
    kc.add_argument("kcat_args", nargs=argparse.REMAINDER, help="kcat's own arguments (-P/-C/-G/-L ...)")
    kc.set_defaults(func=cmd_kcat)


def cmd_produce(args: argparse.Namespace) -> int:
    from services.stack import resolve_settings
    from shared.data import build
    from shared.kafka import Topics, create_topics
    from shared.loadgen import produce_stream
    from shared.units import Delay

    settings = resolve_settings()
    topics = Topics.from_env()
    create_topics(settings, settings.specs(topics))
    sc = build(args.scenario, seed=args.seed, n_pre=args.n_pre, n_post=args.n_post)
    say = Progress(args.quiet)
    delay = None if args.label_delay in ("none", "-1") else Delay.parse(args.label_delay)
    clock = f", event time at {args.event_rate:g}/s" if args.event_rate else ""
    what = f"{len(sc.stream):,} transactions of {sc.name!r}"
    say(f"producing {what} at {args.rate:g}/s{clock}, labels {delay or 'never'} late")
    last = [0.0]

    def progress(n: int) -> None:
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            say(f"{n:,} / {len(sc.stream):,} produced")

    n = produce_stream(
        settings, topics, sc.stream, list(sc.features), args.rate, delay, progress, event_rate=args.event_rate
    )
    print(
        f"produced {n:,} transactions to {topics.transactions!r}"
        + ("" if delay is None else f" and their labels to {topics.labels!r}")
    )
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from confluent_kafka import Message

    from services.stack import resolve_settings
    from shared.kafka import Topics
    from shared.kafka.runtime import StopFlag
    from shared.kafka.tail import TopicTail

    topics = Topics.from_env()
    topic = topics.alerts if args.what == "alerts" else topics.decisions
    line = alert_line if args.what == "alerts" else decision_line
    shown = [0]

    def show(msgs: list[Message], _received_ms: float) -> None:
        for m in msgs:
            text = line(m.value())
            if text is not None and (args.max is None or shown[0] < args.max):
                print(text, flush=True)
                shown[0] += 1

    stop = StopFlag()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    with TopicTail(resolve_settings(), [topic], show):
        while not stop.is_set() and (args.max is None or shown[0] < args.max):
            if deadline is not None and time.monotonic() > deadline:
                break
            stop.wait(0.1)
    return 0


def alert_line(raw: bytes | None) -> str | None:
    from shared.messages import Reject, decode_alert

    a = decode_alert(raw)
    if isinstance(a, Reject):
        return None
    where = f"{a.state:<9} {a.detector:<9} {a.feature:<10}"
    return f"{where} statistic {a.statistic:.3f} (threshold {a.threshold:g})"


def decision_line(raw: bytes | None) -> str | None:
    from shared.messages import Reject, decode_decision

    d = decode_decision(raw)
    if isinstance(d, Reject):
        return None
    flag = "FRAUD" if d.fraud else "ok   "
    rules = ",".join(d.rules) + (" CONFLICT" if d.conflict else "")
    return f"{flag} {d.id:<24} score {d.score:.4f} shadow {d.shadow_score:.4f} v{d.adapter_version} {rules}"


def cmd_registry(args: argparse.Namespace) -> int:
    from services.stack import resolve_settings, resolve_signer
    from shared.bundle import Bundle
    from shared.kafka import Topics, TrackedProducer
    from shared.kafka.registry_store import KafkaSnapshotStore, publish_adapter
    from shared.registry import Registry

    settings = resolve_settings()
    signer = resolve_signer()
    topics = Topics.from_env()
    bundle = Bundle.load(args.bundle)
    producer = TrackedProducer(settings)
    store = KafkaSnapshotStore(settings, topics.registry, bundle.config, producer, signer)
    registry = Registry(store, bundle.id)
    if store.rejected:
        print(
            f"warning: {len(store.rejected)} registry records refused (bad signature or payload)",
            file=sys.stderr,
        )
    if args.action == "list":
        print(f"{'snapshot':<34} {'kind':<9} {'ver':>4} {'parent':>6} {'accepted':>8} {'F1':>6}  note")
        for snap in registry.snapshots():
            f1 = snap.metrics.get("f1")
            parent = "-" if snap.parent is None else str(snap.parent)
            f1_text = "-" if f1 is None else f"{f1:.3f}"
            accepted = ("yes" if snap.accepted else "no") if snap.kind == "post" else "-"
            print(
                f"{snap.id:<34} {snap.kind:<9} {snap.version:>4} {parent:>6} {accepted:>8} {f1_text:>6}  "
                f"{snap.note[:60]}"
            )
        best = registry.best_post_heal()
        print(f"{len(registry)} snapshots; best post-heal: {best.id if best else 'none'}")
        return 0
    if not args.snapshot:
        raise SelfhealError("usage: selfheal registry rollback SNAPSHOT --bundle BUNDLE")
    try:
        target = registry.get(args.snapshot)
    except KeyError as exc:
        raise SelfhealError(str(exc)) from exc
    snap = registry.record("manual", target.adapter, target.version, note=f"operator rollback to {target.id}")
    publish_adapter(producer, topics.weights, snap, signer)
    print(f"adapter v{snap.version} from {target.id} published; recorded as {snap.id}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from services.report import write_stream_report
    from services.stack import resolve_settings
    from shared.kafka import Topics

    summary = write_stream_report(resolve_settings(), Topics.from_env(), Path(args.out), produced=None)
    print(summary["table"])
    print(f"wrote summary.json, metrics.csv, metrics.png to {args.out}/")
    return 0


def cmd_kcat(args: argparse.Namespace) -> int:
    """kcat with the stack's connection (``-F``, a private file: secrets stay off the command
    line) and, where confluent-kafka's wheel carries one, its newer librdkafka: Debian's kcat
    links librdkafka 2.0.2, which cannot parse the embedded broker's ApiVersion v3 answer."""
    from services.stack import resolve_settings

    kcat = shutil.which("kcat")
    if kcat is None:
        raise SelfhealError("kcat is not installed (Debian: apt-get install kcat)")
    settings = resolve_settings()
    with tempfile.TemporaryDirectory(prefix="selfheal-kcat-") as tmp:
        config = Path(tmp, "kcat.conf")
        config.touch(mode=0o600)
        config.write_text("".join(f"{k}={v}\n" for k, v in settings.connection().items()))
        env = dict(os.environ)
        library = wheel_librdkafka()
        if library is not None:
            os.symlink(library, Path(tmp, "librdkafka.so.1"))
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, (tmp, env.get("LD_LIBRARY_PATH"))))
        return subprocess.call([kcat, "-F", str(config), *args.kcat_args], env=env)  # noqa: S603 (the user's own kcat arguments)


def wheel_librdkafka() -> str | None:
    """The librdkafka shipped inside the confluent-kafka wheel, if this install has one."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(glob.glob(str(libs / "librdkafka-*.so.1")))
    return found[0] if found else None
