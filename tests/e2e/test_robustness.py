"""`selfheal experiment robustness`: drawn streams through the one healing path, every one
reported (slow: 20 streams, a few minutes on two cores)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.cli import main
from shared.experiment.robustness import FEEDBACK_WINDOWS, format_table, judge_window, summarise


def window(noheal: float, healed: float, oracle: float, gap_z: float = 5.0) -> dict[str, Any]:
    w = judge_window({"noheal": noheal, "healed": healed, "oracle": oracle, "gap_z": gap_z})
    assert w is not None
    return w


def test_a_window_with_no_gap_is_counted_not_scored():
    assert window(0.2, 0.2, 0.199)["status"] == "no gap"
    assert window(0.4, 0.3, 0.2, gap_z=1.0)["status"] == "no gap"  # a gap within noise
    w = window(0.4, 0.3, 0.2)
    assert w["status"] == "scored" and w["gap_closed"] == pytest.approx(0.5) and not w["harm"]
    assert window(0.2, 0.21, 0.1)["harm"]


def test_the_summary_keeps_failed_streams():
    recs = [{"seed": 1, "kind": "unit", "error": "boom", "seconds": 1.0, "label_delay": 500}]
    assert summarise(recs)["kinds"]["unit"]["failed"] == 1


def test_under_a_feedback_model_each_window_says_how_often_healing_lowered_alert_precision():
    def fw(healed_pk: float) -> dict[str, Any]:
        w = judge_window({"noheal": 0.4, "healed": 0.3, "oracle": 0.2, "gap_z": 5.0,
                     "p_at_k": {"noheal": 0.9, "healed": healed_pk, "oracle": 0.95}})  # fmt: skip
        assert w is not None and w["p_at_k"] == {"noheal": 0.9, "healed": healed_pk}
        return w

    recs = [
        {"seed": s, "kind": "unit", "seconds": 1.0, "diagnosis": {}, "overall": fw(0.9),
         "windows": {"before_labels": None, "feedback": fw(pk), "after_chargebacks": fw(0.95)}}
        for s, pk in enumerate([0.8, 0.9, 0.91, 0.95])
    ]  # fmt: skip
    summary = summarise(recs, FEEDBACK_WINDOWS)
    row = summary["kinds"]["unit"]
    assert row["feedback"]["pk_below"] == 0.25 and row["feedback"]["worst_pk_change"] == pytest.approx(-0.1)
    assert row["after_chargebacks"]["pk_below"] == 0.0 and row["before_labels"]["streams"] == 0
    table = format_table(summary)
    assert "| feedback: median / p10 / < 0 | harm | after chargebacks: median" in table
    assert "P@k lower 25% (worst -0.10)" in table


@pytest.mark.slow
def test_twenty_drawn_streams_are_each_run_and_reported(tmp_path, capsys):
    out = tmp_path / "rob"
    args = ["experiment", "robustness", "--n", "20", "--label-delay", "500", "--workers", "2", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    summary = json.loads((out / "robustness.json").read_text())
    assert summary["seeds"] == list(range(20)) and summary["streams"] == 20
    assert sum(r["streams"] for r in summary["kinds"].values()) == 20
    assert all(r["failed"] == 0 for r in summary["kinds"].values())
    assert (out / "robustness.png").stat().st_size > 10_000
    assert "| kind |" in capsys.readouterr().out
    # a second call finds every stream done and runs none again
    assert main([*args, "--out", str(out)]) == 0
    assert len((out / "streams.jsonl").read_text().splitlines()) == 20


@pytest.mark.slow
def test_drawn_streams_through_the_stack_are_judged_as_the_offline_run_judges_them(tmp_path):
    out = tmp_path / "stack"
    args = ["experiment", "robustness", "--stack", "--n", "2", "--first-seed", "9", "--label-delay", "500"]
    assert main([*args, "--rate", "2000", "--quiet", "--out", str(out)]) == 0
    records = {r["kind"]: r for r in map(json.loads, (out / "streams.jsonl").read_text().splitlines())}
    assert set(records) == {"none", "unit"}  # seeds 9 and 10
    for r in records.values():
        assert "error" not in r and set(r["exit_codes"].values()) == {0}
        assert set(r["windows"]) == {"before_labels", "after_labels"} and r["variant"].startswith("through")
        assert r["windows"]["before_labels"] is None  # labels 500 late: over before the window opens
        assert r["windows"]["after_labels"]["status"] in ("scored", "no gap")
    calm = records["none"]["windows"]["after_labels"]  # judged from where a drift would begin
    assert calm["status"] == "no gap" and not calm["harm"]
    assert (out / "seed-9" / "summary.json").exists()


def test_without_switches_the_named_parts_off():
    from services.cli.offline import ABLATIONS
    from shared.healing.healer import HealerConfig

    cfg = HealerConfig()
    assert cfg.watch.loss and cfg.watch.prior and cfg.schedule.min_frauds > 0
    off = ABLATIONS["rare-fraud"](ABLATIONS["prior-rate"](ABLATIONS["labels-loss"](cfg)))
    assert (
        not off.watch.loss
        and not off.watch.prior
        and off.schedule.min_frauds == 0
        and off.schedule.train_frauds == 0
    )
    assert off.before_labels.diagnosis.prior_noise_z == 0 and off.heal.collapse_share == 1.0
    assert cfg.heal.bayes_decisions and not ABLATIONS["bayes-decisions"](cfg).heal.bayes_decisions
    assert cfg.schedule.heal_growth > 0 and ABLATIONS["heal-growth"](cfg).schedule.heal_growth == 0
