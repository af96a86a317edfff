from __future__ import annotations

import numpy as np
import pytest

from shared.errors import RulesError
from shared.rules import RuleSet

FEATURES = ["V14", "amount", "odd name"]
X = np.array(
    [
        [-2.0, 10.0, 0.0],
        [-2.0, 500.0, 1.0],
        [0.5, 10.0, 5.0],
        [0.0, 2000.0, 0.0],
    ]
)
GOOD = """
[conflict]
fraud_below = 0.25

[[rule]]
name = "low_v14"
when = "V14 < -1.5"
label = "fraud"
weight = 1.0

[[rule]]
name = "small_normal"
when = "amount <= 10 and not (V14 < -1.5)"
label = "normal"
weight = 0.5

[[rule]]
name = "quoted"
when = "`odd name` >= 5 or amount > 1000"
label = 1
"""


def test_parses_and_evaluates_vectorised():
    rules = RuleSet.from_toml(GOOD, FEATURES)
    assert rules.names == ["low_v14", "small_normal", "quoted"]
    assert rules.fraud_below == 0.25 and rules.normal_above == 0.70
    fired = rules.fires(X)
    assert fired.tolist() == [
        [True, False, False],
        [True, False, False],
        [False, True, True],
        [False, False, True],
    ]
    assert rules.fired_names(fired[2]) == ["small_normal", "quoted"]


def test_weak_labels_are_weighted_votes():
    rules = RuleSet.from_toml(GOOD, FEATURES)
    labels, conf = rules.weak_labels(X)
    # row 2: normal (0.5) vs fraud (1.0) -> 2/3 fraud, confidence min(1, 1.5)
    assert labels.tolist() == pytest.approx([1.0, 1.0, 2 / 3, 1.0])
    assert conf.tolist() == [1.0, 1.0, 1.0, 1.0]
    empty = RuleSet.empty(FEATURES)
    assert empty.weak_labels(X)[1].tolist() == [0, 0, 0, 0]


def test_reliability_silences_rules_the_labels_contradict():
    rules = RuleSet.from_toml(GOOD, FEATURES)
    fired = np.zeros((40, 3), dtype=bool)
    fired[:20, 0] = True  # low_v14 fires on 20 labelled rows, right on 8 only
    y = np.full(40, np.nan)
    y[:20] = [1] * 8 + [0] * 12
    rel = rules.reliability(fired, y)
    assert rel.tolist() == [0.0, 1.0, 1.0]
    _, conf = rules.weak_labels(X, rules.fires(X), rel)
    assert conf[0] == 0.0  # only low_v14 fired there


def test_conflicts_both_ways():
    rules = RuleSet.from_toml(GOOD, FEATURES)
    probs = np.array([0.1, 0.9, 0.8, 0.2])
    # row 0: fraud rule, p < 0.25; row 2: normal rule fires and p > 0.7; row 3: fraud rule, p < 0.25
    assert rules.conflicts(X, probs).tolist() == [True, False, True, True]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[[rule]]\nname = 'a'\nwhen = 'V99 < 1'\n",
            "rule 'a': bad condition 'V99 < 1': unknown feature 'V99'",
        ),
        ("[[rule]]\nname = 'b'\nwhen = 'V14 < '\n", "rule 'b': bad condition"),
        ("[[rule]]\nname = 'c'\nwhen = 'V14 < 1 and'\n", "rule 'c'"),
        (
            "[[rule]]\nname = 'd'\nwhen = '1 < 2'\n",
            "rule 'd': bad condition '1 < 2': a comparison needs at least one feature",
        ),
        ("[[rule]]\nname = 'e'\nwhen = 'V14 < 1'\nlabel = 'maybe'\n", "rule 'e': label must be"),
        (
            "[[rule]]\nname = 'f'\nwhen = 'V14 < 1'\nweight = -1\n",
            "rule 'f': weight must be a positive number",
        ),
        ("[[rule]]\nname = 'g'\nwhen = 'V14 < 1'\nweight = nan\n", "rule 'g': weight"),
        ("[[rule]]\nname = 'h'\nwhen = 'V14 < 1'\ncolour = 'red'\n", "rule 'h': unknown key(s) ['colour']"),
        ("[[rule]]\nname = 'i'\n", "rule 'i': needs a 'when' condition"),
        ("[[rule]]\nwhen = 'V14 < 1'\n", "rule #1: needs a non-empty 'name'"),
        (
            "[[rule]]\nname='j'\nwhen='V14<1'\n[[rule]]\nname='j'\nwhen='V14<2'\n",
            "rule 'j': the name is used twice",
        ),
        (
            "[[rule]]\nname = 'k'\nwhen = '(V14 < 1'\n",
            "rule 'k': bad condition '(V14 < 1': condition ends too early",
        ),
        ("[[rule]]\nname = 'l'\nwhen = 'V14 ~ 1'\n", "rule 'l': bad condition 'V14 ~ 1': cannot read"),
        ("[rules]\n", "unknown section(s) ['rules']"),
        ("rule = 3\n", "'rule' must be an array of tables"),
        ("[[rule]\n", "not valid TOML"),
        ("[conflict]\nfraud_below = 2\n", "[conflict] thresholds must lie in (0, 1)"),
    ],
)
def test_invalid_rules_name_the_rule(text, message):
    with pytest.raises(RulesError) as info:
        RuleSet.from_toml(text, FEATURES, origin="r.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("r.toml")


def test_missing_file(tmp_path):
    with pytest.raises(RulesError, match="cannot read rules file"):
        RuleSet.from_file(tmp_path / "none.toml", FEATURES)


def test_shape_is_checked():
    with pytest.raises(ValueError, match="expected"):
        RuleSet.from_toml(GOOD, FEATURES).fires(np.zeros((2, 2)))
