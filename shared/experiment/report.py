"""Writing an experiment's outputs: summary.json, metrics.csv, events.json, plots, tables."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import orjson

from shared.experiment.plots import plot_all
from shared.experiment.runner import ExperimentResult

ROW_ORDER = ("clean", "noheal", "healed", "all_normal", "oracle", "bayes")
ROW_HELP = {
    "clean": "bundle on clean test rows",
    "noheal": "frozen model, adapter v0 (the shadow)",
    "healed": "the adapter live at each row",
    "all_normal": "never flag",
    "oracle": "same architecture retrained on drifted labels",
    "bayes": "true posterior, cost-optimal threshold",
}


def write_json(path: Path, obj: Any) -> None:
    path.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def write_outputs(result: ExperimentResult, out_dir: str | Path, plots: bool = True) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json", out / "metrics.csv", out / "events.json"]
    write_json(written[0], result.summary)
    write_csv(written[1], result.batches)
    snapshots = [s.header() for s in result.registry.snapshots()]
    write_json(written[2], {"events": result.events, "snapshots": snapshots})
    if plots:
        written += plot_all(out, result.summary, result.batches, result.registry)
    return written


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def gap_closed(rows: dict[str, dict[str, Any]], reference: str = "oracle") -> float | None:
    """(cost no-heal - cost healed) / (cost no-heal - cost reference); None when undefined."""
    if reference not in rows:
        return None
    nh, h, ref = rows["noheal"]["cost"], rows["healed"]["cost"], rows[reference]["cost"]
    if nh - ref <= 1e-9:
        return None
    return float((nh - h) / (nh - ref))


def _labels(n: int | None) -> str:
    return "-" if n is None else str(n)


def format_table(summary: dict[str, Any]) -> str:
    """The rows of an experiment as a text table; the seed protocol shows the published run beside."""
    rows = summary["rows"]
    published = summary.get("published", {})
    head = f"{'row':<11} {'acc':>6} {'prec':>6} {'rec':>6} {'F1':>6} {'PR-AUC':>6} {'TP/FP/FN/TN':>17}"
    head += f" {'cost':>6}"
    if published:
        head += f"   | published: {'acc':>6} {'prec':>6} {'rec':>6} {'F1':>6} {'TP/FP/FN/TN':>16}"
    lines = [head, "-" * len(head)]
    for name in ROW_ORDER:
        if name not in rows:
            continue
        r = rows[name]
        counts = f"{r['tp']}/{r['fp']}/{r['fn']}/{r['tn']}"
        pr = f"{r['pr_auc']:.3f}" if r.get("pr_auc") is not None else "-"
        line = (
            f"{name:<11} {r['accuracy']:>6.1%} {r['precision']:>6.3f} {r['recall']:>6.3f} {r['f1']:>6.3f} "
            f"{pr:>6} {counts:>17} {r['cost']:>6.3f}"
        )
        if name in published:
            p = published[name]
            pc = f"{p['tp']}/{p['fp']}/{p['fn']}/{p['tn']}"
            line += (
                f"   |            {p['accuracy']:>6.1%} {p['precision']:>6.3f} {p['recall']:>6.3f} "
                f"{p['f1']:>6.3f} {pc:>16}"
            )
        lines.append(line)
    g = gap_closed(rows)
    if g is not None:
        lines.append(f"gap closed (cost, no-heal -> oracle): {g:.2f}")
    costs = summary["costs"]
    lines.append(
        f"cost = ({costs['fp']:g} x FP + {costs['fn']:g} x FN) / rows; threshold {summary['threshold']:.3f}"
    )
    return "\n".join(lines)


def format_library_table(summaries: dict[str, dict[str, Any]]) -> str:
    """One line per scenario: costs of every row, F1 and PR-AUC no-heal -> healed, gap closed."""
    head = (
        f"{'scenario':<12} {'no-heal':>8} {'healed':>8} {'oracle':>8} {'bayes':>8} {'all-norm':>8} "
        f"{'gap':>5} {'F1 nh->h':>12} {'PR-AUC nh->h':>13} {'heals':>7} {'labels':>7} {'detect':>7} "
        f"{'gap before/after labels':>24}"
    )
    lines = [head, "-" * len(head)]
    for name, s in summaries.items():
        r = s["rows"]
        g = gap_closed(r)
        det = s.get("detection_delay_rows")
        lines.append(
            f"{name:<12} {r['noheal']['cost']:>8.3f} {r['healed']['cost']:>8.3f} {r['oracle']['cost']:>8.3f} "
            f"{r['bayes']['cost']:>8.3f} {r['all_normal']['cost']:>8.3f} "
            f"{'-' if g is None else f'{g:.2f}':>5} "
            f"{r['noheal']['f1']:>5.3f}->{r['healed']['f1']:.3f} "
            f"{r['noheal']['pr_auc']:>6.3f}->{r['healed']['pr_auc']:.3f} "
            f"{s['heals_accepted']:>3}/{s['heals']:<3} {_labels(s.get('labels_at_first_heal'))!s:>7} "
            f"{'-' if det is None else det:>7} {_windows(s):>24}"
        )
    lines.append("costs are per transaction (FP 1, FN 10) over the stream after the adaptation window;")
    lines.append("gap before labels: from 2,000 rows after the drift to the first post-drift label;")
    lines.append("after labels: from 2,000 rows after that label (a label-free heal shows in 'labels' as 0)")
    return "\n".join(lines)


def _windows(summary: dict[str, Any]) -> str:
    """The gap closed before the labels and after them, as ``0.00 / 1.06``."""
    w = summary.get("windows", {})

    def gap(name: str) -> str:
        g = w.get(name, {}).get("gap_closed")
        return "-" if g is None else f"{g:.2f}"

    return f"{gap('before_labels')} / {gap('after_labels')}"


def format_windows(windows: dict[str, dict[str, Any]], sources: dict[str, int]) -> str:
    """The windows a feedback model splits a drift into: cost per transaction (frozen,
    healed, oracle), the gap closed and the alert precision P@k of each."""
    head = f"{'window':<18} {'rows':>6} {'frozen':>7} {'healed':>7} {'oracle':>7} {'gap':>6}"
    head += f" {'P@k frozen/healed/oracle':>26}"
    lines = [head, "-" * len(head)]
    for name, w in windows.items():
        g = w.get("gap_closed")
        pk = w.get("p_at_k", {})
        pks = "/".join("-" if pk.get(m) is None else f"{pk[m]:.2f}" for m in ("noheal", "healed", "oracle"))
        lines.append(
            f"{name:<18} {w['rows']:>6} {w['noheal']:>7.4f} {w['healed']:>7.4f} {w['oracle']:>7.4f} "
            f"{'-' if g is None else f'{g:.2f}':>6} {pks:>26}"
        )
    lines.append("labels by source: " + ", ".join(f"{k} {v:,}" for k, v in sorted(sources.items())))
    return "\n".join(lines)


def format_feedback_library(summaries: dict[str, dict[str, Any]]) -> str:
    """One line per scenario under a feedback model: the gap closed in each window, and the
    alert precision (P@k) of the frozen and the healed model while only feedback comes and
    after the chargebacks."""
    head = (
        f"{'scenario':<12} {'before labels':>13} {'feedback':>9} {'after cb':>9} "
        f"{'P@k feedback fr/he':>19} {'P@k after fr/he':>16} {'cost fr->he (whole)':>20}"
    )
    lines = [head, "-" * len(head)]
    for name, s in summaries.items():
        w, r = s.get("windows", {}), s["rows"]
        gaps = [_gap(w.get(k, {})) for k in ("before_labels", "feedback", "after_chargebacks")]
        pks = [_pk(w.get(k, {})) for k in ("feedback", "after_chargebacks")]
        cost = f"{r['noheal']['cost']:.3f}->{r['healed']['cost']:.3f}"
        lines.append(
            f"{name:<12} {gaps[0]:>13} {gaps[1]:>9} {gaps[2]:>9} {pks[0]:>19} {pks[1]:>16} {cost:>20}"
        )
    lines.append("gap closed (frozen -> oracle) per window; '-': no gap to close or no rows;")
    lines.append("P@k: fraud among the k highest scores of each period (the alerts analysts can check)")
    return "\n".join(lines)


def _gap(window: dict[str, Any]) -> str:
    g = window.get("gap_closed")
    return "-" if g is None else f"{g:.2f}"


def _pk(window: dict[str, Any]) -> str:
    p = window.get("p_at_k")
    return "-" if not p else f"{p['noheal']:.2f}/{p['healed']:.2f}"
