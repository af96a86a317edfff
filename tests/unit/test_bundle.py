from __future__ import annotations

import numpy as np
import pytest

from shared.bundle import Bundle
from shared.errors import BundleError


def test_save_load_round_trip(seed_bundle, seed_scenario, tmp_path):
    seed_bundle.save(tmp_path / "b")
    loaded = Bundle.load(tmp_path / "b")
    assert loaded.id == seed_bundle.id
    assert loaded.features == seed_bundle.features
    assert loaded.threshold == seed_bundle.threshold
    assert loaded.rules.names == ["low_v14"]
    X = seed_scenario.clean_test.X
    np.testing.assert_array_equal(
        loaded.new_model().predict_proba(X), seed_bundle.new_model().predict_proba(X)
    )
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "adapter.safetensors",
        "base.safetensors",
        "bundle.json",
        "reference.safetensors",
        "rules.toml",
    ]
    ref, got = seed_bundle.reference_rows, loaded.reference_rows
    assert ref is not None and got is not None
    np.testing.assert_array_equal(got.X, ref.X)
    assert got.validation.sum() == ref.validation.sum() > 0


def test_bundle_carries_schema_reference_threshold_and_costs(seed_bundle):
    assert seed_bundle.features[7] == "V14"
    assert seed_bundle.reference_mean.shape == (10,)
    assert seed_bundle.costs.fp == 1.0 and seed_bundle.costs.fn == 10.0
    assert 0.0 < seed_bundle.threshold < 1.0
    assert "validation" in seed_bundle.info and "reference_conflict_rate" in seed_bundle.info


def test_id_is_a_content_hash(seed_bundle, tmp_path):
    seed_bundle.save(tmp_path / "b")
    again = Bundle.load(tmp_path / "b")
    again.threshold = 0.3
    assert again._content_id() != seed_bundle.id


def test_modified_bundle_is_refused(seed_bundle, tmp_path):
    path = seed_bundle.save(tmp_path / "b")
    (path / "rules.toml").write_text('[[rule]]\nname = "x"\nwhen = "V14 < 0"\n')
    with pytest.raises(BundleError, match="does not match its id"):
        Bundle.load(path)


def test_missing_file_is_named(seed_bundle, tmp_path):
    path = seed_bundle.save(tmp_path / "b")
    (path / "base.safetensors").unlink()
    with pytest.raises(BundleError, match=r"missing base\.safetensors"):
        Bundle.load(path)


def test_new_model_has_a_frozen_base(seed_bundle):
    model = seed_bundle.new_model()
    assert not any(p.requires_grad for p in model.base_parameters())
