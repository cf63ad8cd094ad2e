"""Settings from the environment and configure()."""

from __future__ import annotations

from pathlib import Path

import pytest

import prefect_synthobs as so
from prefect_synthobs.config import active as so_settings


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


def test_each_store_has_its_own_spool_under_the_spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes on one host share the spool directory; each drains only its own store's rows."""
    from prefect_synthobs.config.settings import SynthObsSettings

    def spool(url: str) -> Path:
        return SynthObsSettings(store_url=url, spool_dir=str(tmp_path / "spool")).store_spool_dir()

    a, b = spool("s3://bucket/prod"), spool("s3://bucket/dev")
    assert a.parent == b.parent == tmp_path / "spool" and a != b and a.name.startswith("store-")
    assert spool("s3://KEY:SECRET@bucket/prod") == a  # credentials do not make another spool
    assert "SECRET" not in str(spool("s3://KEY:SECRET@bucket/prod"))
    monkeypatch.chdir(tmp_path)
    assert spool("health") == spool(str(tmp_path / "health")) == spool(f"file://{tmp_path / 'health'}")
