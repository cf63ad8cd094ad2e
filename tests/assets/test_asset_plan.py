"""What a finished run's asset events say, without a server: keys from the templates, the real table upstream,
the payload (rows, model, quality, gates, privacy), redaction, and tables whose keys Prefect refuses."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect.assets import Asset

from prefect_synthobs.config.settings import SynthObsSettings
from prefect_synthobs.health.events import FlowRunEnded, ModelFitted, PrivacyChecked, QualityChecked
from prefect_synthobs.instrument import assets as assets_module
from prefect_synthobs.instrument.asset_plan import (
    AssetConfig,
    Materialization,
    ModelFacts,
    RunRecord,
    plan_run,
    render_key,
)
from prefect_synthobs.instrument.assets import AssetLedger, AssetSink, materialize_run, reset_warnings

T0 = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)
CONFIG = AssetConfig()


def ended(rows: dict[str | None, int], state: str = "COMPLETED", **extra: Any) -> FlowRunEnded:
    return FlowRunEnded(
        flow_run_id=extra.pop("flow_run_id", "run-1"),
        flow_name="generate",
        state_type=state,
        state_name=state.title(),
        start_time=T0,
        end_time=T0,
        rows=sum(rows.values()),
        rows_by_table=rows,
        **extra,
    )


def fitted(model_id: str = "m1", table: str | None = "customers", **extra: Any) -> ModelFitted:
    values: dict[str, Any] = {
        "time": T0,
        "flow_run_id": "train-1",
        "flow_name": "train",
        "task_run_id": None,
        "model_id": model_id,
        "library": "sdv",
        "synthesizer": "GaussianCopulaSynthesizer",
        "model_type": "gaussian_copula",
        "table_name": table,
        "parameters": None,
        "fit_rows": 800,
        "fit_columns": 3,
        "fit_seconds": 1.0,
        "epochs": None,
        "size_bytes": 10,
        "status": "completed",
    }
    return ModelFitted(**(values | extra))


def quality(metric: str, score: float, *, table: str = "customers", model_id: str | None = "m1", **kw: Any) -> Any:
    return QualityChecked(
        time=T0,
        flow_run_id=kw.pop("flow_run_id", "run-1"),
        flow_name="generate",
        table_name=table,
        model_id=model_id,
        model_type=kw.pop("model_type", "gaussian_copula"),
        metric=metric,
        score=score,
        threshold=kw.pop("threshold", None),
        passed=kw.pop("passed", None),
        gate=kw.pop("gate", metric),
    )


def spend(dataset: str, epsilon: float, allowed: bool = True) -> PrivacyChecked:
    return PrivacyChecked(
        time=T0,
        flow_run_id="run-1",
        flow_name="generate",
        dataset=dataset,
        epsilon=epsilon,
        spent=epsilon,
        budget=10.0,
        allowed=allowed,
    )


def copula(model_id: str = "m1") -> ModelFacts:
    return ModelFacts(model_id, "gaussian_copula", "sdv", "GaussianCopulaSynthesizer")


class Task:
    def __init__(self, id: str, name: str) -> None:
        self.id, self.name = id, name


def plan_of(ledger: AssetLedger, event: FlowRunEnded, config: AssetConfig = CONFIG) -> list[Materialization]:
    planned, skipped = plan_run(ledger.take(event.flow_run_id), event, config)
    assert not skipped
    return planned


def test_a_sampled_table_is_one_materialization_with_the_fit_the_scores_and_the_spend() -> None:
    ledger = AssetLedger()
    ledger.fitted(fitted(table="customers_2024"))
    ledger.sampled("run-1", copula(), {"customers": 300}, Task("t1", "sample-abc"))
    ledger.sampled("run-1", copula(), {"customers": 200}, Task("t2", "sample-def"))
    ledger.scored(quality("overall", 0.5))
    ledger.scored(quality("overall", 0.87654321, threshold=0.8, passed=True, gate="min_overall"))
    ledger.scored(quality("column_shapes", 0.9))
    ledger.scored(quality("exact_match_rate", 0.2, threshold=0.1, passed=False, gate="max_exact_match_rate"))
    ledger.scored(quality("overall", 0.1, table="orders"))  # another table
    ledger.scored(quality("overall", 0.1, model_id="m2"))  # another model
    ledger.spent(spend("customers_2024", 0.25))
    ledger.spent(spend("customers_2024", 0.5))
    ledger.spent(spend("customers_2024", 9.0, allowed=False))
    (item,) = plan_of(ledger, ended({"customers": 500}))
    assert item.key == "synthobs://customers/gaussian_copula"
    assert item.upstream == "synthobs://customers_2024/real"  # the table the model was fitted on
    assert item.status == "succeeded" and item.materialized_by == "sdv"
    assert item.task_runs == (("t1", "sample-abc"), ("t2", "sample-def"))
    meta = item.metadata
    assert meta["rows"] == 500 and meta["table"] == "customers"
    assert meta["model_id"] == "m1" and meta["synthesizer"] == "GaussianCopulaSynthesizer"
    assert meta["trained_on"] == "customers_2024" and (meta["fit_rows"], meta["fit_columns"]) == (800, 3)
    assert meta["quality"] == {"overall": 0.876543, "column_shapes": 0.9, "exact_match_rate": 0.2}
    assert list(meta["quality"])[:2] == ["overall", "column_shapes"]
    assert meta["gates_passed"] == ["min_overall"] and meta["gates_failed"] == ["max_exact_match_rate"]
    assert meta["privacy_epsilon"] == {"customers_2024": 0.75}
    assert meta["flow_run_id"] == "run-1" and meta["recorded_by"].startswith("prefect-synthobs ")
    assert len(json.dumps(meta)) < 1500  # small and JSON-safe
    assert ledger.take("run-1") is None  # taken once


def test_two_models_on_one_table_are_two_assets_each_with_its_own_scores_and_rows() -> None:
    ledger = AssetLedger()
    ledger.sampled("run-1", copula("m1"), {"customers": 300})
    ledger.sampled("run-1", ModelFacts("m2", "ctgan", "sdv", "CTGANSynthesizer"), {"customers": 100})
    ledger.scored(quality("overall", 0.9, model_id="m1"))
    ledger.scored(quality("overall", 0.7, model_id="m2", model_type="ctgan"))
    ledger.scored(quality("overall", 0.1, model_id=None))  # which model? neither asset takes it
    items = {i.key: i for i in plan_of(ledger, ended({"customers": 400}))}
    assert set(items) == {"synthobs://customers/gaussian_copula", "synthobs://customers/ctgan"}
    assert items["synthobs://customers/gaussian_copula"].metadata["quality"] == {"overall": 0.9}
    assert items["synthobs://customers/ctgan"].metadata["rows"] == 100
    assert items["synthobs://customers/ctgan"].metadata["quality"] == {"overall": 0.7}


def test_rows_counted_by_hand_take_the_flows_model_type_and_the_model_a_score_named() -> None:
    ledger = AssetLedger()
    ledger.scored(quality("overall", 0.9, model_id="copula-v2", model_type=None))
    (item,) = plan_of(ledger, ended({"customers": 50}, model_type="gaussian_copula"))
    assert item.key == "synthobs://customers/gaussian_copula"
    assert item.metadata["model_id"] == "copula-v2" and item.metadata["quality"] == {"overall": 0.9}
    assert item.materialized_by is None and "library" not in item.metadata


def test_multi_table_samples_each_table_with_its_real_table_and_the_relational_scores() -> None:
    ledger = AssetLedger()
    ledger.fitted(fitted("hma", table="users,orders", synthesizer="HMASynthesizer", model_type="hma"))
    ledger.sampled("run-1", ModelFacts("hma", "hma", "sdv", "HMASynthesizer"), {"users": 10, "orders": 30})
    ledger.scored(quality("overall", 0.8, table="users+orders", model_id="hma"))
    ledger.scored(quality("column_shapes", 0.7, table="users+orders.orders", model_id="hma"))
    items = {i.table: i for i in plan_of(ledger, ended({"users": 10, "orders": 30}))}
    assert items["orders"].upstream == "synthobs://orders/real" and items["users"].upstream == "synthobs://users/real"
    assert items["orders"].metadata["quality"] == {"column_shapes": 0.7}
    assert items["orders"].metadata["trained_on"] == "users,orders"


@pytest.mark.parametrize(("state", "status"), [("COMPLETED", "succeeded"), ("FAILED", "failed")])
def test_a_completed_run_succeeds_a_failed_one_fails(state: str, status: str) -> None:
    (item,) = plan_of(AssetLedger(), ended({"customers": 5}, state))
    assert item.status == status


@pytest.mark.parametrize("state", ["CRASHED", "CANCELLED", "RUNNING"])
def test_a_crashed_or_cancelled_run_materializes_nothing(state: str) -> None:
    assert plan_run(None, ended({"customers": 5}, state), CONFIG) == ([], [])


def test_assets_off_no_rows_or_no_table_materialize_nothing() -> None:
    assert plan_run(None, ended({"customers": 5}), AssetConfig(enabled=False)) == ([], [])
    assert plan_run(None, ended({"customers": 0}), CONFIG) == ([], [])
    assert plan_run(None, ended({None: 5}), CONFIG) == ([], [])


def test_templates_with_other_placeholders() -> None:
    ledger = AssetLedger()
    ledger.sampled("run-1", copula("GaussianCopulaSynthesizer_1.17.0_ab12"), {"customers": 3})
    config = AssetConfig(
        key_template="s3://lake/synthetic/{library}/{table}/{model_id}",
        upstream_template="postgres://prod/{table}",
    )
    (item,) = plan_of(ledger, ended({"customers": 3}), config)
    assert item.key == "s3://lake/synthetic/sdv/customers/GaussianCopulaSynthesizer_1.17.0_ab12"
    assert item.upstream == "postgres://prod/customers"
    unknown = plan_of(AssetLedger(), ended({"customers": 3}), config)[0]
    assert unknown.key == "s3://lake/synthetic/unknown/customers/unknown"


def test_pii_in_a_table_name_or_model_id_is_redacted_in_key_name_and_payload() -> None:
    ledger = AssetLedger()
    ledger.sampled("run-1", ModelFacts("owner ann@example.com", "gaussian_copula", "sdv", "X"), {"ann@example.com": 3})
    ledger.scored(quality("overall", 0.9, table="ann@example.com", model_id="owner ann@example.com"))
    (item,) = plan_of(ledger, ended({"ann@example.com": 3}))
    part = "redacted-" + hashlib.sha256(b"ann@example.com").hexdigest()[:8]  # apart from other redacted tables
    assert item.key == f"synthobs://{part}/gaussian_copula" and item.upstream == f"synthobs://{part}/real"
    text = json.dumps([item.name, item.description, item.metadata])
    assert "ann@example.com" not in text and "[REDACTED]" in item.metadata["table"]
    assert item.metadata["model_id"] == "owner [REDACTED]" and item.metadata["quality"] == {"overall": 0.9}
    (kept,) = plan_run(None, ended({"ann@example.com": 3}), AssetConfig(redact_pii=False))[0]
    assert kept.key == "synthobs://ann@example.com/unknown"


@pytest.mark.parametrize("table", ["my table", "a#b", "50%", "x" * 600, 'q"uote'])
def test_a_table_prefect_refuses_is_skipped_with_the_reason(table: str) -> None:
    planned, skipped = plan_run(None, ended({table: 3, "good": 2}), CONFIG)
    assert [p.table for p in planned] == ["good"]
    assert [s.table for s in skipped] == [table] and "Prefect refuses asset key" in skipped[0].reason


def test_an_upper_case_scheme_from_the_template_is_refused() -> None:
    with pytest.raises(ValueError, match="valid URI"):
        render_key("S3://{table}", {"table": "t"}, redact_pii=True)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=80), st.booleans())
def test_any_table_name_gives_a_key_prefect_accepts_or_a_skip(table: str, redact_pii: bool) -> None:
    planned, skipped = plan_run(None, ended({table: 1}), AssetConfig(redact_pii=redact_pii))
    assert len(planned) + len(skipped) == 1
    for item in planned:
        assert Asset(key=item.key).key == item.key and Asset(key=item.upstream).key == item.upstream
        json.dumps(item.metadata)
        if not redact_pii:
            assert item.key == f"synthobs://{table}/unknown"


def test_materialize_run_warns_once_per_table_and_once_when_emitting_fails(caplog: pytest.LogCaptureFixture) -> None:
    reset_warnings()
    sent: list[str] = []

    def emit(item: Materialization, flow_run_id: str) -> None:
        if item.table == "down":
            raise RuntimeError("events API unreachable")
        sent.append(item.key)

    with caplog.at_level(logging.INFO, logger="prefect.synthobs"):
        for _ in range(2):  # the same faults twice: one warning each
            assert materialize_run(ended({"bad table": 1, "down": 1, None: 4}), CONFIG, emit=emit) == []
        messages = [r.getMessage() for r in caplog.records]
        assert sum("'bad table' is not materialized" in m for m in messages) == 1
        assert sum("table 'down'" in m and "lineage and metadata are lost" in m for m in messages) == 1
        assert sum("without a table name" in m for m in messages) == 1
        done = materialize_run(ended({"down": 1, "ok": 1}), CONFIG, emit=emit)  # an emit succeeds: re-armed
        assert [d.table for d in done] == ["ok"] and sent == ["synthobs://ok/unknown"]
        materialize_run(ended({"down": 1}), CONFIG, emit=emit)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("table 'down'" in m for m in messages) == 2  # failing again after a success is said again


def test_the_sink_collects_fits_scores_and_spends_and_emits_at_the_runs_end(monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = AssetLedger()
    sink = AssetSink(SynthObsSettings(), ledger=ledger)
    sent: list[Materialization] = []
    monkeypatch.setattr(assets_module, "emit_materialization", lambda item, run: sent.append(item))
    sink.handle(fitted())
    ledger.sampled("run-1", copula(), {"customers": 7})
    sink.handle(quality("overall", 0.8))
    sink.handle(spend("customers", 1.0))
    sink.handle(ended({"customers": 7}))
    (item,) = sent
    assert item.metadata["fit_rows"] == 800 and item.metadata["quality"] == {"overall": 0.8}
    assert item.metadata["privacy_epsilon"] == {"customers": 1.0}
    sink_off = AssetSink(SynthObsSettings(assets=False), ledger=ledger)
    ledger.sampled("run-1", copula(), {"customers": 7})
    sink_off.handle(ended({"customers": 7}))  # off: nothing emitted (no server here: it would warn)
    assert ledger.take("run-1") is None


def test_the_ledger_is_bounded_and_forgets_nothing_it_has_not_to() -> None:
    ledger = AssetLedger()
    for i in range(300):
        ledger.sampled(f"run-{i}", copula(), {"t": 1})
    assert ledger.take("run-0") is None and ledger.take("run-299") is not None
    assert isinstance(RunRecord(), RunRecord)


def test_the_runtime_wires_the_asset_sink() -> None:
    """Every runtime's recording hands events to the asset sink, after the health, metrics and span sinks."""
    from prefect_synthobs.instrument.assets import AssetSink
    from prefect_synthobs.instrument.instrumentation import get_runtime, reset_runtime

    try:
        runtime = get_runtime()
        kinds = [type(sink).__name__ for sink in runtime.recording.sinks]
        assert isinstance(runtime.recording.sinks[-1], AssetSink), kinds
        assert kinds[:3] == ["HealthSink", "MetricsSink", "SpanSink"]
    finally:
        reset_runtime()


@settings(max_examples=60, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
)
def test_task_run_and_flow_run_names_in_asset_events_are_redacted(before: str, after: str) -> None:
    """The task runs that sampled a table, and the flow run, are named in the asset events' related resources:
    PII in those names is redacted as in the payload (and kept as is with ``redact_pii`` off)."""
    from contextvars import copy_context
    from types import SimpleNamespace

    from prefect.context import FlowRunContext

    from prefect_synthobs.instrument.prefect_api import run_resources

    secret = "ann@example.com"
    name = f"{before} {secret} {after}"
    for redact_pii in (True, False):
        ledger = AssetLedger()
        ledger.sampled("run-1", copula(), {"customers": 3}, Task("t1", name))
        (item,) = plan_of(ledger, ended({"customers": 3}), AssetConfig(redact_pii=redact_pii))
        ((task_run_id, sent),) = item.task_runs
        assert task_run_id == "t1" and (secret not in str(sent)) is redact_pii
        assert item.redact_run_names is redact_pii

        def resources(task_runs: Any, redact_names: bool) -> list[dict[str, str]]:
            run = SimpleNamespace(flow_run=SimpleNamespace(id="run-1", name=name))
            FlowRunContext.__var__.set(run)  # type: ignore[arg-type]
            return run_resources("run-1", task_runs, redact_names=redact_names)

        flow_run, task_run = copy_context().run(resources, item.task_runs, item.redact_run_names)
        assert flow_run["prefect.resource.role"] == "flow-run" and task_run["prefect.resource.role"] == "task-run"
        assert (secret not in json.dumps([flow_run, task_run])) is redact_pii
