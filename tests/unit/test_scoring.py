"""The scorer's decisions: the documented JSON, the version stamp, non-finite scores refused."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from shared.messages import Decision, decode_decision, encode_decision, encode_decisions
from shared.scoring import ScoringCore
from shared.training import TrainConfig, build_bundle

RULES = """
[[rule]]
name = "v1_low"
when = "V1 < -1.5"
label = 1

[[rule]]
name = "v2_high"
when = "V2 > 2"
label = 0
"""


@pytest.fixture(scope="module")
def core() -> ScoringCore:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3)).astype(np.float32)
    y = (X[:, 0] < -1.0).astype(np.float32)
    bundle = build_bundle(X, y, ["V1", "V2", "V3"], RULES, label="y", train_config=TrainConfig(epochs=2))
    return ScoringCore(bundle)


def test_decisions_are_the_documented_json(core: ScoringCore) -> None:
    X = np.array([[-2.0, 3.0, 0.0], [0.0, 0.0, 0.0], [-2.0, 0.0, 1.0]], dtype=np.float32)
    ids = ['a"quoted\\id', "b", "c"]
    out = core.decisions(ids, X, [1000.0, None, 1000.0], received_ms=2000.0)
    p, ps = core.score(X)
    for i, raw in enumerate(out):
        rec = orjson.loads(raw)
        assert list(rec) == [
            "id", "score", "fraud", "threshold", "adapter_version", "bundle",
            "rules", "conflict", "shadow_score", "latency_ms",
        ]  # fmt: skip
        assert rec["id"] == ids[i]
        assert rec["score"] == round(float(p[i]), 6) and rec["shadow_score"] == round(float(ps[i]), 6)
        assert rec["fraud"] is bool(p[i] >= core.threshold)
        assert rec["threshold"] == core.threshold and rec["bundle"] == core.bundle.id
        assert rec["adapter_version"] == 0
        assert rec["latency_ms"] >= 0
        decoded = decode_decision(raw)
        assert isinstance(decoded, Decision) and encode_decision(decoded) == raw  # the plain encoder agrees
    assert [orjson.loads(r)["rules"] for r in out] == [["v1_low", "v2_high"], [], ["v1_low"]]


def test_the_version_stamp_follows_a_swap(core: ScoringCore) -> None:
    X = np.zeros((1, 3), dtype=np.float32)
    core.offer(core.bundle.adapter_state, 7)
    assert core.swap_if_pending() is not None
    assert orjson.loads(core.decisions(["x"], X, [None], 0.0)[0])["adapter_version"] == 7


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        encode_decisions(
            ["a"],
            np.array([np.nan]),
            np.array([0.1]),
            [b"[]"],
            np.array([False]),
            np.array([1.0]),
            0.5,
            b'"k":1',
        )
    assert encode_decisions([], np.array([]), np.array([]), [], np.array([]), np.array([]), 0.5, b"") == []


def test_live_and_shadow_scores_are_the_models_whichever_adapter_is_live(core: ScoringCore) -> None:
    import torch

    X = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    core = ScoringCore(core.bundle)  # the bundle's own adapter live (version 0)
    p, ps = core.score(X)
    with torch.inference_mode():
        own = torch.sigmoid(core.model.logits(torch.from_numpy(X), core.shadow)).numpy()
    assert np.array_equal(p, own) and np.array_equal(ps, own)  # scored once, exactly the model's
    moved = {k: v + 0.05 for k, v in core.bundle.adapter_state.items() if k != "input_scale"}
    core.offer({**core.bundle.adapter_state, **moved}, 8)
    core.swap_if_pending()
    p, ps = core.score(X)
    with torch.inference_mode():
        live = torch.sigmoid(core.model.logits(torch.from_numpy(X), core.live.layer)).numpy()
    assert np.array_equal(p, live) and np.array_equal(ps, own) and not np.array_equal(p, ps)
