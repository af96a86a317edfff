"""The adapter registry: snapshots before and after every heal, stores, and the rollback policy."""

from shared.registry.policy import QualityWatch, RollbackPolicy
from shared.registry.registry import Registry, live_snapshot
from shared.registry.snapshot import DirectoryStore, MemoryStore, Snapshot, SnapshotStore

__all__ = [
    "DirectoryStore",
    "MemoryStore",
    "QualityWatch",
    "Registry",
    "RollbackPolicy",
    "Snapshot",
    "SnapshotStore",
    "live_snapshot",
]
