"""Test fixtures: one real Prefect server per session, an isolated store per test."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="synthobs-test-home-"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
for key in [k for k in os.environ if k.startswith("PREFECT_INTEGRATIONS_SYNTHOBS_")]:
    del os.environ[key]

import pytest  # noqa: E402
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from prefect_synthobs.config import active as so_settings  # noqa: E402
from prefect_synthobs.health.rows import task_row  # noqa: E402
from prefect_synthobs.instrument.instrumentation import reset_runtime  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[str]:
    """A real Prefect API server (temporary SQLite) for the whole session."""
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield PREFECT_API_URL.value()


@pytest.fixture
def store_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh store and spool for this test, configured process-wide."""
    so_settings.reset()
    reset_runtime()
    store = tmp_path / "store"
    so_settings.configure(store_url=str(store), spool_dir=str(tmp_path / "spool"), metrics_mode="none")
    yield store
    reset_runtime()
    so_settings.reset()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def silent_port(backlog: int = 64) -> Iterator[int]:
    """A loopback port that accepts connections and never answers: the worst case (a refused one fails fast)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(backlog)
        yield int(silent.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A real prometheus-pushgateway on a free loopback port."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is not installed: run the README's test command")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/-/ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: run the README's test command")
    return binary


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that talks to the session's server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_INTEGRATIONS_SYNTHOBS_")}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def stop(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """Terminate ``proc`` and return its output; killed if it has not stopped within ``timeout`` (a loaded
    machine stops a Prefect runner or worker slowly)."""
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


@contextlib.contextmanager
def served_deployment(
    flow_file: Path, deployment: str, env: dict[str, str], timeout: float = 120
) -> Iterator[subprocess.Popen[str]]:
    """Run ``flow_file`` (which calls ``.serve``) in a runner process until
    ``deployment`` ("flow/name") is registered; stop the runner afterwards."""
    from prefect.client.orchestration import get_client

    runner = subprocess.Popen(
        [sys.executable, flow_file.name],
        cwd=flow_file.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while True:
                try:
                    client.read_deployment_by_name(deployment)
                    break
                except Exception:
                    if runner.poll() is not None or time.monotonic() > deadline:
                        runner.kill()
                        pytest.fail(f"the runner never served {deployment}: {runner.communicate()[0][-3000:]}")
                    time.sleep(0.5)
        yield runner
    finally:
        if runner.poll() is None:
            runner.terminate()
            runner.wait(30)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect Prefect's block-logo download (it needs the internet), nothing else."""
    keep, drop = [], []
    for item in items:
        (drop if item.name.startswith("test_has_a_valid_image") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def wait_for_events(
    event: str,
    *,
    related_flow_run: Any = None,
    resource_id: str | None = None,
    count: int = 1,
    timeout: float = 30.0,
) -> list[Any]:
    """Events named ``event`` read back from the session's server, waiting until at
    least ``count`` arrived (events are ingested asynchronously, each on its own, so
    one may be read before its sibling) or ``timeout`` passes."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=[event]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{related_flow_run}"]) if related_flow_run else None,
        resource=EventResourceFilter(id=[resource_id]) if resource_id else None,
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            events = client.read_events(filter=event_filter, limit=50).events  # 50: the server's maximum
            if len(events) >= count or time.monotonic() > deadline:
                return list(events)
            time.sleep(0.5)


def task_rows(n: int, start: int = 0, when: datetime | None = None) -> list[dict[str, Any]]:
    """``n`` completed ``task_runs`` rows with ids ``t<start>`` … ``t<start + n - 1>``, started and ended at
    ``when`` (default 2026-11-23 12:00 UTC)."""
    when = when or datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    return [
        task_row(
            task_run_id=f"t{i}",
            flow_run_id="f",
            flow_name="flow",
            task_name="t",
            state_type="COMPLETED",
            state_name="Completed",
            start_time=when,
            end_time=when,
            run_count=1,
        )
        for i in range(start, start + n)
    ]


def warnings_with(caplog: pytest.LogCaptureFixture, needle: str) -> list[logging.LogRecord]:
    """The WARNING records whose message contains ``needle``."""
    return [r for r in caplog.records if r.levelno == logging.WARNING and needle in r.getMessage()]


FAKE_NVML_SOURCE = REPO / "tests" / "fake_nvml" / "fake_nvml.c"


@pytest.fixture(scope="session")
def fake_nvml(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Directories holding a fake ``libnvidia-ml.so.1``: a current and an old driver's."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("gcc is needed to build the fake NVML library (apt-get install gcc)")
    out: dict[str, Path] = {}
    for variant, flags in (("current", []), ("old", ["-DFAKE_NVML_OLD"])):
        directory = tmp_path_factory.mktemp(f"nvml-{variant}")
        subprocess.run(
            [gcc, "-shared", "-fPIC", "-O2", *flags, "-o", str(directory / "libnvidia-ml.so.1"), str(FAKE_NVML_SOURCE)],
            check=True,
        )
        out[variant] = directory
    return out


def nvml_env(lib_dir: Path, **extra: str) -> dict[str, str]:
    env = subprocess_env(LD_LIBRARY_PATH=str(lib_dir), **extra)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env
