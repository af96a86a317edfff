"""Categories and missing values: training, the bundle, decoding, rules."""

from __future__ import annotations

from typing import cast

import numpy as np
import orjson
import pytest
import torch

from shared.bundle import Bundle
from shared.data.payments import payments_table
from shared.data.payments import write_csv as save_csv
from shared.data.tables import load_table
from shared.messages import Alert, decode_transactions
from shared.messages.reject import RejectCode
from shared.rules import RuleSet
from shared.rules.condition import ConditionError, compile_condition
from shared.schema import CategoryField, Schema
from shared.training import TrainConfig, build_bundle

RULES = """
[[rule]]
name = "ring"
when = 'country == "XX"'
label = "fraud"

[[rule]]
name = "no_device"
when = 'is_missing(device_age) and channel in ["web", "app"]'
label = "fraud"
"""


def payments(n: int = 3000, seed: int = 0, missing: float = 0.05) -> dict[str, list[object]]:
    return payments_table(n, seed, missing)


def write_csv(path, cols):
    save_csv(str(path), cols)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    path = write_csv(tmp_path_factory.mktemp("t") / "payments.csv", payments(20_000))
    named = {"country": {"XX"}, "channel": {"web", "app"}}
    t = load_table(path, "Class", named=named)
    b = build_bundle(t.X, t.y, t.features, RULES, schema=t.schema, train_config=TrainConfig(epochs=5))
    return Bundle.load(b.save(tmp_path_factory.mktemp("b") / "bundle"))


def test_the_schema_is_inferred_and_travels_in_the_bundle(bundle):
    s = bundle.schema
    assert s is not None
    assert s.names == ("country", "channel", "mcc", "amount", "device_age", "distance", "hour")
    assert "country=XX" in bundle.features  # named by a rule, never seen: its own input
    assert {"mcc=grocery", "mcc=<other>", "mcc:missing", "amount", "amount:missing"} <= set(bundle.features)
    assert bundle.transaction_format is s and bundle.inputs == s.names
    assert Schema.from_dict(s.to_dict()) == s


def test_an_input_never_seen_in_training_has_no_weight_in_the_frozen_model(bundle):
    j = bundle.features.index("country=XX")
    w1 = bundle.base_state["backbone.0.weight"]
    assert torch.count_nonzero(w1[:, j]) == 0
    assert torch.count_nonzero(w1[:, bundle.features.index("country=FR")]) > 0


def tx(i, **features):
    base = {
        "country": "FR", "channel": "web", "mcc": "grocery",
        "amount": 12.5, "device_age": 30.0, "distance": 2.0, "hour": 13,
    }  # fmt: skip
    return orjson.dumps({"id": f"t{i}", "features": {**base, **features}})


def test_every_valid_transaction_is_decided_and_malformed_ones_say_why(bundle):
    good = [
        tx(0),
        tx(1, amount=None, country=None),  # nulls anywhere
        tx(2, country="ZZ"),  # an unseen category: <other>
        tx(3, country="XX"),  # the rule's category
    ]
    bad = [
        (tx(4, country=7), RejectCode.VALUE, "'country' is a category"),
        (tx(5, amount="12"), RejectCode.VALUE, "'amount' is not a number"),
        (orjson.dumps({"id": "t6", "features": {"country": "FR"}}), RejectCode.SCHEMA, "missing feature(s)"),
        (tx(7, amount=1e13), RejectCode.VALUE, "absurd"),
    ]
    out = decode_transactions(good + [b for b, _, _ in bad], bundle.transaction_format)
    assert out.ids == ["t0", "t1", "t2", "t3"] and out.X.shape == (4, len(bundle.features))
    f = bundle.features.index
    assert out.X[1, f("amount:missing")] == 1 and out.X[1, f("country:missing")] == 1
    assert out.X[1, f("amount")] == bundle.schema.field("amount").impute
    assert out.X[2, f("country=<other>")] == 1 and out.X[3, f("country=XX")] == 1
    for (i, reject), (_, code, text) in zip(out.rejected, bad, strict=True):
        assert reject.code == code and text in reject.text, (i, reject)
    p = bundle.new_model().predict_proba(out.X)
    assert np.isfinite(p).all()
    fired = bundle.rules.fires(out.X)
    assert fired[:, 0].tolist() == [False, False, False, True]  # ring: country == "XX"


def test_rules_test_categories_and_missingness():
    s = Schema.infer(
        {"country": ["FR"] * 40 + ["DE"] * 40, "age": [1.0, None] * 40}, named={"country": {"XX"}}
    )
    X = s.encode_records(
        [{"country": "XX", "age": None}, {"country": "FR", "age": 5.0}, {"country": None, "age": 50.0}]
    )

    def run(text):
        return compile_condition(text, s.columns, s)(X).tolist()

    assert run('country == "XX"') == [True, False, False]
    assert run('country != "FR"') == [True, False, False]  # a missing category compares false
    assert run('country in ["FR", "DE"]') == [False, True, False]
    assert run("is_missing(age)") == [True, False, False]
    assert run("is_missing(country) or age > 10") == [False, False, True]
    assert run("age < 100") == [False, True, True]  # a missing number compares false
    with pytest.raises(ConditionError, match="'US' is not a category of 'country'"):
        run('country == "US"')
    with pytest.raises(ConditionError, match="compared with == or !="):
        run("country < 3")
    with pytest.raises(ConditionError, match="'in' needs a category"):
        run('age in ["a"]')
    toml = '[[rule]]\nname="r"\nwhen=\'country == "XX"\'\nlabel="fraud"'
    assert len(RuleSet.from_toml(toml, s.columns, schema=s)) == 1


def alarms(bundle, cols, drift_at):
    """Per detector, its first drift: (rows after ``drift_at``, its alerts)."""
    from shared.monitoring import DriftMonitor

    monitor = DriftMonitor(bundle)
    X = bundle.schema.encode_columns(cols)
    first: dict[str, tuple[int, list[Alert]]] = {}
    for i in range(0, len(X), 100):
        for a in monitor.add_transactions(X[i : i + 100]):
            if a.state == "drift" and a.detector not in first:
                first[a.detector] = (i + 100 - drift_at, [])
            if a.state == "drift" and first[a.detector][0] == i + 100 - drift_at:
                first[a.detector][1].append(a)
    return first


def test_no_drift_raises_no_alert_in_100000_transactions(bundle):
    clean = payments(100_000, seed=1)
    clean.pop("Class")
    assert alarms(bundle, clean, 0) == {}


@pytest.mark.parametrize(
    "change, feature, category",
    [
        ("XX", "country=XX", "XX"),  # a category a rule names, never seen in training, carrying the fraud
        ("YY", "country=<unseen>", "<other>"),  # one nobody named: the share of unseen values
        ("missing", "distance:missing", None),  # an upstream outage: 5% -> 30% missing (a number)
        ("blank", "channel:missing", "<missing>"),  # ... of a category field
    ],
)
def test_a_new_category_or_a_missing_rate_raises_an_alert_naming_it(bundle, change, feature, category):
    pre, post = payments(3000, seed=2), payments(3000, seed=3)
    pre.pop("Class")
    fraud = post.pop("Class")
    rng = np.random.default_rng(4)
    for i in range(3000):
        if change in ("missing", "blank"):
            if rng.random() < 0.25:
                post["distance" if change == "missing" else "channel"][i] = None
        elif fraud[i] or rng.random() < 0.02:
            post["country"][i] = change
    found = alarms(bundle, {k: pre[k] + post[k] for k in pre}, 3000)
    rows, fidi = found["fidi"]
    assert 0 < rows <= 2000 and feature in [a.feature for a in fidi], found
    if category is None:  # no category field moved
        assert "categories" not in found
        return
    rows, cats = found["categories"]  # the chi-square test of the field's frequencies
    assert 0 < rows <= 2000 and cats[0].feature == "categories" and cats[0].onset_rows >= 256
    (field,) = cats[1:]
    assert field.feature == feature.split("=")[0].split(":")[0] and field.details["category"] == category
    assert field.statistic >= 0.1 and field.details["share"] > field.details["reference_share"]


def test_selfheal_train_takes_the_table_without_flags_and_reports_the_schema(tmp_path, capsys):
    from services.cli import main

    data = write_csv(tmp_path / "payments.csv", payments(2000))
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    out = tmp_path / "bundle"
    args = ["train", "--data", str(data), "--label", "Class", "--rules", str(rules), "--out", str(out)]
    assert main([*args, "--epochs", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "schema: 7 fields -> 29 model inputs" in text
    assert "country: category, 6 one-hot (DE, ES, FR, IT, PT, XX) + <other> + country:missing" in text
    assert "amount: number, missing -> " in text
    assert main(["bundle", "info", str(out)]) == 0
    assert "schema: 7 fields" in capsys.readouterr().out
    assert Bundle.load(out).rules.names == ["ring", "no_device"]


def test_label_free_recalibration_moves_numbers_only(bundle):
    from shared.labelfree.diagnosis import diagnose
    from shared.labelfree.reference import LabelFreeReference

    ref = LabelFreeReference(bundle)
    assert ref.numeric.tolist() == [not flag for flag in bundle.schema.indicators]
    cols = payments(3000, seed=5)
    cols.pop("Class")
    assert diagnose(ref, bundle.schema.encode_columns(cols)).action == "nothing"  # no drift: shares agree
    moved = {**cols, "channel": ["web" if v == "pos" else v for v in cols["channel"]]}  # a share moves
    d = diagnose(ref, bundle.schema.encode_columns(moved))
    assert d.action == "unexplained" and {f for f, _ in d.unexplained} == {"channel=pos", "channel=web"}
    minutes = {**cols, "hour": [None if v is None else cast(float, v) * 60 for v in cols["hour"]]}
    d = diagnose(ref, bundle.schema.encode_columns(minutes))  # the imputed median does not move with it
    assert d.action == "unexplained" and [f for f, _ in d.unexplained] == ["hour"]
    complete = payments(6000, seed=6, missing=0.0)  # a table without missing values: a unit change is one
    y = np.asarray(complete.pop("Class"), np.float32)
    s = Schema.infer(complete)
    b = build_bundle(s.encode_columns(complete), y, s.columns, schema=s, train_config=TrainConfig(epochs=2))
    stream = payments(3000, seed=7, missing=0.0)
    stream.pop("Class")
    stream["amount"] = [cast(float, v) * 1.35 for v in stream["amount"]]  # a currency change
    d = diagnose(LabelFreeReference(b), s.encode_columns(stream))
    assert d.action == "recalibrate" and [x.feature for x in d.shifted] == ["amount"], d.reason


def test_an_embedding_trains_then_folds_into_an_ordinary_first_layer():
    from shared.model import ModelConfig
    from shared.training import train_model

    cols = payments(2000)
    y = np.asarray(cols.pop("Class"), np.float32)
    schema = Schema.infer(cols).encoded("embedding")
    country = schema.fields[0]
    assert isinstance(country, CategoryField) and country.embedding == 5
    assert "5 embedded in 5 dims" in schema.describe()[0]
    assert Schema.from_dict(schema.to_dict()) == schema
    X = schema.encode_columns(cols)
    (block, dim), *_ = schema.embeddings()
    cfg, tcfg = ModelConfig(n_features=X.shape[1]), TrainConfig(epochs=2)
    folded, _ = train_model(X, y, cfg, tcfg, embed=schema.embeddings())
    plain, _ = train_model(X, y, cfg, tcfg)
    assert folded.state_dict().keys() == plain.state_dict().keys()  # the same model, to every reader

    def rank(model):
        return int(np.linalg.matrix_rank(model.backbone[0].weight.detach().numpy()[:, block]))

    assert rank(folded) <= dim < len(block)  # the categories share dim directions
    assert rank(plain) == len(block) - 1  # one-hot: one each (<other>, never seen here, none)


def test_train_measures_the_encodings_with_auto_and_caps_the_vocabulary(tmp_path, capsys):
    from services.cli import main

    data = write_csv(tmp_path / "payments.csv", payments(3000))
    out = tmp_path / "bundle"
    args = ["train", "--data", str(data), "--label", "Class", "--out", str(out), "--epochs", "2", "--quiet"]
    assert main([*args, "--encoding", "auto", "--max-categories", "2"]) == 0
    text = capsys.readouterr().out
    assert "encoding: onehot (validation log loss: one-hot" in text or "encoding: embedding" in text
    b = Bundle.load(out)
    measured = b.info["encodings"]
    assert measured["kept"] in ("onehot", "embedding") and measured["validation_log_loss_onehot"] > 0
    assert b.schema is not None
    assert [len(f.vocabulary) for f in b.schema.fields if isinstance(f, CategoryField)] == [2, 2, 2]
    assert (measured["kept"] == "embedding") == (measured["embedding_gain_z"] >= 2.0)


def test_the_encoding_measurement_runs_on_a_small_table():
    from shared.experiment.encodings import format_table, measure, merchants_table

    cols = merchants_table(3000, 1)
    assert set(cols) == {"merchant", "country", "amount", "Class"}
    assert 0.02 < np.mean(np.asarray(cols["Class"], float)) < 0.2
    r = measure(merchants_table, 1, 100, "embedding", n=3000)
    assert r["inputs"] > 10 and 0 < r["test_log_loss"] < 0.5 and r["test_cost"] > 0
    table = format_table({"tables": {"merchants": {"embedding, at most 100": {"mean": r}}}})
    assert "| merchants | embedding, at most 100 |" in table
