"""The structure the package promises: one table contract, one settings model, a symmetric Instrumentation."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from prefect_synthobs.config.active import ActiveSettings
from prefect_synthobs.config.blocks import BLOCKS, MetricsConfig, SynthObsConfig
from prefect_synthobs.config.settings import SynthObsSettings
from prefect_synthobs.gpu.nvml import GpuReading
from prefect_synthobs.gpu.sampler import sample_rows
from prefect_synthobs.health.rows import epoch_rows, flow_row, model_row, privacy_row, quality_row, task_row
from prefect_synthobs.health.tables import TABLES, Table
from prefect_synthobs.instrument.instrumentation import Instrumentation
from prefect_synthobs.reports.health import COLUMNS as REPORT_COLUMNS

NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)


def _reading() -> GpuReading:
    return GpuReading(
        index=0,
        uuid="GPU-0",
        name="Fake",
        utilization=0.5,
        memory_used_bytes=1,
        memory_total_bytes=2,
        power_w=100.0,
        temperature_c=50.0,
        sm_clock_mhz=1000,
        energy_counter_j=10.0,
    )


ROWS = {
    "flow_runs": lambda: [
        flow_row(
            flow_run_id="f", flow_name="n", state_type="COMPLETED", state_name="Completed", start_time=NOW, end_time=NOW
        )
    ],
    "task_runs": lambda: [
        task_row(
            task_run_id="t",
            flow_run_id="f",
            flow_name="n",
            task_name="t",
            state_type="COMPLETED",
            state_name="Completed",
            start_time=NOW,
            end_time=NOW,
            run_count=1,
        )
    ],
    "training_epochs": lambda: epoch_rows(
        epoch=0, losses={"loss": 1.0}, time=NOW, flow_run_id="f", flow_name="n", model_type=None
    ),
    "quality_checks": lambda: [
        quality_row(
            metric="overall", score=0.9, threshold=0.8, time=NOW, table_name="t", flow_run_id="f", flow_name="n"
        )
    ],
    "privacy_ledger": lambda: [
        privacy_row(time=NOW, flow_run_id="f", flow_name="n", dataset="d", epsilon=0.5, spent=0.5, budget=1.0)
    ],
    "models": lambda: [
        model_row(
            time=NOW,
            flow_run_id="f",
            flow_name="n",
            task_run_id=None,
            model_id="m",
            library="sdv",
            synthesizer="CTGANSynthesizer",
            model_type="ctgan",
            table_name="t",
            parameters="{}",
            fit_rows=1,
            fit_columns=1,
            fit_seconds=1.0,
            epochs=1,
            size_bytes=1,
            status="completed",
        )
    ],
    "gpu_samples": lambda: sample_rows([_reading()], {"GPU-0": 1.0}, time=NOW, host="h", run_ids=["f"]),
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_row_builder_writes_exactly_its_tables_columns(table: str) -> None:
    rows = ROWS[table]()
    assert rows and all(list(row) == TABLES[table].schema.names for row in rows)


def test_report_reads_only_columns_the_tables_have() -> None:
    for table, columns in REPORT_COLUMNS.items():
        missing = set(columns) - set(TABLES[table].schema.names)
        assert not missing, f"{table}: {missing}"


def test_block_fields_are_the_settings_own_fields() -> None:
    """A block field made with ``setting_field`` keeps the setting's bounds, default and description."""
    checked = 0
    for block in BLOCKS:
        for field_name, key in getattr(block, "_settings_keys", {}).items():
            mine, theirs = block.model_fields[field_name], SynthObsSettings.model_fields[key]
            assert repr(mine.metadata) == repr(theirs.metadata), (block.__name__, field_name)
            assert mine.description, (block.__name__, field_name)
            if mine.is_required():
                continue
            assert mine.get_default(call_default_factory=True) in (
                theirs.get_default(call_default_factory=True),
                "http/protobuf",
            ), (block.__name__, field_name)
            checked += 1
    assert checked >= 15


def test_a_block_refuses_what_the_setting_refuses() -> None:
    with pytest.raises(ValueError, match=r"greater than or equal to 0\.25"):
        SynthObsConfig(gpu_interval_seconds=0.1)
    with pytest.raises(ValueError, match="pattern"):
        MetricsConfig(prefix="9bad")


def test_instrumentation_install_is_idempotent_and_uninstall_switches_everything_off() -> None:
    provider = TracerProvider()
    active = ActiveSettings()
    instrumentation = Instrumentation(settings=active, tracer_provider=provider, registry=CollectorRegistry())
    instrumentation.install()
    instrumentation.install()
    processors = provider._active_span_processor._span_processors  # the SDK keeps them here
    assert sum(p is instrumentation.listener for p in processors) == 1
    assert sum(p is instrumentation.tracing.switch for p in processors) == 1
    assert instrumentation.listener_active()
    instrumentation.uninstall()
    instrumentation.uninstall()
    assert not instrumentation.listener.enabled
    assert instrumentation.tracing.switch.delegate is None
    assert not instrumentation.listener_active()
    assert instrumentation.current_runtime() is None


def test_instrumentations_with_their_own_registries_do_not_share_metrics() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    ma = Instrumentation(settings=ActiveSettings(), tracer_provider=TracerProvider(), registry=a).metrics("x")
    mb = Instrumentation(settings=ActiveSettings(), tracer_provider=TracerProvider(), registry=b).metrics("x")
    ma.flow_runs.labels("f", "other", "COMPLETED").inc()
    assert a.get_sample_value("x_flow_runs_total", {"flow": "f", "kind": "other", "state": "COMPLETED"}) == 1.0
    assert b.get_sample_value("x_flow_runs_total", {"flow": "f", "kind": "other", "state": "COMPLETED"}) is None
    assert mb.registry is b


def test_a_row_with_a_missing_or_unknown_column_is_refused() -> None:
    table = Table("t", {"time": pa.timestamp("us", tz="UTC"), "x": pa.int64()}, time_column="time")
    assert table.row(time=NOW, x=1)["x"] == 1
    with pytest.raises(ValueError, match=r"missing columns \['x'\], unknown columns \['y'\]"):
        table.row(time=NOW, y=1)
    with pytest.raises(ValueError, match="has no columns"):
        table.select("time", "nope")
    with pytest.raises(ValueError, match="time column"):
        Table("t", {"x": pa.int64()}, time_column="time")


def test_every_subpackage_ships_in_the_wheel() -> None:
    """A package left out of pyproject's list works in an editable install and is missing from the wheel."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    line = re.search(r"^packages = \[(.*)\]$", (root / "pyproject.toml").read_text(), re.MULTILINE)
    assert line is not None
    listed = set(re.findall(r'"([^"]+)"', line.group(1)))
    found = {".".join(init.parent.relative_to(root).parts) for init in (root / "prefect_synthobs").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
