"""The flow end's Prefect API work: what an observed flow's process reads back at its end.

Two flows, each observed, against one Prefect server (the heartbeat off, the
server drained between runs as in ``bench_overhead``):

* ``in_process``: tasks called in the flow (Prefect's default thread runner):
  nothing ran elsewhere, so the flow's end must read nothing from the API;
* ``process_pool``: ``--tasks`` tasks mapped on ``ProcessPoolTaskRunner(2)``:
  the flow's end reads the rows artifacts and the finished task runs back
  (``instrument/remote.py``), and its reconciliation (3 s later, on a thread)
  reuses that read when it holds every task run the process sent.

Measured per flow end: seconds inside ``read_remote_work`` (the API part),
seconds inside ``FlowEnd.record`` (the whole end, rows and metrics included),
and the API requests made (task-run and artifact reads, counted on Prefect's
client), at the end and by the reconciliation. The baseline, in the same
round right after each process-pool flow: one bare paginated read of the
run's task runs with the same shared client (what any read-back costs at
least). Reports medians over ``--rounds`` and the spread (min, max).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
for _service in (
    "SCHEDULER",
    "LATE_RUNS",
    "FOREMAN",
    "PAUSE_EXPIRATIONS",
    "REPOSSESSOR",
    "CANCELLATION_CLEANUP",
    "CLEANUP_RECONCILER",
    "TRIGGERS",
    "DB_VACUUM",
    "EVENT_LOGGER",
):
    os.environ.setdefault(f"PREFECT_SERVER_SERVICES_{_service}_ENABLED", "false")

from prefect import flow, task  # noqa: E402
from prefect.client.orchestration import SyncPrefectClient  # noqa: E402
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.task_runners import ProcessPoolTaskRunner  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

import prefect_synthobs as so  # noqa: E402
from prefect_synthobs.instrument import flow_end, prefect_api  # noqa: E402
from prefect_synthobs.instrument.flow_end import FlowEnd  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import median, report  # noqa: E402

_clock = {"record": 0.0, "remote": 0.0}
_reads: dict[str, int] = {"end": 0, "reconcile": 0}


def _timed(owner: Any, name: str, key: str) -> None:
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _clock[key] += time.perf_counter() - start

    setattr(owner, name, timed)


def _counted(name: str) -> None:
    original = getattr(SyncPrefectClient, name)

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        where = "reconcile" if threading.current_thread().name == "synthobs-reconcile" else "end"
        _reads[where] += 1
        return original(self, *args, **kwargs)

    setattr(SyncPrefectClient, name, counted)


_timed(FlowEnd, "record", "record")
_timed(flow_end, "read_remote_work", "remote")
for _name in ("read_task_runs", "read_artifacts"):
    _counted(_name)


@task
def trivial(i: int) -> int:
    return i


@so.observe(kind="other")
@flow(name="bench-flow-end-in-process")
def in_process(n: int) -> list[int]:
    return [trivial(i) for i in range(n)]


@so.observe(kind="other")
@flow(name="bench-flow-end-pool", task_runner=ProcessPoolTaskRunner(max_workers=2))  # type: ignore[arg-type]
def pooled(n: int) -> list[int]:
    return [f.result() for f in trivial.map(range(n))]


def _bare_read(flow_run_id: str) -> float:
    """One paginated read of the run's finished task runs with the shared client: the baseline."""
    client = prefect_api.shared_client()
    start = time.perf_counter()
    list(prefect_api.finished_task_runs(client, [flow_run_id]))
    return time.perf_counter() - start


def _run(fn: Any, n: int) -> tuple[str, dict[str, float]]:
    """Run ``fn`` observed; what its end cost, once its reconciliation (if any) has run."""
    from prefect_synthobs.instrument.instrumentation import get_runtime

    for key in _clock:
        _clock[key] = 0.0
    for key in _reads:
        _reads[key] = 0
    state = fn(n, return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    out = {"record_s": _clock["record"], "remote_s": _clock["remote"], "end_reads": float(_reads["end"])}
    for thread in list(get_runtime().flow_end._reconciling):  # the reconciliation, RECONCILE_DELAY_SECONDS later
        thread.join(30)
    out["reconcile_reads"] = float(_reads["reconcile"])
    return flow_run_id, out


def main() -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from bench_overhead import wait_drained

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--in-process-tasks", type=int, default=50)
    parser.add_argument("--settle", type=float, default=1.0)
    args = parser.parse_args()
    so.configure(store_url=tempfile.mkdtemp(prefix="synthobs-bench-"))
    local: list[dict[str, float]] = []
    pool: list[dict[str, float]] = []
    bare: list[float] = []
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        for fn, n in ((in_process, args.in_process_tasks), (pooled, args.tasks)):  # warm-up
            wait_drained(_run(fn, n)[0], n, args.settle)
        for r in range(args.rounds):
            run_id, local_end = _run(in_process, args.in_process_tasks)
            local.append(local_end)
            wait_drained(run_id, args.in_process_tasks, args.settle)
            run_id, pool_end = _run(pooled, args.tasks)
            pool.append(pool_end)
            wait_drained(run_id, args.tasks, 0)
            bare.append(_bare_read(run_id))
            time.sleep(args.settle)
            print(
                f"round {r + 1}/{args.rounds}: in-process end {local_end['record_s'] * 1000:.1f} ms "
                f"({local_end['end_reads']:.0f} reads); pool end API {pool_end['remote_s'] * 1000:.1f} ms "
                f"({pool_end['end_reads']:.0f} reads, reconcile {pool_end['reconcile_reads']:.0f}), "
                f"bare read {bare[-1] * 1000:.1f} ms",
                flush=True,
            )

    def stat(rows: list[dict[str, float]], key: str, scale: float = 1.0) -> list[float]:
        return [row[key] * scale for row in rows]

    pool_api_ms = stat(pool, "remote_s", 1000)
    bare_ms = [b * 1000 for b in bare]
    report(
        "flow_end",
        {
            "rounds": args.rounds,
            "pool_tasks": args.tasks,
            "in_process_tasks": args.in_process_tasks,
            "in_process_end_api_reads_max": max(stat(local, "end_reads") + stat(local, "reconcile_reads")),
            "in_process_end_api_s_median": round(median(stat(local, "remote_s")), 4),
            "in_process_end_ms_median": round(median(stat(local, "record_s", 1000)), 2),
            "in_process_end_ms_spread": [
                round(min(stat(local, "record_s", 1000)), 2),
                round(max(stat(local, "record_s", 1000)), 2),
            ],
            "pool_end_api_s_median": round(median(pool_api_ms) / 1000, 4),
            "pool_end_api_ms_spread": [round(min(pool_api_ms), 1), round(max(pool_api_ms), 1)],
            "pool_end_ms_median": round(median(stat(pool, "record_s", 1000)), 1),
            "pool_end_reads_median": median(stat(pool, "end_reads")),
            "pool_reconcile_reads_max": max(stat(pool, "reconcile_reads")),
            "bare_task_runs_read_ms_median": round(median(bare_ms), 1),
            "pool_end_api_over_bare_read": round(median(pool_api_ms) / median(bare_ms), 2),
            "target_in_process_s": 0.1,
            "target_pool_s": 0.25,
        },
    )


if __name__ == "__main__":
    main()
