"""``adapter-weights`` (key: the bundle id, compacted): safetensors bytes with their provenance.

Metadata (safetensors header, all strings): ``bundle`` (id), ``version``, ``parent``,
``created`` (ISO 8601 UTC), ``metrics`` (JSON). The record key is the bundle id, so a
compacted topic keeps the newest adapter of every bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from shared.errors import WeightsError
from shared.model import AdapterState, ModelConfig, adapter_from_bytes, adapter_to_bytes


@dataclass(frozen=True)
class AdapterMessage:
    bundle: str
    version: int
    parent: int | None
    created: str
    metrics: dict[str, float]
    state: AdapterState


def encode_adapter(
    state: AdapterState,
    bundle: str,
    version: int,
    parent: int | None,
    metrics: dict[str, float] | None = None,
) -> bytes:
    meta = {
        "bundle": bundle,
        "version": str(version),
        "parent": "" if parent is None else str(parent),
        "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "metrics": orjson.dumps(metrics or {}).decode(),
    }
    return adapter_to_bytes(state, meta)


def decode_adapter(data: bytes, config: ModelConfig, bundle: str) -> AdapterMessage:
    """Parse and check an adapter message for ``bundle``; raises WeightsError with the reason."""
    state, meta = adapter_from_bytes(data, config)
    if meta.get("bundle") != bundle:
        raise WeightsError(f"adapter is for bundle {meta.get('bundle')!r}, this service runs {bundle!r}")
    try:
        version = int(meta["version"])
        parent = int(meta["parent"]) if meta.get("parent") else None
        metrics = {str(k): float(v) for k, v in orjson.loads(meta.get("metrics", "{}")).items()}
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise WeightsError(f"adapter metadata is damaged: {exc}") from exc
    return AdapterMessage(bundle, version, parent, meta.get("created", ""), metrics, state)
