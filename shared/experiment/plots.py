"""PNG plots of an experiment: what a person would rather look at than read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from shared.registry import Registry

COLORS = {
    "noheal": "#d62728",
    "healed": "#2ca02c",
    "clean": "#1f77b4",
    "all_normal": "#7f7f7f",
    "oracle": "#9467bd",
    "bayes": "#17becf",
}
STATE_COLORS = {
    "stable": "#2ca02c",
    "drift": "#ffbf00",
    "healing": "#1f77b4",
    "rolled_back": "#ff7f0e",
}


def _rolling(x: np.ndarray, k: int = 5) -> np.ndarray:
    if len(x) == 0:
        return x
    c = np.cumsum(np.insert(np.nan_to_num(x), 0, 0.0))
    out = np.empty(len(x))
    for i in range(len(x)):
        lo = max(0, i - k + 1)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def _marks(ax: Any, batches: list[dict[str, Any]], drift_batch: float | None) -> None:
    for r in batches:
        if r["action"] == "healed":
            ax.axvline(r["batch"], color="#1f77b4", alpha=0.15, lw=1)
        elif r["action"] == "rollback":
            ax.axvline(r["batch"], color="#ff7f0e", alpha=0.9, lw=1.5, ls="--")
    if drift_batch is not None:
        ax.axvline(drift_batch, color="black", lw=1.2, ls=":", label="drift point")


def plot_all(
    out: Path, summary: dict[str, Any], batches: list[dict[str, Any]], registry: Registry
) -> list[Path]:
    """Write the five plots into ``out``; returns their paths."""
    drift_batch = None
    if summary.get("eval", {}).get("drift_at") is not None and batches and "start" in batches[0]:
        size = batches[0]["end"] - batches[0]["start"]
        drift_batch = summary["eval"]["drift_at"] / size + 0.5
    title = f"{summary['scenario']} · {summary['protocol']} protocol"
    if summary["protocol"] == "delayed":
        lf = summary.get("label_free")
        title += " · label-free" if lf else f" · labels {summary['label_delay']} tx late"
    paths = [
        plot_metrics(out, title, batches, drift_batch),
        _fidi(out, title, batches, drift_batch),
        _states(out, title, batches),
        _registry(out, title, registry),
        _comparison(out, title, summary),
    ]
    plt.close("all")
    return paths


def plot_metrics(out: Path, title: str, batches: list[dict[str, Any]], drift_batch: float | None) -> Path:
    b = np.array([r["batch"] for r in batches])
    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    for ax, key, label in ((axes[0], "cost", "expected cost per transaction"), (axes[1], "f1", "F1")):
        for name in ("noheal", "healed"):
            y = np.array([r[f"{name}_{key}"] for r in batches], dtype=float)
            ax.plot(b, y, color=COLORS[name], alpha=0.25, lw=1)
            ax.plot(b, _rolling(y), color=COLORS[name], lw=2.2, label=f"{name} (rolling mean of 5)")
        _marks(ax, batches, drift_batch)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left")
    axes[0].set_title(f"{title}\nno-heal vs healed per batch (blue lines: heals, orange dashed: rollbacks)")
    axes[1].set_xlabel("batch")
    path = out / "metrics.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _fidi(out: Path, title: str, batches: list[dict[str, Any]], drift_batch: float | None) -> Path:
    b = np.array([r["batch"] for r in batches])
    z = np.array([r["fidi_index"] for r in batches], dtype=float)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.plot(b, z, color="#1f77b4", lw=2, label="FIDI index")
    ax.axhline(1.0, color="#d62728", ls="--", lw=1.2, label="alarm threshold (1.0)")
    in_drift = np.array([r["state"] != "stable" for r in batches])
    top = max(float(z.max(initial=1.0)), 1.2) * 1.05
    ax.fill_between(b, 0, top, where=in_drift, color="#ffbf00", alpha=0.15, label="drift state")
    if drift_batch is not None:
        ax.axvline(drift_batch, color="black", lw=1.2, ls=":", label="drift point")
    if "conflict_rate" in batches[0]:
        ax2 = ax.twinx()
        ax2.plot(b, [r["conflict_rate"] for r in batches], color="#7f7f7f", lw=1, label="conflict rate")
        ax2.set_ylabel("rule/model conflict rate (window)")
        ax2.legend(loc="upper right")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("batch")
    ax.set_ylabel("FIDI index (>= 1: drift)")
    ax.set_title(f"{title}\nFIDI timeline")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    path = out / "fidi.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _states(out: Path, title: str, batches: list[dict[str, Any]]) -> Path:
    fig, ax = plt.subplots(figsize=(12, 2.8))
    for r in batches:
        ax.bar(r["batch"], 1, width=1.0, color=STATE_COLORS.get(r["state"], "#cccccc"))
    for name, color in STATE_COLORS.items():
        ax.bar(0, 0, color=color, label=name)
    versions = [r["adapter_version"] for r in batches]
    ax2 = ax.twinx()
    ax2.step([r["batch"] for r in batches], versions, where="mid", color="black", lw=1.2)
    ax2.set_ylabel("adapter version")
    ax.set_yticks([])
    ax.set_xlabel("batch")
    ax.set_title(f"{title}\nsystem state per batch (line: live adapter version)")
    ax.legend(loc="upper left", ncol=4, fontsize=8)
    path = out / "state.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _registry(out: Path, title: str, registry: Registry) -> Path:
    fig, ax = plt.subplots(figsize=(12, 4.5))
    snaps = registry.snapshots()

    def pts(kind: str, accepted: bool | None = None) -> tuple[list[int], list[float]]:
        sel = [s for s in snaps if s.kind == kind and (accepted is None or s.accepted == accepted)]
        sel = [s for s in sel if "f1" in s.metrics]
        return [s.seq for s in sel], [s.metrics["f1"] for s in sel]

    x, y = pts("post", True)
    ax.scatter(x, y, color="#2ca02c", s=40, label="post-heal, accepted (rollback candidates)", zorder=3)
    x, y = pts("post", False)
    ax.scatter(x, y, color="#7f7f7f", marker="x", s=30, label="post-heal, refused by the gate", zorder=2)
    x, y = pts("pre")
    ax.scatter(x, y, color="#ffbf00", s=18, label="pre-heal", zorder=2)
    for s in snaps:
        if s.kind == "rollback":
            ax.axvline(s.seq, color="#ff7f0e", ls="--", lw=1.5)
    best = registry.best_post_heal("f1")
    if best is not None:
        ax.scatter(
            [best.seq],
            [best.metrics["f1"]],
            marker="*",
            s=250,
            color="#1f77b4",
            label=f"best post-heal (v{best.version})",
            zorder=4,
        )
    ax.plot([], [], color="#ff7f0e", ls="--", label="rollback")
    ax.set_xlabel("snapshot number")
    ax.set_ylabel("F1 recorded with the snapshot")
    ax.set_title(f"{title}\nregistry: {len(snaps)} snapshots")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    path = out / "registry.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _comparison(out: Path, title: str, summary: dict[str, Any]) -> Path:
    rows = summary["rows"]
    names = [n for n in ("clean", "noheal", "healed", "all_normal", "oracle", "bayes") if n in rows]
    metrics = ["accuracy", "precision", "recall", "f1", "pr_auc"]
    fig, (ax, ax_cost) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 1.2]})
    width = 0.8 / len(names)
    xs = np.arange(len(metrics))
    for i, name in enumerate(names):
        vals = [rows[name].get(m, 0.0) or 0.0 for m in metrics]
        bars = ax.bar(xs + (i - len(names) / 2 + 0.5) * width, vals, width, label=name, color=COLORS[name])
        for bar, v in zip(bars, vals, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", fontsize=6)
    ax.set_xticks(xs, metrics)
    ax.set_ylim(0, 1.12)
    ax.legend(ncol=3, fontsize=8)
    ax.set_title("rates (threshold of each row)")
    costs = [rows[n]["cost"] for n in names]
    ax_cost.barh(names, costs, color=[COLORS[n] for n in names])
    for i, c in enumerate(costs):
        ax_cost.text(c, i, f" {c:.3f}", va="center", fontsize=8)
    ax_cost.set_xlim(0, max(costs) * 1.25)
    ax_cost.invert_yaxis()
    ax_cost.set_title("expected cost per transaction (lower is better)")
    fig.suptitle(title)
    path = out / "comparison.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
