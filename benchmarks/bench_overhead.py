"""Overhead of observe(): a flow of 200 trivial tasks, observed vs plain.

The two flows alternate in one process against one Prefect server, with the
heartbeat off, and the server is given time to drain its event backlog before
each timed run: the next run starts only once every task run of the previous
one is final through the API, plus a pause (measured here: back-to-back runs
inflate timings several-fold on 2 cores). Reports the
median of the per-round ratios (observed / plain), the ratio of medians, and
the time spent inside synthobs' own entry points (flow hooks and the run
listener) per observed run: a noise-free view of the same cost, since a 2-core
machine running its own Prefect server varies by ±30 % from run to run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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


@task
def trivial(i: int) -> int:
    return i


def body(n: int) -> int:
    return sum(trivial(i) for i in range(n))


@flow(name="bench-plain")
def plain(n: int) -> int:
    return body(n)


@so.observe(kind="other")
@flow(name="bench-observed")
def observed(n: int) -> int:
    return body(n)


_inside = [0.0]


def _attribute(cls: type, name: str) -> None:
    """Count the time spent inside a synthobs entry point (hooks, listener)."""
    original = getattr(cls, name)

    def timed_call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _inside[0] += time.perf_counter() - start

    setattr(cls, name, timed_call)


for _cls, _name in (
    (Runtime, "begin_flow_run"),
    (Runtime, "end_flow_run"),
    (RunListener, "on_start"),
    (RunListener, "on_end"),
):
    _attribute(_cls, _name)


def timed(fn, n: int) -> tuple[float, str]:
    start = time.perf_counter()
    state = fn(n, return_state=True)
    return time.perf_counter() - start, str(state.state_details.flow_run_id)


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
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument(
        "--settle", type=float, default=1.0, help="seconds to wait after the server has drained the previous run"
    )
    args = parser.parse_args()
    so.configure(store_url=tempfile.mkdtemp(prefix="synthobs-bench-"))
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        for fn in (plain, observed):  # warm-up both paths
            wait_drained(timed(fn, args.tasks)[1], args.tasks, args.settle)
        plain_s, observed_s, ratios, inside_ms = [], [], [], []
        for r in range(args.rounds):
            pair = {}
            order = (plain, observed) if r % 2 == 0 else (observed, plain)
            for fn in order:
                _inside[0] = 0.0
                pair[fn.name], run_id = timed(fn, args.tasks)
                if fn is observed:
                    inside_ms.append(_inside[0] * 1000)
                wait_drained(run_id, args.tasks, args.settle)
            plain_s.append(pair["bench-plain"])
            observed_s.append(pair["bench-observed"])
            ratios.append(pair["bench-observed"] / pair["bench-plain"])
            print(
                f"round {r + 1}/{args.rounds}: plain {pair['bench-plain']:.3f}s "
                f"observed {pair['bench-observed']:.3f}s ratio {ratios[-1]:.3f}",
                flush=True,
            )
    report(
        "overhead",
        {
            "tasks_per_flow": args.tasks,
            "rounds": args.rounds,
            "plain_median_s": round(median(plain_s), 4),
            "observed_median_s": round(median(observed_s), 4),
            "median_ratio": round(median(ratios), 4),
            "ratio_of_medians": round(median(observed_s) / median(plain_s), 4),
            "target_median_ratio": 1.05,
            "synthobs_in_process_ms_median": round(median(inside_ms), 2),
            "synthobs_in_process_share_of_plain": round(median(inside_ms) / 1000 / median(plain_s), 4),
            "plain_min_s": round(min(plain_s), 4),
            "observed_min_s": round(min(observed_s), 4),
        },
    )


if __name__ == "__main__":
    main()
