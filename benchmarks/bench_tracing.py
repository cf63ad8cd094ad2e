"""Tracing cost: a 200-task observed flow exporting spans to a local OTLP receiver
(HTTP/protobuf, on loopback) vs the same flow with export off, alternating in one
process, each run started once the server has drained the previous one.

The receiver runs in its own process, as a collector would: its parsing is not
the exporter's cost. ``--in-process-receiver`` puts it back in the flow's
process (the older, harsher set-up)."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from _common import median, report
from bench_overhead import observed, timed, wait_drained
from otlp_receiver import http_receiver
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

import prefect_synthobs as so

RECEIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from otlp_receiver import http_receiver
with http_receiver() as r:
    print(r.endpoint, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    print(len(r.spans), flush=True)
"""


class _Remote:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.spans: list[object] = []


@contextlib.contextmanager
def receiver_process() -> Iterator[_Remote]:
    tests = os.path.join(os.path.dirname(__file__), "..", "tests")
    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, tests], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    remote = _Remote(proc.stdout.readline().strip())
    try:
        yield remote
    finally:
        proc.stdin.close()
        count = proc.stdout.readline().strip()
        remote.spans = [None] * int(count or 0)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--in-process-receiver", action="store_true")
    args = parser.parse_args()
    import tempfile

    so.configure(store_url=tempfile.mkdtemp(prefix="synthobs-bench-"))
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        http_receiver() if args.in_process_receiver else receiver_process() as receiver,
    ):
        modes = {
            "off": {"otlp_endpoint": None, "otlp_protocol": None},
            "export": {"otlp_endpoint": receiver.endpoint, "otlp_protocol": "http/protobuf"},
        }
        for mode in modes.values():  # warm-up both paths
            so.configure(**mode)
            wait_drained(timed(observed, args.tasks)[1], args.tasks, args.settle)
        times: dict[str, list[float]] = {"off": [], "export": []}
        ratios = []
        for r in range(args.rounds):
            for name in ("off", "export") if r % 2 == 0 else ("export", "off"):
                so.configure(**modes[name])
                elapsed, run_id = timed(observed, args.tasks)
                times[name].append(elapsed)
                wait_drained(run_id, args.tasks, args.settle)
            ratios.append(times["export"][-1] / times["off"][-1])
            print(
                f"round {r + 1}/{args.rounds}: off {times['off'][-1]:.3f}s "
                f"export {times['export'][-1]:.3f}s ratio {ratios[-1]:.3f}",
                flush=True,
            )
    spans = len(receiver.spans)
    report(
        "tracing",
        {
            "tasks_per_flow": args.tasks,
            "rounds": args.rounds,
            "off_median_s": round(median(times["off"]), 4),
            "export_median_s": round(median(times["export"]), 4),
            "median_ratio": round(median(ratios), 4),
            "ratio_of_medians": round(median(times["export"]) / median(times["off"]), 4),
            "spans_received": spans,
            "receiver": "in-process" if args.in_process_receiver else "separate process",
            "target_median_ratio": 1.05,
        },
    )


if __name__ == "__main__":
    main()
