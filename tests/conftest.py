"""Test fixtures: a real Prefect server for the tests that ask for it, an isolated store per test.

The Prefect server is opt-in: a test that needs the Prefect API requests ``prefect_server`` (as an argument,
through a fixture that depends on it, or a module's ``pytestmark = pytest.mark.usefixtures("prefect_server")``)
and is marked ``server`` at collection. Every other test runs against an API URL that refuses connections, with
Prefect's ephemeral server disallowed, so a test that touches the API without asking fails within seconds with
``NO_SERVER_URL`` in its error (never silently starting a server of its own): the fast tier,
``-m "not slow and not server"``, starts no server at all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Generator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="synthobs-test-home-"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# no API for the tests that did not request `prefect_server` (never a developer's own server, never an ephemeral
# one): port 1 refuses at once, and the URL's path names the fixture in Prefect's "Failed to reach API at ..."
NO_SERVER_URL = "http://127.0.0.1:1/no-prefect-server--request-the-prefect_server-fixture/api"
os.environ["PREFECT_API_URL"] = NO_SERVER_URL
os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"
for key in [k for k in os.environ if k.startswith("PREFECT_INTEGRATIONS_SYNTHOBS_")]:
    del os.environ[key]

import prefect.context  # noqa: E402
import pytest  # noqa: E402
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from prefect_synthobs.config import active as so_settings  # noqa: E402
from prefect_synthobs.health.rows import task_row  # noqa: E402
from prefect_synthobs.instrument.instrumentation import reset_runtime  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AGAINST_INSTALLED = os.environ.get("SYNTHOBS_TESTS_AGAINST") == "installed"
"""The tests run against the installed wheel (scripts/wheel_check.sh), never this checkout's sources."""


_SYNTHOBS_FILE = re.compile(r"[\\/](prefect_synthobs|flows)[\\/][^\\/]+\.py$")
_SYNTHOBS_DEPRECATIONS = (FutureWarning, DeprecationWarning)
_synthobs_warnings: list[str] = []


def pytest_warning_recorded(
    warning_message: warnings.WarningMessage, when: str, nodeid: str, location: tuple[str, int, str] | None
) -> None:
    """A FutureWarning or DeprecationWarning that synthobs' own code triggers (pandas 2's among them: SDV users run
    it) fails the session, even where synthobs catches the exception a warning-as-error would have been (its
    never-raise paths): pyproject's filterwarnings record them ("always"), this hook collects them, in any
    thread, on any xdist worker (xdist replays workers' warnings here)."""
    if issubclass(warning_message.category, _SYNTHOBS_DEPRECATIONS) and _SYNTHOBS_FILE.search(
        str(warning_message.filename)
    ):
        where = f"{warning_message.filename}:{warning_message.lineno}"
        what = f"{warning_message.category.__name__}: {warning_message.message}"
        _synthobs_warnings.append(f"{nodeid or when}: {where}: {what}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _synthobs_warnings and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _synthobs_warnings:
        unique = list(dict.fromkeys(_synthobs_warnings))
        terminalreporter.section("synthobs' own deprecation warnings (they fail the run)", red=True)
        for line in unique:
            terminalreporter.line(line)


def pytest_report_header(config: pytest.Config) -> str:
    """Which prefect_synthobs the tests import: the checkout (editable) or an installed wheel."""
    import prefect_synthobs

    return f"prefect_synthobs {prefect_synthobs.__version__} from {Path(prefect_synthobs.__file__).parent}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """``SYNTHOBS_TESTS_AGAINST=installed`` (scripts/wheel_check.sh): the tests must import the installed wheel,
    never this checkout's sources (run them with the venv's ``pytest`` script, not ``python -m pytest``, which
    puts the working directory first on ``sys.path``)."""
    import prefect_synthobs

    if AGAINST_INSTALLED:
        location = Path(prefect_synthobs.__file__).resolve()
        if location.is_relative_to(REPO / "prefect_synthobs"):
            raise pytest.UsageError(f"tests should run against the installed wheel, but import {location}")


SERVER_MARKER = "server"
_NO_SERVER_SETTINGS = prefect.context.get_settings_context()  # the settings without a server (NO_SERVER_URL)
_server_started = False


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect API server (temporary SQLite), started by the first test of the session that asks for it.

    Request it in every test that reaches the Prefect API (a flow or task run, a client, a block saved or
    loaded, a child process that runs flows); ``pytest_collection_modifyitems`` marks those tests ``server``.
    """
    global _server_started
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        _server_started = True
        try:
            yield PREFECT_API_URL.value()
        finally:
            _server_started = False


@pytest.fixture(autouse=True)
def _no_prefect_api_unless_requested(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that did not request ``prefect_server`` sees no server, even after another test on this worker
    started it: the settings without one, in this context and for threads without their own (so a test passes
    or fails the same in the fast tier and in the full suite)."""
    if not _server_started or "prefect_server" in request.fixturenames:
        yield
        return
    global_context = getattr(prefect.context, "_temporary_global_settings_context", None)
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            prefect.context.SettingsContext(profile=_NO_SERVER_SETTINGS.profile, settings=_NO_SERVER_SETTINGS.settings)
        )
        if global_context is not None:
            stack.enter_context(global_context(_NO_SERVER_SETTINGS))
        yield


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
    # the checkout first, so children import what the tests do; not when the tests run against the installed wheel
    first = [] if AGAINST_INSTALLED else [str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*first, os.environ.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    if AGAINST_INSTALLED:  # a child that imports the checkout instead of the installed wheel fails
        code = f"import sys\nsys.path[:] = [p for p in sys.path if p not in ('', {str(REPO)!r})]\n" + code
        code += (
            "\nimport pathlib, prefect_synthobs as _so\n"
            f"assert not pathlib.Path(_so.__file__).resolve().is_relative_to(pathlib.Path({str(REPO)!r}) / "
            "'prefect_synthobs')"
        )
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


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: the `server` marker must be there by then
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``server`` every test that uses the ``prefect_server`` fixture; deselect Prefect's block-logo
    download (it needs the internet)."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        if "prefect_server" in getattr(item, "fixturenames", ()):
            item.add_marker(SERVER_MARKER)
        (drop if item.name.startswith("test_has_a_valid_image") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that reached for the Prefect API without requesting ``prefect_server``: say so."""
    report: pytest.TestReport = yield
    if report.failed and "prefect_server" not in getattr(item, "fixturenames", ()):
        seen = report.longreprtext + "".join(content for _, content in report.sections)
        # the URL in Prefect's "Failed to reach API at ...", or a refused connection from Prefect's client
        refused = "ConnectError" in seen and f"prefect{os.sep}client{os.sep}" in seen
        if NO_SERVER_URL.split("/")[3] in seen or refused:
            report.sections.append(
                (
                    "prefect_server",
                    "This test reached for the Prefect API, which only tests that request the `prefect_server` "
                    'fixture have: add it as an argument, `@pytest.mark.usefixtures("prefect_server")` on the '
                    'test, or `pytestmark = pytest.mark.usefixtures("prefect_server")` in its module '
                    "(CONTRIBUTING.md, Tests).",
                )
            )
    return report


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
