"""The adapter ledger: which adapter is live, and every way it changes, written to the registry.

An adapter's life: a heal's candidate is recorded with the adapter it started from (a
``pre`` and a ``post`` snapshot, the post one marked accepted or refused by the gate);
an accepted one goes live unless the adapter it started from was replaced while it
healed (then it is recorded as superseded); a live adapter may be rolled back (a
``rollback`` snapshot naming the version it restores) or replaced by an operator's
``manual`` snapshot. The ledger is the one writer of those snapshots; where they are kept
(memory, SQLite, the registry topic) is the registry's store, which the service chooses.

>>> from shared.registry import MemoryStore, Registry
>>> ledger = AdapterLedger(Registry(MemoryStore(), "bundle-id"), {})
>>> ledger.version, ledger.live.kind
(0, 'initial')
>>> ledger.roll_back({}, 0, "why not").kind, len(ledger)
('rollback', 2)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shared.healing.cycle import HealResult
from shared.healing.events import HealJob
from shared.healing.gate import Verdict
from shared.model import AdapterState
from shared.registry import Registry, Snapshot, live_snapshot


@dataclass(frozen=True)
class Recorded:
    """A heal's two snapshots, and its result as recorded (superseded: no longer accepted)."""

    pre: Snapshot
    post: Snapshot
    result: HealResult


class AdapterLedger:
    def __init__(self, registry: Registry, initial: AdapterState) -> None:
        """``initial``: the bundle's adapter, recorded as version 0 in an empty registry; a
        registry with snapshots resumes the adapter that went live last."""
        self.registry = registry
        if len(registry) == 0:
            registry.record("initial", initial, version=0, note="adapter as trained")
        self.live = self.live_before(len(registry))
        self.trusted = self.live  # what a label-free reset goes back to: live when the episode opened

    def __len__(self) -> int:
        return len(self.registry)

    @property
    def version(self) -> int:
        return self.live.version

    @property
    def adapter(self) -> AdapterState:
        return self.live.adapter

    def live_before(self, seq: int) -> Snapshot:
        """The adapter that was live just before registry position ``seq``."""
        live = live_snapshot(self.registry.snapshots()[:seq])
        assert live is not None  # the registry starts with the bundle's adapter
        return live

    def record_heal(
        self, job: HealJob, result: HealResult, pre_metrics: dict[str, float], post_metrics: dict[str, float]
    ) -> Recorded:
        """Record ``job``'s heal; an accepted candidate goes live unless the version it
        started from was replaced meanwhile."""
        version, number = job.version, job.number
        if result.accepted and version != self.version:
            why = f"superseded: v{version} was replaced by v{self.version} while it healed"
            reason = f"{why} ({result.reason})"
            result = replace(result, accepted=False, reason=reason, verdict=Verdict.SUPERSEDED)
        started_from = job.model.adapter_state()
        pre = self.registry.record("pre", started_from, version, metrics=pre_metrics, heal=number)
        post = self.registry.record(
            "post",
            result.adapter,
            self.registry.latest_version + 1,
            parent=version,
            metrics=post_metrics,
            heal=number,
            accepted=result.accepted,
            note=result.reason,
        )
        if result.accepted:
            self.live = post
        return Recorded(pre, post, result)

    def roll_back(self, adapter: AdapterState, version: int, reason: str) -> Snapshot:
        """Put ``adapter`` (version ``version``) live again."""
        self.live = self.registry.record("rollback", adapter, version, parent=self.version, note=reason)
        return self.live

    def adopt(self, snapshot: Snapshot) -> bool:
        """A snapshot written by someone else (``selfheal registry rollback``): a manual one
        becomes live. True if it changed the live adapter."""
        if not self.registry.adopt(snapshot) or snapshot.kind != "manual":
            return False
        self.live = snapshot
        return True

    def best_post_heal(self, since: int, before: int | None = None) -> Snapshot | None:
        """The accepted post-heal snapshot with the best held-out F1 made at registry
        position ``since`` or later (and before ``before``); the latest of equals."""
        return self.registry.best_post_heal("f1", since, before)
