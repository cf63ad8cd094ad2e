"""Overhead of observe(): a flow of 200 trivial tasks, observed vs plain.

``--runner`` picks where the tasks run: ``thread`` (Prefect's default
ThreadPoolTaskRunner, tasks called in the flow), ``process_pool``
(ProcessPoolTaskRunner, 2 workers) or ``dask`` (DaskTaskRunner, a LocalCluster
of 2 worker processes started once for the whole benchmark). With a process
runner the tasks are submitted, and synthobs' own time per task in the worker
(run listener) is reported too. ``BENCH_ROWS=1`` makes each task call
``record_rows(1)``: in a worker that costs one API request per task (the
``synthobs-rows`` artifact), which this measures.

The two flows alternate in one process against one Prefect server, with the
heartbeat off, and the server is given time to drain its event backlog before
each timed run: the next run starts only once every task run of the previous
one is final through the API, plus a pause (measured here: back-to-back runs
inflate timings several-fold on 2 cores). Reports the
median of the per-round ratios (observed / plain), the ratio of medians, and
the time spent inside synthobs' own entry points (flow hooks and the run
listener) per observed run: a noise-free view of the same cost, since a 2-core
machine running its own Prefect server varies by ±30 % from run to run.

Work synthobs moves off the flow's thread is counted too: the CPU time its own
background threads (named ``synthobs-*``) spend during each observed run
(``synthobs_background_cpu_ms_median``; each thread's CPU clock, read at the
run's start and end, or as it exits), and the two together
(``synthobs_in_process_with_background_ms_median``). Threads the flow's thread
waits for (the bounded store calls, ``synthobs-store-*``) are left out of the
background figure: their time is already in the entry points' wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Server services this benchmark does not use wake up periodically and add noise;
# the task-run recorder and event persister stay on (the drain check needs them).
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
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

import prefect_synthobs as so  # noqa: E402
from prefect_synthobs.instrument.listener import RunListener  # noqa: E402
from prefect_synthobs.instrument.runtime import Runtime  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import median, report  # noqa: E402


def _accumulator() -> list[float]:
    """Seconds inside synthobs in this process, kept on a synthobs module: a task unpickled by value in a
    worker gets fresh copies of this script's globals each time, the imported package is there once."""
    import prefect_synthobs.instrument.listener as home

    return home.__dict__.setdefault("_bench_inside", [0.0])  # type: ignore[no-any-return]


_inside = _accumulator()
_clock = [time.perf_counter]
"""The entry points' clock: wall time (default), or with ``--clock cpu`` the calling thread's CPU time (what
synthobs itself computes, without the time other threads of the process take the interpreter meanwhile)."""


def _attribute(cls: type, name: str) -> None:
    """Count the time spent inside a synthobs entry point (hooks, listener)."""
    original = getattr(cls, name)
    if getattr(original, "_bench_timed", False):
        return

    def timed_call(*args, **kwargs):
        clock = _clock[0]
        start = clock()
        try:
            return original(*args, **kwargs)
        finally:
            elapsed = clock() - start  # read first: finding the accumulator is the benchmark's time, not synthobs'
            _accumulator()[0] += elapsed

    timed_call._bench_timed = True  # type: ignore[attr-defined]
    setattr(cls, name, timed_call)


def _time_entry_points() -> None:
    for cls, name in (
        (Runtime, "begin_flow_run"),
        (Runtime, "end_flow_run"),
        (RunListener, "on_start"),
        (RunListener, "on_end"),
    ):
        _attribute(cls, name)


_time_entry_points()

_WAITED_FOR = ("synthobs-store-",)
"""Background threads whose caller waits for them (their time is in the caller's wall time already)."""
_thread_cpu_at_exit: dict[int, float] = {}
_original_start = threading.Thread.start


def _start_counted(self: threading.Thread) -> None:
    """``Thread.start`` that notes the CPU time of a ``synthobs-*`` thread as it exits."""
    if self.name.startswith("synthobs-"):
        run = self.run

        def counted_run() -> None:
            try:
                run()
            finally:
                _thread_cpu_at_exit[threading.get_ident()] = time.thread_time()

        self.run = counted_run  # type: ignore[method-assign]
    _original_start(self)


threading.Thread.start = _start_counted  # type: ignore[method-assign]


def _background_threads() -> dict[int, float]:
    """CPU seconds so far of each synthobs background thread alive now (those the flow does not wait for)."""
    out = {}
    for thread in threading.enumerate():
        if not thread.name.startswith("synthobs-") or thread.name.startswith(_WAITED_FOR) or thread.ident is None:
            continue
        with contextlib.suppress(OSError, ValueError):  # it exited meanwhile: its exit noted its time
            out[thread.ident] = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return out


class BackgroundCpu:
    """The CPU time synthobs' background threads spend between ``start`` and ``stop`` (seconds)."""

    def start(self) -> None:
        _thread_cpu_at_exit.clear()
        self._before = _background_threads()

    def stop(self) -> float:
        after = _background_threads()
        ended = {k: v for k, v in _thread_cpu_at_exit.items() if k not in after}
        total = 0.0
        for ident, cpu in {**ended, **after}.items():
            total += max(cpu - self._before.get(ident, 0.0), 0.0)
        return total


@task
def trivial(i: int) -> tuple[int, int, float]:
    """``(i, pid, seconds inside synthobs so far in this process)``: a worker's own cost, read back."""
    from prefect_synthobs.instrument.listener import RunListener as Listener
    from prefect_synthobs.instrument.observe import WorkerCarrier

    # in a Dask worker, this module's import-time patching never ran; on_end holds the task's end in a worker
    # (its row, and delivering it before the task returns); the carrier's unpickling sets synthobs up in the
    # worker and makes the flow's span current, each time the worker receives a task
    for cls, name in ((Listener, "on_start"), (Listener, "on_end"), (WorkerCarrier, "__setstate__")):
        _attribute(cls, name)
    if os.environ.get("BENCH_ROWS"):
        so.record_rows(1)
    return i, os.getpid(), _accumulator()[0]


RUNNER = os.environ.get("BENCH_RUNNER", "thread")


def _task_runner():
    if RUNNER == "process_pool":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=2)
    if RUNNER == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=os.environ["BENCH_DASK_ADDRESS"])
    return None


def body(n: int) -> list[tuple[int, int, float]]:
    if RUNNER == "thread":
        return [trivial(i) for i in range(n)]
    return [f.result() for f in trivial.map(range(n))]


@flow(name="bench-plain")
def plain(n: int) -> list[tuple[int, int, float]]:
    return body(n)


@so.observe(kind="other")
@flow(name="bench-observed")
def observed(n: int) -> list[tuple[int, int, float]]:
    return body(n)


@flow(name="bench-observed")
def plain_twin(n: int) -> list[tuple[int, int, float]]:
    """``--aa``: a second plain flow in the observed flow's place (what the protocol reads at zero cost)."""
    return body(n)


def worker_ms_per_task(results: list[tuple[int, int, float]]) -> float | None:
    """synthobs' time per task in worker processes, from the counters the tasks read back."""
    by_pid: dict[int, list[float]] = {}
    for _, pid, inside in results:
        by_pid.setdefault(pid, []).append(inside)
    spans = [(max(v) - min(v), len(v) - 1) for pid, v in by_pid.items() if pid != os.getpid() and len(v) > 1]
    tasks = sum(n for _, n in spans)
    return 1000 * sum(s for s, _ in spans) / tasks if tasks else None


_last_results: list[list[tuple[int, int, float]]] = []


def timed(fn, n: int) -> tuple[float, str]:
    start = time.perf_counter()
    state = fn(n, return_state=True)
    elapsed = time.perf_counter() - start
    _last_results[:] = [state.result()]
    return elapsed, str(state.state_details.flow_run_id)


def wait_drained(flow_run_id: str, n: int, settle: float, timeout: float = 120.0) -> None:
    """Wait until the server has processed the run's task events (all n task runs
    final through the API), then ``settle`` more seconds: an undrained backlog
    competes for the CPU and inflates the next run several-fold."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            final, offset = 0, 0
            while True:  # the API returns at most 200 per page
                page = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                    limit=200,
                    offset=offset,
                )
                final += sum(1 for r in page if r.state and r.state.is_final())
                if len(page) < 200:
                    break
                offset += 200
            if final >= n:
                break
            time.sleep(0.25)
    time.sleep(settle)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runner", choices=["thread", "process_pool", "dask"], default=RUNNER)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument(
        "--settle", type=float, default=1.0, help="seconds to wait after the server has drained the previous run"
    )
    parser.add_argument(
        "--aa",
        action="store_true",
        help="A/A: a plain flow in the observed one's place: the ratio this machine gives when synthobs costs "
        "nothing (the noise floor of the ratio rows), reported as overhead_aa",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="time the entry points by wall time (default) or by the flow thread's CPU time (time.thread_time)",
    )
    args = parser.parse_args()
    if args.clock == "cpu":
        _clock[0] = time.thread_time
    if args.runner != RUNNER:  # the flows read it at import: this module again, in a child, with it set
        os.environ["BENCH_RUNNER"] = args.runner
        os.execv(sys.executable, [sys.executable, *sys.argv])
    so.configure(store_url=tempfile.mkdtemp(prefix="synthobs-bench-"))
    cluster = None
    if RUNNER == "dask":  # one cluster for the whole benchmark, as a long-lived deployment has
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        os.environ["BENCH_DASK_ADDRESS"] = cluster.scheduler_address
    global plain, observed
    if args.aa:
        observed = plain_twin
    runner = _task_runner()
    if runner is not None:  # with_options keeps synthobs' hooks (and their worker carrier)
        plain, observed = plain.with_options(task_runner=runner), observed.with_options(task_runner=runner)
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        for fn in (plain, observed):  # warm-up both paths
            wait_drained(timed(fn, args.tasks)[1], args.tasks, args.settle)
        plain_s, observed_s, ratios, inside_ms, worker_ms, background_ms = [], [], [], [], [], []
        background = BackgroundCpu()
        for r in range(args.rounds):
            pair = {}
            order = (plain, observed) if r % 2 == 0 else (observed, plain)
            for fn in order:
                _inside[0] = 0.0
                background.start()
                pair[fn.name], run_id = timed(fn, args.tasks)
                if fn is observed:
                    inside_ms.append(_inside[0] * 1000)
                    background_ms.append(background.stop() * 1000)
                    per_task = worker_ms_per_task(_last_results[0])
                    if per_task is not None:
                        worker_ms.append(per_task)
                wait_drained(run_id, args.tasks, args.settle)
            plain_s.append(pair["bench-plain"])
            observed_s.append(pair["bench-observed"])
            ratios.append(pair["bench-observed"] / pair["bench-plain"])
            print(
                f"round {r + 1}/{args.rounds}: plain {pair['bench-plain']:.3f}s "
                f"observed {pair['bench-observed']:.3f}s ratio {ratios[-1]:.3f}",
                flush=True,
            )
    if cluster is not None:
        cluster.close()
    name = "overhead" if RUNNER == "thread" else f"overhead_{RUNNER}"
    report(
        name + ("_aa" if args.aa else "") + ("_cpu" if args.clock == "cpu" else ""),
        {
            "aa": args.aa,
            "ratios": [round(r, 4) for r in ratios],
            "runner": RUNNER,
            "entry_point_clock": args.clock,
            "tasks_per_flow": args.tasks,
            "rounds": args.rounds,
            "plain_median_s": round(median(plain_s), 4),
            "observed_median_s": round(median(observed_s), 4),
            "median_ratio": round(median(ratios), 4),
            "ratio_of_medians": round(median(observed_s) / median(plain_s), 4),
            "ratio_spread": [round(min(ratios), 4), round(max(ratios), 4)],
            "target_median_ratio": 1.05,
            "synthobs_in_process_ms_median": round(median(inside_ms), 2),
            "synthobs_in_process_share_of_plain": round(median(inside_ms) / 1000 / median(plain_s), 4),
            "synthobs_in_process_ms_spread": [round(min(inside_ms), 2), round(max(inside_ms), 2)],
            "synthobs_background_cpu_ms_median": round(median(background_ms), 2),
            "synthobs_in_process_with_background_ms_median": round(
                median([a + b for a, b in zip(inside_ms, background_ms, strict=True)]), 2
            ),
            "synthobs_worker_ms_per_task_median": round(median(worker_ms), 3) if worker_ms else None,
            "plain_min_s": round(min(plain_s), 4),
            "observed_min_s": round(min(observed_s), 4),
        },
    )


if __name__ == "__main__":
    main()
