"""Every topic's message: decoders give a typed value or a reason with a stable code, and
each encoder round-trips through its decoder."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.messages import (
    Alert,
    DeadLetter,
    Decision,
    Label,
    Reject,
    RejectCode,
    decode_alert,
    decode_dead_letter,
    decode_decision,
    decode_decisions,
    decode_label,
    decode_transactions,
    encode_alert,
    encode_decision,
    encode_decisions,
    encode_label,
)
from shared.messages.decisions import shared_fields


@pytest.mark.parametrize(
    "raw, code, text",
    [
        (b"", RejectCode.EMPTY, "empty message"),
        (b"{", RejectCode.JSON, "not JSON"),
        (b"[]", RejectCode.SCHEMA, "value is not a JSON object"),
        (b'{"features": {}}', RejectCode.SCHEMA, "missing or non-string 'id'"),
        (b'{"id": "a"}', RejectCode.SCHEMA, "missing 'features' object"),
        (b'{"id": "a", "features": {"x": 1}}', RejectCode.SCHEMA, "missing feature(s): y"),
        (b'{"id": "a", "features": {"x": 1, "y": 2, "z": 3}}', RejectCode.SCHEMA, "unknown feature(s): z"),
        (b'{"id": "a", "features": {"x": true, "y": 2}}', RejectCode.VALUE, "feature 'x' is not a number"),
        (b'{"id": "a", "features": {"x": 1e13, "y": 2}}', RejectCode.VALUE, "feature 'x' is not finite"),
        (b'{"id": "a", "features": {"x": 1, "y": 2}, "ts": "now"}', RejectCode.VALUE, "'ts' is not a number"),
    ],
)
def test_a_refused_transaction_has_a_code_and_a_reason(raw: bytes, code: RejectCode, text: str) -> None:
    d = decode_transactions([raw], ["x", "y"])
    assert d.ids == [] and d.rejected[0][0] == 0
    assert d.rejected[0][1].code == code and d.rejected[0][1].text.startswith(text)


def test_transactions_keep_their_order_and_duplicates_are_refused() -> None:
    good = [
        b'{"id": "a", "features": {"x": 1, "y": 2}, "ts": 5}',
        b'{"id": "b", "features": {"y": 4, "x": 3}}',
    ]
    d = decode_transactions([good[0], b"{", good[1], good[0]], ["x", "y"])
    assert d.ids == ["a", "b"] and d.X.tolist() == [[1, 2], [3, 4]] and d.ts == [5, None]
    assert d.index == [0, 2] and d.rejected[1][1] == Reject(RejectCode.DUPLICATE, "duplicate id in batch")
    assert [i for i, _ in d.rejected] == [1, 3]


def test_labels() -> None:
    assert decode_label(encode_label(Label("a", 1))) == Label("a", 1)
    assert decode_label(b'{"id": "a", "label": 2}') == Reject(RejectCode.VALUE, "'label' must be 0 or 1")
    assert decode_label(b'{"id": "a", "label": true}') == Reject(RejectCode.VALUE, "'label' must be 0 or 1")
    sourced = Label("a", 0, 1.7e12, "analyst")
    assert decode_label(encode_label(sourced)) == sourced
    own = b'{"id": "a", "label": 1, "source": "partner-bank"}'
    assert decode_label(own) == Label("a", 1, None, "partner-bank")
    assert decode_label(b'{"id": "a", "label": 1, "source": 7}') == Reject(
        RejectCode.VALUE, "'source' is not a word of 1-64 characters"
    )
    bad = decode_label(b"nope")
    assert isinstance(bad, Reject) and bad.code == RejectCode.JSON and bad.text.startswith("not JSON")
    assert bad.prefixed("label") == Reject(RejectCode.JSON, f"label: {bad.text}")


DECISION = Decision("a", 0.9, True, 0.1, 3, "b", ("r1",), False, 0.2, 1.5)


def test_decisions_decode_to_their_value_or_say_what_is_wrong() -> None:
    full = orjson.loads(encode_decision(DECISION))
    assert decode_decision(encode_decision(DECISION)) == DECISION
    assert (
        DECISION.shadow_fraud and not Decision("a", 0.9, True, 0.3, 3, "b", (), False, 0.2, 1.5).shadow_fraud
    )
    missing = decode_decision(orjson.dumps({k: v for k, v in full.items() if k != "score"}))
    assert missing == Reject(RejectCode.SCHEMA, "missing field 'score'")
    wrong = decode_decision(orjson.dumps({**full, "score": "high"}))
    assert isinstance(wrong, Reject) and wrong.code == RejectCode.VALUE and wrong.text.startswith("bad field")
    assert decode_decision(b"[1]") == Reject(RejectCode.SCHEMA, "value is not a JSON object")


def test_a_batch_of_decisions_decodes_as_each_one_does() -> None:
    full = orjson.loads(encode_decision(DECISION))
    batch = [
        encode_decision(DECISION),
        orjson.dumps({**full, "score": 1, "adapter_version": 4}),  # an int score: msgspec reads it too
        orjson.dumps({**full, "score": "0.5"}),  # lenient: the record-by-record path takes it
        orjson.dumps({**full, "adapter_version": 2.0}),
        orjson.dumps({**full, "score": "high"}),
        orjson.dumps({**full, "rules": "r1"}),
        orjson.dumps({k: v for k, v in full.items() if k != "bundle"}),
        orjson.dumps({**full, "extra": [1, 2]}),
        b"[1]",
        b"not json",
        None,
    ]
    assert decode_decisions(batch) == [decode_decision(v) for v in batch]


scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=6), scores, scores, st.booleans(), st.floats(0, 1e6, allow_nan=False)),
        min_size=1,
        max_size=8,
    ),
    scores,
    st.integers(0, 10_000),
)
def test_the_scorers_batch_encoder_writes_the_plain_encoders_bytes(
    rows: list[tuple[str, float, float, bool, float]], threshold: float, version: int
) -> None:
    ids = [f"{i}-{r[0]}" for i, r in enumerate(rows)]
    p = np.array([r[1] for r in rows], dtype=np.float32)
    ps = np.array([r[2] for r in rows], dtype=np.float32)
    conflicts = np.array([r[3] for r in rows])
    latency = np.array([r[4] for r in rows], dtype=np.float64)
    rules = [orjson.dumps(["low_v14"] if c else []) for c in conflicts.tolist()]
    fast = encode_decisions(
        ids, p, ps, rules, conflicts, latency, threshold, shared_fields(threshold, version, "b")
    )
    for k, raw in enumerate(fast):
        plain = Decision(
            ids[k],
            float(p[k]),
            bool(p[k] >= threshold),
            threshold,
            version,
            "b",
            ("low_v14",) if rows[k][3] else (),
            rows[k][3],
            float(ps[k]),
            float(latency[k]),
        )
        assert raw == encode_decision(plain)
        decoded = decode_decision(raw)
        assert isinstance(decoded, Decision) and decoded.id == ids[k] and decoded.fraud == plain.fraud


def test_alerts_round_trip_with_their_details_and_keys() -> None:
    rollback = Alert(
        "healer",
        "adapter",
        2,
        0,
        "rollback",
        ts=5.0,
        details={"from_version": 3, "to_version": 2, "reason": "worse than the shadow"},
    )
    assert decode_alert(encode_alert(rollback)) == rollback
    assert rollback.key == "healer-adapter" and not rollback.summary
    drift = Alert("conflicts", "conflicts", 0.2, 0.05, "drift", ts=7.0, onset_rows=300)
    assert decode_alert(encode_alert(drift)) == drift and drift.summary and drift.key == "conflicts"
    assert orjson.loads(encode_alert(drift))["onset_rows"] == 300
    bad = decode_alert(b'{"detector": "fidi"}')
    assert isinstance(bad, Reject) and bad.code == RejectCode.SCHEMA


def test_dead_letter_headers_carry_the_code_and_the_text() -> None:
    letter = DeadLetter(Reject(RejectCode.VALUE, "feature 'x' is not a number"), "scorer", "tx", 1, 9)
    headers = dict(letter.headers())
    assert headers["code"] == b"value" and headers["reason"] == b"feature 'x' is not a number"
    assert decode_dead_letter(letter.headers()) == letter
