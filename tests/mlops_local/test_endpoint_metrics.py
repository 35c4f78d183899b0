"""Endpoint invocation metrics as SageMaker publishes them (AWS/SageMaker, per-minute statistic sets), and
CloudWatch's evaluation of metric alarms over them, which moto does not do."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from botocore.config import Config

from mlops_local.gateway import LocalAws
from mlops_local.moto_access import backend
from mlops_local.sagemaker import endpoint_metrics
from mlops_local.sagemaker.endpoint_metrics import ALARM, INSUFFICIENT_DATA, OK, EndpointMetrics, Invocation, judge

from tests.mlops_local.endpoint_stand import deploy, endpoint_stand, in_service
from tests.training.model_files import CSV_BODY

T0 = dt.datetime(2026, 5, 4, 10, 30, 15)
DIMENSIONS = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "AllTraffic"}]


def recorded(invocations: list[Invocation], clock: list[dt.datetime]) -> list[dict[str, Any]]:
    """What EndpointMetrics writes for these invocations, the clock moving as `clock` says."""
    written: list[dict[str, Any]] = []
    ticks = iter(clock)
    metrics = EndpointMetrics(lambda namespace, data: written.extend({**d, "Namespace": namespace} for d in data),
                              interval=None, clock=lambda: next(ticks))
    for invocation in invocations:
        metrics.record(invocation)
    metrics.close()
    return written


def by_metric(written: list[dict[str, Any]], at: dt.datetime) -> dict[str, Any]:
    """Metric -> its statistic set, or its (value, count) pairs."""
    return {d["MetricName"]: d.get("StatisticValues") or list(zip(d["Values"], d["Counts"]))
            for d in written if d["Timestamp"] == at}


def test_a_minute_of_invocations_is_one_statistic_set_per_metric():
    written = recorded([Invocation("ep", "AllTraffic", 200, 1500, 300, instances=2),
                        Invocation("ep", "AllTraffic", 400, 500, 100, instances=2),
                        Invocation("ep", "AllTraffic", None, 2500, 200, instances=2)], [T0] * 3)
    minute = T0.replace(second=0)
    stats = by_metric(written, minute)
    assert stats["Invocations"] == {"SampleCount": 3, "Sum": 3, "Minimum": 1, "Maximum": 1}
    assert stats["InvocationsPerInstance"]["Sum"] == pytest.approx(1.5)
    assert stats["Invocation4XXErrors"] == {"SampleCount": 3, "Sum": 1, "Minimum": 0, "Maximum": 1}
    assert stats["Invocation5XXErrors"]["Sum"] == 1     # the model that did not answer
    assert stats["ModelLatency"] == [(500, 1), (1500, 1), (2500, 1)]   # a distribution: percentiles need it
    assert stats["OverheadLatency"] == [(100, 1), (200, 1), (300, 1)]
    assert {d["Namespace"] for d in written} == {"AWS/SageMaker"}
    assert all(d["Dimensions"] == DIMENSIONS for d in written)
    assert {d["Unit"] for d in written if d["MetricName"].endswith("Latency")} == {"Microseconds"}


def test_each_minute_and_variant_is_its_own_datum():
    later = T0 + dt.timedelta(minutes=1)
    written = recorded([Invocation("ep", "AllTraffic", 200, 1, 1), Invocation("ep", "AllTraffic", 503, 1, 1),
                        Invocation("ep", "Canary", 500, 1, 1)], [T0, later, later])
    invocations = sorted((d["Timestamp"], d["Dimensions"][1]["Value"], d["StatisticValues"]["Sum"])
                         for d in written if d["MetricName"] == "Invocation5XXErrors")
    assert invocations == [(T0.replace(second=0), "AllTraffic", 0), (later.replace(second=0), "AllTraffic", 1),
                           (later.replace(second=0), "Canary", 1)]


def test_latencies_are_counted_per_distinct_value_150_values_a_datum():
    written = recorded([Invocation("ep", "AllTraffic", 200, 1000 + n % 200, 5) for n in range(400)], [T0] * 400)
    latency = [d for d in written if d["MetricName"] == "ModelLatency"]
    assert [len(d["Values"]) for d in latency] == [150, 50]
    assert sum(sum(d["Counts"]) for d in latency) == 400
    overhead = [d for d in written if d["MetricName"] == "OverheadLatency"]
    assert [(d["Values"], d["Counts"]) for d in overhead] == [([5.0], [400.0])]


def test_a_flush_writes_at_most_20_datums_a_call():
    calls: list[int] = []
    metrics = EndpointMetrics(lambda namespace, data: calls.append(len(data)), interval=None, clock=lambda: T0)
    for variant in ("a", "b", "c", "d"):
        metrics.record(Invocation("ep", variant, 200, 1, 1))
    metrics.flush()
    metrics.flush()  # nothing left: no call
    assert calls == [20, 4]   # 4 variants x 6 metrics


# -- alarm evaluation: CloudWatch User Guide, "Alarm evaluation", "treat missing data" -----------------------
B, G, M = 5.0, 0.0, None  # breaching, good, missing (threshold 1, GreaterThanOrEqualToThreshold)


@pytest.mark.parametrize("points, to_alarm, treat, current, expected", [
    ([G, G, B], 1, "missing", OK, ALARM),
    ([G, G, G], 1, "missing", ALARM, OK),
    ([B, G, B], 3, "missing", OK, OK),
    ([B, B, B], 3, "missing", OK, ALARM),
    ([M, M, M], 1, "missing", OK, INSUFFICIENT_DATA),
    ([M, M, M], 1, "ignore", ALARM, ALARM),
    ([M, M, M], 1, "breaching", OK, ALARM),
    ([M, M, M], 1, "notBreaching", ALARM, OK),
    ([M, B, M], 3, "breaching", OK, ALARM),
    ([M, B, M], 3, "notBreaching", ALARM, OK),
    ([M, G, M], 1, "missing", ALARM, OK),
    ([M, G, M], 2, "ignore", ALARM, ALARM),
], ids=["one-of-one-breaches", "all-good", "two-of-three-needed-three", "three-of-three", "all-missing-missing",
        "all-missing-ignore-keeps", "all-missing-breaching", "all-missing-notBreaching", "missing-counted-breaching",
        "missing-counted-good", "present-good-missing-ok", "too-few-ignore-keeps"])
def test_alarm_states_follow_cloudwatch(points, to_alarm, treat, current, expected):
    assert judge(points, 1.0, "GreaterThanOrEqualToThreshold", to_alarm, treat, current) == expected


@pytest.mark.parametrize("comparison, value, expected", [
    ("GreaterThanThreshold", 1.0, OK), ("GreaterThanThreshold", 1.5, ALARM),
    ("LessThanThreshold", 1.0, OK), ("LessThanOrEqualToThreshold", 1.0, ALARM),
], ids=["gt-equal", "gt-above", "lt-equal", "le-equal"])
def test_comparison_operators(comparison, value, expected):
    assert judge([value], 1.0, comparison, 1, "missing", OK) == expected


@pytest.fixture
def aws():
    with LocalAws() as local:
        yield local


def put_alarm(cloudwatch: Any, name: str, **overrides: Any) -> None:
    """PutMetricAlarm over the ep/AllTraffic 5xx rate; an override of None drops that parameter."""
    request = {"AlarmName": name, "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors",
               "Dimensions": DIMENSIONS, "Statistic": "Average", "Period": 60, "EvaluationPeriods": 2,
               "DatapointsToAlarm": 1, "Threshold": 0.1, "ComparisonOperator": "GreaterThanThreshold",
               "TreatMissingData": "notBreaching", **overrides}
    cloudwatch.put_metric_alarm(**{key: value for key, value in request.items() if value is not None})


def test_an_alarm_over_recorded_metrics_goes_to_alarm_and_back(aws):
    cloudwatch = aws.client("cloudwatch")
    moto = backend("cloudwatch", aws.account_id, aws.gateway.region)
    put_alarm(cloudwatch, "errors")
    metrics = EndpointMetrics(moto.put_metric_data, interval=None, clock=lambda: T0)
    for status in (200, 200, 500):
        metrics.record(Invocation("ep", "AllTraffic", status, 10, 1))
    metrics.flush()
    assert endpoint_metrics.evaluate_alarm(moto, "errors", T0) == ALARM
    alarm = cloudwatch.describe_alarms(AlarmNames=["errors"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    assert json.loads(alarm["StateReasonData"])["recentDatapoints"] == [pytest.approx(1 / 3)]
    # two minutes on, the bad minute is out of the two evaluated periods; notBreaching: OK
    assert endpoint_metrics.evaluate_alarm(moto, "errors", T0 + dt.timedelta(minutes=2)) == OK
    assert cloudwatch.describe_alarms(AlarmNames=["errors"])["MetricAlarms"][0]["StateValue"] == "OK"


def test_another_variant_does_not_trip_the_alarm(aws):
    moto = backend("cloudwatch", aws.account_id, aws.gateway.region)
    put_alarm(aws.client("cloudwatch"), "errors", TreatMissingData="missing")
    metrics = EndpointMetrics(moto.put_metric_data, interval=None, clock=lambda: T0)
    metrics.record(Invocation("ep", "Other", 500, 10, 1))
    metrics.flush()
    assert endpoint_metrics.evaluate_alarm(moto, "errors", T0) == INSUFFICIENT_DATA


def test_a_p99_latency_alarm_is_judged_from_the_latency_distribution(aws):
    moto = backend("cloudwatch", aws.account_id, aws.gateway.region)
    put_alarm(aws.client("cloudwatch"), "p99", MetricName="ModelLatency", Statistic=None, ExtendedStatistic="p99",
              EvaluationPeriods=1, Threshold=50_000.0)
    metrics = EndpointMetrics(moto.put_metric_data, interval=None, clock=lambda: T0)
    for n in range(99):   # 99 fast requests and one slow one: p99 is the 99th value, still fast
        metrics.record(Invocation("ep", "AllTraffic", 200, 1000 + n, 1))
    metrics.record(Invocation("ep", "AllTraffic", 200, 900_000, 1))
    metrics.flush()
    assert endpoint_metrics.evaluate_alarm(moto, "p99", T0) == OK
    metrics.record(Invocation("ep", "AllTraffic", 200, 900_000, 1))   # two slow of 101: p99 is slow
    metrics.flush()
    assert endpoint_metrics.evaluate_alarm(moto, "p99", T0) == ALARM


@pytest.mark.parametrize("percentile, values, expected", [
    ("p99", list(range(1, 101)), 99.0), ("p50", [3.0, 1.0, 2.0], 2.0), ("p100", [], None),
    ("p90", [7.0], 7.0),
], ids=["p99-of-100", "p50-of-3", "none", "p90-of-1"])
def test_percentiles_are_nearest_rank(percentile, values, expected):
    class Value:
        def __init__(self, value: float) -> None:
            self.value = value
    assert endpoint_metrics.statistic([Value(v) for v in values], percentile) == expected


def test_a_metric_math_alarm_is_not_judged_locally(aws):
    moto = backend("cloudwatch", aws.account_id, aws.gateway.region)
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName="math", EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
        Metrics=[{"Id": "errors", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors", "Dimensions": DIMENSIONS},
            "Period": 60, "Stat": "Sum"}}])
    with pytest.raises(endpoint_metrics.UnsupportedAlarm, match="metric math"):
        endpoint_metrics.evaluate_alarm(moto, "math", T0)


# -- through the stand-in: every InvokeEndpoint is counted ------------------------------------------------
def test_invocations_of_a_local_endpoint_reach_get_metric_statistics(tmp_path):
    with endpoint_stand(tmp_path, health_interval=None, capture_interval=None, metrics_interval=None) as local:
        aws, runtime, endpoints = local
        sm = aws.client("sagemaker")
        smr = aws.client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}))
        deploy(sm, "metered")
        in_service(runtime, sm, "metered")
        for _ in range(3):
            smr.invoke_endpoint(EndpointName="metered", Body=CSV_BODY, ContentType="text/csv")
        with pytest.raises(smr.exceptions.ModelError):
            smr.invoke_endpoint(EndpointName="metered", Body=b"not-a-record\n", ContentType="text/csv")
        endpoints.metrics.flush()
        cloudwatch = aws.client("cloudwatch")
        now = dt.datetime.now(dt.timezone.utc)

        def stat(metric: str, name: str) -> float:
            points = cloudwatch.get_metric_statistics(
                Namespace="AWS/SageMaker", MetricName=metric, Period=60, Statistics=[name],
                Dimensions=[{"Name": "EndpointName", "Value": "metered"},
                            {"Name": "VariantName", "Value": "AllTraffic"}],
                StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=1))["Datapoints"]
            return sum(p[name] for p in points)

        assert stat("Invocations", "Sum") == 4
        assert stat("Invocation4XXErrors", "Sum") == 1
        assert stat("Invocation5XXErrors", "Sum") == 0
        assert stat("ModelLatency", "SampleCount") == 4
        assert stat("ModelLatency", "Maximum") > 0
