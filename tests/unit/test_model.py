from __future__ import annotations

import pytest
import torch

from shared.errors import WeightsError
from shared.model import (
    ModelConfig,
    SelfHealingModel,
    adapter_from_bytes,
    adapter_to_bytes,
    check_adapter,
    count_parameters,
)


def test_sizes_match_the_research_model():
    """The research model's sizes, and the input path beside its adapter (64 x 10, zero)."""
    model = SelfHealingModel(ModelConfig())
    assert count_parameters(model) == 13_250 + 640
    assert count_parameters(model.reflexive) - count_parameters(model.reflexive.input_path) == 8_321
    assert not model.reflexive.input_path.weight.any()
    assert model.reflexive.scale.item() == pytest.approx(0.1)


def test_forward_returns_one_logit_per_row():
    model = SelfHealingModel(ModelConfig(n_features=3, hidden=8, adapter_hidden=4))
    assert model(torch.zeros(5, 3)).shape == (5,)
    assert model.predict_proba(torch.zeros(2, 3).numpy()).shape == (2,)


def test_freeze_base_leaves_only_the_adapter_trainable():
    model = SelfHealingModel(ModelConfig())
    trainable = model.freeze_base()
    assert {id(p) for p in trainable} == {id(p) for p in model.reflexive.parameters()}
    assert not any(p.requires_grad for p in model.base_parameters())


def test_adapter_round_trips_through_safetensors_bytes():
    cfg = ModelConfig()
    a, b = SelfHealingModel(cfg), SelfHealingModel(cfg)
    data = adapter_to_bytes(a.adapter_state(), {"version": "7"})
    state, meta = adapter_from_bytes(data, cfg)
    assert meta == {"version": "7"}
    b.load_base(a.base_state())
    b.load_adapter(state)
    x = torch.randn(4, cfg.n_features)
    assert torch.equal(a(x), b(x))


def test_base_state_holds_no_adapter_and_includes_standardisation():
    keys = SelfHealingModel(ModelConfig()).base_state()
    assert not any(k.startswith("reflexive.") for k in keys)
    assert {"input_mean", "input_std", "head.weight"} <= set(keys)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.pop("scale"), "keys"),
        (lambda s: s.__setitem__("adapter.0.weight", torch.zeros(3, 3)), "shape"),
        (lambda s: s["adapter.2.bias"].__setitem__(0, float("nan")), "NaN"),
        (lambda s: s.__setitem__("scale", torch.tensor(0.1, dtype=torch.float64)), "float32"),
    ],
)
def test_bad_adapters_are_rejected(mutate, message):
    cfg = ModelConfig()
    state = SelfHealingModel(cfg).adapter_state()
    mutate(state)
    with pytest.raises(WeightsError, match=message):
        check_adapter(state, cfg)


def test_garbage_bytes_are_a_weights_error():
    with pytest.raises(WeightsError, match="not valid safetensors"):
        adapter_from_bytes(b"\x80\x04not a tensor file", ModelConfig())


def test_an_adapter_without_an_input_path_reads_as_zero_and_means_what_it_meant():
    """Adapters written before the input path (registries, compacted topics) load with a
    zero path and score exactly as the research formula ``h + scale * adapter(h)`` did."""
    model = SelfHealingModel(ModelConfig(n_features=3, hidden=8, adapter_hidden=4))
    old = {k: v for k, v in model.adapter_state().items() if not k.startswith("input_path.")}
    state, _ = adapter_from_bytes(adapter_to_bytes(old, {}), model.config)
    assert not state["input_path.weight"].any()
    model.load_adapter(state)
    x = torch.randn(5, 3)
    with torch.no_grad():
        h = model.hidden(x)[:, :8]
        r = model.reflexive
        research = model.head(h + r.scale * r.adapter(h)).squeeze(-1) + r.logit_offset
        assert torch.equal(model(x), research)
        r.input_path.weight.fill_(0.5)  # a healed path: the inputs now reach the adapter
        assert not torch.allclose(model(x), research)


def test_the_decision_shift_moves_every_logit_and_old_adapters_have_none():
    model = SelfHealingModel(ModelConfig(n_features=3, hidden=8, adapter_hidden=4))
    old = {k: v for k, v in model.adapter_state().items() if k != "decision_shift"}
    state, _ = adapter_from_bytes(adapter_to_bytes(old, {}), model.config)
    assert float(state["decision_shift"]) == 0.0
    model.load_adapter(state)
    x = torch.randn(5, 3)
    with torch.no_grad():
        before = model(x)
        model.reflexive.decision_shift.fill_(-1.5)
        assert torch.allclose(model(x), before - 1.5)
