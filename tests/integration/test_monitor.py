from __future__ import annotations

import orjson
import pytest

from services.monitor.service import MonitorConfig, MonitorService
from shared.data import build

from .conftest import wait_until
from .helpers import key, produce_rows, read_n, value


@pytest.fixture(scope="module")
def covariate_small():
    return build("covariate", n_pre=1000, n_post=2000)


def test_alerts_on_a_drifted_stream(covariate_bundle, covariate_small, kafka, topics, group, run_service):
    service = MonitorService(covariate_bundle, kafka, topics, MonitorConfig(group=group))
    run_service(service)
    st = covariate_small.stream
    ids = list(st.ids)
    produce_rows(kafka, topics.transactions, ids, st.X, list(covariate_bundle.features))
    wait_until(lambda: service.core.rows == len(ids))
    alerts = read_n(kafka, topics.alerts, 2)
    first = orjson.loads(value(alerts[0]))
    assert first["detector"] == "fidi" and first["state"] == "drift" and first["statistic"] >= 1.0
    assert key(alerts[0]) == "fidi"
    per_feature = {key(m) for m in alerts[1:]}
    assert per_feature <= {"amount", "V4", "V12", "V14"} and per_feature
    # one episode: no alert on every batch
    assert sum(a.state == "drift" and a.feature == "fidi" for a in service.published) == 1
    # the dashboard's drift state per feature: the alerted features, and only those, at 1
    assert not any(a.state == "recovered" for a in service.published)
    sample = service.metrics.registry.get_sample_value
    for f in covariate_bundle.features:
        assert sample("selfheal_monitor_feature_drift", {"feature": f}) == (1 if f in per_feature else 0)
        assert sample("selfheal_monitor_feature_index", {"feature": f}) is not None
    assert all(sample("selfheal_monitor_feature_effect", {"feature": f}) > 0 for f in per_feature)


def test_quiet_on_the_control(covariate_bundle, kafka, topics, group, run_service):
    control = build("control", n_pre=1000, n_post=4000).stream
    service = MonitorService(covariate_bundle, kafka, topics, MonitorConfig(group=group))
    run_service(service)
    produce_rows(kafka, topics.transactions, list(control.ids), control.X, list(covariate_bundle.features))
    wait_until(lambda: service.core.rows == len(control.ids))
    assert service.published == []
    assert read_n(kafka, topics.alerts, 1, timeout=1.0) == []


def test_two_monitors_in_a_group_judge_the_whole_stream_once(
    covariate_bundle, covariate_small, kafka, topics, group, run_service
):
    """Each reads some of the partitions; the one holding monitor-stats judges them all and
    alone raises the alert."""
    config = MonitorConfig(group=group, scale_out=True)
    a, b = (MonitorService(covariate_bundle, kafka, topics, config) for _ in range(2))
    run_service(a)
    run_service(b)
    wait_until(lambda: a.assigned > 0 and b.assigned > 0 and a.judging != b.judging)
    st = covariate_small.stream
    ids = list(st.ids)
    produce_rows(kafka, topics.transactions, ids, st.X, list(covariate_bundle.features))
    judge, reader = (a, b) if a.judging else (b, a)
    wait_until(lambda: judge.core.rows == len(ids))
    read = [s.metrics.registry.get_sample_value("selfheal_monitor_transactions_total") for s in (a, b)]
    assert sum(read) == len(ids) and min(read) > 0  # each read its own partitions
    assert reader.published == [] and reader.core.rows == 0
    fidi = [x for x in judge.published if x.feature == "fidi"]
    assert [(x.state, x.detector) for x in fidi] == [("drift", "fidi")]
    alerts = read_n(kafka, topics.alerts, len(judge.published))
    assert [key(m) for m in alerts] == [x.key for x in judge.published]
    sample = judge.metrics.registry.get_sample_value
    assert sample("selfheal_monitor_judging") == 1
    assert sample("selfheal_monitor_judged_rows_total") == len(ids)
    assert reader.metrics.registry.get_sample_value("selfheal_monitor_judging") == 0
