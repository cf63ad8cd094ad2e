"""Rows reach the store once it is back: at process exit the store is asked again and the spool drained into it.

A process whose runs happened while the store refused (or hung) exits after the store came back: the store is
re-probed at exit (its breaker's backoff not waited for), the spool is drained, no spool file is left. When the
store is still down at exit, one warning names the spool directory and the exact number of rows left there.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import prefect_synthobs as so
from conftest import free_port, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

CHILD = """
import os, sys
import prefect_synthobs as so
from prefect import flow, task

@task
def step(i):
    return i

@so.observe(kind="generation", table="customers")
@flow(name=os.environ["FLOW"])
def gen(n):
    so.record_rows(n)
    return sum(step(i) for i in range(n))

assert gen(3) == 3  # during the outage
print("RAN", flush=True)
sys.stdin.readline()  # the test brings the store back (or not) and says go
if os.environ.get("RUN_AFTER"):
    assert gen(2) == 1  # after the store is back: its breaker still skips it (backoff), the rows are spooled
print("EXITING", flush=True)
"""

LEFT_BEHIND = re.compile(r"synthobs: (\d+) health row\(s\) stay in the spool (\S+):")


def _spool_files(spool: Path) -> list[Path]:
    return [p for p in spool.rglob("part-*") if p.suffix in (".parquet", ".arrow") and "_rejected" not in p.parts]


def _spool_rows(spool: Path) -> int:
    total = 0
    for path in _spool_files(spool):
        if path.suffix == ".arrow":
            with pa.OSFile(str(path)) as source:
                total += pa.ipc.open_file(source).read_all().num_rows
        else:
            total += pq.read_metadata(path).num_rows
    return total


def _run_child(env: dict[str, str], outage_ends: Any, run_after: bool = False) -> subprocess.CompletedProcess[str]:
    """The child's first run happens during the outage; ``outage_ends()`` is called before it is told to exit."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env={**env, **({"RUN_AFTER": "1"} if run_after else {})},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        line = child.stdout.readline()
        assert line.strip() == "RAN", child.communicate(timeout=60)[1][-3000:]
        outage_ends()
        out, err = child.communicate("go\n", timeout=180)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err[-3000:]
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def _local_env(tmp_path: Path, name: str) -> tuple[dict[str, str], Path, Path]:
    store, spool = tmp_path / "store", tmp_path / "spool"
    env = subprocess_env(
        FLOW=name,
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(store),
        PREFECT_INTEGRATIONS_SYNTHOBS_SPOOL_DIR=str(spool),
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_TIMEOUT_SECONDS="3",
    )
    store.write_text("not a directory: the store refuses every write")  # root ignores chmod; this refuses
    return env, store, spool


@pytest.mark.parametrize("run_after", [False, True])
def test_a_local_store_back_before_exit_gets_every_row(tmp_path: Path, run_after: bool) -> None:
    name = f"exit-drain-{uuid.uuid4().hex[:6]}"
    env, store, spool = _local_env(tmp_path, name)
    proc = _run_child(env, store.unlink, run_after)  # the store is writable again before the process exits
    assert _spool_files(spool) == [], proc.stderr[-3000:]
    assert not LEFT_BEHIND.search(proc.stderr), proc.stderr[-3000:]
    flows = so.HealthStore(str(store)).read("flow_runs")
    tasks = so.HealthStore(str(store)).read("task_runs")
    assert sorted(flows.rows) == ([2, 3] if run_after else [3])
    assert len(tasks) == (5 if run_after else 3)


def test_a_store_still_down_at_exit_names_the_spool_and_the_row_count(tmp_path: Path) -> None:
    name = f"exit-down-{uuid.uuid4().hex[:6]}"
    env, store, spool = _local_env(tmp_path, name)
    proc = _run_child(env, lambda: None, run_after=True)
    left = LEFT_BEHIND.findall(proc.stderr)
    assert len(left) == 1, proc.stderr[-3000:]  # one warning
    rows, where = int(left[0][0]), left[0][1]
    assert rows == _spool_rows(spool) and rows >= 2 + 5  # the exact count: two flow rows, five task rows at least
    assert where.startswith(str(spool))
    assert "persistent volume" in proc.stderr
    # the next process with this spool and store writes them, once the store is back
    store.unlink()
    later = _run_child({**env, "FLOW": name + "-later"}, lambda: None)
    assert _spool_files(spool) == [], later.stderr[-3000:]
    assert len(so.HealthStore(str(store)).read("flow_runs")) == 3


def test_an_s3_store_back_before_exit_gets_every_row(tmp_path: Path) -> None:
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        bucket = f"synthobs-{uuid.uuid4().hex[:8]}"
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10).close()
        options = {
            "access_key": "testing",
            "secret_key": "testing",
            "region": "us-east-1",
            "endpoint_override": endpoint,
        }
        url = f"s3://{bucket}/health"
        name = f"exit-s3-{uuid.uuid4().hex[:6]}"
        spool = tmp_path / "spool"
        env = subprocess_env(
            FLOW=name,
            PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=url,
            PREFECT_INTEGRATIONS_SYNTHOBS_STORE_OPTIONS=json.dumps(options),
            PREFECT_INTEGRATIONS_SYNTHOBS_SPOOL_DIR=str(spool),
            PREFECT_INTEGRATIONS_SYNTHOBS_STORE_TIMEOUT_SECONDS="2",
        )
        os.kill(server.pid, signal.SIGSTOP)  # the server freezes: connections hang
        proc = _run_child(env, lambda: os.kill(server.pid, signal.SIGCONT), run_after=True)
        assert _spool_files(spool) == [], proc.stderr[-3000:]
        assert not LEFT_BEHIND.search(proc.stderr), proc.stderr[-3000:]
        store = so.HealthStore(url, storage_options=options, timeout=10)
        assert sorted(store.read("flow_runs").rows) == [2, 3]  # deduplicated by event_id (a late write may land)
        assert len(store.read("task_runs")) == 5
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.kill()
        server.wait(30)
