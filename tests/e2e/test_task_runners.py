"""Task runs of an observed flow in other processes (Prefect's
ProcessPoolTaskRunner, prefect-dask's DaskTaskRunner on a LocalCluster of worker
processes and on a cluster started on its own, prefect-ray's RayTaskRunner):
recorded and traced there, counted toward the flow run in its process, with no
synthobs code in the tasks and no set-up call in the workers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import http_receiver

import prefect_synthobs as so
from conftest import free_port, run_python, subprocess_env

pytestmark = pytest.mark.usefixtures("prefect_server")

POOL_FLOW = """
import json, os, sys
import prefect_synthobs as so
from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner

def runner():
    if os.environ["RUNNER"] == "dask":
        from prefect_dask import DaskTaskRunner
        return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "processes": True, "threads_per_worker": 1})
    if os.environ["RUNNER"] == "dask-cluster":  # `dask scheduler` and `dask worker` started on their own
        from prefect_dask import DaskTaskRunner
        return DaskTaskRunner(address=os.environ["DASK_SCHEDULER"])
    if os.environ["RUNNER"] == "ray":  # a local Ray cluster of 2 worker processes
        from prefect_ray import RayTaskRunner
        return RayTaskRunner(init_kwargs={"num_cpus": 2, "include_dashboard": False})
    return ProcessPoolTaskRunner(max_workers=2)

@task(retries=1, retry_delay_seconds=0)
def step(i, marker):
    so.record_rows(10)
    if i == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    with so.span("step.work", i=i):
        pass
    if i == 0:  # measurements in a worker belong to the flow run
        so.record_epoch(0, loss=0.25)
        so.record_quality("overall", 0.9, threshold=0.8)
    # the task runs this worker counted in its own metrics so far (none: the flow's process counts them)
    from prefect_synthobs.metrics import REGISTRY
    counted = sum(s.value for m in REGISTRY.collect() for s in m.samples if s.name == "synthobs_task_runs_total")
    return os.getpid(), counted

@so.observe(kind="generation", table="customers")
@flow(name=os.environ["FLOW_NAME"], task_runner=runner())
def generate(marker):
    futures = [step.submit(i, marker) for i in range(6)]
    results = [f.result() for f in futures]
    return sorted({pid for pid, _ in results}), sum(counted for _, counted in results)

if __name__ == "__main__":
    # configured in the flow's process only: the workers get these settings from synthobs
    so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"], otlp_endpoint=os.environ["OTLP"])
    state = generate(os.environ["MARKER"], return_state=True)
    from prometheus_client import generate_latest
    from prefect_synthobs.metrics import REGISTRY
    metrics = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in generate_latest(REGISTRY).decode().splitlines()
        if line.startswith(("synthobs_task_runs_total", "synthobs_generation_rows_total",
                            "synthobs_task_retries_total"))
    }
    pids, worker_counted = state.result()
    print(json.dumps({"pids": pids, "worker_counted": worker_counted, "me": os.getpid(),
                      "flow_run_id": str(state.state_details.flow_run_id), "metrics": metrics}))
"""


@contextlib.contextmanager
def dask_cluster(
    tmp_path: Path, workers: int = 2, worker_env: dict[str, str] | None = None, preload: Path | None = None
) -> Iterator[str]:
    """A Dask cluster started as users start one: `dask scheduler` and `dask worker` processes on loopback.

    The workers' environment has no synthobs settings and no store: what they record, they learn from the flow.
    """
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in subprocess_env().items() if not k.startswith(("SYNTHOBS", "OTEL"))}
    extra = ["--preload", str(preload)] if preload is not None else []
    dask = str(Path(sys.executable).with_name("dask"))
    log = (tmp_path / "dask.log").open("w")
    common = {"env": env, "cwd": tmp_path, "stdout": log, "stderr": subprocess.STDOUT, "start_new_session": True}
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            **common,  # type: ignore[call-overload]
        )
    ]
    try:
        procs.append(
            subprocess.Popen(
                [dask, "worker", address, "--nworkers", str(workers), "--nthreads", "1", "--no-dashboard", *extra],
                **{**common, "env": {**env, **(worker_env or {})}},  # type: ignore[call-overload]
            )
        )
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def run_flow_script(script: Path, source: str, env: dict[str, str]) -> dict[str, Any]:
    """Write ``source`` to ``script`` (a file: spawned workers import the flow's module), run it as
    ``__main__`` in a child process and return the JSON object its last line prints."""
    script.write_text(source)
    proc = run_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')", env)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def worker_spans_arrived(tasks: int, flow_run_id: str | None = None) -> Callable[[list[Any]], bool]:
    """Whether ``tasks`` task spans and as many ``step.work`` spans (and the flow's span, if given) arrived."""

    def arrived(got: list[Any]) -> bool:
        return (
            len([s for s in got if s.name == "step.work"]) >= tasks
            and len([s for s in got if s.attributes.get("prefect.run.type") == "task"]) >= tasks
            and (flow_run_id is None or any(s.attributes.get("prefect.run.id") == flow_run_id for s in got))
        )

    return arrived


def task_spans_of_runs(tasks: int, run_ids: list[str]) -> Callable[[list[Any]], bool]:
    """Whether ``tasks`` task spans and a span of each of ``run_ids`` arrived."""
    return lambda got: (
        len([s for s in got if s.attributes.get("prefect.run.type") == "task"]) >= tasks
        and all(any(s.attributes.get("prefect.run.id") == run for s in got) for run in run_ids)
    )


def run_traced(
    tmp_path: Path,
    prefix: str,
    source: str,
    arrived: Callable[[dict[str, Any]], Callable[[list[Any]], bool]],
    **extra: str,
) -> tuple[dict[str, Any], list[Any], dict[str, str]]:
    """Run ``source`` (``run_flow_script``) with a store, a spool and an OTLP receiver; its output, the spans that
    ``arrived(output)`` waited for (a bounded wait: exported before its process exited, or never) and its env."""
    with http_receiver() as receiver:
        env = subprocess_env(
            FLOW_NAME=f"{prefix}-{uuid.uuid4().hex[:6]}",
            STORE=str(tmp_path / "store"),
            SPOOL=str(tmp_path / "spool"),
            OTLP=receiver.endpoint,
            **extra,
        )
        out = run_flow_script(tmp_path / f"{prefix.replace('-', '_')}.py", source, env)
        return out, receiver.wait_for(arrived(out), timeout=60), env


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["process_pool", "dask", "dask-cluster", "ray"])
def test_task_runs_in_worker_processes_are_recorded_and_traced(tmp_path: Path, runner: str) -> None:
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(http_receiver())
        scheduler = stack.enter_context(dask_cluster(tmp_path)) if runner == "dask-cluster" else ""
        env = subprocess_env(
            DASK_SCHEDULER=scheduler,
            FLOW_NAME=f"pool-{uuid.uuid4().hex[:6]}",
            STORE=str(tmp_path / "store"),
            SPOOL=str(tmp_path / "spool"),
            OTLP=receiver.endpoint,
            MARKER=str(tmp_path / "marker"),
            RUNNER=runner,
        )
        out = run_flow_script(tmp_path / "pool_flow.py", POOL_FLOW, env)
        run_id = out["flow_run_id"]
        spans = receiver.wait_for(worker_spans_arrived(6, run_id))
    assert out["me"] not in out["pids"]  # the tasks really ran in other processes

    store = so.HealthStore(str(tmp_path / "store"))
    deadline = time.monotonic() + 60  # a long-lived worker flushes soon after its tasks, off their thread
    while True:
        tasks = store.read("task_runs")
        tasks = tasks[tasks.flow_run_id == run_id]
        if len(tasks) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(tasks) == 6 and tasks.task_run_id.is_unique  # each task run once
    assert set(tasks.state_type) == {"COMPLETED"}
    assert sorted(tasks.run_count) == [1, 1, 1, 1, 1, 2]  # the retried one
    # record_rows in a worker counts toward its task: the rows of its last attempt (the retried one's too)
    assert sorted(tasks.rows) == [10, 10, 10, 10, 10, 10]
    flows = store.read("flow_runs")
    flow_row = flows[flows.flow_run_id == run_id]
    assert flow_row.state_type.tolist() == ["COMPLETED"]
    epochs, checks = store.read("training_epochs"), store.read("quality_checks")
    assert epochs.flow_run_id.tolist() == [run_id] and epochs.loss.tolist() == [0.25]
    assert checks.flow_run_id.tolist() == [run_id] and checks.passed.tolist() == [True]
    # the workers' rows count toward the flow run, and its process counts the task runs once
    assert flow_row.rows.tolist() == [60] and flow_row.rows_per_s.iloc[0] > 0
    flow_name = env["FLOW_NAME"]
    metrics = out["metrics"]
    assert metrics[f'synthobs_task_runs_total{{flow="{flow_name}",state="COMPLETED",task="step"}}'] == 6
    assert out["worker_counted"] == 0  # and the workers none (their metrics are not exported: no second count)
    assert metrics[f'synthobs_task_retries_total{{flow="{flow_name}",task="step"}}'] == 1
    assert [v for k, v in metrics.items() if k.startswith("synthobs_generation_rows_total") and flow_name in k] == [60]

    flow_span = next(s for s in spans if s.attributes.get("prefect.run.id") == run_id)
    task_spans = [s for s in spans if s.attributes.get("prefect.run.type") == "task"]
    work = [s for s in spans if s.name == "step.work"]
    assert len(task_spans) == 6 and all(s.trace_id == flow_span.trace_id for s in task_spans)
    assert all(s.parent_span_id == flow_span.span_id for s in task_spans)  # children of the flow's span
    task_ids = {s.span_id for s in task_spans}
    assert all(s.parent_span_id in task_ids and s.trace_id == flow_span.trace_id for s in work)


GPU_FLOW = """
import json, os, time
import prefect_synthobs as so
from prefect import flow, task
from prefect_dask import DaskTaskRunner

@task
def train_on_gpu(i):
    time.sleep(1.5)  # the worker host's sampler takes several samples meanwhile
    return i

@so.observe(kind="training", model_type="ctgan")
@flow(name=os.environ["FLOW_NAME"], task_runner=DaskTaskRunner(address=os.environ["DASK_SCHEDULER"]))
def train():
    return sum(f.result() for f in [train_on_gpu.submit(i) for i in range(2)])

if __name__ == "__main__":
    # the flow's host has no GPU (no NVML here); the workers' host has two
    so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"], gpu_interval_seconds=0.25)
    state = train(return_state=True)
    print(json.dumps({"result": state.result(), "flow_run_id": str(state.state_details.flow_run_id)}))
"""

OTHER_HOST = """
# A worker host other than the flow's: this Dask worker's processes report another host name.
import socket
socket.gethostname = lambda: "gpu-node-1"
"""


@pytest.mark.slow
def test_gpus_of_a_worker_host_count_in_the_flow_row(tmp_path: Path, fake_nvml: dict[str, Path]) -> None:
    preload = tmp_path / "other_host.py"
    preload.write_text(OTHER_HOST)
    gpu_env = {"LD_LIBRARY_PATH": str(fake_nvml["current"])}
    with dask_cluster(tmp_path, worker_env=gpu_env, preload=preload) as scheduler:
        env = subprocess_env(
            FLOW_NAME=f"gpu-workers-{uuid.uuid4().hex[:6]}",
            STORE=str(tmp_path / "store"),
            SPOOL=str(tmp_path / "spool"),
            DASK_SCHEDULER=scheduler,
        )
        env.pop("LD_LIBRARY_PATH", None)
        out = run_flow_script(tmp_path / "gpu_flow.py", GPU_FLOW, env)
        store = so.HealthStore(str(tmp_path / "store"))
        deadline = time.monotonic() + 60
        while store.count("gpu_samples") == 0 and time.monotonic() < deadline:  # workers flush soon after
            time.sleep(0.2)
    assert out["result"] == 1
    samples = store.read("gpu_samples")
    assert len(samples) and set(samples.host) == {"gpu-node-1"}  # sampled on the workers' host only
    assert (samples.flow_run_id == out["flow_run_id"]).sum() >= 2  # at least the final sample of each stretch
    row = store.read("flow_runs").iloc[0]
    assert row.host != "gpu-node-1"  # the flow row is the flow's host's...
    # ...and its GPU summary covers the workers' host: the fake's device 0 at 50 %, 10 + 20 GiB in use
    assert row.gpu_util_mean == pytest.approx(0.5) and row.gpu_util_max == pytest.approx(0.5)
    assert row.gpu_memory_peak_bytes == 30 * 1024**3
    assert row.gpu_energy_j > 0


KILLED_WORKERS_FLOW = """
import json, os, signal
import prefect_synthobs as so
from prefect import flow, task
from prefect_ray import RayTaskRunner

@task
def step(i):
    so.record_rows(5)
    with so.span("step.work", i=i):
        pass
    return os.getpid()

@so.observe(kind="generation", table="customers")
@flow(name=os.environ["FLOW_NAME"], task_runner=RayTaskRunner(init_kwargs={"num_cpus": 2, "include_dashboard": False}))
def generate():
    pids = sorted({f.result() for f in [step.submit(i) for i in range(4)]})
    # as Ray stops its workers at ray.shutdown(), but at once: killed the moment their tasks returned, no exit
    # hook runs (Ray copes with a dead idle worker; a process pool's queues could deadlock on one)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids

if __name__ == "__main__":
    import faulthandler
    faulthandler.dump_traceback_later(270, exit=True)  # a hang shows where, before run_python gives up (300 s)
    # a flush interval and a batch delay far longer than the test: only delivery at the task's end gets through
    so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"], otlp_endpoint=os.environ["OTLP"],
                 flush_interval_seconds=3600)
    state = generate(return_state=True)
    print(json.dumps({"pids": state.result(), "flow_run_id": str(state.state_details.flow_run_id)}))
"""


@pytest.mark.slow
def test_a_worker_killed_as_its_task_returns_has_delivered_its_rows_and_spans(tmp_path: Path) -> None:
    # exported before the flow's process exited, or never (the workers are dead): a bounded wait
    out, spans, _ = run_traced(
        tmp_path, "killed-workers", KILLED_WORKERS_FLOW, lambda out: worker_spans_arrived(4, out["flow_run_id"])
    )
    run_id = out["flow_run_id"]
    flow_span = next(s for s in spans if s.attributes.get("prefect.run.id") == run_id)
    task_spans = [s for s in spans if s.attributes.get("prefect.run.type") == "task"]
    assert len(task_spans) == 4 and {s.trace_id for s in task_spans} == {flow_span.trace_id}
    assert len([s for s in spans if s.name == "step.work"]) == 4

    store = so.HealthStore(str(tmp_path / "store"))
    tasks = store.read("task_runs")
    tasks = tasks[tasks.flow_run_id == run_id]
    # written by the workers themselves (the flow's process would fill in missing ones from the API, as "api")
    assert len(tasks) == 4 and set(tasks.source) == {"hook"} and sorted(tasks.rows) == [5, 5, 5, 5]
    assert store.read("flow_runs").set_index("flow_run_id").loc[run_id, "rows"] == 20
    assert not list((tmp_path / "spool").rglob("part-*"))  # nothing left waiting in a spool (.arrow or .parquet)


RETRIED_POOL_FLOW = """
import json, os
import prefect_synthobs as so
from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner

@task
def step(i):
    return os.getpid()

@flow(name=os.environ["FLOW_NAME"], task_runner=ProcessPoolTaskRunner(max_workers=1), retries=1,
      retry_delay_seconds=0)
def undecorated(marker):
    pids = [f.result() for f in step.map(range(2))]  # the flow's context (its Flow) ships to the worker
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return pids

if __name__ == "__main__":
    so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"], observe_all=True)
    first = undecorated(os.environ["MARKER"], return_state=True)
    again = undecorated(os.environ["MARKER"], return_state=True)  # the same Flow, holding synthobs' end hook
    print(json.dumps({"states": [first.type.value, again.type.value],
                      "ids": [str(s.state_details.flow_run_id) for s in (first, again)]}))
"""


def test_an_undecorated_flow_retried_on_a_process_pool_completes_and_is_recorded(tmp_path: Path) -> None:
    """``observe_all`` adds an end hook to a retried flow's ``Flow``, which Prefect ships to its workers in the
    flow run's context: the flow must still pickle (a hook holding a lock made every later submission fail)."""
    env = subprocess_env(
        FLOW_NAME=f"retried-pool-{uuid.uuid4().hex[:6]}",
        STORE=str(tmp_path / "store"),
        SPOOL=str(tmp_path / "spool"),
        MARKER=str(tmp_path / "marker"),
    )
    out = run_flow_script(tmp_path / "retried_pool_flow.py", RETRIED_POOL_FLOW, env)
    assert out["states"] == ["COMPLETED", "COMPLETED"], out
    flows = so.HealthStore(str(tmp_path / "store")).read("flow_runs")
    assert sorted(map(str, flows.flow_run_id)) == sorted(out["ids"])
    assert list(flows.state_type) == ["COMPLETED", "COMPLETED"]


SUBFLOW_ON_POOL = """
import json, os, time
import prefect_synthobs as so
from prefect import flow, task
from prefect.futures import wait
from prefect.task_runners import ProcessPoolTaskRunner

@task
def leaf(i):
    if i == int(os.environ["FAIL"]):
        raise ValueError("this one fails")
    # the task runs this process counted so far (a worker: none, the flow's process counts them)
    from prefect_synthobs.metrics import REGISTRY
    counted = sum(s.value for m in REGISTRY.collect() for s in m.samples if s.name == "synthobs_task_runs_total")
    return os.getpid(), counted

@flow(name=os.environ["SUB_NAME"], task_runner=ProcessPoolTaskRunner(max_workers=2))
def sub(n):  # not decorated: nothing ships synthobs' settings to its workers
    futures = [leaf.submit(i) for i in range(n)]
    wait(futures)
    leaf(n)  # a direct call: runs in the flow's own process, recorded there
    return [f.result() for f in futures if f.state.is_completed()]

@so.observe(kind="generation")
@flow(name=os.environ["FLOW_NAME"])
def parent(n):
    done = sub(n)
    time.sleep(4)  # the parent goes on past the subflow's reconciliation (3 s), its rows not yet written
    return done, os.getpid()

if __name__ == "__main__":
    if os.environ["MODE"] == "code":
        so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"], flush_interval_seconds=60)
    state = parent(int(os.environ["N"]), return_state=True)
    done, me = state.result()
    from prometheus_client import generate_latest
    from prefect_synthobs.metrics import REGISTRY
    metrics = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in generate_latest(REGISTRY).decode().splitlines()
        if line.startswith("synthobs_task_runs_total")
    }
    print(json.dumps({"pids": [pid for pid, _ in done], "worker_counted": sum(c for _, c in done), "me": me,
                      "flow_run_id": str(state.state_details.flow_run_id), "metrics": metrics}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["code", "env"])
def test_an_undecorated_subflows_task_runs_on_a_process_pool_are_counted_and_written_once(
    tmp_path: Path, mode: str
) -> None:
    """An observed flow calls an undecorated subflow whose tasks run on a process pool, and one in its own process.

    ``code``: synthobs configured in the flow's process only. No worker records the pool's task runs (the subflow
    ships no settings to its workers), so the flow's process reads them back from the API at the subflow's end:
    each counted once and written once, as the API's row (before: neither). ``env``: ``observe_all`` and a metrics
    mode from the environment, workers included: the workers write the rows (``hook``) and count none, the flow's
    process counts each once. Either way the task run called in the flow's process is not written again as the
    API's, though the parent goes on past the subflow's reconciliation with its rows still unwritten.
    """
    n, fail = 5, 2
    env = subprocess_env(
        FLOW_NAME=f"parent-{uuid.uuid4().hex[:6]}",
        SUB_NAME=f"sub-{uuid.uuid4().hex[:6]}",
        STORE=str(tmp_path / "store"),
        SPOOL=str(tmp_path / "spool"),
        N=str(n),
        FAIL=str(fail),
        MODE=mode,
    )
    if mode == "env":
        env.update(
            PREFECT_PLUGINS_ENABLED="true",
            PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL="true",
            PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=env["STORE"],
            PREFECT_INTEGRATIONS_SYNTHOBS_SPOOL_DIR=env["SPOOL"],
            PREFECT_INTEGRATIONS_SYNTHOBS_FLUSH_INTERVAL_SECONDS="60",
            PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE="textfile",
            PREFECT_INTEGRATIONS_SYNTHOBS_TEXTFILE_PATH=str(tmp_path / "synthobs.prom"),
        )
    out = run_flow_script(tmp_path / "subflow_on_pool.py", SUBFLOW_ON_POOL, env)
    assert out["me"] not in out["pids"] and out["pids"]  # the subflow's tasks really ran in other processes
    assert out["worker_counted"] == 0  # no worker counts a task run: the flow's process does, once
    sub_name = env["SUB_NAME"]
    metrics = out["metrics"]
    assert metrics[f'synthobs_task_runs_total{{flow="{sub_name}",state="COMPLETED",task="leaf"}}'] == n
    assert metrics[f'synthobs_task_runs_total{{flow="{sub_name}",state="FAILED",task="leaf"}}'] == 1

    store = so.HealthStore(str(tmp_path / "store"))  # written by the process's exit at the latest
    flows = store.read("flow_runs")
    sub_row = flows[flows.flow_name == sub_name]
    assert sub_row.parent_flow_run_id.tolist() == [out["flow_run_id"]]
    tasks = store.read("task_runs", deduplicate=False)  # what the store holds: no row twice
    sub_tasks = tasks[tasks.flow_run_id == sub_row.flow_run_id.iloc[0]]
    assert len(sub_tasks) == n + 1 and sub_tasks.task_run_id.is_unique
    assert sorted(sub_tasks.state_type) == sorted(["COMPLETED"] * n + ["FAILED"])
    # the pool's task runs: the API's rows when no worker recorded them, the workers' own otherwise
    assert sorted(sub_tasks.source) == sorted(["api" if mode == "code" else "hook"] * n + ["hook"])


RETRY_SHIPS_NOTHING = """
import json, os
import prefect_synthobs as so
from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner

@task
def step(i, rows):
    so.record_rows(rows)
    return os.getpid()

@so.observe(kind="generation")
@flow(name=os.environ["FLOW_NAME"], task_runner=ProcessPoolTaskRunner(max_workers=2), retries=1,
      retry_delay_seconds=0)
def generate(marker, n):
    if not os.path.exists(marker):  # the first attempt: its tasks run on the pool, then it fails
        open(marker, "w").close()
        pids = [f.result() for f in [step.submit(i, 10) for i in range(n)]]
        raise RuntimeError(f"first attempt fails after tasks in {sorted(set(pids))}")
    return [step(i, 1) for i in range(2)]  # the retry: every task in the flow's own process, none shipped

if __name__ == "__main__":
    so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"])
    state = generate(os.environ["MARKER"], int(os.environ["N"]), return_state=True)
    from prometheus_client import generate_latest
    from prefect_synthobs.metrics import REGISTRY
    metrics = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in generate_latest(REGISTRY).decode().splitlines()
        if line.startswith("synthobs_task_runs_total")
    }
    print(json.dumps({"state": state.type.value, "me": os.getpid(), "pids": state.result(),
                      "flow_run_id": str(state.state_details.flow_run_id), "metrics": metrics}))
"""


@pytest.mark.slow
def test_a_retry_that_ships_nothing_still_counts_the_earlier_attempts_task_runs_on_a_pool(tmp_path: Path) -> None:
    """An observed flow's first attempt runs its tasks on a process pool and fails; its retry runs every task in
    the flow's own process. The flow's end reads the first attempt's task runs back from the API and counts each
    once (before: the retry had shipped nothing, so nothing was read, and they were never counted)."""
    n = 3
    env = subprocess_env(
        FLOW_NAME=f"retry-ships-nothing-{uuid.uuid4().hex[:6]}",
        STORE=str(tmp_path / "store"),
        SPOOL=str(tmp_path / "spool"),
        MARKER=str(tmp_path / "marker"),
        N=str(n),
    )
    out = run_flow_script(tmp_path / "retry_ships_nothing.py", RETRY_SHIPS_NOTHING, env)
    assert out["state"] == "COMPLETED" and set(out["pids"]) == {out["me"]}
    name = env["FLOW_NAME"]
    # the first attempt's n on the pool, read back; the retry's 2 in the flow's process: each once
    assert out["metrics"] == {f'synthobs_task_runs_total{{flow="{name}",state="COMPLETED",task="step"}}': n + 2}
    store = so.HealthStore(str(tmp_path / "store"))
    tasks = store.read("task_runs", deduplicate=False)
    tasks = tasks[tasks.flow_run_id.astype(str) == out["flow_run_id"]]
    assert len(tasks) == n + 2 and tasks.task_run_id.is_unique  # written once each (the workers', then here)
    # the flow row counts the rows of its last attempt only: not the first attempt's 10 per pooled task, read
    # back with its task runs (their attempt is older than the flow's, however few of the retry's are read)
    (flow_rows,) = store.read("flow_runs").rows.tolist()
    assert flow_rows == 2


CONCURRENT_RUNS = """
import json, os, threading, time
import prefect_synthobs as so
from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner

@task
def step(i, rows):
    so.record_rows(rows)
    return os.getpid()

def wait_for(path):
    deadline = time.monotonic() + 120
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)

def mark(path):
    open(path, "w").close()

@so.observe(kind="generation")
@flow(name=os.environ["FLOW_NAME"], task_runner=ProcessPoolTaskRunner(max_workers=2))
def generate(role, n, rows, marks):
    if os.environ["MODE"] == "interleaved":  # both runs in progress before either sends a task
        mark(f"{marks}/{role}-started")
        wait_for(f"{marks}/{'b' if role == 'a' else 'a'}-started")
        return [f.result() for f in [step.submit(i, rows) for i in range(n)]]
    # one after the other, overlapping: a sends its tasks, b starts, a ends, then b sends its own
    if role == "a":
        pids = [f.result() for f in [step.submit(i, rows) for i in range(n)]]
        mark(f"{marks}/a-sent")
        wait_for(f"{marks}/b-started")
        return pids
    mark(f"{marks}/b-started")
    wait_for(f"{marks}/a-returned")  # a's end hook has run
    return [f.result() for f in [step.submit(i, rows) for i in range(n)]]

if __name__ == "__main__":
    so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"], otlp_endpoint=os.environ["OTLP"])
    marks, n = os.environ["MARKS"], int(os.environ["N"])
    states = {}
    def run(role, rows):
        states[role] = generate(role, n, rows, marks, return_state=True)
        if role == "a":
            mark(f"{marks}/a-returned")
    a = threading.Thread(target=run, args=("a", 10))
    b = threading.Thread(target=run, args=("b", 1))
    a.start()
    if os.environ["MODE"] != "interleaved":
        wait_for(f"{marks}/a-sent")
    b.start()
    a.join()
    b.join()
    from prometheus_client import generate_latest
    from prefect_synthobs.metrics import REGISTRY
    metrics = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in generate_latest(REGISTRY).decode().splitlines()
        if line.startswith(("synthobs_task_runs_total", "synthobs_generation_rows_total"))
    }
    print(json.dumps({"states": {k: s.type.value for k, s in states.items()}, "me": os.getpid(),
                      "pids": [p for s in states.values() for p in s.result()],
                      "runs": {k: str(s.state_details.flow_run_id) for k, s in states.items()}, "metrics": metrics}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["overlapping", "interleaved"])
def test_runs_of_one_flow_at_once_each_count_their_own_task_runs_on_a_pool(tmp_path: Path, mode: str) -> None:
    """Two runs of one observed flow object in progress at once in one process (threads), their tasks on a
    process pool. ``overlapping``: run a sends its tasks, run b starts, a ends while b runs, then b sends its own
    (before: b's start reset the shared count of tasks sent, so a's end read nothing back and its 3 pooled task
    runs and 30 rows were never counted: 3 task runs and 3 rows in the metrics, a's flow row 0 rows).
    ``interleaved``: both send while both are in progress (whose task is whose cannot be told: each run's end
    reads until the API settles). Every task run is counted once, toward its own run. Its span is never in the
    other run's trace (before: a task sent after the other run started carried that run's trace context): in its
    own run's when it was sent alone, else its own trace (a pool pickles a task on a thread that knows no run)."""
    n = 3
    out, spans, env = run_traced(
        tmp_path,
        "runs-at-once",
        CONCURRENT_RUNS,
        lambda out: task_spans_of_runs(2 * n, list(out["runs"].values())),
        MARKS=str(tmp_path),
        MODE=mode,
        N=str(n),
    )
    flow_traces = {
        s.attributes["prefect.run.id"]: s.trace_id
        for s in spans
        if s.attributes.get("prefect.run.id") in out["runs"].values()
    }
    assert out["states"] == {"a": "COMPLETED", "b": "COMPLETED"}
    assert out["me"] not in out["pids"]  # every task ran on the pool
    name = env["FLOW_NAME"]
    assert out["metrics"] == {
        f'synthobs_task_runs_total{{flow="{name}",state="COMPLETED",task="step"}}': 2 * n,
        f'synthobs_generation_rows_total{{flow="{name}",model_type="",table=""}}': n * 10 + n * 1,
    }
    store = so.HealthStore(str(tmp_path / "store"))
    rows = dict(zip(*store.read("flow_runs")[["flow_run_id", "rows"]].T.values.tolist(), strict=True))
    assert {str(k): v for k, v in rows.items()} == {out["runs"]["a"]: n * 10, out["runs"]["b"]: n}
    tasks = store.read("task_runs", deduplicate=False)
    for run in out["runs"].values():
        mine = tasks[tasks.flow_run_id.astype(str) == run]
        assert len(mine) == n and mine.task_run_id.is_unique
        task_spans = [s for s in spans if str(s.attributes.get("prefect.run.id")) in set(mine.task_run_id.astype(str))]
        assert len(task_spans) == n
        other = next(t for r, t in flow_traces.items() if r != run)
        if mode == "overlapping":  # each run sent its tasks alone: its own trace
            assert {s.trace_id for s in task_spans} == {flow_traces[run]}
        else:  # a pool pickles a task on a thread that knows no run: whose trace cannot be told, so none
            assert all(
                s.trace_id != other and (s.trace_id == flow_traces[run] or not s.parent_span_id) for s in task_spans
            )


LOST_END_HOOK = """
import json, os
import prefect_synthobs as so
from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner
from prefect_synthobs.instrument import observe as observe_module

@task
def step(i):
    return os.getpid()

@so.observe(kind="other")
@flow(name=os.environ["FLOW_NAME"], task_runner=ProcessPoolTaskRunner(max_workers=2))
def generate(fail):
    pids = [f.result() for f in [step.submit(i) for i in range(2)]]
    if fail:
        raise RuntimeError("this run fails")
    return pids

def alert(flow, flow_run, state):
    pass

if __name__ == "__main__":
    so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"], otlp_endpoint=os.environ["OTLP"])
    # the copy's on_failure holds no synthobs end hook: its failed run never reaches take_shipped
    failed = generate.with_options(on_failure=[alert])(True, return_state=True)
    taken = []
    take = observe_module.WorkerCarrier.take_shipped
    def spy(self, *args):
        taken.append(take(self, *args))
        return taken[-1]
    observe_module.WorkerCarrier.take_shipped = spy
    runs = [generate(False, return_state=True) for _ in range(2)]
    print(json.dumps({"failed": failed.type.value, "taken": taken,
                      "runs": [str(s.state_details.flow_run_id) for s in runs]}))
"""


@pytest.mark.slow
def test_a_run_whose_end_hook_was_replaced_leaves_later_runs_exact(tmp_path: Path) -> None:
    """A failed run of ``flow.with_options(on_failure=[alert])`` (synthobs' end hook replaced, its start hook
    kept: the copy shares the carrier) is over once its span ends. Later runs alone count their pooled tasks
    exactly (no settle wait) and their task spans stay in their own traces (before: every later run's count was
    unknown and its pool tasks started traces of their own)."""
    out, spans, _ = run_traced(tmp_path, "lost-end-hook", LOST_END_HOOK, lambda out: task_spans_of_runs(6, out["runs"]))
    assert out["failed"] == "FAILED"
    assert out["taken"] == [[2, 2], [2, 2]]  # exact: each later run sent 2 tasks, alone
    flows = {s.attributes["prefect.run.id"]: s for s in spans if s.attributes.get("prefect.run.id") in out["runs"]}
    for run, flow_span in flows.items():
        children = [
            s for s in spans if s.parent_span_id == flow_span.span_id and s.attributes.get("prefect.run.type") == "task"
        ]
        assert len(children) == 2 and {s.trace_id for s in children} == {flow_span.trace_id}, run
