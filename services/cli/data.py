"""``selfheal train``, ``bundle info``, ``scenario list|export``: bundles and data."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.errors import SelfhealError
from shared.progress import Progress
from shared.schema import MAX_CATEGORIES


def register(sub: Any) -> None:
    t = sub.add_parser("train", help="train a model bundle on your own labelled table")
    t.add_argument("--data", required=True, help="a .csv or .parquet file")
    t.add_argument("--label", required=True, help="the 0/1 label column (1 = fraud)")
    t.add_argument("--features", nargs="*", help="feature columns (default: all but label and id)")
    t.add_argument(
        "--categorical", nargs="*", default=[], help="columns that are categories (text columns always are)"
    )
    t.add_argument(
        "--max-categories",
        type=int,
        default=MAX_CATEGORIES,
        help=f"frequent values of a category field (>= 30 rows) with their own input, at most "
        f"(default {MAX_CATEGORIES})",
    )
    t.add_argument(
        "--encoding",
        choices=("onehot", "embedding", "auto"),
        default="onehot",
        help="how category fields train: one-hot (default), through embeddings, or both and keep "
        "the better on the validation rows (auto)",
    )
    t.add_argument("--rules", help="a rules.toml file")
    t.add_argument("--out", required=True, help="bundle directory to write")
    t.add_argument("--fp-cost", type=float, default=1.0, help="cost of a false alarm (default 1)")
    t.add_argument("--fn-cost", type=float, default=10.0, help="cost of a missed fraud (default 10)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--val-fraction", type=float, default=0.2, help="rows held out to pick the threshold")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser(
        "scenario", help="list the scenario library, export one as CSV, or draw one from the family"
    )
    s.add_argument("action", choices=("list", "export", "sample"))
    s.add_argument("name", nargs="?")
    s.add_argument("--out")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--kind", help="sample: force the drift's kind (default: drawn with the seed)")
    s.add_argument("--rows", type=int, default=8000, help="sample: stream rows after the drift point")
    s.set_defaults(func=cmd_scenario)

    b = sub.add_parser("bundle", help="inspect a bundle")
    b.add_argument("action", choices=("info",))
    b.add_argument("path")
    b.set_defaults(func=cmd_bundle)


def cmd_train(args: argparse.Namespace) -> int:
    from shared.data.tables import load_table
    from shared.evaluation import CostMatrix
    from shared.rules import RuleSet
    from shared.training import TrainConfig, build_bundle

    say = Progress(args.quiet)
    features = _split_features(args.features)
    rules_text = _read_rules(args.rules)
    named = _rule_categories(rules_text)
    if args.max_categories < 1:
        raise SelfhealError("--max-categories must be at least 1")
    categorical = _split_features(args.categorical) or ()
    cap = args.max_categories
    table = load_table(args.data, args.label, features, categorical, named, max_categories=cap)
    if args.rules:
        RuleSet.from_toml(rules_text, table.features, origin=args.rules, schema=table.schema)
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
        train_config=TrainConfig(
            epochs=args.epochs,
            seed=args.seed,
            val_fraction=args.val_fraction,
            encoding=args.encoding if table.schema is not None else None,
        ),
        source=str(args.data),
        schema=table.schema,
    )
    bundle.save(args.out)
    v = bundle.info.get("validation", {})
    print(f"bundle {bundle.id} written to {args.out}")
    _print_inputs(bundle)
    measured = bundle.info.get("encodings")
    if measured:
        one, emb = measured["validation_log_loss_onehot"], measured["validation_log_loss_embedding"]
        z = measured["embedding_gain_z"]
        kept = measured["kept"]
        losses = f"one-hot {one:.4f}, embedding {emb:.4f}"
        print(f"encoding: {kept} (validation log loss: {losses}; gain z {z:+.1f})")
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


def _read_rules(path: str | None) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SelfhealError(f"cannot read rules file {path}: {exc.strerror}") from exc


def _rule_categories(text: str) -> dict[str, set[str]]:
    """Field -> the strings the rules compare it with (each gets its own input)."""
    import tomllib

    from shared.rules.condition import ConditionError, categories_named

    if not text:
        return {}
    try:
        entries = tomllib.loads(text).get("rule", [])
        named: dict[str, set[str]] = {}
        for e in entries if isinstance(entries, list) else []:
            for f, values in categories_named(str(e.get("when", ""))).items():
                named.setdefault(f, set()).update(values)
        return named
    except (tomllib.TOMLDecodeError, ConditionError, AttributeError):
        return {}  # the rules' own parse names the problem


def _print_inputs(bundle: Any) -> None:
    if bundle.schema is None:
        print(f"features ({len(bundle.features)}): {', '.join(bundle.features)}")
        return
    print(f"schema: {len(bundle.schema.fields)} fields -> {len(bundle.features)} model inputs")
    for line in bundle.schema.describe():
        print(f"  {line}")


def _split_features(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [f.strip() for v in values for f in v.split(",") if f.strip()]
    return out or None


def cmd_scenario(args: argparse.Namespace) -> int:
    from shared.data import build
    from shared.data.scenarios import SCENARIOS

    if args.action == "list":
        for name, (summary, _) in SCENARIOS.items():
            print(f"{name:<12} {summary}")
        return 0
    if args.action == "sample":
        return _sample(args)
    if not args.name or not args.out:
        raise SelfhealError("usage: selfheal scenario export NAME --out DIR")
    sc = build(args.name, seed=args.seed)
    out = sc.write_csv(args.out)
    print(f"wrote train.csv, test.csv, stream.csv, rules.toml and scenario.json to {out}/")
    print(f"train with: selfheal train --data {out}/train.csv --label Class --rules {out}/rules.toml \\")
    print("           --out BUNDLE")
    return 0


def _sample(args: argparse.Namespace) -> int:
    import json

    from shared.data.family import sample

    if not args.out:
        raise SelfhealError("usage: selfheal scenario sample --seed N --out DIR [--kind KIND]")
    fs = sample(args.seed, n_post=args.rows, kind=args.kind)
    out = fs.write(args.out)
    print(f"seed {args.seed}: {fs.scenario.description}")
    print(json.dumps(fs.params["drift"]))
    print(f"wrote train.csv, test.csv, stream.csv, rules.toml, scenario.json and params.json to {out}/")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from shared.bundle import Bundle

    b = Bundle.load(args.path)
    print(f"bundle {b.id}  ({args.path})")
    _print_inputs(b)
    print(
        f"label column: {b.label} · threshold {b.threshold:.4f} · costs FP {b.costs.fp:g} FN {b.costs.fn:g}"
    )
    print(f"rules: {', '.join(f'{r.name} ({r.when} -> {r.label})' for r in b.rules.rules) or 'none'}")
    print(f"model: {b.config.to_dict()}")
    for k in ("source", "created", "rows", "validation"):
        if k in b.info:
            print(f"{k}: {b.info[k]}")
    return 0
