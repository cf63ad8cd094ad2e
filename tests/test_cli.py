"""What users of observed flows see: synthobs' own log lines, in Prefect's console format."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from conftest import nvml_env, run_python
from prefect_synthobs import catalog as names
from prefect_synthobs.health.store import HealthStore

# -- synthobs' own log lines ------------------------------------------------------------------

OBSERVED = """
import os
from prefect import flow
import prefect_synthobs as so

@so.observe(kind="training", model_type="ctgan", table="customers")
@flow(name=os.environ["FLOW_NAME"])
def train():
    return 42

assert train() == 42
"""


# Prefect's console format (logging.yml, formatter "standard"): time | level | logger - message
def console_line(level: str, logger: str, message: str) -> re.Pattern[str]:
    time = r"\d\d:\d\d:\d\d\.\d{3}"
    return re.compile(rf"^{time} \| {level:<7} \| {re.escape(logger)} - {message}", re.MULTILINE)


def observed_flow_env(fake_nvml: dict[str, Path], tmp_path: Path, level: str) -> dict[str, str]:
    """An observed flow's environment on a machine whose NVML does not start (as without a driver), configured
    only through the environment, with one bad synthobs variable (a warning) and ``PREFECT_LOGGING_LEVEL``."""
    return nvml_env(
        fake_nvml["current"],
        FAKE_NVML_INIT_FAIL="1",  # nvmlInit fails: on a GPU machine too, unlike a library path that finds nothing
        FLOW_NAME=f"log-lines-{uuid.uuid4().hex[:6]}",
        PREFECT_LOGGING_LEVEL=level,
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(tmp_path / "store"),
        PREFECT_INTEGRATIONS_SYNTHOBS_SPOOL_DIR=str(tmp_path / "spool"),
        PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE="none",
        PREFECT_INTEGRATIONS_SYNTHOBS_FLUSH_INTERVAL_SECONDS="soon",
    )


@pytest.mark.slow
def test_synthobs_log_lines_show_in_prefects_console_format(fake_nvml: dict[str, Path], tmp_path: Path) -> None:
    # no logging setup in the script: Prefect's logging config alone must show them
    proc = run_python(OBSERVED, observed_flow_env(fake_nvml, tmp_path, "INFO"))
    info = console_line("INFO", "prefect.synthobs.gpu", "synthobs: GPU sampling off")
    assert len(info.findall(proc.stderr)) == 1, proc.stderr[-3000:]
    warning = console_line("WARNING", "prefect.synthobs", r"synthobs: ignoring PREFECT_INTEGRATIONS_SYNTHOBS_FLUSH")
    assert warning.search(proc.stderr), proc.stderr[-3000:]
    assert HealthStore(str(tmp_path / "store")).count(names.FLOW_RUNS) == 1


@pytest.mark.slow
def test_prefect_logging_level_warning_silences_the_info_lines(fake_nvml: dict[str, Path], tmp_path: Path) -> None:
    proc = run_python(OBSERVED, observed_flow_env(fake_nvml, tmp_path, "WARNING"))
    assert "GPU sampling off" not in proc.stderr, proc.stderr[-3000:]
    assert "ignoring PREFECT_INTEGRATIONS_SYNTHOBS_FLUSH" in proc.stderr, proc.stderr[-3000:]  # warnings still show
