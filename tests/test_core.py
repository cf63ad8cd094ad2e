"""Pure core: rows, redaction, settings, quality, span."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

import prefect_synthobs as so
from prefect_synthobs.config import active as so_settings
from prefect_synthobs.health.rows import flow_row, normalize_loss, trace_id_from_traceparent
from prefect_synthobs.quality import ks_complement
from prefect_synthobs.telemetry.redaction import luhn_valid, redact


def test_flow_row_computes_duration_throughput_and_cuts_errors() -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    row = flow_row(
        flow_run_id="r",
        flow_name="f",
        state_type="FAILED",
        state_name="Failed",
        start_time=start,
        end_time=start + timedelta(seconds=4),
        rows=1000,
        error_type="ValueError",
        error_message="x" * 5000 + " bob@corp.io",
    )
    assert row["duration_s"] == 4.0 and row["rows_per_s"] == 250.0
    assert len(row["error_message"]) == 2000
    assert (
        row["event_id"]
        != flow_row(
            flow_run_id="r", flow_name="f", state_type="COMPLETED", state_name=None, start_time=None, end_time=None
        )["event_id"]
    )


def test_redaction() -> None:
    text = (
        "user jane.doe@example.com ssn 123-45-6789 card 4111 1111 1111 1111 "
        "phone +1 415-555-0134 api_key=sk_live_abc token: tok123 order 1234567890123"
    )
    out = redact(text)
    for secret in (
        "jane.doe@example.com",
        "123-45-6789",
        "4111 1111 1111 1111",
        "415-555-0134",
        "sk_live_abc",
        "tok123",
    ):
        assert secret not in out
    assert "order 1234567890123" in out  # not Luhn-valid: not a card
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_loss_normalization() -> None:
    assert normalize_loss(0.5) == {"loss": 0.5}
    assert normalize_loss({"generator": 1, "discriminator": 2.5}) == {"generator": 1.0, "discriminator": 2.5}
    assert math.isnan(normalize_loss(float("nan"))["loss"])
    assert normalize_loss(None) == {}
    with pytest.raises(ValueError):
        normalize_loss({})


def test_traceparent() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_from_traceparent(f"00-{tid}-00f067aa0ba902b7-01") == tid
    assert trace_id_from_traceparent("garbage") is None
    assert trace_id_from_traceparent(None) is None


def test_settings_from_environment_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    so_settings.reset()
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE", "textfile")
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_GPU_INTERVAL_SECONDS", "2.5")
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_PUSHGATEWAY_GROUPING", '{"env": "prod"}')
    try:
        cfg = so.configure()
        assert (cfg.metrics_mode, cfg.gpu_interval_seconds) == ("textfile", 2.5)
        assert cfg.pushgateway_grouping == {"env": "prod"}
        cfg = so.configure(metrics_mode="none", service_name="svc")
        assert cfg.metrics_mode == "none"  # keyword beats environment
        cfg = so.configure(metrics_port=9999)
        assert (cfg.service_name, cfg.metrics_port) == ("svc", 9999)  # overrides accumulate
        assert so.configure() == cfg  # idempotent
        assert so_settings.env_name("store_url") == "PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL"
    finally:
        so_settings.reset()


def test_embedded_default_store_is_under_prefect_home() -> None:
    from prefect_synthobs.config.settings import prefect_home

    so_settings.reset()
    cfg = so.configure()
    assert cfg.resolved_store_url() == str(prefect_home() / "synthobs")
    assert cfg.metrics_mode == "none"
    so_settings.reset()


def test_ks_complement_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    a = pd.Series(rng.normal(0, 1, 500))
    assert ks_complement(a, a) == 1.0
    assert ks_complement(pd.Series([1.0, 2.0]), pd.Series([10.0, 11.0])) == 0.0
    # hand-computed: real {1,2,3,4}, synthetic {3,4,5,6} -> D = 0.5
    assert ks_complement(pd.Series([1, 2, 3, 4]), pd.Series([3, 4, 5, 6, np.nan])) == 0.5
    dates = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02"]))
    assert ks_complement(dates, dates) == 1.0
    with pytest.raises(ValueError):
        ks_complement(pd.Series(["a"]), pd.Series(["b"]))


def test_span_outside_a_run_is_safe_and_validates_name() -> None:
    with so.span("generation.batch", batch_size=10, obj=object()) as s:
        assert s is not None
    with pytest.raises(ValueError), so.span(""):
        pass
