"""Running selfheal: each service alone, the whole stack (``up``), the demo, the benchmark,
and the set-up a real cluster needs (``topics create``, ``keygen``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import SelfhealError

# The demo's feedback, in its event time (300 transactions a second by default): analysts
# check 30 alerts every 5 s (2% of the traffic) and answer 2 s later; 80% of the fraud nobody
# checked charges back 15 s later; the rest is taken as genuine after 20 s. A 14,000-row
# stream then has 1,900 rows while only analysts answer and 5,400 after the chargebacks.
DEMO_FEEDBACK = "analyst:30/5s:2s,chargeback:15s:0.8,implied:20s"


def register(sub: Any) -> None:
    from services.bench.config import PHASES, BenchConfig

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
        if kind == "monitor":
            svc.add_argument(
                "--scale-out",
                action="store_true",
                help="one of several monitors in the group (start every one with it): each publishes its "
                "partitions' statistics to monitor-stats, the one holding that topic judges them all",
            )
            svc.add_argument(
                "--block-rows",
                type=int,
                default=16,
                help="with --scale-out: rows per block of statistics, the judge's step (default %(default)s)",
            )
        if kind == "healer":
            svc.add_argument("--label-free", action="store_true")
            healer_state_arguments(svc)
        svc.set_defaults(func=cmd_service)

    u = sub.add_parser("up", help="broker (if needed) and the services as processes, until Ctrl-C")
    u.add_argument("--bundle", required=True)
    u.add_argument("--scorers", type=int, default=1)
    u.add_argument(
        "--monitors", type=int, default=1, help="monitors in one group (more than one: --scale-out)"
    )
    u.add_argument("--logs", default="runs/logs")
    u.add_argument(
        "--broker-memory",
        default=None,
        help="warn before the embedded broker holds this much (default: a quarter of the machine's memory)",
    )
    healer_state_arguments(u)
    u.set_defaults(func=cmd_up)

    register_demo(sub)

    bn = sub.add_parser("bench", help="throughput, latency, hot swap, healing, memory: runs/bench.json")
    bn.add_argument("--out", default="runs")
    rows = f"backlog per throughput run (default {BenchConfig.rows:,})"
    bn.add_argument("--rows", type=int, default=None, help=rows)
    bn.add_argument("--quick", action="store_true", help="a smoke run with small numbers")
    bn.add_argument("--profile", action="store_true", help="also sample a scorer with py-spy")
    bn.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    only = f"run only these phases (comma-separated: {', '.join(PHASES)}); writes bench-PHASES.json"
    bn.add_argument("--only", default=None, help=only)
    bn.add_argument("--quiet", action="store_true")
    bn.set_defaults(func=cmd_bench)

    tp = sub.add_parser("topics", help="create every topic with its config (on KAFKA_BOOTSTRAP_SERVERS)")
    tp.add_argument("action", choices=("create",))
    tp.set_defaults(func=cmd_topics)

    kg = sub.add_parser("keygen", help="print a new adapter signing key (for SELFHEAL_ADAPTER_KEY)")
    kg.set_defaults(func=cmd_keygen)


def register_demo(sub: Any) -> None:
    d = sub.add_parser("demo", help="the whole stack on the embedded broker, a drift scenario, a report")
    d.add_argument(
        "--scenario",
        default="covariate",
        help="a library scenario (selfheal scenario list), or family:SEED for a stream of the drawn family",
    )
    d.add_argument("--out", default="runs/latest")
    d.add_argument("--rate", type=float, default=300.0, help="transactions per second")
    d.add_argument(
        "--feedback",
        default=DEMO_FEEDBACK,
        help="how labels come: analysts on the top alerts, chargebacks, implied genuine "
        f"(default {DEMO_FEEDBACK}; see docs/feedback.md); none: every label --label-delay late",
    )
    d.add_argument(
        "--label-policy",
        choices=("implied", "settled"),
        default="implied",
        help="with --feedback: the healer takes a cohort's labels once it is as old as the chargeback "
        "delay, the unlabelled as genuine (implied), or once its last label has come (settled)",
    )
    d.add_argument(
        "--label-delay",
        default="5000",
        help="with --feedback none: transactions (5000) or event time (20s, 2h) before a label arrives",
    )
    d.add_argument(
        "--event-rate",
        type=float,
        default=None,
        help="event time: transactions a second the stream is stamped at (default: --rate; lower replays "
        "hours of event time in minutes)",
    )
    d.add_argument("--label-horizon", default="30d", help="event time a transaction waits for its label")
    d.add_argument("--scorers", type=int, default=2)
    d.add_argument("--n-pre", type=int, default=2000)
    d.add_argument("--n-post", type=int, default=12000)
    d.add_argument("--adapt-window", type=int, default=1000, help="rows after the drift left out of the gap")
    d.set_defaults(func=cmd_demo)


def healer_state_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--label-horizon", default="30d", help="event time a transaction waits for its label (default: 30d)"
    )
    p.add_argument("--log-budget", default="2GB", help="the feature log's disk budget (default: 2GB)")
    p.add_argument(
        "--log-capacity",
        type=float,
        default=None,
        help="transactions a second the feature log may write; above that rate the healer logs a sample "
        "of the unflagged ones and reports its ratio (default: half a core's worth, measured)",
    )
    p.add_argument(
        "--settle",
        default=None,
        help="hold each label until its transaction is this old (your chargeback window, e.g. 30d): "
        "its cohort is then complete, and analysts' first verdicts on the top alerts are not read as a "
        "sample of the traffic (default: use labels as they arrive)",
    )
    p.add_argument(
        "--imply",
        default=None,
        help="settle each cohort at this age instead (your chargeback delay, e.g. 7d) and take a transaction "
        "nobody labelled by then as genuine, without waiting for implied-genuine labels (default: off)",
    )
    p.add_argument("--state-dir", default=".selfheal", help="the feature log and the registry's mirror")


def healer_state_options(args: argparse.Namespace) -> dict[str, Any]:
    from shared.units import parse_bytes, parse_duration

    return {
        "label_horizon_ms": parse_duration(args.label_horizon),
        "log_budget_bytes": parse_bytes(args.log_budget),
        "log_capacity": args.log_capacity,
        "settle_ms": parse_duration(args.settle) if args.settle else None,
        "imply_ms": parse_duration(args.imply) if args.imply else None,
        "state_dir": args.state_dir,
    }


def cmd_service(args: argparse.Namespace) -> int:
    from services.stack import run_service

    options: dict[str, Any] = {}
    if args.command == "scorer":
        options = {"batch_size": args.batch_size}
    elif args.command == "monitor":
        if args.block_rows < 1:
            raise SelfhealError(f"--block-rows must be >= 1, got {args.block_rows}")
        options = {"scale_out": args.scale_out, "block_rows": args.block_rows}
    elif args.command == "healer":
        options = {"label_free": args.label_free, **healer_state_options(args)}
    return run_service(args.command, args.bundle, args.metrics_port, args.group, **options)


def cmd_up(args: argparse.Namespace) -> int:
    from services.stack import Stack
    from shared.kafka.runtime import StopFlag

    stop = StopFlag()
    print(resumed_adapter(args.bundle, args.state_dir))
    healer_args = (
        *("--label-horizon", args.label_horizon, "--log-budget", args.log_budget),
        *(("--log-capacity", str(args.log_capacity)) if args.log_capacity else ()),
        *("--state-dir", args.state_dir),
        *(("--settle", args.settle) if args.settle else ()),
        *(("--imply", args.imply) if args.imply else ()),
    )
    stack = Stack(
        args.bundle, scorers=args.scorers, monitors=args.monitors, log_dir=args.logs, healer_args=healer_args
    ).start()
    memory = broker_memory(stack, args.broker_memory)
    try:
        stack.wait_healthy()
        bootstrap = stack.settings.bootstrap_servers
        print(f"broker: {bootstrap}  (export KAFKA_BOOTSTRAP_SERVERS={bootstrap} to use it elsewhere)")
        for name, port in stack.ports.items():
            print(f"{name:<10} pid {stack.children[name].pid:<7} http://127.0.0.1:{port}/metrics  /health")
        print(f"logs in {args.logs}/ · Ctrl-C stops everything")
        while not stop.is_set():
            if dead := stack.dead():
                print(f"selfheal: {', '.join(dead)} exited; stopping the stack", file=sys.stderr)
                break
            if memory is not None:
                memory()
            stop.wait(0.5)
    finally:
        codes = stack.stop()
        print("stopped: " + ", ".join(f"{n} (exit {c})" for n, c in codes.items()))
    return 0


def resumed_adapter(bundle_path: str, state_dir: str) -> str:
    """What the healer will resume from ``state_dir`` (on the embedded broker, whose
    topics start empty, the registry's mirror there is all it has), and how to start clean."""
    from datetime import UTC, datetime

    from shared.bundle import Bundle
    from shared.registry import DirectoryStore, Registry, live_snapshot

    bundle = Bundle.load(bundle_path)
    home = Path(state_dir) / bundle.id
    if not (home / "registry").is_dir():
        return f"healer: starting clean (no state for bundle {bundle.id} in {state_dir}/)"
    snaps = Registry(DirectoryStore(home / "registry", bundle.config), bundle.id).snapshots()
    live = live_snapshot(snaps)
    if live is None or live.version == 0:
        return f"healer: the bundle's own adapter (v0); {len(snaps)} snapshots in {home}/"
    made = datetime.fromtimestamp(live.created, UTC).strftime("%Y-%m-%d %H:%M UTC")
    how = f"heal {live.heal}" if live.heal is not None else live.kind
    return (
        f"healer: RESUMING adapter v{live.version} from {home}/ ({live.kind}, {how}, made {made}: "
        f"{live.note or 'no note'}); it stays live until its labelled decisions show it costs more "
        f"than the frozen model. To start clean: --state-dir NEW_DIR, or remove {home}/"
    )


def broker_memory(stack: Any, budget: str | None) -> Callable[[], None] | None:
    """A check of the embedded broker's memory to call now and then (None on a real cluster)."""
    import time

    from services.brokermemory import BrokerMemory, default_budget_mb
    from services.processes import vm_rss_mb
    from shared.units import parse_bytes

    if stack.broker is None or stack.broker.pid is None:
        return None
    watch = BrokerMemory(parse_bytes(budget) / (1 << 20) if budget else default_budget_mb())
    pid = stack.broker.pid
    print(f"broker memory budget {watch.budget_mb:,.0f} MB (--broker-memory): warns at 50%, 80% and 95%")
    last = [0.0]

    def check() -> None:
        now = time.monotonic()
        if now - last[0] < 5.0:
            return
        last[0] = now
        rss = vm_rss_mb(pid)
        warning = None if rss is None else watch.update(rss, now)
        if warning:
            print(f"selfheal: WARNING {warning}", file=sys.stderr, flush=True)

    return check


def cmd_demo(args: argparse.Namespace) -> int:
    from services.demo import DemoConfig, run_demo
    from shared.feedback import FeedbackModel
    from shared.units import Delay

    feedback = None if args.feedback == "none" else FeedbackModel.parse(args.feedback)
    cfg = DemoConfig(
        args.scenario,
        rate=args.rate,
        event_rate=args.event_rate,
        feedback=feedback,
        label_delay=Delay.parse(args.label_delay),
        label_horizon=args.label_horizon,
        label_policy=args.label_policy,
        scorers=args.scorers,
        n_pre=args.n_pre,
        n_post=args.n_post,
        adapt_window=args.adapt_window,
    )
    summary = run_demo(cfg, Path(args.out))
    return 0 if all(code == 0 for code in summary["exit_codes"].values()) else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import orjson

    from services.bench import QUICK, BenchConfig, format_bench, run_bench
    from services.bench.config import PHASES

    cfg = QUICK if args.quick else BenchConfig()
    if args.rows:
        cfg = replace(cfg, rows=args.rows)
    if args.profile:
        cfg = replace(cfg, profile=True)
    if args.only:
        cfg = replace(cfg, only=tuple(p.strip() for p in args.only.split(",")))
        unknown = set(cfg.only) - set(PHASES)
        if unknown:
            raise SystemExit(f"unknown phase(s) {sorted(unknown)}: choose from {', '.join(PHASES)}")
    result = run_bench(args.out, cfg, quiet=args.quiet)
    if cfg.only:
        name = f"bench-{'-'.join(cfg.only)}.json"
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    else:
        name = "bench.json"
        print(format_bench(result))
    print(f"wrote {args.out}/{name} ({result['seconds']:.0f} s)")
    return 0 if all(ok is not False for ok in result["targets"].values()) or not args.strict else 1


def cmd_topics(args: argparse.Namespace) -> int:
    from shared.kafka import KafkaSettings, Topics, create_topics

    settings = KafkaSettings.from_env()
    if not settings.bootstrap_servers:
        raise SelfhealError("set KAFKA_BOOTSTRAP_SERVERS (the embedded broker creates its topics itself)")
    topics = Topics.from_env()
    created = create_topics(settings, settings.specs(topics))
    for spec in settings.specs(topics):
        state = "created" if spec.name in created else "exists"
        config = ", ".join(f"{k}={v}" for k, v in spec.config.items())
        print(f"{spec.name:<22} {spec.partitions} partitions  {state}  {config}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from shared.signing import new_key

    print(new_key())
    return 0
