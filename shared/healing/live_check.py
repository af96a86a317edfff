"""The live check: how the live adapter fares on its own labelled decisions, judged afresh
every drift episode.

Two judges read the trusted labels of decisions the live adapter made: the shadow guard
(:mod:`~shared.healing.shadow_guard`: its cost against the frozen shadow's on the same
transactions, for any adapter but the bundle's, whatever made it) and, from the episode's
first accepted heal on, live quality against that heal's baseline
(:mod:`~shared.healing.quality`). A shadow loss pauses healing for the rest of the episode
and sends the stream back to the bundle's adapter; degraded quality asks for the best
post-heal snapshot instead. Which snapshot that is, and the rollback itself, are the
ledger's.

With labels hours late, an adapter's own decisions get their labels only long after it
went live (20,000 transactions at the late labels the family is run with: often never
within its time). So every labelled heal cycle also re-scores the live adapter against the
shadow on the labelled rows it compares its candidate with the shadow on (the episode's
arrived labels, carried to the present where the features moved:
:mod:`~shared.healing.transport`; :meth:`LiveCheck.rescored`). No label trained a
label-free calibration or the bundle's adapter, so for them every such row is out of
sample; a labelled adapter saw some of them in training, which only makes it look better.
Losing there by the guard's own rule (paired z of the cost at least ``z`` over at least
``min_rows`` rows) sends the stream back to the bundle's adapter too, but healing goes on:
the next candidate is still gated against the shadow.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.evaluation import CostMatrix
from shared.healing.featurelog import DECIDED, FRAUD, SHADOW_FRAUD
from shared.healing.gate import VersusShadow
from shared.healing.join import Joined
from shared.healing.quality import LiveQuality
from shared.healing.shadow_guard import ShadowGuard, ShadowGuardConfig
from shared.registry import QualityWatch, RollbackPolicy


@dataclass(frozen=True)
class LiveVerdict:
    """The live adapter should go: ``to_bundle`` after it lost to the shadow (healing is then
    paused), else after its quality degraded (to the episode's best post-heal snapshot)."""

    reason: str
    to_bundle: bool


class LiveCheck:
    def __init__(
        self, rollback: RollbackPolicy, shadow: ShadowGuardConfig, costs: CostMatrix, chunk: int
    ) -> None:
        """``chunk``: labels per live-quality measurement."""
        self.costs, self.shadow_on = costs, shadow.on
        self.quality = LiveQuality(rollback, costs, chunk)
        self.shadow = ShadowGuard(shadow.rows, shadow.min_rows, shadow.z)
        self.baseline_version = -1  # first version healed in the episode: decisions from it on are judged
        self.paused: str | None = None  # why healing stopped for the rest of the episode
        self.loses_rescored: tuple[int, str] | None = None  # (version, why) it lost re-scored

    @property
    def watch(self) -> QualityWatch:
        return self.quality.watch

    def healed(self, version: int) -> None:
        """A heal was accepted: live quality is judged from the episode's first one on."""
        if self.baseline_version < 0:
            self.baseline_version = version

    def add(self, joined: Joined, live_version: int) -> None:
        """Trusted labels: the decisions among them that ``live_version`` made are judged."""
        judge_quality = self.baseline_version >= 1
        if not judge_quality and live_version == 0:
            return  # the bundle's adapter, and no heal to measure: nothing to judge
        for y, row in zip(joined.labels.tolist(), joined.rows, strict=True):
            flags, version = int(row["flags"]), int(row["version"])
            if not flags & DECIDED or version != live_version:
                continue  # labels of decisions by adapters since replaced say nothing about it
            fraud, shadow = bool(flags & FRAUD), bool(flags & SHADOW_FRAUD)
            if judge_quality:
                self.quality.add(y, fraud)
            if version > 0:
                self.shadow.add(float(self.costs.per_row(y, fraud) - self.costs.per_row(y, shadow)), version)

    def rescored(self, live: VersusShadow | None, live_version: int) -> None:
        """A labelled heal cycle's re-scoring of ``live_version`` against the shadow on its
        labelled rows (``live``; None: nothing held out): a loss by the guard's rule is
        remembered for :meth:`verdict`."""
        if live is None or not self.shadow_on or live_version == 0:
            return
        if self.shadow.loses(live.rows, -live.gain_z):
            self.loses_rescored = (
                live_version,
                f"the live adapter costs {live.cost_candidate:.4f} against the shadow's "
                f"{live.cost_shadow:.4f} re-scored on {live.rows} arrived labels (z={-live.gain_z:.2f})",
            )

    def verdict(self, live_version: int) -> LiveVerdict | None:
        """Whether the live adapter should go (each verdict restarts the quality window)."""
        rescored, self.loses_rescored = self.loses_rescored, None
        if rescored is not None and rescored[0] == live_version:
            self.watch.reset_window()
            return LiveVerdict(rescored[1], to_bundle=True)
        loses = self.shadow.verdict(live_version) if self.shadow_on else None
        if loses is not None:
            self.shadow.clear()
            self.paused = f"healing paused for this episode: {loses}"
            self.watch.reset_window()
            return LiveVerdict(loses, to_bundle=True)
        reason = self.watch.degraded
        if reason is None or self.paused is not None:
            return None  # paused: the guard chose the bundle's adapter; no healed one comes back
        self.watch.reset_window()
        return LiveVerdict(reason, to_bundle=False)
