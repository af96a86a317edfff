"""``selfheal experiment``, ``selfheal detectors``, ``selfheal encodings`` and ``selfheal
peers``: the offline measurements."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from shared.errors import SelfhealError
from shared.progress import Progress


def register(sub: Any) -> None:
    _register_experiment(sub)
    _register_tools(sub)


def _register_experiment(sub: Any) -> None:
    e = sub.add_parser("experiment", help="run a scenario offline and write summary, metrics, events, plots")
    e.add_argument(
        "scenario", nargs="?", help="scenario name, 'all', or 'robustness' (the drawn family; default: seed)"
    )
    e.add_argument("--scenario", dest="scenario_opt", help="same as the positional argument")
    e.add_argument("--protocol", choices=("delayed", "seed"), default="delayed")
    e.add_argument(
        "--label-delay",
        type=int,
        default=None,
        help="transactions before a label arrives (default 500; robustness: 20,000)",
    )
    e.add_argument("--n", type=int, default=200, help="robustness: streams drawn from the family")
    e.add_argument("--first-seed", type=int, default=0, help="robustness: the first stream's seed")
    e.add_argument("--workers", type=int, default=None, help="robustness: processes (default: one a core)")
    e.add_argument(
        "--stack",
        action="store_true",
        help="robustness: each stream through the stack (embedded broker, services as processes), in turn",
    )
    e.add_argument(
        "--rate", type=float, default=1000.0, help="robustness --stack: transactions a second (default 1,000)"
    )
    e.add_argument(
        "--without",
        nargs="+",
        default=[],
        choices=sorted(ABLATIONS),
        help="switch parts of the healer off, to measure what they buy",
    )
    e.add_argument(
        "--label-free",
        action="store_true",
        help="no label ever arrives: heal before labels only (input recalibration, fraud-rate correction)",
    )
    e.add_argument(
        "--labels-only",
        action="store_true",
        help="no label-free healing before the labels arrive (a baseline)",
    )
    e.add_argument("--seed", type=int, default=42)
    e.add_argument(
        "--poison",
        type=_span,
        metavar="FIRST:COUNT",
        help="the labels of COUNT stream rows from FIRST arrive flipped (a broken label feed)",
    )
    e.add_argument(
        "--feedback",
        type=_feedback,
        metavar="SPEC",
        help="labels as a fraud team gets them, e.g. 'analyst:100/10s:2s,chargeback:20s:0.8,implied:30s' "
        "(top alerts checked per period, chargebacks of unchecked fraud, silence as genuine; "
        "a transaction is a ms of event time); default: every label --label-delay late",
    )
    e.add_argument(
        "--label-policy",
        choices=("settled", "implied", "pooled", "aggregated"),
        default="settled",
        help="with --feedback: heal on a transaction's labels once its cohort is complete (settled); "
        "once it is as old as the chargeback delay, a transaction nobody labelled taken as genuine "
        "(implied); or on every label as it arrives as if it were a random sample (pooled, the baseline); "
        "aggregated: implied beside a learner on the analysts' verdicts alone, posteriors averaged "
        "(Dal Pozzolo et al.'s two learners; offline, one scenario, compared with implied)",
    )
    e.add_argument("--out", default="runs/latest")
    e.add_argument("--no-plots", action="store_true")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_experiment)


def _register_tools(sub: Any) -> None:
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

    en = sub.add_parser("encodings", help="one-hot against embeddings for category fields, on two tables")
    en.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    en.add_argument("--out", default="runs/encodings")
    en.add_argument("--quiet", action="store_true")
    en.set_defaults(func=cmd_encodings)

    pe = sub.add_parser(
        "peers", help="selfheal beside River's online learners (HAT, ARF) on one stream (dev extra)"
    )
    pe.add_argument("scenarios", nargs="*", help="library scenarios (default: every drift scenario)")
    pe.add_argument("--label-delay", type=int, nargs="+", default=[500, 5000], help="transactions late")
    pe.add_argument("--peers", nargs="+", default=None, help="river_hat, river_arf (default: both)")
    pe.add_argument("--train", help="your own scenario: clean labelled rows (CSV/Parquet) ...")
    pe.add_argument("--stream", help="... and the labelled stream in arrival order")
    pe.add_argument("--label", default="Class", help="the label column of --train/--stream")
    pe.add_argument("--rules", help="rules.toml for --train/--stream (default: none)")
    pe.add_argument("--drift-at", type=int, default=0, help="--stream's first drifted row (default 0)")
    pe.add_argument("--seed", type=int, default=42)
    pe.add_argument("--out", default="runs/peers")
    pe.add_argument("--quiet", action="store_true")
    pe.set_defaults(func=cmd_peers)


def _without_rare_fraud(cfg: Any) -> Any:
    from dataclasses import replace

    diagnosis = replace(cfg.before_labels.diagnosis, prior_noise_z=0.0)
    return replace(
        cfg,
        schedule=replace(cfg.schedule, min_frauds=0, train_frauds=0),
        heal=replace(cfg.heal, collapse_share=1.0),
        before_labels=replace(cfg.before_labels, diagnosis=diagnosis),
    )


def _without_in(part: str, **fields: Any) -> Callable[[Any], Any]:
    """``fields`` of the nested config ``part`` (``heal``, ``watch``, ``schedule``) set as given."""
    from dataclasses import replace

    return lambda cfg: replace(cfg, **{part: replace(getattr(cfg, part), **fields)})


# what ``--without`` switches off: the healer's own detectors, its care for rare fraud
# (fixed fraud-rate margins, no wait for frauds, the newest rows only, an absolute collapse
# floor), calibrated candidates deciding at the Bayes threshold (they decide at the bundle's),
# and heals spaced by the labels' growth (one per 100 new labels)
ABLATIONS: dict[str, Callable[[Any], Any]] = {
    "bayes-decisions": _without_in("heal", bayes_decisions=False),
    "heal-growth": _without_in("schedule", heal_growth=0.0),
    "labels-loss": _without_in("watch", loss=False),
    "labels-residual": _without_in("watch", residual=False),
    "prior-rate": _without_in("watch", prior=False),
    "rare-fraud": _without_rare_fraud,
}


def _feedback(text: str) -> Any:
    from shared.feedback import FeedbackModel

    try:
        return FeedbackModel.parse(text)
    except SelfhealError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _span(text: str) -> tuple[int, int]:
    try:
        first, count = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST:COUNT (two integers), got {text!r}") from None
    if first < 0 or count < 1:
        raise argparse.ArgumentTypeError(f"FIRST must be >= 0 and COUNT >= 1, got {text!r}")
    return first, count


def cmd_experiment(args: argparse.Namespace) -> int:
    from shared.experiment import ExperimentConfig

    scenario = args.scenario_opt or args.scenario or "seed"
    say = Progress(args.quiet)
    if scenario == "robustness":
        return _robustness(args, say)
    args.label_delay = 500 if args.label_delay is None else args.label_delay
    healer = _healer(args)
    cfg = ExperimentConfig(
        scenario=scenario,
        protocol=args.protocol,
        label_delay=args.label_delay,
        healer=healer,
        seed=args.seed,
        poison=args.poison,
        feedback=args.feedback,
    )
    if args.label_policy == "aggregated":
        return _aggregated(cfg, Path(args.out), say)
    if scenario == "all":
        return _experiment_all(cfg, Path(args.out), not args.no_plots, say)
    return _experiment_one(cfg, Path(args.out), not args.no_plots, say)


def _aggregated(cfg: Any, out: Path, say: Progress) -> int:
    from shared.experiment.aggregation import compare, format_comparison
    from shared.experiment.report import write_json

    if cfg.feedback is None or cfg.feedback.analyst is None or cfg.scenario in ("all", "robustness"):
        raise SelfhealError("--label-policy aggregated needs one scenario and --feedback with analysts")
    result = compare(cfg, say)
    print(f"\nscenario {result['scenario']} · feedback {result['feedback']}")
    print(format_comparison(result))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "aggregation.json", result)
    print(f"wrote aggregation.json to {out}/")
    return 0


def _settled(healer: Any, feedback: Any, implied: bool = False) -> Any:
    """``healer`` (None: the default) holding each label until its cohort is complete; with
    ``implied``, until the chargeback delay, the unlabelled taken as genuine then."""
    from dataclasses import replace

    from shared.healing.healer import HealerConfig

    cfg = replace(healer or HealerConfig(), settle_ms=feedback.horizon_ms)
    if implied:
        if feedback.chargeback is None:
            raise SelfhealError("--label-policy implied needs a chargeback part in --feedback (its delay)")
        cfg = replace(cfg, imply_ms=feedback.chargeback.delay_ms)
    return cfg


def _healer(args: argparse.Namespace) -> Any:
    """The healer's policy the options ask for, with ``--feedback`` the label policy's
    holds (None: the protocol's default)."""
    healer = None
    if args.label_free or args.labels_only or args.without:
        from shared.healing.healer import HealerConfig
        from shared.healing.schedule import ScheduleConfig

        schedule = ScheduleConfig(heal_before_labels=not args.labels_only)
        healer = HealerConfig(label_free=args.label_free, schedule=schedule)
        for part in args.without:
            healer = ABLATIONS[part](healer)
    if args.feedback is not None and args.label_policy != "pooled":
        healer = _settled(healer, args.feedback, args.label_policy in ("implied", "aggregated"))
    return healer


def _robustness(args: argparse.Namespace, say: Progress) -> int:
    from shared.experiment import robustness as rb

    if args.n < 1:
        raise SelfhealError(f"--n must be at least 1, got {args.n}")
    healer = _healer(args)
    delay = 20_000 if args.label_delay is None else args.label_delay
    out = Path(args.out)
    workers = args.workers or rb.default_workers()
    variant = "without " + ", ".join(sorted(args.without)) if args.without else "default"
    if args.feedback is not None and args.label_policy != "settled":
        variant += f", labels {args.label_policy}"
    runner = None
    if args.stack:
        if healer is not None or args.feedback is not None:
            raise SelfhealError("--stack runs the stack's default healer with every label --label-delay late")
        from services.family_stack import stack_stream

        variant = f"through the stack at {args.rate:g} tx/s"
        runner = partial(stack_stream, label_delay=delay, rate=args.rate, out=out)
    summary = rb.robustness(
        args.n, delay, out, args.first_seed, workers, healer, say, variant, args.feedback, runner
    )
    written = rb.write(summary, out)
    print(rb.format_table(summary))
    print(f"wrote {', '.join(p.name for p in written)} and streams.jsonl to {out}/")
    return 0


def _experiment_all(cfg: Any, out: Path, plots: bool, say: Progress) -> int:
    from dataclasses import replace

    from shared.data import names
    from shared.experiment import run
    from shared.experiment.report import (
        format_feedback_library,
        format_library_table,
        write_json,
        write_outputs,
    )

    if cfg.protocol == "seed":
        raise SelfhealError("the seed protocol runs on the seed scenario only")
    summaries: dict[str, dict[str, Any]] = {}
    for name in names():
        say(f"== {name}")
        result = run(replace(cfg, scenario=name), say)
        write_outputs(result, out / name, plots=plots)
        summaries[name] = result.summary
    write_json(out / "summary.json", {"scenarios": summaries})
    print(format_library_table(summaries))
    if cfg.feedback is not None:
        print("\nfeedback: " + cfg.feedback.describe())
        print(format_feedback_library(summaries))
    print(f"\noutputs in {out}/ (one folder per scenario)")
    return 0


def _experiment_one(cfg: Any, out: Path, plots: bool, say: Progress) -> int:
    from shared.experiment import run
    from shared.experiment.report import format_table, format_windows, write_outputs

    result = run(cfg, say)
    written = write_outputs(result, out, plots=plots)
    s = result.summary
    mode = (
        "labels: own batch"
        if s["protocol"] == "seed"
        else ("label-free" if s["label_free"] else f"labels {s['label_delay']} transactions late")
    )
    if result.config.feedback is not None:
        mode = "feedback: " + result.config.feedback.describe()
    print(f"\nscenario {s['scenario']} · protocol {s['protocol']} · {mode} · bundle {s['bundle']}")
    print(format_table(s))
    if result.config.feedback is not None:
        print(format_windows(s["windows"], s["labels"].get("labels_by_source", {})))
    print(
        f"heals {s['heals_accepted']} accepted of {s['heals']} · rollbacks {s['rollbacks']} · "
        f"snapshots {s['snapshots']} · backbone and head unchanged: {s['base_unchanged']}"
    )
    for a in s.get("estimated_vs_realised", []):
        realised = "n/a" if a["realised_cost"] is None else f"{a['realised_cost']:.4f}"
        print(
            f"label-free v{a['version']} (live from batch {a['batch']}): estimated cost "
            f"{a['estimated_cost']:.4f}, realised {realised} per transaction over {a['rows']:,} rows"
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

    say = Progress(args.quiet)
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


def cmd_encodings(args: argparse.Namespace) -> int:
    from shared.experiment.encodings import compare, format_table
    from shared.experiment.report import write_json

    say = Progress(args.quiet)
    say("category fields one-hot or through embeddings: payments and a 400-merchant table")
    result = compare(tuple(args.seeds), say=say)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "encodings.json", result)
    table = format_table(result)
    (out / "encodings.md").write_text(table + "\n")
    print(f"means over seeds {', '.join(map(str, args.seeds))}; cost on 40,000 fresh rows per seed")
    print(table)
    print(f"wrote encodings.json and encodings.md to {out}/ ({result['seconds']:.0f} s)")
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from shared.data import build, from_tables, names
    from shared.experiment import ExperimentConfig
    from shared.experiment.peers import compare, format_peers
    from shared.experiment.report import write_json

    say = Progress(args.quiet)
    if bool(args.train) != bool(args.stream):
        raise SelfhealError("give --train and --stream together (your own scenario), or neither")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before the runs: a bad --out fails now, not after them
    results = []
    for delay in args.label_delay:
        cfg = ExperimentConfig(label_delay=delay, seed=args.seed)
        if args.train:
            rules = Path(args.rules).read_text() if args.rules else ""
            scenarios = [from_tables(args.train, args.stream, args.label, rules, args.drift_at)]
        else:
            wanted = args.scenarios or [n for n in names() if n != "control"]
            scenarios = [build(n, seed=args.seed, n_pre=cfg.n_pre, n_post=cfg.stream_post) for n in wanted]
        for sc in scenarios:
            say(f"== {sc.name}, labels {delay:,} transactions late")
            results.append(compare(replace(cfg, scenario=sc.name), sc, say, args.peers))
    write_json(out / "peers.json", {"results": results})
    print(format_peers(results))
    print(f"\ncost / error / PR-AUC after the drift; wrote {out}/peers.json")
    return 0
