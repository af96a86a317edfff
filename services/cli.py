"""The ``selfheal`` command: a thin layer over shared/ (and, later, the services).

selfheal train --data FILE --label COLUMN [--features ...] [--rules rules.toml] --out BUNDLE
selfheal experiment [SCENARIO|all] [--protocol seed|delayed] [--label-delay N] [--label-free] --out DIR
selfheal scenario list | export NAME --out DIR
selfheal bundle info BUNDLE
"""

from __future__ import annotations

import argparse
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

    scenario = args.scenario_opt or args.scenario or "seed"
    say = _progress(args.quiet)
    out = Path(args.out)
    if scenario == "all":
        if args.protocol == "seed":
            raise SelfhealError("the seed protocol runs on the seed scenario only")
        summaries: dict[str, dict[str, Any]] = {}
        for name in names():
            say(f"== {name}")
            cfg = ExperimentConfig(scenario=name, protocol="delayed", label_delay=args.label_delay,
                                   label_free=args.label_free, seed=args.seed)  # fmt: skip
            result = run(cfg, say)
            write_outputs(result, out / name, plots=not args.no_plots)
            summaries[name] = result.summary
        write_json(out / "summary.json", {"scenarios": summaries})
        print(format_library_table(summaries))
        print(f"\noutputs in {out}/ (one folder per scenario)")
        return 0
    cfg = ExperimentConfig(scenario=scenario, protocol=args.protocol, label_delay=args.label_delay,
                           label_free=args.label_free, seed=args.seed)  # fmt: skip
    result = run(cfg, say)
    written = write_outputs(result, out, plots=not args.no_plots)
    s = result.summary
    mode = "labels: own batch" if s["protocol"] == "seed" else (
        "label-free" if s["label_free"] else f"labels {s['label_delay']} transactions late")  # fmt: skip
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
    e.add_argument("--out", default="runs/latest")
    e.add_argument("--no-plots", action="store_true")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_experiment)

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
    return p


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
