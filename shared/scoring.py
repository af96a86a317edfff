"""The scorer's core: vectorised scoring with the live and shadow adapters, and hot swaps.

Adapters arrive on another thread (parsed, checked and built there); the scoring loop
takes the newest one between batches with :meth:`ScoringCore.swap_if_pending`, a
pointer swap. Scoring never waits on a load or on healing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import orjson
import torch

from shared.bundle import Bundle
from shared.model import AdapterState, ReflexiveLayer


@dataclass(frozen=True)
class LiveAdapter:
    version: int
    layer: ReflexiveLayer
    received: float  # monotonic time it was offered


class ScoringCore:
    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.model = bundle.new_model()
        self.model.eval()
        self.shadow = self.model.new_adapter(bundle.adapter_state).eval()
        self.live = LiveAdapter(0, self.shadow, time.monotonic())
        self._pending: LiveAdapter | None = None
        self._lock = threading.Lock()
        self.features = list(bundle.features)
        self.threshold = bundle.threshold

    # -- adapters (the follower thread calls offer; the loop calls swap_if_pending)
    def offer(self, state: AdapterState, version: int) -> None:
        """Build a layer for ``state`` (already checked) and queue it; newest version wins."""
        layer = self.model.new_adapter(state).eval()
        with self._lock:
            current = self._pending.version if self._pending else self.live.version
            if version != current:
                self._pending = LiveAdapter(version, layer, time.monotonic())

    def swap_if_pending(self) -> LiveAdapter | None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.live = pending
        return pending

    # -- scoring
    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(live, shadow) fraud probabilities for (N, d) rows; the backbone runs once."""
        with torch.inference_mode():
            h = self.model.hidden(torch.from_numpy(X))
            live = torch.sigmoid(self.model.logits_from_hidden(h, self.live.layer))
            shadow = torch.sigmoid(self.model.logits_from_hidden(h, self.shadow))
        return live.numpy(), shadow.numpy()

    def decisions(
        self, ids: list[str], X: np.ndarray, ts: list[float | None], received_ms: float
    ) -> list[bytes]:
        """One JSON decision per row, stamped with the adapter version that scored it."""
        p, ps = self.score(X)
        fired = self.bundle.rules.fires(X)
        conflicts = self.bundle.rules.conflicts(X, p, fired)
        names = self.bundle.rules.names
        now_ms = time.time() * 1e3
        version, bundle_id, t = self.live.version, self.bundle.id, self.threshold
        out = []
        for i, tx_id in enumerate(ids):
            sent = ts[i]
            start = sent if sent is not None else received_ms
            out.append(
                orjson.dumps(
                    {
                        "id": tx_id,
                        "score": round(float(p[i]), 6),
                        "fraud": bool(p[i] >= t),
                        "threshold": t,
                        "adapter_version": version,
                        "bundle": bundle_id,
                        "rules": [n for n, on in zip(names, fired[i], strict=True) if on],
                        "conflict": bool(conflicts[i]),
                        "shadow_score": round(float(ps[i]), 6),
                        "latency_ms": round(max(0.0, now_ms - start), 3),
                    }
                )
            )
        return out
