"""The whole stack as separate processes on the embedded broker, on a short drift scenario."""

from __future__ import annotations

import json

import pytest

from services.demo import run_demo
from shared.units import Delay


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = run_demo(
        "covariate", out, rate=2000, label_delay=Delay(rows=300), scorers=2, n_pre=1000, n_post=4000
    )
    return out, summary


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
