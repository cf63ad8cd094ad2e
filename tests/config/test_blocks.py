"""Blocks: Prefect's standard suite, save/load with secrets masked, configuration from a block."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prefect import flow
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.testing.standard_test_suites import BlockStandardTestSuite

import prefect_synthobs as so
from conftest import REPO, subprocess_env
from prefect_synthobs import catalog as names
from prefect_synthobs.blocks import BLOCKS, HealthStoreConfig, MetricsConfig, OtlpExporter, SynthObsConfig
from prefect_synthobs.config import active as so_settings


@pytest.mark.parametrize("block", BLOCKS, ids=[b.__name__ for b in BLOCKS])
class TestAllBlocksAdhereToStandards(BlockStandardTestSuite):
    """Prefect's own checks (its logo download is deselected in conftest: no internet here)."""

    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block


def _config(tmp_path: Path, tag: str) -> SynthObsConfig:
    return SynthObsConfig(
        service_name="synth-svc",
        environment="staging",
        store=HealthStoreConfig(url=str(tmp_path / "block-store"), spool_dir=str(tmp_path / "spool")),
        metrics=MetricsConfig(mode="none", prefix="blk"),
        tracing=OtlpExporter(
            endpoint="http://127.0.0.1:9/",
            protocol="grpc",
            token=f"tok-{tag}",
            headers={"x-api-key": f"key-{tag}"},
            timeout_seconds=0.5,
        ),
        gpu_interval_seconds=2.0,
    )


@pytest.mark.usefixtures("prefect_server")
def test_save_load_round_trip_keeps_secrets_and_masks_them(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    name = f"rt-{tag}"
    _config(tmp_path, tag).save(name)
    loaded = SynthObsConfig.load(name)
    assert loaded.tracing is not None and loaded.store is not None and loaded.metrics is not None
    assert loaded.tracing.token is not None and loaded.tracing.token.get_secret_value() == f"tok-{tag}"
    assert loaded.tracing.export_headers() == {"x-api-key": f"key-{tag}", "authorization": f"Bearer tok-{tag}"}
    assert loaded.gpu_interval_seconds == 2.0 and loaded.metrics.prefix == "blk"
    assert f"tok-{tag}" not in repr(loaded) and f"key-{tag}" not in repr(loaded)
    # what the API hands out without include_secrets (the UI's view) is masked
    with get_client(sync_client=True) as client:
        doc = client.read_block_document_by_name(name, "synthobs-config", include_secrets=False)
    tracing = doc.data["tracing"]  # nested blocks saved with their parent
    assert tracing["endpoint"] == "http://127.0.0.1:9/"
    assert tracing["token"] != f"tok-{tag}" and "*" in str(tracing["token"])
    assert f"key-{tag}" not in str(doc.data) and f"tok-{tag}" not in str(doc.data)


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
def test_configure_from_a_block_and_keywords_still_win(tmp_path: Path) -> None:
    so_settings.reset()
    try:
        block = _config(tmp_path, "cfg")
        settings = so.configure(config=block, metrics_prefix="kw")
        assert settings.store_url == str(tmp_path / "block-store")
        assert settings.environment == "staging" and settings.service_name == "synth-svc"
        assert settings.otlp_protocol == "grpc" and settings.otlp_timeout_seconds == 0.5
        assert settings.resolved_otlp_headers() == {"x-api-key": "key-cfg", "authorization": "Bearer tok-cfg"}
        assert "tok-cfg" not in repr(settings) and "key-cfg" not in str(settings)  # secrets stay masked
        assert settings.metrics_prefix == "kw"  # keyword beats block
        assert settings.gpu_interval_seconds == 2.0
        with pytest.raises(ValueError, match="could not load SynthObsConfig block 'no-such-block'"):
            so.configure(config="no-such-block")
        with pytest.raises(ValueError, match="SynthObsConfig"):
            so.configure(config=42)
    finally:
        so_settings.reset()


@pytest.mark.usefixtures("prefect_server")
def test_observe_with_a_block_name_records_where_the_block_says(tmp_path: Path) -> None:
    from prefect_synthobs.instrument.instrumentation import reset_runtime

    so_settings.reset()
    reset_runtime()
    tag = uuid.uuid4().hex[:8]
    name = f"obs-{tag}"
    config = _config(tmp_path, tag)
    config.tracing = None
    config.save(name)
    try:

        @so.observe(kind="generation", table="t", config=name)
        @flow(name=f"block-configured-{tag}")
        def generate() -> int:
            so.record_rows(5)
            return 5

        assert generate() == 5
        assert so_settings.get_settings().config_block == name
        runs = so.HealthStore(str(tmp_path / "block-store")).read(names.FLOW_RUNS)
        assert list(runs.flow_name) == [f"block-configured-{tag}"] and list(runs.rows) == [5]
    finally:
        reset_runtime()
        so_settings.reset()


def test_observe_rejects_a_config_that_is_not_a_block() -> None:
    with pytest.raises(ValueError, match="SynthObsConfig block or a block name"):
        so.observe(config=3.5)


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
def test_prefect_block_register_finds_the_blocks() -> None:
    env = subprocess_env()
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "prefect_synthobs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"Successfully registered {len(BLOCKS)} block" in " ".join(proc.stdout.split()), proc.stdout
    with get_client(sync_client=True) as client:
        for block in BLOCKS:
            assert client.read_block_type_by_slug(block.get_block_type_slug()).name == block.get_block_type_name()


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
def test_blocks_scripts_register_and_create_from_env(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    env = subprocess_env(
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL="s3://synthobs-bucket/health",
        AWS_ACCESS_KEY_ID=f"AKIA{tag}",
        AWS_SECRET_ACCESS_KEY=f"secret-{tag}",
        AWS_ENDPOINT_URL="http://127.0.0.1:9000",
        AWS_REGION="eu-west-1",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_HEADERS=f"x-tenant=team%20a,x-key={tag}",
        SYNTHOBS_OTLP_TOKEN=f"tok-{tag}",
        PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE="pushgateway",
        PREFECT_INTEGRATIONS_SYNTHOBS_ENVIRONMENT="prod",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_METRIC_EXPORT_INTERVAL="15000",
        OTEL_LOGS_EXPORTER="otlp",
    )
    for script, args in (("register.py", []), ("create_from_env.py", [f"env-{tag}"])):
        proc = subprocess.run(
            [sys.executable, str(REPO / "blocks" / script), *args], env=env, capture_output=True, text=True, timeout=180
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    config = SynthObsConfig.load(f"env-{tag}")
    assert config.environment == "prod" and config.metrics is not None
    assert config.metrics.mode == "pushgateway,otlp" and config.metrics.otlp_interval_seconds == 15.0
    assert config.store is not None and config.store.url == "s3://synthobs-bucket/health"
    assert config.store.options() == {
        "access_key": f"AKIA{tag}",
        "secret_key": f"secret-{tag}",
        "region": "eu-west-1",
        "endpoint_url": "http://127.0.0.1:9000",
    }
    assert config.tracing is not None and config.tracing.protocol == "grpc" and config.tracing.logs is True
    assert config.tracing.export_headers() == {"x-tenant": "team a", "x-key": tag, "authorization": f"Bearer tok-{tag}"}
    assert HealthStoreConfig.load(f"env-{tag}-store").url == "s3://synthobs-bucket/health"
    # the store block opens an S3 filesystem with those options (no request is made)
    store = config.store.get_store()
    assert type(store._fs).__name__ == "S3FileSystem"


def test_metrics_block_takes_a_list_of_modes_and_refuses_unknown_ones() -> None:
    assert MetricsConfig(mode=" HTTP , otlp").mode == "http,otlp"
    assert MetricsConfig(mode=["pushgateway", "otlp"]).settings()["metrics_mode"] == "pushgateway,otlp"
    with pytest.raises(ValueError, match="unknown metrics_mode 'statsd'"):
        MetricsConfig(mode="statsd")
    assert MetricsConfig(otlp_temporality="delta").settings()["otlp_metrics_temporality"] == "delta"
    assert OtlpExporter(endpoint="http://c:4318", logs=True).settings()["otlp_logs"] is True
