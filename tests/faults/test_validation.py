"""Late or missing validation: bad values are refused where they are given, with
the key and what is allowed; a bad environment variable is one warning and its
key's default, never the end of recording."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from prefect import flow

import prefect_synthobs as so
from conftest import task_rows
from prefect_synthobs.config import active as so_settings
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.instrument.instrumentation import reset_runtime
from prefect_synthobs.quality import quality_report


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("store_url", "ftp://admin:hunter2@files.example/x", "use a local path, a file:// URL or an s3:// prefix"),
        ("store_url", "gs://bucket/synthobs", "use a local path, a file:// URL or an s3:// prefix"),
        ("store_url", "s3://", "names no bucket"),
        ("otlp_endpoint", "not a url", "otlp_endpoint must be an http:// or https:// URL"),
        ("pushgateway_url", "localhost:9091", "pushgateway_url must be an http:// or https:// URL"),
        ("flush_interval_seconds", float("inf"), "finite number"),
        ("flush_interval_seconds", 10**9, "less than or equal to 86400"),
        ("store_timeout_seconds", 0, "greater than 0"),
    ],
)
def test_configure_refuses_bad_values_naming_the_key(key: str, value: object, says: str) -> None:
    try:
        with pytest.raises(ValueError) as raised:
            so.configure(**{key: value})  # type: ignore[arg-type]
        message = str(raised.value)
        assert f"{key}: " in message and says in message
        assert "hunter2" not in message  # values are not echoed with their secrets
    finally:
        so_settings.reset()


def test_health_store_refuses_unsupported_urls() -> None:
    with pytest.raises(ValueError, match="use a local path, a file:// URL or an s3:// prefix"):
        HealthStore("gs://bucket/synthobs")


@pytest.mark.usefixtures("prefect_server")
def test_a_bad_environment_variable_is_one_warning_and_its_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_FLUSH_INTERVAL_SECONDS", "inf")
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_OTLP_ENDPOINT", "collector-without-scheme")
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_SERVICE_NAME", "from-env")
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_SPOOL_DIR", str(tmp_path / "spool"))
    so_settings.reset()
    reset_runtime()
    name = f"bad-env-{uuid.uuid4().hex[:6]}"

    @so.observe
    @flow(name=name)
    def f() -> int:
        return 5

    try:
        with caplog.at_level(logging.WARNING, logger="prefect.synthobs"):
            settings = so.configure()
            so.configure()  # again: no second warning
            assert f() == 5
        assert settings.flush_interval_seconds == 5.0 and settings.otlp_endpoint is None
        assert settings.service_name == "from-env"  # the rest of the environment still applies
        warnings = [
            r.getMessage() for r in caplog.records if "ignoring PREFECT_INTEGRATIONS_SYNTHOBS_" in r.getMessage()
        ]
        assert len(warnings) == 2
        assert any("FLUSH_INTERVAL_SECONDS" in w and "default 5.0" in w for w in warnings)
        reset_runtime()
        rows = HealthStore(str(tmp_path / "store")).read("flow_runs")
        assert rows.flow_name.tolist() == [name]  # recording went on
    finally:
        reset_runtime()
        so_settings.reset()


@pytest.mark.parametrize("score", [float("inf"), -5.0, 7.0, float("nan")])
def test_record_quality_refuses_scores_outside_their_range(score: float) -> None:
    with pytest.raises(ValueError, match="overall"):
        so.record_quality("overall", score)


def test_a_score_without_a_fixed_range_may_exceed_one(store_dir: Path) -> None:
    from prefect_synthobs.catalog import UNIT_INTERVAL_METRICS
    from prefect_synthobs.metrics import REGISTRY

    def gauge() -> list[float]:
        return [
            s.value
            for family in REGISTRY.collect()
            for s in family.samples
            if s.name == "synthobs_quality_score" and s.labels.get("metric") == "tstr_ratio"
        ]

    assert "tstr_ratio" not in UNIT_INTERVAL_METRICS and "overall" in UNIT_INTERVAL_METRICS
    assert so.record_quality("tstr_ratio", 1.07) is None  # outside a run: validated, then only the metrics
    assert 1.07 in gauge()  # kept as given, not clipped to 1 (other tests on this worker may hold other series)
    assert so.record_quality("tstr_ratio", 1.07, threshold=1.0) is True  # a threshold above one too
    assert so.record_quality("tstr_ratio", 0.93, threshold=1.0) is False
    with pytest.raises(ValueError, match="between 0 and 1"):
        so.record_quality("overall", 1.07)  # the contrast: a score defined on [0, 1] may not


def test_a_column_declared_with_the_wrong_sdtype_is_named() -> None:
    real = pd.DataFrame({"plan": ["basic", "pro", "basic"], "age": [30, 40, 50]})
    meta = {"columns": {"plan": {"sdtype": "numerical"}, "age": {"sdtype": "numerical"}}}
    with pytest.raises(ValueError, match="column 'plan' is declared 'numerical'"):
        quality_report(real, real, meta)


def test_row_counts_beyond_64_bits_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        so.record_rows(10**30)


def test_a_row_that_does_not_fit_its_columns_never_drops_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = task_rows(3, when=datetime(2026, 11, 23, tzinfo=timezone.utc))
    rows[1]["run_count"] = 10**30  # the middle row does not fit int64

    store = HealthStore(str(tmp_path / "store"))
    recorder = Recorder(lambda: store, tmp_path / "spool", store_timeout=30)
    recorder.add("task_runs", rows)
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs.store"):
        assert recorder.flush() == 2
    assert sorted(store.read("task_runs").task_run_id) == ["t0", "t2"]
    rejected = (tmp_path / "spool" / "_rejected" / "task_runs.jsonl").read_text().splitlines()
    assert len(rejected) == 1 and '"t1"' in rejected[0]
    assert "do not fit the table's column types" in caplog.text
    assert not list((tmp_path / "spool").glob("task_runs/*.parquet"))  # nothing left half-converted
