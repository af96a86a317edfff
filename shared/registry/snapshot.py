"""Adapter snapshots and the stores that keep them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from shared.errors import WeightsError
from shared.model import AdapterState, ModelConfig, adapter_from_bytes, adapter_to_bytes

KINDS = ("initial", "pre", "post", "rollback", "manual")


@dataclass(frozen=True)
class Snapshot:
    seq: int  # position in the registry, from 0
    kind: str  # initial | pre (before a heal) | post (after a heal) | rollback | manual
    version: int  # adapter version held; a rejected candidate keeps the version it would have had
    parent: int | None  # version it derives from
    bundle: str  # bundle id
    adapter: AdapterState = field(repr=False)
    metrics: dict[str, float] = field(default_factory=dict)
    heal: int | None = None  # heal number, for pre/post
    accepted: bool = True  # post only: did the gate accept it
    note: str = ""
    created: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        return f"{self.bundle}-{self.seq:06d}-{self.kind}"

    def header(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "kind": self.kind,
            "version": self.version,
            "parent": self.parent,
            "bundle": self.bundle,
            "metrics": self.metrics,
            "heal": self.heal,
            "accepted": self.accepted,
            "note": self.note,
            "created": self.created,
        }

    def to_bytes(self) -> bytes:
        """safetensors bytes: the adapter tensors, with the header as JSON metadata."""
        return adapter_to_bytes(self.adapter, {"snapshot": orjson.dumps(self.header()).decode()})

    @classmethod
    def from_bytes(cls, data: bytes, config: ModelConfig) -> Snapshot:
        adapter, meta = adapter_from_bytes(data, config)
        try:
            h = orjson.loads(meta["snapshot"])
            return cls(
                seq=int(h["seq"]),
                kind=str(h["kind"]),
                version=int(h["version"]),
                parent=None if h["parent"] is None else int(h["parent"]),
                bundle=str(h["bundle"]),
                adapter=adapter,
                metrics={str(k): float(v) for k, v in h["metrics"].items()},
                heal=h["heal"],
                accepted=bool(h["accepted"]),
                note=str(h["note"]),
                created=float(h["created"]),
            )
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            raise WeightsError(f"snapshot metadata is damaged: {exc}") from exc


class SnapshotStore(Protocol):
    """Where snapshots live. In memory, in a directory, or (services) on a compacted topic."""

    def put(self, snapshot: Snapshot) -> None: ...

    def load_all(self) -> list[Snapshot]: ...


class MemoryStore:
    def __init__(self) -> None:
        self._items: list[Snapshot] = []

    def put(self, snapshot: Snapshot) -> None:
        self._items.append(snapshot)

    def load_all(self) -> list[Snapshot]:
        return list(self._items)


class DirectoryStore:
    """One safetensors file per snapshot; survives restarts."""

    def __init__(self, path: str | Path, config: ModelConfig) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = config

    def put(self, snapshot: Snapshot) -> None:
        final = self.path / f"{snapshot.seq:06d}-{snapshot.kind}.safetensors"
        tmp = final.with_suffix(".tmp")
        tmp.write_bytes(snapshot.to_bytes())
        tmp.replace(final)  # atomic: a crash leaves the old state or the new, never half

    def load_all(self) -> list[Snapshot]:
        snaps = [
            Snapshot.from_bytes(p.read_bytes(), self.config) for p in sorted(self.path.glob("*.safetensors"))
        ]
        return sorted(snaps, key=lambda s: s.seq)
