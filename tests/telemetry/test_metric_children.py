"""The remembered labelled series of ``SynthObsMetrics`` (``labelled``, ``observe_duration``) stay the collector's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from prefect_synthobs import catalog as names
from prefect_synthobs.telemetry.metrics import SynthObsMetrics


def test_labelled_counter_is_the_collectors_series_and_survives_remove_and_clear() -> None:
    m = SynthObsMetrics(CollectorRegistry())
    m.labelled(names.TASK_RUNS_TOTAL, "f", "t", "COMPLETED").inc()
    m.labelled(names.TASK_RUNS_TOTAL, "f", "t", "COMPLETED").inc()
    assert m.labelled(names.TASK_RUNS_TOTAL, "f", "t", "COMPLETED") is m.task_runs.labels("f", "t", "COMPLETED")
    assert m.samples(names.TASK_RUNS_TOTAL) == [(2.0, {"flow": "f", "task": "t", "state": "COMPLETED"})]
    m.task_runs.remove("f", "t", "COMPLETED")
    m.labelled(names.TASK_RUNS_TOTAL, "f", "t", "COMPLETED").inc()  # a new series, not the removed one
    assert m.samples(names.TASK_RUNS_TOTAL) == [(1.0, {"flow": "f", "task": "t", "state": "COMPLETED"})]
    m.task_runs.clear()
    m.labelled(names.TASK_RUNS_TOTAL, "f", "t", "COMPLETED").inc(3)
    assert m.samples(names.TASK_RUNS_TOTAL) == [(3.0, {"flow": "f", "task": "t", "state": "COMPLETED"})]


def test_observed_durations_reach_the_histogram_after_a_clear() -> None:
    m = SynthObsMetrics(CollectorRegistry())
    m.observe_task_duration("f", "t", 0.5)
    m.task_run_duration.clear()
    m.observe_task_duration("f", "t", 0.25)
    m.observe_task_duration("f", "t", 0.25)
    child = m.task_run_duration.labels(flow="f", task="t")
    assert child._sum.get() == 0.5  # the two after the clear, on the collector's own series
