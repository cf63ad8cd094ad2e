"""synthobs' Prefect plugin in real processes: ``PREFECT_PLUGINS_ENABLED=true``, settings only in the environment
or a saved ``SynthObsConfig`` block, flow code that never mentions synthobs.

Each child is a fresh interpreter talking to the session's real Prefect server; the plugin runs during its
``import prefect``. The store is read back here.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import prefect_synthobs as so
from conftest import run_python, served_deployment, stop, subprocess_env
from prefect_synthobs import plugin
from prefect_synthobs.config.blocks import HealthStoreConfig, SynthObsConfig

pytestmark = pytest.mark.usefixtures("prefect_server")

PLAIN = """
from prefect import flow, task

@task
def step(i: int) -> int:
    return i + 1

@flow(name={name!r})
def plain(n: int = 2) -> int:
    return sum(step(i) for i in range(n))

state = plain(3, return_state=True)
print("RUN", state.state_details.flow_run_id, state.type.value)
"""


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _env(**extra: str) -> dict[str, str]:
    return subprocess_env(PREFECT_PLUGINS_ENABLED="true", PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE="none", **extra)


def _run_id(stdout: str) -> str:
    match = re.search(r"^RUN (\S+) COMPLETED$", stdout, re.M)
    assert match, stdout[-2000:]
    return match.group(1)


def _rows(store: Path, table: str, flow_run_id: str) -> Any:
    if not (store / table).exists():
        return []
    rows = so.HealthStore(str(store)).read(table)
    return rows[rows.flow_run_id == flow_run_id]


def _await_rows(store: Path, table: str, flow_run_id: str, n: int, timeout: float = 90.0) -> None:
    """Wait until ``n`` rows of the run are in the store (or ``timeout``). The API says a run completed before
    its process wrote its flow row: stopping the runner at once sends that process SIGTERM mid-flow-end."""
    deadline = time.monotonic() + timeout
    while len(_rows(store, table, flow_run_id)) < n and time.monotonic() < deadline:
        time.sleep(0.5)


def test_an_undecorated_flow_in_a_plain_process_is_recorded(tmp_path: Path) -> None:
    store = tmp_path / "store"
    name = _name("plain")
    proc = run_python(
        PLAIN.format(name=name),
        _env(PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true", PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(store)),
    )
    run_id = _run_id(proc.stdout)
    flows = _rows(store, "flow_runs", run_id)
    assert len(flows) == 1
    assert (flows.iloc[0].flow_name, flows.iloc[0].kind, flows.iloc[0].state_type) == (name, "other", "COMPLETED")
    assert len(_rows(store, "task_runs", run_id)) == 3


@pytest.mark.parametrize("first", ["import prefect_synthobs", "import prefect_synthobs.catalog", "import prefect"])
def test_a_script_importing_synthobs_before_prefect_is_set_up_too(tmp_path: Path, first: str) -> None:
    """``import prefect_synthobs`` first imports Prefect, whose plugin hook runs while the package is still
    importing: the set-up is put off until the package is whole (it failed as a circular import, printing
    "Plugin prefect_synthobs failed", and ``observe_all`` recorded nothing in that process)."""
    store = tmp_path / "store"
    name = _name("first")
    proc = run_python(
        first + "\n" + PLAIN.format(name=name),
        _env(PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true", PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(store)),
    )
    assert "failed" not in proc.stderr.lower(), proc.stderr[-2000:]
    run_id = _run_id(proc.stdout)
    assert len(_rows(store, "flow_runs", run_id)) == 1
    assert len(_rows(store, "task_runs", run_id)) == 3


def test_the_store_named_in_a_config_block_is_used(tmp_path: Path) -> None:
    store, other = tmp_path / "block-store", tmp_path / "env-store"
    block = _name("synthobs-plugin")
    SynthObsConfig(store=HealthStoreConfig(url=str(store)), service_name="from-block").save(block)
    name = _name("blocked")
    proc = run_python(
        PLAIN.format(name=name),
        _env(
            PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true",
            PREFECT_INTEGRATIONS_SYNTHOBS_CONFIG_BLOCK=block,
            PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(other),  # the block's value wins over the environment
        ),
    )
    run_id = _run_id(proc.stdout)
    assert len(_rows(store, "flow_runs", run_id)) == 1
    assert len(_rows(store, "task_runs", run_id)) == 3
    assert not other.exists()


def test_plugins_disabled_the_entry_point_does_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code = PLAIN.format(name=_name("disabled")) + "import sys\nprint('SYNTHOBS', 'prefect_synthobs' in sys.modules)\n"
    env = _env(PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true", PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(store))
    env["PREFECT_PLUGINS_ENABLED"] = "false"
    proc = run_python(code, env)
    _run_id(proc.stdout)
    assert "SYNTHOBS False" in proc.stdout  # not even imported
    assert not store.exists()


def test_without_the_plugin_configure_in_the_flow_module_does_the_same(tmp_path: Path) -> None:
    """The fallback where plugins are off (or Prefect has none): ``configure()`` reads the same variables."""
    store = tmp_path / "store"
    code = "import prefect_synthobs\nprefect_synthobs.configure()\n" + PLAIN.format(name=_name("fallback"))
    env = _env(PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true", PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(store))
    env["PREFECT_PLUGINS_ENABLED"] = "false"
    run_id = _run_id(run_python(code, env).stdout)
    assert len(_rows(store, "flow_runs", run_id)) == 1
    assert len(_rows(store, "task_runs", run_id)) == 3


def test_nothing_configured_costs_no_setup(tmp_path: Path) -> None:
    """Plugins on, no synthobs variable: no settings read (so no block loaded), nothing installed."""
    code = (
        "import sys, prefect\n"
        "print('IMPORTED', 'prefect_synthobs' in sys.modules)\n"
        "if 'prefect_synthobs' in sys.modules:\n"
        "    from prefect_synthobs.config.active import ACTIVE\n"
        "    from prefect_synthobs.instrument.instrumentation import INSTRUMENTATION\n"
        "    print('SETUP', ACTIVE._active is not None, INSTRUMENTATION.installed)\n"
        "else:\n"
        "    print('SETUP', False, False)\n"
    )
    env = subprocess_env(PREFECT_PLUGINS_ENABLED="true")
    assert not plugin.configured(env)
    proc = run_python(code, env)
    assert "SETUP False False" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    # the entry point (prefect_synthobs_plugin, outside the package) imported nothing of synthobs: ~0.5 s saved
    assert "IMPORTED False" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_a_broken_block_name_costs_one_warning_and_the_flow_completes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    name = _name("broken")
    proc = run_python(
        PLAIN.format(name=name),
        _env(
            PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true",
            PREFECT_INTEGRATIONS_SYNTHOBS_CONFIG_BLOCK="no-such-block-here",
            PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(store),
            PREFECT_LOGGING_LEVEL="INFO",
        ),
    )
    run_id = _run_id(proc.stdout)
    output = proc.stdout + proc.stderr
    warnings = [line for line in output.splitlines() if "no-such-block-here" in line]
    assert len(warnings) == 1, output[-3000:]
    assert "could not be loaded" in warnings[0] and "WARNING" in warnings[0]
    assert "Traceback" not in output
    assert len(_rows(store, "flow_runs", run_id)) == 1  # recorded with what the environment says


def test_a_decorated_flow_is_recorded_once_with_its_own_kind(tmp_path: Path) -> None:
    store = tmp_path / "store"
    name = _name("decorated")
    code = PLAIN.format(name=name).replace(
        "@flow(", "import prefect_synthobs as so\n@so.observe(kind='generation', table='t')\n@flow("
    )
    proc = run_python(
        code,
        _env(PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true", PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(store)),
    )
    run_id = _run_id(proc.stdout)
    flows = _rows(store, "flow_runs", run_id)
    assert len(flows) == 1
    assert (flows.iloc[0].kind, flows.iloc[0].table_name) == ("generation", "t")
    assert len(_rows(store, "task_runs", run_id)) == 3


SERVED = """
from prefect import flow, task

@task
def step(i: int) -> int:
    return i + 1

@flow(name={name!r})
def served(n: int = 2) -> int:
    return sum(step(i) for i in range(n))

if __name__ == "__main__":
    served.serve(name="plugin", limit=1)
"""


@pytest.mark.slow
def test_a_flow_run_prefect_starts_in_its_own_subprocess_is_recorded(tmp_path: Path) -> None:
    """A runner (``serve``) with only environment variables set: the flow-run subprocess it starts records."""
    from prefect.deployments import run_deployment

    store = tmp_path / "store"
    name = _name("served")
    flow_file = tmp_path / "served.py"
    flow_file.write_text(SERVED.format(name=name))
    env = _env(PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true", PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(store))
    with served_deployment(flow_file, f"{name}/plugin", env) as runner:
        run = run_deployment(f"{name}/plugin", parameters={"n": 4}, timeout=180)
        _await_rows(store, "flow_runs", str(run.id), 1)
        out = stop(runner)
    assert run.state is not None and run.state.is_completed(), out[-3000:]
    flows = _rows(store, "flow_runs", str(run.id))
    assert len(flows) == 1, out[-3000:]
    assert (flows.iloc[0].kind, flows.iloc[0].state_type) == ("other", "COMPLETED")
    assert len(_rows(store, "task_runs", str(run.id))) == 4


# -- what the plugin hands child processes -------------------------------------------------------------------


def test_a_loaded_block_is_handed_on_and_read_back_exactly() -> None:
    values = {"store_url": "/data/store", "gpu_enabled": False, "flush_interval_seconds": 2.5}
    env = plugin.snapshot_env("prod", values, now=1000.0)
    assert list(env) == [plugin.SNAPSHOT_VARIABLE]
    assert plugin.handed_on("prod", env, now=1000.0 + plugin.HANDED_ON_SECONDS) == values
    assert plugin.handed_on("prod", env, now=1000.0 + plugin.HANDED_ON_SECONDS + 1) is None  # stale: load it
    assert plugin.handed_on("other", env, now=1000.0) is None  # another block
    assert plugin.handed_on("prod", env, now=999.0) is None  # from the future: not trusted
    assert plugin.handed_on("prod", {plugin.SNAPSHOT_VARIABLE: "{not json"}, now=1000.0) is None
    assert plugin.handed_on("prod", {}, now=1000.0) is None


def test_a_block_that_failed_is_handed_on_as_empty() -> None:
    env = plugin.snapshot_env("gone", {}, now=5.0)
    assert plugin.handed_on("gone", env, now=6.0) == {}  # children do not each try again and warn


def test_secrets_are_never_handed_on() -> None:
    from pydantic import SecretStr

    secret = {"store_url": "s3://b/p", "store_options": {"secret_key": SecretStr("hunter2")}}
    assert plugin.snapshot_env("prod", secret, now=1.0) == {}
    assert plugin.snapshot_env("prod", {"otlp_headers": {"authorization": "Bearer hunter2"}}, now=1.0) == {}
    assert plugin.snapshot_env("prod", {"pushgateway_url": "http://ops:hunter2@gw:9091"}, now=1.0) == {}
    assert plugin.snapshot_env("prod", {"pushgateway_url": "http://gw:9091"}, now=1.0) != {}


def test_a_child_takes_the_handed_on_values_without_loading_the_block(tmp_path: Path) -> None:
    """The named block does not exist: a child that tried to load it would warn; it takes its parent's values."""
    store = tmp_path / "handed-on-store"
    name = _name("handed")
    snapshot = plugin.snapshot_env("never-saved", {"store_url": str(store)}, now=time.time())
    proc = run_python(
        PLAIN.format(name=name),
        _env(
            PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true",
            PREFECT_INTEGRATIONS_SYNTHOBS_CONFIG_BLOCK="never-saved",
            PREFECT_LOGGING_LEVEL="INFO",
            **snapshot,
        ),
    )
    run_id = _run_id(proc.stdout)
    assert "never-saved" not in proc.stderr
    assert len(_rows(store, "flow_runs", run_id)) == 1


POOLED = """
import json, os
from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner

@task
def step(i: int) -> int:
    # the flow-run process handed the block's values on (this worker took them rather than call the API)
    handed = json.loads(os.environ["SYNTHOBS_PLUGIN_BLOCK"])
    assert handed["values"]["store_url"] == {store!r}, handed
    return i + 1

@flow(name={name!r}, task_runner=ProcessPoolTaskRunner(max_workers=2))
def pooled(n: int = 2) -> int:
    return sum(f.result() for f in step.map(range(n)))

if __name__ == "__main__":
    pooled.serve(name="plugin", limit=1)
"""


@pytest.mark.slow
def test_task_runner_workers_of_a_served_flow_record_with_the_blocks_settings(tmp_path: Path) -> None:
    """The flow-run subprocess loads the block; its process-pool workers get its values from the environment
    the plugin handed them and write their task rows to the block's store."""
    from prefect.deployments import run_deployment

    store = tmp_path / "block-store"
    block = _name("synthobs-pooled")
    SynthObsConfig(store=HealthStoreConfig(url=str(store))).save(block)
    name = _name("pooled")
    flow_file = tmp_path / "pooled.py"
    flow_file.write_text(POOLED.format(name=name, store=str(store)))
    env = _env(PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true", PREFECT_INTEGRATIONS_SYNTHOBS_CONFIG_BLOCK=block)
    with served_deployment(flow_file, f"{name}/plugin", env) as runner:
        run = run_deployment(f"{name}/plugin", parameters={"n": 4}, timeout=240)
        _await_rows(store, "flow_runs", str(run.id), 1)
        out = stop(runner)
    assert run.state is not None and run.state.is_completed(), out[-3000:]
    flows = _rows(store, "flow_runs", str(run.id))
    assert len(flows) == 1, out[-3000:]
    tasks = _rows(store, "task_runs", str(run.id))
    assert len(tasks) == 4, out[-3000:]
    assert set(tasks.source) == {"hook"}  # written by the workers, not read back from the API by the flow's process
    assert set(tasks.state_type) == {"COMPLETED"}


def test_a_config_block_without_an_api_url_is_not_loaded_at_start_up() -> None:
    """Loading a block with no PREFECT_API_URL starts Prefect's temporary server, whose process imports prefect
    and ran this hook again: a chain of servers without end. The hook says why and uses the environment.
    (Ephemeral mode is refused here too, so a regression fails instead of starting servers.)"""
    env = _env(
        PREFECT_INTEGRATIONS_SYNTHOBS_CONFIG_BLOCK="needs-an-api",
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="false",
        PREFECT_LOGGING_LEVEL="INFO",
    )
    env.pop("PREFECT_API_URL")
    proc = run_python("import prefect\nprint('STARTED')\n", env, timeout=120)
    output = proc.stdout + proc.stderr
    assert "STARTED" in proc.stdout, output[-3000:]
    warnings = [line for line in output.splitlines() if "needs-an-api" in line]
    assert len(warnings) == 1 and "PREFECT_API_URL is unset" in warnings[0], output[-3000:]


@pytest.mark.parametrize(
    ("environ", "server"),
    [
        ({"PREFECT__SERVER_EPHEMERAL": "1"}, True),
        ({"PREFECT_SERVER_EPHEMERAL_ENABLED": "true"}, True),
        ({"PREFECT__SERVER_EPHEMERAL": ""}, False),
        ({}, False),
    ],
)
def test_a_prefect_server_process_is_never_set_up(environ: dict[str, str], server: bool) -> None:
    assert plugin.in_prefect_server(environ) is server


def test_a_deferred_setup_that_fails_warns_and_never_breaks_the_import(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``run_deferred`` (the package's ``__init__`` calls it as its import ends): a set-up that raises costs one
    warning; the variables of one that succeeds are set in this process, as Prefect sets a hook's result."""
    import prefect_synthobs_plugin as entry

    def broken(*, ctx: Any) -> Any:
        raise RuntimeError("no block here")

    monkeypatch.setattr(plugin, "setup_environment", broken)
    monkeypatch.setattr(entry, "_deferred", [object()])
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs"):
        entry.run_deferred()  # does not raise
    assert entry._deferred == []
    assert [
        r for r in caplog.records if "could not set synthobs up" in r.getMessage() and "no block here" in r.getMessage()
    ]

    from prefect.plugins import SetupResult

    monkeypatch.setattr(
        plugin, "setup_environment", lambda *, ctx: SetupResult(env={"SYNTHOBS_TEST_HANDED_ON": "1"}, note=None)
    )
    monkeypatch.setattr(entry, "_deferred", [object()])
    monkeypatch.delenv("SYNTHOBS_TEST_HANDED_ON", raising=False)
    entry.run_deferred()
    assert os.environ.pop("SYNTHOBS_TEST_HANDED_ON") == "1"
