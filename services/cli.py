"""The ``selfheal`` command: a thin layer over shared/ (and, later, the services).

selfheal train --data FILE --label COLUMN [--features ...] [--rules rules.toml] --out BUNDLE
selfheal experiment [SCENARIO|all] [--protocol seed|delayed] [--label-delay N] [--label-free] --out DIR
selfheal detectors [--control-rows N] --out DIR   (FIDI vs River; needs the dev extra)
selfheal scenario list | export NAME --out DIR
selfheal bundle info BUNDLE
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.errors import SelfhealError


def _progress(quiet: bool) -> Any:
    start = time.perf_counter()

    def say(msg: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    return say


# --------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from shared.data.tables import load_table
    from shared.evaluation import CostMatrix
    from shared.rules import RuleSet
    from shared.training import TrainConfig, build_bundle

    say = _progress(args.quiet)
    features = _split_features(args.features)
    table = load_table(args.data, args.label, features)
    rules_text = ""
    if args.rules:
        RuleSet.from_file(args.rules, table.features)  # names the bad rule, if any
        rules_text = Path(args.rules).read_text()
    n_pos = int(table.y.sum())
    share = n_pos / len(table.y)
    say(f"{args.data}: {len(table.y):,} rows, {len(table.features)} features, {n_pos:,} fraud ({share:.1%})")
    say(f"training {args.epochs} epochs on {1 - args.val_fraction:.0%} of the rows")
    bundle = build_bundle(
        table.X,
        table.y,
        table.features,
        rules_text,
        CostMatrix(fp=args.fp_cost, fn=args.fn_cost),
        label=args.label,
        val_fraction=args.val_fraction,
        train_config=TrainConfig(epochs=args.epochs, seed=args.seed),
        source=str(args.data),
    )
    bundle.save(args.out)
    v = bundle.info.get("validation", {})
    print(f"bundle {bundle.id} written to {args.out}")
    print(f"features ({len(bundle.features)}): {', '.join(bundle.features)}")
    print(f"rules: {', '.join(bundle.rules.names) or 'none'}")
    print(
        f"threshold {bundle.threshold:.4f} minimises expected cost "
        f"(FP {args.fp_cost:g}, FN {args.fn_cost:g}) "
        f"on {bundle.info['rows']['validation']:,} validation rows:"
    )
    if v:
        print(
            f"  accuracy {v['accuracy']:.3f}  precision {v['precision']:.3f}  recall {v['recall']:.3f}  "
            f"F1 {v['f1']:.3f}  PR-AUC {v['pr_auc']:.3f}  cost {v['cost']:.4f}  "
            f"(TP {v['tp']} FP {v['fp']} FN {v['fn']} TN {v['tn']})"
        )
        print(f"  flagging nothing would cost {args.fn_cost * n_pos / len(table.y):.4f} per transaction")
    return 0


def _split_features(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [f.strip() for v in values for f in v.split(",") if f.strip()]
    return out or None


# --------------------------------------------------------------------------- experiment
def cmd_experiment(args: argparse.Namespace) -> int:
    from shared.data import names
    from shared.experiment import ExperimentConfig, run
    from shared.experiment.report import format_library_table, format_table, write_json, write_outputs
    from shared.healing.healer import HealerConfig

    healer = HealerConfig(label_free=True) if args.label_free else None
    scenario = args.scenario_opt or args.scenario or "seed"
    say = _progress(args.quiet)
    out = Path(args.out)
    if scenario == "all":
        if args.protocol == "seed":
            raise SelfhealError("the seed protocol runs on the seed scenario only")
        summaries: dict[str, dict[str, Any]] = {}
        for name in names():
            say(f"== {name}")
            cfg = ExperimentConfig(
                scenario=name,
                protocol="delayed",
                label_delay=args.label_delay,
                healer=healer,
                seed=args.seed,
                poison=args.poison,
            )
            result = run(cfg, say)
            write_outputs(result, out / name, plots=not args.no_plots)
            summaries[name] = result.summary
        write_json(out / "summary.json", {"scenarios": summaries})
        print(format_library_table(summaries))
        print(f"\noutputs in {out}/ (one folder per scenario)")
        return 0
    cfg = ExperimentConfig(
        scenario=scenario,
        protocol=args.protocol,
        label_delay=args.label_delay,
        healer=healer,
        seed=args.seed,
        poison=args.poison,
    )
    result = run(cfg, say)
    written = write_outputs(result, out, plots=not args.no_plots)
    s = result.summary
    mode = (
        "labels: own batch"
        if s["protocol"] == "seed"
        else ("label-free" if s["label_free"] else f"labels {s['label_delay']} transactions late")
    )
    print(f"\nscenario {s['scenario']} · protocol {s['protocol']} · {mode} · bundle {s['bundle']}")
    print(format_table(s))
    print(
        f"heals {s['heals_accepted']} accepted of {s['heals']} · rollbacks {s['rollbacks']} · "
        f"snapshots {s['snapshots']} · backbone and head unchanged: {s['base_unchanged']}"
    )
    t = s["timing"]
    if t["score_ms_per_100_rows"] is not None:
        heal = f"{t['heal_ms_mean']:.1f} ms per heal" if t["heal_ms_mean"] is not None else "no heal"
        print(f"scoring {t['score_ms_per_100_rows']:.2f} ms per 100 rows (live + shadow) · {heal}")
    print(f"wrote {', '.join(p.name for p in written)} to {out}/")
    return 0


def cmd_detectors(args: argparse.Namespace) -> int:
    from shared.experiment.detectors import DRIFT_SCENARIOS, compare, format_table
    from shared.experiment.report import write_json

    say = _progress(args.quiet)
    say("FIDI and River's ADWIN, PageHinkley, KSWIN (per feature) on the same streams")
    result = compare(
        args.scenarios or DRIFT_SCENARIOS,
        control_rows=args.control_rows,
        slow_control_rows=args.kswin_rows,
        seed=args.seed,
        say=say,
    )
    out = Path(args.out)
    write_json(out / "detectors.json", result)
    table = format_table(result)
    (out / "detectors.md").write_text(table + "\n")
    print("detection delay in transactions after the drift point (alarm episodes before it in brackets)")
    print(table)
    print(f"wrote detectors.json and detectors.md to {out}/ ({result['seconds']:.0f} s)")
    return 0


# --------------------------------------------------------------------------- scenario, bundle
def cmd_scenario(args: argparse.Namespace) -> int:
    from shared.data import build
    from shared.data.scenarios import SCENARIOS

    if args.action == "list":
        for name, (summary, _) in SCENARIOS.items():
            print(f"{name:<12} {summary}")
        return 0
    if not args.name or not args.out:
        raise SelfhealError("usage: selfheal scenario export NAME --out DIR")
    sc = build(args.name, seed=args.seed)
    out = sc.write_csv(args.out)
    print(f"wrote train.csv, test.csv, stream.csv, rules.toml and scenario.json to {out}/")
    print(f"train with: selfheal train --data {out}/train.csv --label Class --rules {out}/rules.toml \\")
    print("           --out BUNDLE")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from shared.bundle import Bundle

    b = Bundle.load(args.path)
    print(f"bundle {b.id}  ({args.path})")
    print(f"features ({len(b.features)}): {', '.join(b.features)}")
    print(
        f"label column: {b.label} · threshold {b.threshold:.4f} · costs FP {b.costs.fp:g} FN {b.costs.fn:g}"
    )
    print(f"rules: {', '.join(f'{r.name} ({r.when} -> {r.label})' for r in b.rules.rules) or 'none'}")
    print(f"model: {b.config.to_dict()}")
    for k in ("source", "created", "rows", "validation"):
        if k in b.info:
            print(f"{k}: {b.info[k]}")
    return 0


# --------------------------------------------------------------------------- the stack
def cmd_topics(args: argparse.Namespace) -> int:
    from shared.kafka import KafkaSettings, Topics, create_topics

    settings = KafkaSettings.from_env()
    if not settings.bootstrap_servers:
        raise SelfhealError("set KAFKA_BOOTSTRAP_SERVERS (the embedded broker creates its topics itself)")
    topics = Topics.from_env()
    created = create_topics(settings, topics.specs(settings.replication))
    for spec in topics.specs(settings.replication):
        state = "created" if spec.name in created else "exists"
        config = ", ".join(f"{k}={v}" for k, v in spec.config.items())
        print(f"{spec.name:<22} {spec.partitions} partitions  {state}  {config}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from shared.signing import new_key

    print(new_key())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from services.bench import BenchConfig, format_bench, run_bench

    cfg = BenchConfig()
    if args.quick:  # a smoke run: every phase, small numbers (not for the README)
        cfg = BenchConfig(
            rows=20_000,
            rounds=1,
            latency_seconds=3.0,
            swaps=2,
            swap_every=1.0,
            heal_cycles=3,
            quiet_patience=0,
        )
    if args.rows:
        cfg = replace(cfg, rows=args.rows)
    if args.profile:
        cfg = replace(cfg, profile=True)
    result = run_bench(args.out, cfg, quiet=args.quiet)
    print(format_bench(result))
    print(f"wrote {args.out}/bench.json ({result['seconds']:.0f} s)")
    return 0 if all(ok is not False for ok in result["targets"].values()) or not args.strict else 1


def cmd_service(args: argparse.Namespace) -> int:
    from services.stack import run_service

    options: dict[str, Any] = {}
    if args.command == "scorer":
        options = {"batch_size": args.batch_size}
    elif args.command == "healer":
        options = {"label_free": args.label_free}
    return run_service(args.command, args.bundle, args.metrics_port, args.group, **options)


def cmd_up(args: argparse.Namespace) -> int:
    from services.stack import Stack
    from shared.kafka.runtime import StopFlag

    stop = StopFlag()
    stack = Stack(args.bundle, scorers=args.scorers, log_dir=args.logs).start()
    try:
        stack.wait_healthy()
        bootstrap = stack.settings.bootstrap_servers
        print(f"broker: {bootstrap}  (export KAFKA_BOOTSTRAP_SERVERS={bootstrap} to use it elsewhere)")
        for name, port in stack.ports.items():
            print(f"{name:<10} pid {stack.procs[name].pid:<7} http://127.0.0.1:{port}/metrics  /health")
        print(f"logs in {args.logs}/ · Ctrl-C stops everything")
        while not stop.is_set():
            if dead := stack.dead():
                print(f"selfheal: {', '.join(dead)} exited; stopping the stack", file=sys.stderr)
                break
            stop.wait(0.5)
    finally:
        codes = stack.stop()
        print("stopped: " + ", ".join(f"{n} (exit {c})" for n, c in codes.items()))
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from services.stack import resolve_settings
    from shared.data import build
    from shared.kafka import Topics, create_topics
    from shared.loadgen import produce_stream

    settings = resolve_settings()
    topics = Topics.from_env()
    create_topics(settings, topics.specs(settings.replication))
    sc = build(args.scenario, seed=args.seed, n_pre=args.n_pre, n_post=args.n_post)
    say = _progress(args.quiet)
    delay = None if args.label_delay < 0 else args.label_delay
    say(f"producing {len(sc.stream):,} transactions of {sc.name!r} at {args.rate:g}/s, labels {delay} late")
    last = [0.0]

    def progress(n: int) -> None:
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            say(f"{n:,} / {len(sc.stream):,} produced")

    n = produce_stream(settings, topics, sc.stream, list(sc.features), args.rate, delay, progress)
    print(
        f"produced {n:,} transactions to {topics.transactions!r}"
        + ("" if delay is None else f" and their labels to {topics.labels!r}")
    )
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    import orjson
    from confluent_kafka import Consumer

    from services.stack import resolve_settings
    from shared.kafka import Topics, check
    from shared.kafka.config import consumer_config
    from shared.kafka.runtime import StopFlag

    settings = resolve_settings()
    topics = Topics.from_env()
    topic = topics.alerts if args.what == "alerts" else topics.decisions
    consumer = Consumer(consumer_config(settings, f"selfheal-watch-{os.getpid()}"))
    consumer.subscribe([topic])
    stop = StopFlag()
    shown = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while not stop.is_set() and (args.max is None or shown < args.max):
            if deadline is not None and time.monotonic() > deadline:
                break
            for m in consumer.consume(100, 0.5):
                if args.max is not None and shown >= args.max:
                    break
                if not check(m):
                    continue
                d = orjson.loads(m.value() or b"{}")
                if args.what == "alerts":
                    line = (
                        f"{d.get('state', '?'):<9} {d.get('detector', '?'):<9} {d.get('feature', '?'):<10} "
                        f"statistic {d.get('statistic', 0):.3f} (threshold {d.get('threshold', 0):g})"
                    )
                else:
                    flag = "FRAUD" if d.get("fraud") else "ok   "
                    line = (
                        f"{flag} {d.get('id', '?'):<24} score {d.get('score', 0):.4f} "
                        f"shadow {d.get('shadow_score', 0):.4f} v{d.get('adapter_version')} "
                        f"{','.join(d.get('rules', []))}{' CONFLICT' if d.get('conflict') else ''}"
                    )
                print(line, flush=True)
                shown += 1
    finally:
        consumer.close()
    return 0


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
    from services.demo import write_stream_report
    from services.stack import resolve_settings
    from shared.kafka import Topics

    summary = write_stream_report(resolve_settings(), Topics.from_env(), Path(args.out), produced=None)
    print(summary["table"])
    print(f"wrote summary.json, metrics.csv, metrics.png to {args.out}/")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from services.demo import run_demo

    summary = run_demo(
        args.scenario,
        Path(args.out),
        rate=args.rate,
        label_delay=args.label_delay,
        scorers=args.scorers,
        n_pre=args.n_pre,
        n_post=args.n_post,
        adapt_window=args.adapt_window,
    )
    return 0 if all(code == 0 for code in summary["exit_codes"].values()) else 1


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfheal", description="A streaming fraud scorer that heals itself.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model bundle on your own labelled table")
    t.add_argument("--data", required=True, help="a .csv or .parquet file")
    t.add_argument("--label", required=True, help="the 0/1 label column (1 = fraud)")
    t.add_argument("--features", nargs="*", help="feature columns (default: all but label and id)")
    t.add_argument("--rules", help="a rules.toml file")
    t.add_argument("--out", required=True, help="bundle directory to write")
    t.add_argument("--fp-cost", type=float, default=1.0, help="cost of a false alarm (default 1)")
    t.add_argument("--fn-cost", type=float, default=10.0, help="cost of a missed fraud (default 10)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--val-fraction", type=float, default=0.2, help="rows held out to pick the threshold")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("experiment", help="run a scenario offline and write summary, metrics, events, plots")
    e.add_argument("scenario", nargs="?", help="scenario name, or 'all' (default: seed)")
    e.add_argument("--scenario", dest="scenario_opt", help="same as the positional argument")
    e.add_argument("--protocol", choices=("delayed", "seed"), default="delayed")
    e.add_argument("--label-delay", type=int, default=500, help="transactions before a label arrives")
    e.add_argument("--label-free", action="store_true", help="no labels ever arrive")
    e.add_argument("--seed", type=int, default=42)
    e.add_argument(
        "--poison",
        type=_span,
        metavar="FIRST:COUNT",
        help="the labels of COUNT stream rows from FIRST arrive flipped (a broken label feed)",
    )
    e.add_argument("--out", default="runs/latest")
    e.add_argument("--no-plots", action="store_true")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_experiment)

    dt = sub.add_parser("detectors", help="FIDI against River's ADWIN, PageHinkley, KSWIN (dev extra)")
    dt.add_argument("scenarios", nargs="*", help="drift scenarios (default: all of them)")
    dt.add_argument("--control-rows", type=int, default=100_000, help="no-drift rows for false alarms")
    dt.add_argument(
        "--kswin-rows", type=int, default=10_000, help="no-drift rows for KSWIN (a KS test per row)"
    )
    dt.add_argument("--seed", type=int, default=42)
    dt.add_argument("--out", default="runs/detectors")
    dt.add_argument("--quiet", action="store_true")
    dt.set_defaults(func=cmd_detectors)

    bn = sub.add_parser("bench", help="throughput, latency, hot swap, healing, memory: runs/bench.json")
    bn.add_argument("--out", default="runs")
    bn.add_argument("--rows", type=int, default=None, help="backlog per throughput run (default 300,000)")
    bn.add_argument("--quick", action="store_true", help="a smoke run with small numbers")
    bn.add_argument("--profile", action="store_true", help="also sample a scorer with py-spy")
    bn.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    bn.add_argument("--quiet", action="store_true")
    bn.set_defaults(func=cmd_bench)

    s = sub.add_parser("scenario", help="list the scenario library or export one as CSV")
    s.add_argument("action", choices=("list", "export"))
    s.add_argument("name", nargs="?")
    s.add_argument("--out")
    s.add_argument("--seed", type=int, default=42)
    s.set_defaults(func=cmd_scenario)

    b = sub.add_parser("bundle", help="inspect a bundle")
    b.add_argument("action", choices=("info",))
    b.add_argument("path")
    b.set_defaults(func=cmd_bundle)

    for kind, text in (
        ("scorer", "score transactions into decisions"),
        ("monitor", "watch for drift"),
        ("healer", "heal the adapter from late labels"),
    ):
        svc = sub.add_parser(kind, help=f"run the {kind}: {text}")
        svc.add_argument("--bundle", required=True)
        svc.add_argument("--metrics-port", type=int, default=None, help="serve /metrics and /health here")
        svc.add_argument("--group", default=f"selfheal-{kind}", help="consumer group (default: %(default)s)")
        if kind == "scorer":
            svc.add_argument("--batch-size", type=int, default=500)
        if kind == "healer":
            svc.add_argument("--label-free", action="store_true")
        svc.set_defaults(func=cmd_service)

    tp = sub.add_parser("topics", help="create every topic with its config (on KAFKA_BOOTSTRAP_SERVERS)")
    tp.add_argument("action", choices=("create",))
    tp.set_defaults(func=cmd_topics)

    kg = sub.add_parser("keygen", help="print a new adapter signing key (for SELFHEAL_ADAPTER_KEY)")
    kg.set_defaults(func=cmd_keygen)

    u = sub.add_parser("up", help="broker (if needed) and the services as processes, until Ctrl-C")
    u.add_argument("--bundle", required=True)
    u.add_argument("--scorers", type=int, default=1)
    u.add_argument("--logs", default="runs/logs")
    u.set_defaults(func=cmd_up)

    pr = sub.add_parser("produce", help="stream a scenario to the transactions topic, labels later")
    pr.add_argument("--scenario", default="covariate")
    pr.add_argument("--rate", type=float, default=1000.0, help="transactions per second (0: flat out)")
    pr.add_argument("--label-delay", type=int, default=500, help="transactions before a label (-1: none)")
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

    d = sub.add_parser("demo", help="the whole stack on the embedded broker, a drift scenario, a report")
    d.add_argument("--scenario", default="covariate")
    d.add_argument("--out", default="runs/latest")
    d.add_argument("--rate", type=float, default=300.0, help="transactions per second")
    d.add_argument("--label-delay", type=int, default=500)
    d.add_argument("--scorers", type=int, default=2)
    d.add_argument("--n-pre", type=int, default=2000)
    d.add_argument("--n-post", type=int, default=8000)
    d.add_argument("--adapt-window", type=int, default=1000, help="rows after the drift left out of the gap")
    d.set_defaults(func=cmd_demo)
    return p


def _span(text: str) -> tuple[int, int]:
    try:
        first, count = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST:COUNT (two integers), got {text!r}") from None
    if first < 0 or count < 1:
        raise argparse.ArgumentTypeError(f"FIRST must be >= 0 and COUNT >= 1, got {text!r}")
    return first, count


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SelfhealError as exc:
        print(f"selfheal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfheal: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
