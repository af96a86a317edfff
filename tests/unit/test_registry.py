from __future__ import annotations

import pytest
import torch

from shared.errors import ConfigError, WeightsError
from shared.model import CALIBRATION_KEYS, ModelConfig, SelfHealingModel
from shared.registry import DirectoryStore, MemoryStore, QualityWatch, Registry, RollbackPolicy, Snapshot

CFG = ModelConfig()


def adapter(value: float) -> dict[str, torch.Tensor]:
    state = SelfHealingModel(CFG).adapter_state()
    return {k: v if k in CALIBRATION_KEYS else torch.full_like(v, value) for k, v in state.items()}


def fill(reg: Registry) -> None:
    reg.record("initial", adapter(0), version=0)
    reg.record("pre", adapter(0), version=0, metrics={"f1": 0.3}, heal=1)
    reg.record("post", adapter(1), version=1, parent=0, metrics={"f1": 0.6}, heal=1)
    reg.record("pre", adapter(1), version=1, metrics={"f1": 0.6}, heal=2)
    reg.record("post", adapter(2), version=2, parent=1, metrics={"f1": 0.9}, heal=2, accepted=False)
    reg.record("pre", adapter(1), version=1, metrics={"f1": 0.6}, heal=3)
    reg.record("post", adapter(3), version=3, parent=1, metrics={"f1": 0.5}, heal=3)


def test_best_post_heal_ignores_pre_heal_and_refused_snapshots():
    reg = Registry(MemoryStore(), "b1")
    fill(reg)
    best = reg.best_post_heal("f1")
    assert best is not None and best.version == 1 and best.kind == "post"
    assert [s.version for s in reg.post_heal()] == [1, 3]
    late = reg.best_post_heal("f1", since=5)
    assert late is not None and late.version == 3
    assert reg.latest_version == 3 and reg.n_heals == 3
    assert reg.get("b1-000002-post").version == 1
    with pytest.raises(KeyError):
        reg.get("nope")
    with pytest.raises(ConfigError):
        reg.record("weird", adapter(0), version=0)


def test_directory_store_survives_a_restart(tmp_path):
    reg = Registry(DirectoryStore(tmp_path, CFG), "b1")
    fill(reg)
    again = Registry(DirectoryStore(tmp_path, CFG), "b1")
    assert [s.id for s in again.snapshots()] == [s.id for s in reg.snapshots()]
    best = again.best_post_heal()
    assert best is not None and torch.equal(best.adapter["scale"], adapter(1)["scale"])
    assert again.snapshots()[4].accepted is False
    other = Registry(DirectoryStore(tmp_path, CFG), "another-bundle")
    assert len(other) == 0


def test_snapshot_bytes_round_trip_and_damage():
    snap = Snapshot(
        seq=3, kind="post", version=2, parent=1, bundle="b", adapter=adapter(2), metrics={"f1": 0.5}
    )
    back = Snapshot.from_bytes(snap.to_bytes(), CFG)
    assert back.header() == snap.header()
    from shared.model import adapter_to_bytes

    with pytest.raises(WeightsError, match="metadata"):
        Snapshot.from_bytes(adapter_to_bytes(adapter(0), {"snapshot": "{}"}), CFG)


def test_quality_watch_waits_then_flags_accuracy_drops():
    watch = QualityWatch(RollbackPolicy(window=5, min_updates=3))
    assert watch.degraded is None  # no baseline yet
    watch.set_baseline(accuracy=0.9, f1=0.5)
    watch.update(0.7, 0.5).update(0.7, 0.5)
    assert watch.degraded is None  # two measurements only
    watch.update(0.7, 0.5)
    assert watch.degraded is not None and "rolling accuracy" in watch.degraded
    watch.reset_window()
    assert watch.n == 0 and watch.degraded is None
