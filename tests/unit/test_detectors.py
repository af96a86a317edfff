"""The detection target: FIDI alarms no later than ADWIN's best feature on every drift
scenario, and no more often on 100k no-drift transactions."""

from __future__ import annotations

from typing import Any

import pytest

from shared.experiment.detectors import DRIFT_SCENARIOS, compare, episodes, format_table

pytest.importorskip("river")


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return compare(DRIFT_SCENARIOS, peers=["ADWIN"], control_rows=100_000)


@pytest.mark.parametrize("scenario", DRIFT_SCENARIOS)
def test_fidi_is_no_later_than_adwins_best_feature(result, scenario):
    fidi, adwin = result["detectors"]["FIDI"], result["detectors"]["ADWIN"]
    assert fidi["delays"][scenario] is not None
    assert adwin["delays"][scenario] is None or fidi["delays"][scenario] <= adwin["delays"][scenario]
    assert fidi["pre_drift_alarms"][scenario] == 0


def test_fidi_false_alarms_no_more_than_adwin(result):
    fidi, adwin = result["detectors"]["FIDI"], result["detectors"]["ADWIN"]
    assert fidi["control_rows"] == adwin["control_rows"] == 100_000
    assert fidi["control_episodes"] <= adwin["control_episodes"]
    assert fidi["control_episodes"] <= 1  # alpha = 1e-5 per row


def test_the_table_names_every_detector_and_scenario(result):
    table = format_table(result)
    assert "| FIDI |" in table and "| ADWIN |" in table
    assert all(s in table.splitlines()[0] for s in DRIFT_SCENARIOS)


def test_episodes_count_a_detector_that_fires_all_the_time():
    assert len(episodes(range(0, 10_000, 10), gap=1000)) == 10
