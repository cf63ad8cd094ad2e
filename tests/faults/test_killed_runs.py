"""Killed runs: a crash recorded by another process (the runner) reads the run
from the API; finished task rows reach the store on the flush cadence, before
the run ends, so a kill loses at most that window."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from prefect import flow
from prefect.states import Crashed

import prefect_synthobs as so
from conftest import subprocess_env
from prefect_synthobs.instrument.instrumentation import get_runtime
from prefect_synthobs.instrument.runtime import ObserveSpec


@pytest.mark.usefixtures("prefect_server")
def test_a_crash_recorded_from_a_stale_flow_run_reads_the_run_from_the_api(store_dir: Path) -> None:
    @flow(name=f"ran-{uuid.uuid4().hex[:6]}")
    def ran() -> int:
        return 1

    state = ran(return_state=True)
    run_id = state.state_details.flow_run_id
    # what a runner holds for a run it started in a process that was then killed: no start time
    stale = SimpleNamespace(id=run_id, start_time=None, labels={}, tags=[], flow_id=None)
    crashed = Crashed(message="Flow run infrastructure exited with non-zero status code -9.")
    get_runtime().end_flow_run(ran, stale, crashed, ObserveSpec(kind="training"), flush=True)

    rows = so.HealthStore(str(store_dir)).read("flow_runs")
    row = rows[rows.flow_run_id == str(run_id)].iloc[0]
    assert row.state_type == "CRASHED"
    assert row.start_time is not None and row.duration_s is not None and row.duration_s >= 0


KILLED_FLOW = """
import os, pathlib, sys, time
import prefect_synthobs as so
from prefect import flow, task

so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"])  # the default flush cadence

@task
def step(i):
    return i

@so.observe(kind="training")
@flow(name=os.environ["FLOW_NAME"])
def long_running():
    for i in range(5):
        step(i)
    pathlib.Path(os.environ["READY"]).touch()  # five task rows finished; now hang until killed
    time.sleep(600)

long_running()
"""


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
def test_a_killed_process_keeps_the_task_rows_of_all_but_the_last_flush_window(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    env = subprocess_env(
        STORE=str(tmp_path / "store"),
        SPOOL=str(tmp_path / "spool"),
        FLOW_NAME=f"killed-{uuid.uuid4().hex[:6]}",
        READY=str(ready),
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_FLOW], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "never ready"
        store = so.HealthStore(str(tmp_path / "store"))
        # wait for the flusher (every flush_interval_seconds, 5 s by default), then kill: nothing runs at exit
        while store.count("task_runs") < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert sorted(store.read("task_runs").task_name.str.split("-").str[0]) == ["step"] * 5


def test_the_default_flush_window_is_five_seconds() -> None:
    assert so.SynthObsSettings.model_fields["flush_interval_seconds"].default == 5.0
