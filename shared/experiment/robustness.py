"""Healing on a family of drawn drifts: distributions per drift kind, not anecdotes.

``robustness`` draws ``n`` streams from :mod:`shared.data.family` with seeds fixed before
the run (``first_seed`` .. ``first_seed + n - 1``, written to ``plan.json`` first), runs each
through the one healing path of the delayed protocol (:class:`DelayedRun`: the scorer's,
monitor's and healer's own cores, labels ``label_delay`` transactions late), and reports,
per drift kind, the distribution of the gap closed before and after the labels (the two
windows of :mod:`shared.experiment.windows`), how often healing cost more than the frozen
model, and what the label-free diagnosis said.

Every stream is reported: one whose frozen model is already within ``NO_GAP`` of the
oracle in a window is *counted* there (``no gap``) but not scored, and a run that fails is
recorded with its error. Results are appended to ``streams.jsonl`` as each stream ends, so
a run that stops part-way resumes where it was (the same seeds, the same delay).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.family import KINDS, sample
from shared.experiment.config import ExperimentConfig
from shared.feedback import FeedbackModel
from shared.healing.healer import HealerConfig

NO_GAP = 0.05  # a window whose oracle is within this share of the frozen model's cost: no gap to close
GAP_Z = 2.0  # ... or not this many standard errors (paired, per row) below it
HARM = 0.02  # healed cost above the frozen model's by more than this share: harm
WINDOWS = ("before_labels", "after_labels")
FEEDBACK_WINDOWS = ("before_labels", "feedback", "after_chargebacks")  # under a feedback model
PK_DROP = 0.02  # healed alert precision (P@k) below the frozen model's by more than this: counted


def windows_of(feedback: FeedbackModel | None) -> tuple[str, ...]:
    return WINDOWS if feedback is None else FEEDBACK_WINDOWS


def run_stream(
    seed: int, label_delay: int, healer: HealerConfig | None = None, feedback: FeedbackModel | None = None
) -> dict[str, Any]:
    """One drawn stream through the delayed protocol (with ``feedback``: its labels drawn by
    the feedback model); a compact record of what it did."""
    import torch

    from shared.experiment.delayed import DelayedRun

    torch.manual_seed(seed)
    t0 = time.monotonic()
    cfg = ExperimentConfig(label_delay=label_delay, seed=seed, healer=healer, feedback=feedback)
    fs = sample(seed, n_pre=cfg.n_pre, n_post=cfg.stream_post)
    cfg = replace(cfg, scenario=fs.scenario.name)
    record: dict[str, Any] = {"seed": seed, "label_delay": label_delay, "kind": fs.kind, "params": fs.params}
    try:
        result = DelayedRun(cfg, fs.scenario, lambda _m: None).run()
    except Exception as exc:  # recorded, never dropped: the table counts it as failed
        record["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        record["seconds"] = time.monotonic() - t0
        return record
    s = result.summary
    record["windows"] = {k: judge_window(s["windows"].get(k)) for k in windows_of(feedback)}
    rows = s["rows"]
    record["overall"] = judge_rows(rows)
    diag = Counter(str(e["action"]) for e in result.events if e["type"] == "diagnosis")
    record["diagnosis"] = dict(diag)
    record["label_free_live"] = sum(
        1
        for e in result.events
        if e["type"] == "heal" and e.get("heal_kind") == "label_free" and e["accepted"]
    )
    record["refused"] = dict(
        Counter(_why(e) for e in result.events if e["type"] == "heal" and not e["accepted"])
    )
    record["heals_accepted"] = s["heals_accepted"]
    record["rollbacks"] = s["rollbacks"]
    record["detection_delay_rows"] = s["detection_delay_rows"]
    record["seconds"] = time.monotonic() - t0
    return record


def _why(event: dict[str, Any]) -> str:
    """A refused heal's verdict (``labels: no_gain_over_shadow``) or, from a run that
    recorded none, its reason without its numbers (``label_free: refused: it would flag``)."""
    if event.get("verdict"):
        return f"{event.get('heal_kind', 'labels')}: {event['verdict']}"
    reason = str(event.get("reason", ""))
    if "; refused: " in reason:
        reason = "refused: " + reason.split("; refused: ", 1)[1]
    words = []
    for w in reason.replace(":", " :").split():
        if any(c.isdigit() for c in w) or w.startswith("("):
            break
        words.append(w)
    return f"{event.get('heal_kind', 'labels')}: {' '.join(words).replace(' :', ':')}"[:80]


def judge_rows(rows: dict[str, Any]) -> dict[str, Any] | None:
    """:func:`judge_window` on a run's whole-stream rows (``noheal``, ``healed``, ``oracle``
    metrics, each with its ``cost``)."""
    return judge_window({k: rows[k]["cost"] for k in ("noheal", "healed", "oracle")})


def judge_window(w: dict[str, Any] | None) -> dict[str, Any] | None:
    """A window's costs with its verdict: ``scored`` (gap closed), ``no gap`` (frozen within
    NO_GAP of the oracle, or not GAP_Z standard errors above it: counted, not scored);
    ``harm``: healed above frozen by > HARM."""
    if w is None:
        return None
    noheal, healed, oracle = float(w["noheal"]), float(w["healed"]), float(w["oracle"])
    gap = noheal - oracle
    out: dict[str, Any] = {"noheal": noheal, "healed": healed, "oracle": oracle}
    out["rows"] = w.get("rows")
    out["gap_z"] = w.get("gap_z")
    out["harm"] = healed > noheal * (1 + HARM) + 1e-12
    if pk := w.get("p_at_k"):
        out["p_at_k"] = {"noheal": pk["noheal"], "healed": pk["healed"]}
    out["cost_change"] = (healed - noheal) / noheal if noheal > 0 else 0.0
    sure = float(w.get("gap_z", GAP_Z)) >= GAP_Z
    if gap > NO_GAP * noheal and gap > 1e-9 and sure:
        out["status"], out["gap_closed"] = "scored", (noheal - healed) / gap
    else:
        out["status"], out["gap_closed"] = "no gap", None
    return out


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def robustness(
    n: int,
    label_delay: int,
    out: Path,
    first_seed: int = 0,
    workers: int = 1,
    healer: HealerConfig | None = None,
    say: Callable[[str], None] = lambda _m: None,
    variant: str = "default",
    feedback: FeedbackModel | None = None,
    runner: Callable[[int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``n`` drawn streams (resuming ``out/streams.jsonl`` where the same ``variant`` of
    the healer ran with the same delay, or the same feedback); the per-kind summary.
    ``runner``: each seed's record from elsewhere (through the stack: one at a time) instead
    of :func:`run_stream` in ``workers`` processes."""
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(first_seed, first_seed + n))
    plan = {"seeds": seeds, "label_delay": label_delay, "variant": variant, "no_gap": NO_GAP, "harm": HARM}
    plan["feedback"] = feedback.spec() if feedback is not None else None
    plan["windows"] = list(windows_of(feedback))
    plan["versions"] = versions()
    (out / "plan.json").write_text(json.dumps(plan) + "\n")
    log = out / "streams.jsonl"
    same = [r for r in _read(log) if _same_run(r, plan)]
    done = {r["seed"]: r for r in same}
    todo = [s for s in seeds if s not in done]
    labels = (
        f"labels by feedback {plan['feedback']}" if feedback is not None else f"labels {label_delay:,} late"
    )
    say(f"{len(seeds)} streams, {labels}: {len(done)} done before, {len(todo)} to run")
    t0 = time.monotonic()
    with log.open("a") as f:
        records = (runner(s) for s in todo) if runner else _map(todo, label_delay, workers, healer, feedback)
        for k, rec in enumerate(records, start=1):
            rec["variant"], rec["feedback"] = variant, plan["feedback"]
            f.write(json.dumps(rec) + "\n")
            f.flush()
            done[rec["seed"]] = rec
            left = (time.monotonic() - t0) / k * (len(todo) - k) / 60
            say(
                f"[{k}/{len(todo)}] seed {rec['seed']} {rec['kind']}: {_brief(rec)} "
                f"({rec['seconds']:.0f} s; ~{left:.0f} min left)"
            )
    records = [done[s] for s in seeds]
    summary = summarise(records, windows_of(feedback))
    summary["plan"] = plan
    return summary


def _same_run(record: dict[str, Any], plan: dict[str, Any]) -> bool:
    """Whether ``record`` ran under ``plan``'s labels and healer (a seed it may skip)."""
    return bool(
        record["label_delay"] == plan["label_delay"]
        and record.get("variant", "default") == plan["variant"]
        and record.get("feedback") == plan.get("feedback")
    )


def versions() -> dict[str, str]:
    """The libraries a run's numbers depend on: the same seeds under another numpy or torch
    can heal a stream a few hundredths differently (a heal is many small optimisations)."""
    import platform

    import torch

    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__}


def _map(
    seeds: list[int],
    label_delay: int,
    workers: int,
    healer: HealerConfig | None,
    feedback: FeedbackModel | None,
) -> Iterable[dict[str, Any]]:
    if workers <= 1:
        for s in seeds:
            yield run_stream(s, label_delay, healer, feedback)
        return
    ctx = get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        futures = [pool.submit(run_stream, s, label_delay, healer, feedback) for s in seeds]
        for fut in as_completed(futures):
            yield fut.result()


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _brief(rec: dict[str, Any]) -> str:
    if "error" in rec:
        return f"failed: {rec['error']}"
    parts = []
    for name, w in rec["windows"].items():
        if w is None:
            continue
        label = name.split("_")[0]
        parts.append(f"{label} {'no gap' if w['gap_closed'] is None else format(w['gap_closed'], '.2f')}")
    return ", ".join(parts)


def summarise(records: list[dict[str, Any]], windows: Sequence[str] = WINDOWS) -> dict[str, Any]:
    """Per kind and window: streams, scored, median and 10th percentile of the gap closed,
    share below 0, share with harm, the worst cost change, and where the windows measured
    alert precision, the share of streams whose healed P@k fell below the frozen model's;
    and the diagnoses."""
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        recs = [r for r in records if r["kind"] == kind]
        if not recs:
            continue
        ok = [r for r in recs if "error" not in r]
        row: dict[str, Any] = {"streams": len(recs), "failed": len(recs) - len(ok)}
        for name in (*windows, "overall"):
            ws = [r["windows"].get(name) if name != "overall" else r["overall"] for r in ok]
            ws = [w for w in ws if w is not None]
            gaps = np.array([w["gap_closed"] for w in ws if w["status"] == "scored"], dtype=float)
            row[name] = {
                "streams": len(ws),
                "scored": len(gaps),
                "median": float(np.median(gaps)) if len(gaps) else None,
                "p10": float(np.percentile(gaps, 10)) if len(gaps) else None,
                "below_0": float((gaps < 0).mean()) if len(gaps) else None,
                "harm": float(np.mean([w["harm"] for w in ws])) if ws else None,
                "worst_cost_change": max((w["cost_change"] for w in ws), default=None),
            }
            pks = [w["p_at_k"]["healed"] - w["p_at_k"]["noheal"] for w in ws if "p_at_k" in w]
            if pks:
                row[name]["pk_below"] = float(np.mean([d < -PK_DROP for d in pks]))
                row[name]["worst_pk_change"] = float(min(pks))
        diag: Counter[str] = Counter()
        for r in ok:
            diag.update({a: 1 for a in r["diagnosis"]})
        row["diagnosis"] = {a: c / max(len(ok), 1) for a, c in diag.most_common()}
        row["seconds"] = float(np.mean([r["seconds"] for r in recs]))
        kinds[kind] = row
    return {
        "kinds": kinds,
        "streams": len(records),
        "seeds": [r["seed"] for r in records],
        "windows": list(windows),
    }


def format_table(summary: dict[str, Any]) -> str:
    """Markdown: one row per kind; the gap closed in each window (before and after the
    labels, or the three of a feedback model), harm, and where measured how often healing
    lowered the alerts' precision."""
    windows = summary.get("windows", WINDOWS)

    def cell(w: dict[str, Any]) -> str:
        if w["scored"] == 0:
            return f"- ({w['streams']} no gap)" if w["streams"] else "-"
        nogap = w["streams"] - w["scored"]
        extra = f", {nogap} no gap" if nogap else ""
        return f"{w['median']:.2f} / {w['p10']:.2f} / {w['below_0']:.0%} ({w['scored']}{extra})"

    def harm(w: dict[str, Any]) -> str:
        if w["harm"] is None:
            return "-"
        out = f"{w['harm']:.0%} (worst {w['worst_cost_change']:+.0%})"
        if "pk_below" in w:
            out += f"; P@k lower {w['pk_below']:.0%} (worst {w['worst_pk_change']:+.2f})"
        return out

    head = ["kind", "streams"]
    for name in windows:
        head += [f"{name.replace('_', ' ')}: median / p10 / < 0", "harm"]
    head += ["whole stream: harm", "diagnosis (share of streams)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind, r in summary["kinds"].items():
        diag = ", ".join(f"{a} {s:.0%}" for a, s in r["diagnosis"].items()) or "none"
        failed = f" ({r['failed']} failed)" if r["failed"] else ""
        cells = [kind, f"{r['streams']}{failed}"]
        for name in windows:
            cells += [cell(r[name]), harm(r[name])]
        cells += [harm(r["overall"]), diag]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: Path, title: str, windows: Sequence[str] = WINDOWS) -> None:
    """Gap closed per kind in each window: one dot per scored stream, a bar at each median,
    clipped to [-2, 2]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(windows), figsize=(6 * len(windows), 4.5), sharey=True)
    rng = np.random.default_rng(0)
    for ax, name in zip(axes, windows, strict=True):
        for i, kind in enumerate(KINDS):
            gaps = [
                r["windows"][name]["gap_closed"]
                for r in records
                if r["kind"] == kind
                and "error" not in r
                and r["windows"].get(name) is not None
                and r["windows"][name]["status"] == "scored"
            ]
            streams = sum(1 for r in records if r["kind"] == kind)
            ax.text(
                i,
                0.97,
                f"{len(gaps)}/{streams}",
                transform=ax.get_xaxis_transform(),
                ha="center",
                fontsize=8,
                color="grey",
            )
            if gaps:
                g = np.clip(gaps, -2, 2)
                ax.scatter(i + rng.uniform(-0.2, 0.2, len(g)), g, s=12, alpha=0.6, color="#1f77b4")
                ax.plot([i - 0.3, i + 0.3], [np.median(g)] * 2, color="#d62728", lw=2)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhline(1, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(KINDS)), KINDS, rotation=45, ha="right")
        ax.set_title(name.replace("_", " "))
    axes[0].set_ylabel("gap closed (clipped to [-2, 2]); grey: scored / streams")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(summary: dict[str, Any], out: Path) -> list[Path]:
    records = sorted(_read(out / "streams.jsonl"), key=lambda r: r["seed"])
    records = [r for r in records if _same_run(r, summary["plan"]) and r["seed"] in set(summary["seeds"])]
    paths = [out / "robustness.json", out / "robustness.md", out / "robustness.png"]
    paths[0].write_text(json.dumps(summary, indent=2) + "\n")
    delay = summary["plan"]["label_delay"]
    variant = summary["plan"]["variant"]
    spec = summary["plan"].get("feedback")
    labels = f"labels drawn by the feedback model {spec}" if spec else f"labels {delay:,} transactions late"
    head = (
        (f"Healer variant: {variant}.\n\n" if variant != "default" else "")
        + f"{summary['streams']} drawn streams (seeds {summary['seeds'][0]}-{summary['seeds'][-1]}), {labels}"
        ". Gap closed: median / 10th percentile / share below 0 (scored streams; "
        f"'no gap': frozen within {NO_GAP:.0%} of the oracle or less than {GAP_Z:g} standard errors "
        f"above it). Harm: healed cost above frozen by more than {HARM:.0%}"
        + (f"; P@k lower: healed alert precision below frozen by more than {PK_DROP:g}" if spec else "")
        + ".\n\n"
    )
    if v := summary["plan"].get("versions"):
        head += f"Python {v['python']}, numpy {v['numpy']}, torch {v['torch']}.\n\n"
    paths[1].write_text(head + format_table(summary) + "\n")
    plot(
        records,
        paths[2],
        f"gap closed per drift kind, {labels} ({summary['streams']} streams)",
        summary["windows"],
    )
    return paths


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1))
