"""The registry: every adapter before and after every heal, and which one to roll back to."""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import ConfigError
from shared.model import AdapterState
from shared.registry.snapshot import KINDS, Snapshot, SnapshotStore

LIVE_KINDS = ("initial", "rollback", "manual")  # a snapshot of these kinds went live when recorded


def live_snapshot(snapshots: Sequence[Snapshot]) -> Snapshot | None:
    """The adapter that went live last in ``snapshots`` (a registry's, in order): the newest
    of a live kind or an accepted ``post``."""
    live = [s for s in snapshots if s.kind in LIVE_KINDS or (s.kind == "post" and s.accepted)]
    return live[-1] if live else None


class Registry:
    def __init__(self, store: SnapshotStore, bundle: str) -> None:
        self.store = store
        self.bundle = bundle
        self._snaps: list[Snapshot] = [s for s in store.load_all() if s.bundle == bundle]

    def __len__(self) -> int:
        return len(self._snaps)

    def record(
        self,
        kind: str,
        adapter: AdapterState,
        version: int,
        parent: int | None = None,
        metrics: dict[str, float] | None = None,
        heal: int | None = None,
        accepted: bool = True,
        note: str = "",
    ) -> Snapshot:
        if kind not in KINDS:
            raise ConfigError(f"unknown snapshot kind {kind!r}; one of {KINDS}")
        snap = Snapshot(
            seq=len(self._snaps),
            kind=kind,
            version=version,
            parent=parent,
            bundle=self.bundle,
            adapter={k: v.detach().clone() for k, v in adapter.items()},
            metrics=dict(metrics or {}),
            heal=heal,
            accepted=accepted,
            note=note,
        )
        self.store.put(snap)
        self._snaps.append(snap)
        return snap

    def adopt(self, snapshot: Snapshot) -> bool:
        """Take in a snapshot another writer stored (an operator's rollback); False if known."""
        if snapshot.bundle != self.bundle or any(s.id == snapshot.id for s in self._snaps):
            return False
        self._snaps.append(snapshot)
        return True

    def snapshots(self) -> list[Snapshot]:
        return list(self._snaps)

    def get(self, snapshot_id: str) -> Snapshot:
        for s in self._snaps:
            if s.id == snapshot_id:
                return s
        raise KeyError(f"no snapshot {snapshot_id!r} in the registry")

    def post_heal(self, since: int = 0) -> list[Snapshot]:
        """Accepted post-heal snapshots from position ``since`` on: the rollback candidates."""
        return [s for s in self._snaps[since:] if s.kind == "post" and s.accepted]

    def best_post_heal(
        self, metric: str = "f1", since: int = 0, before: int | None = None
    ) -> Snapshot | None:
        """The accepted post-heal snapshot with the highest ``metric`` (latest on ties), made
        at position ``since`` or later (and before position ``before``)."""
        scored = [
            s for s in self.post_heal(since) if metric in s.metrics and (before is None or s.seq < before)
        ]
        if not scored:
            return None
        return max(reversed(scored), key=lambda s: s.metrics[metric])

    @property
    def latest_version(self) -> int:
        return max((s.version for s in self._snaps), default=0)

    @property
    def n_heals(self) -> int:
        return sum(1 for s in self._snaps if s.kind == "post")
