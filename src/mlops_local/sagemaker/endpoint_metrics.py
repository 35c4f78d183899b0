"""Endpoint invocation metrics as SageMaker publishes them, and CloudWatch's evaluation of alarms over them.

SageMaker sends, for every InvokeEndpoint a variant serves, into namespace AWS/SageMaker with dimensions
EndpointName and VariantName (SageMaker Developer Guide, "Amazon SageMaker AI metrics in Amazon CloudWatch",
endpoint invocation metrics; the same names in aws-cdk-lib's generated SageMakerMetrics):
- Invocations: 1 per request sent to the model (statistics Sum, SampleCount);
- InvocationsPerInstance: 1/numberOfInstances of the variant (API_ScalingPolicyMetric);
- Invocation4XXErrors / Invocation5XXErrors: 1 when the model answered 4xx / 5xx, else 0 (so Average is
  the error rate);
- ModelLatency (the model's answer as seen from SageMaker) and OverheadLatency (the rest of the request),
  in Microseconds.
ModelSetupTime is a serverless-endpoint metric; the stand-in serves instance-based endpoints only, so it is
not sent. CloudWatch keeps them at 1-minute resolution; here each minute's values are aggregated and written
every `interval` seconds and at close: the counts as statistic sets (SampleCount, Sum, Minimum, Maximum), the
latencies as value distributions (PutMetricData's Values and Counts, at most 150 distinct values a datum), from
which CloudWatch computes percentiles as well (an alarm on p99 ModelLatency, as templates/endpoint.yaml sets
one, needs them; a statistic set has no percentiles). Both merge, so a minute written in two parts reads as one.

They go into moto's CloudWatch backend directly, not through PutMetricData as some role: AWS/ namespaces
are reserved for AWS services ("You cannot specify a namespace that begins with AWS/", PutMetricData), and
SageMaker publishes these as the service, with no customer role and no cloudwatch:PutMetricData in the
model's execution role. `aws cloudwatch get-metric-statistics` reads them through the gateway as usual.

`evaluate_alarm` is what CloudWatch does and moto does not: a metric alarm's state from the datapoints
(CloudWatch User Guide, "Alarm evaluation" and "Configuring how CloudWatch alarms treat missing data"):
the last EvaluationPeriods periods, each the alarm's Statistic (or ExtendedStatistic pNN, nearest rank over
the values) over Period seconds; ALARM when
DatapointsToAlarm (default EvaluationPeriods) of them breach the threshold; missing datapoints per
TreatMissingData (missing, the default: all missing -> INSUFFICIENT_DATA; ignore: the state stays;
breaching / notBreaching: they count as such). The newest period is the one in progress.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

logger = logging.getLogger(__name__)

NAMESPACE = "AWS/SageMaker"
FLUSH_SECONDS = 10.0
MICROSECONDS = "Microseconds"
MAX_VALUES = 150  # distinct Values in one MetricDatum (PutMetricData)
PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,2})?)$")
ALARM, OK, INSUFFICIENT_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}

Key = tuple[str, str, str, str, dt.datetime]  # endpoint, variant, metric, unit, minute


@dataclass
class StatisticSet:
    """One minute of one metric: CloudWatch's StatisticValues."""
    sample_count: float = 0.0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def add(self, value: float) -> None:
        self.sample_count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)


@dataclass(frozen=True)
class Invocation:
    """What one InvokeEndpoint did, as far as the metrics tell."""
    endpoint: str
    variant: str
    model_status: int | None        # the model's HTTP status; None when it did not answer
    model_microseconds: int
    overhead_microseconds: int
    instances: int = 1


def minute(when: dt.datetime) -> dt.datetime:
    """The start of a timestamp's minute, naive UTC (as moto's CloudWatch keeps times)."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when.replace(second=0, microsecond=0)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def values_of(invocation: Invocation) -> list[tuple[str, float, str]]:
    """(metric, value, unit) that one invocation sends."""
    status = invocation.model_status
    failed_5xx = status is None or status >= 500  # a model that did not answer failed the request server-side
    return [("Invocations", 1.0, "None"),
            ("InvocationsPerInstance", 1.0 / max(invocation.instances, 1), "None"),
            ("Invocation4XXErrors", 1.0 if status is not None and 400 <= status < 500 else 0.0, "None"),
            ("Invocation5XXErrors", 1.0 if failed_5xx else 0.0, "None"),
            ("ModelLatency", float(invocation.model_microseconds), MICROSECONDS),
            ("OverheadLatency", float(invocation.overhead_microseconds), MICROSECONDS)]


class EndpointMetrics:
    """Per-minute statistic sets of every invocation, written to CloudWatch by `put(namespace, metric_data)`
    (moto's backend put_metric_data) every `interval` seconds (None: only on flush) and on close."""

    def __init__(self, put: Callable[[str, list[dict[str, Any]]], None], interval: float | None = FLUSH_SECONDS,
                 clock: Callable[[], dt.datetime] = now) -> None:
        self._put = put
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[Key, StatisticSet] = {}
        self._distributions: dict[Key, Counter[float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval:
            self._thread = threading.Thread(target=self._run, args=(interval,), name="endpoint-metrics", daemon=True)
            self._thread.start()

    def record(self, invocation: Invocation) -> None:
        at = minute(self._clock())
        with self._lock:
            for metric, value, unit in values_of(invocation):
                key = (invocation.endpoint, invocation.variant, metric, unit, at)
                if unit == MICROSECONDS:
                    self._distributions.setdefault(key, Counter())[value] += 1
                else:
                    self._pending.setdefault(key, StatisticSet()).add(value)

    def flush(self) -> None:
        """Write what is buffered (20 datums a call, PutMetricData's limit)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            distributions, self._distributions = self._distributions, {}
        data = [datum(key, stats) for key, stats in sorted(pending.items(), key=lambda item: item[0][4])]
        for key, counts in sorted(distributions.items(), key=lambda item: item[0][4]):
            data.extend(distribution(key, counts))
        for start in range(0, len(data), 20):
            try:
                self._put(NAMESPACE, data[start:start + 20])
            except Exception:  # metrics lost must not break serving; AWS loses none, so say it
                logger.exception("writing %d endpoint metrics to CloudWatch failed", len(data[start:start + 20]))

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()


def datum(key: Key, stats: StatisticSet) -> dict[str, Any]:
    endpoint, variant, metric, unit, at = key
    return {"MetricName": metric, "Timestamp": at, "Unit": unit,
            "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}],
            "StatisticValues": {"SampleCount": stats.sample_count, "Sum": stats.total,
                                "Minimum": stats.minimum, "Maximum": stats.maximum}}


def distribution(key: Key, counts: Counter[float]) -> list[dict[str, Any]]:
    """A minute's values of one metric as Values/Counts datums."""
    endpoint, variant, metric, unit, at = key
    items = sorted(counts.items())
    return [{"MetricName": metric, "Timestamp": at, "Unit": unit,
             "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}],
             "Values": [v for v, _ in items[start:start + MAX_VALUES]],
             "Counts": [float(c) for _, c in items[start:start + MAX_VALUES]]}
            for start in range(0, len(items), MAX_VALUES)]


# -- alarm evaluation --------------------------------------------------------------------------
class UnsupportedAlarm(Exception):
    """An alarm this evaluator cannot judge (metric math, percentiles, anomaly bands)."""


def statistic(data: Iterable[Any], name: str) -> float | None:
    """An alarm's Statistic or percentile (pNN) over moto's datums (single values and statistic sets) of one
    period; a percentile only over single values (a statistic set has none: the period counts as missing)."""
    percentile = PERCENTILE.match(name)
    if percentile:
        items = list(data)
        if not items or any(hasattr(item, "sample_count") for item in items):
            return None
        values = sorted(item.value for item in items)
        rank = max(math.ceil(float(percentile.group(1)) / 100.0 * len(values)), 1)
        return float(values[rank - 1])
    count = total = 0.0
    lows: list[float] = []
    highs: list[float] = []
    for item in data:
        if hasattr(item, "sample_count"):
            count, total = count + item.sample_count, total + item.sum
            lows.append(item.min)
            highs.append(item.max)
        else:
            count, total = count + 1, total + item.value
            lows.append(item.value)
            highs.append(item.value)
    if not count:
        return None
    return {"SampleCount": count, "Sum": total, "Average": total / count,
            "Minimum": min(lows), "Maximum": max(highs)}[name]


def datapoints(backend: Any, alarm: Any, at: dt.datetime) -> list[float | None]:
    """The alarm's statistic for each of its last EvaluationPeriods periods (oldest first; None: missing).
    Periods are aligned to multiples of Period since midnight UTC; the last one holds `at`."""
    period = int(alarm.period)
    dimensions = {(d.name, d.value) for d in alarm.dimensions}
    at = at if at.tzinfo is None else at.astimezone(dt.timezone.utc).replace(tzinfo=None)
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    last = midnight + dt.timedelta(seconds=(int((at - midnight).total_seconds()) // period) * period)
    starts = [last - dt.timedelta(seconds=period * back) for back in range(int(alarm.evaluation_periods) - 1, -1, -1)]
    matching = [d for d in backend.get_all_metrics()
                if d.namespace == alarm.namespace and d.name == alarm.metric_name
                and {(x.name, x.value) for x in d.dimensions} == dimensions
                and (not alarm.unit or d.unit == alarm.unit)]
    points: list[float | None] = []
    for start in starts:
        end = start + dt.timedelta(seconds=period)
        points.append(statistic((d for d in matching if start <= naive(d.timestamp) < end),
                                alarm.extended_statistic or alarm.statistic))
    return points


def naive(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is None else when.astimezone(dt.timezone.utc).replace(tzinfo=None)


def judge(points: list[float | None], threshold: float, comparison: str, to_alarm: int, treat_missing: str,
          current: str) -> str:
    """The state CloudWatch gives an alarm for these datapoints."""
    breaches = COMPARISONS[comparison]
    real = [p for p in points if p is not None]
    missing = len(points) - len(real)
    breaching = sum(1 for p in real if breaches(p, threshold))
    if treat_missing == "breaching":
        breaching += missing
    if breaching >= to_alarm:
        return ALARM
    if not real:
        return {"missing": INSUFFICIENT_DATA, "ignore": current, "notBreaching": OK}.get(treat_missing, OK)
    if treat_missing == "ignore" and len(real) < to_alarm:
        return current  # too few real datapoints to decide, and missing ones keep the state
    return OK


def evaluate_alarm(backend: Any, name: str, at: dt.datetime | None = None) -> str:
    """Evaluate one metric alarm of moto's CloudWatch backend now (or `at`), set its state when it changes
    (as CloudWatch does: a StateUpdate in its history, StateReason / StateReasonData), return the state."""
    alarm = backend.alarms.get(name)
    if alarm is None:
        raise KeyError(name)
    problem = unsupported(alarm)
    if problem:
        raise UnsupportedAlarm(f"alarm {name}: {problem}")
    when = at or now()
    points = datapoints(backend, alarm, when)
    to_alarm = int(alarm.datapoints_to_alarm or alarm.evaluation_periods)
    state = judge(points, float(alarm.threshold), alarm.comparison_operator, to_alarm,
                  alarm.treat_missing_data or "missing", alarm.state_value)
    if state != alarm.state_value:
        shown = [p for p in points if p is not None]
        stat = alarm.extended_statistic or alarm.statistic
        reason = (f"Threshold Crossed: {len(points)} datapoint(s) evaluated, {len(shown)} present "
                  f"{[round(p, 6) for p in shown]} ({stat} over {alarm.period} s) compared with "
                  f"{alarm.comparison_operator} {alarm.threshold}.")
        data = {"version": "1.0", "queryDate": when.isoformat(), "statistic": stat,
                "period": alarm.period, "threshold": alarm.threshold, "recentDatapoints": shown}
        backend.set_alarm_state(name, reason, json.dumps(data), state)
    return state


def unsupported(alarm: Any) -> str | None:
    """Why this evaluator cannot judge an alarm (None: it can)."""
    if alarm.metric_data_queries:
        return "metric math alarms are not evaluated locally"
    if alarm.extended_statistic and not PERCENTILE.match(alarm.extended_statistic):
        return f"ExtendedStatistic {alarm.extended_statistic} is not evaluated locally (only pNN percentiles)"
    if not alarm.extended_statistic and not alarm.statistic:
        return "the alarm has no Statistic"
    if alarm.comparison_operator not in COMPARISONS:
        return f"{alarm.comparison_operator} (an anomaly detection band) is not evaluated locally"
    return None
