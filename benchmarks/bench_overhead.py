"""Overhead of observe(): a flow of 200 trivial tasks, observed vs plain.

The two flows alternate in one process against one Prefect server, with the
heartbeat off, and the server is given time to drain its event backlog before
each timed run (NOTES.md: back-to-back runs inflate timings). Reports the
median of the per-round ratios (observed / plain) and the ratio of medians.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect import flow, task  # noqa: E402
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

import prefect_synthobs as so  # noqa: E402

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


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    fn(n)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to let the server drain")
    args = parser.parse_args()
    so.configure(store_url=tempfile.mkdtemp(prefix="synthobs-bench-"))
    with prefect_test_harness(server_startup_timeout=120), \
            temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        timed(plain, args.tasks), timed(observed, args.tasks)  # warm-up both paths
        plain_s, observed_s, ratios = [], [], []
        for r in range(args.rounds):
            pair = {}
            order = (plain, observed) if r % 2 == 0 else (observed, plain)
            for fn in order:
                time.sleep(args.settle)
                pair[fn.name] = timed(fn, args.tasks)
            plain_s.append(pair["bench-plain"])
            observed_s.append(pair["bench-observed"])
            ratios.append(pair["bench-observed"] / pair["bench-plain"])
            print(f"round {r + 1}/{args.rounds}: plain {pair['bench-plain']:.3f}s "
                  f"observed {pair['bench-observed']:.3f}s ratio {ratios[-1]:.3f}", flush=True)
    report("overhead", {
        "tasks_per_flow": args.tasks,
        "rounds": args.rounds,
        "plain_median_s": round(median(plain_s), 4),
        "observed_median_s": round(median(observed_s), 4),
        "median_ratio": round(median(ratios), 4),
        "ratio_of_medians": round(median(observed_s) / median(plain_s), 4),
        "target_median_ratio": 1.05,
    })


if __name__ == "__main__":
    main()
