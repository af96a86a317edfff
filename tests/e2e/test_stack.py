"""The whole stack as separate processes on the embedded broker, on a short drift scenario:
labels as a fraud team gets them (analysts on the live alerts, chargebacks, implied genuine),
and every label a fixed delay late."""

from __future__ import annotations

import json

import pytest

from services.demo import DemoConfig, run_demo
from shared.feedback import FeedbackModel
from shared.units import Delay
from tests.kafka_container import fresh_topics

# at 2,000 transactions a second: analysts check 20 alerts per 1,000 transactions and answer
# 200 later; 80% of unchecked fraud charges back 800 later; the rest is genuine after 1,000
FEEDBACK = FeedbackModel.parse("analyst:20/500ms:100ms,chargeback:400ms:0.8,implied:500ms")


def _run(tmp_path_factory, name: str, **labels):
    fresh_topics()
    out = tmp_path_factory.mktemp(name)
    cfg = DemoConfig("covariate", rate=2000, scorers=2, n_pre=1000, n_post=4000, **labels)
    return out, run_demo(cfg, out)


@pytest.fixture(scope="module")
def feedback_demo(tmp_path_factory):
    return _run(tmp_path_factory, "demo-feedback", feedback=FEEDBACK)


@pytest.fixture(scope="module")
def delay_demo(tmp_path_factory):
    return _run(tmp_path_factory, "demo-delay", label_delay=Delay(rows=300))


@pytest.fixture(params=["feedback_demo", "delay_demo"])
def demo(request):
    return request.getfixturevalue(request.param)


def test_every_transaction_gets_a_decision_and_every_process_exits_cleanly(demo):
    out, summary = demo
    assert summary["transactions"] == 5000
    assert summary["decided"] == 5000
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    assert set(summary["exit_codes"]) == {"scorer-1", "scorer-2", "monitor", "healer"}
    on_disk = json.loads((out / "summary.json").read_text())
    assert {"noheal", "healed", "all_normal"} <= on_disk["rows"].keys()
    assert (out / "metrics.png").stat().st_size > 10_000
    for log in (out / "logs").glob("scorer-*.log"):  # the healer's signed adapters are all taken
        assert "adapter refused" not in log.read_text()


def test_the_stack_detects_the_drift_and_never_makes_things_worse(demo):
    out, summary = demo
    events = json.loads((out / "events.json").read_text())
    assert any(a["state"] == "drift" and a["feature"] == "fidi" for a in events["alerts"])
    assert events["snapshots"][0]["kind"] == "initial"
    after = summary["after_drift"]["rows"]
    assert after["healed"]["cost"] <= 1.02 * after["noheal"]["cost"]


def test_feedback_labels_each_transaction_once_from_the_live_alerts(feedback_demo):
    _, summary = feedback_demo
    by_source = summary["labels_by_source"]
    assert set(by_source) == {"analyst", "chargeback", "implied"}, by_source
    assert sum(by_source.values()) == 5000  # with implied genuine on, every transaction once
    assert 0 < by_source["analyst"] <= 20 * 5 + 20  # at most 20 checks per 1,000 transactions
    assert summary["feedback_skipped"] == 0
    windows = summary["after_drift"]["windows"]
    assert "after_chargebacks" in windows  # from 2,000 after the first chargeback of the drift
    for w in windows.values():  # the alerts' precision, measured on the truth
        assert 0 <= w["p_at_k"]["healed"] <= 1 and 0 <= w["p_at_k"]["noheal"] <= 1
