"""What faults cost a flow, in real seconds: a frozen S3 store and a stuck OTLP
collector (each a loopback socket that accepts connections and never answers),
against a healthy run measured in the same process.

Each scenario runs the same sequence: an observed flow with 10 tasks, then a
parent flow with three observed subflows, then the flow again. The figure per
run is its wall time; ``extra_s`` is that minus the healthy run's. Expected:
the first run of a fault pays about one timeout (``store_timeout_seconds`` or
``otlp_timeout_seconds``, defaults 10 s and 5 s), later runs about nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from _common import report
from prefect import flow, task
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

import prefect_synthobs as so
from prefect_synthobs.config import active as so_settings
from prefect_synthobs.instrument.instrumentation import reset_runtime


@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(256)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@task
def work(i: int) -> int:
    return i


@so.observe(kind="generation")
@flow(name="bench-faults-flow")
def child(n: int = 10) -> int:
    return sum(work(i) for i in range(n))


@so.observe(kind="other")
@flow(name="bench-faults-parent")
def parent() -> list[int]:
    return [child(3) for _ in range(3)]


def sequence() -> list[float]:
    out = []
    for run in (child, parent, child):
        start = time.perf_counter()
        run()
        out.append(time.perf_counter() - start)
    return out


def scenario(configure: Callable[[], None], tmp: str) -> dict[str, Any]:
    so_settings.reset()
    reset_runtime()
    configure()
    seconds = sequence()
    start = time.perf_counter()
    reset_runtime()  # what interpreter exit would do: final flush
    return {"runs_s": [round(s, 3) for s in seconds], "close_s": round(time.perf_counter() - start, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store-timeout", type=float, default=10.0)
    parser.add_argument("--otlp-timeout", type=float, default=5.0)
    args = parser.parse_args()
    logging.getLogger("prefect_synthobs").setLevel(logging.ERROR)
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        prefect_test_harness(),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        base = {"spool_dir": f"{tmp}/spool", "metrics_mode": "none"}
        sequence()  # warm-up: server, imports, first-run costs
        results["healthy"] = scenario(lambda: so.configure(store_url=f"{tmp}/store", **base), tmp)
        with silent_endpoint() as s3:
            results["frozen_s3"] = scenario(
                lambda: so.configure(
                    store_url="s3://frozen/synthobs",
                    store_options={
                        "access_key": "AKIAEXAMPLE",
                        "secret_key": "x",
                        "endpoint_override": s3,
                        "region": "us-east-1",
                    },
                    store_timeout_seconds=args.store_timeout,
                    **base,
                ),
                tmp,
            )
        with silent_endpoint() as collector:
            results["stuck_collector"] = scenario(
                lambda: so.configure(
                    store_url=f"{tmp}/store2",
                    otlp_endpoint=collector,
                    otlp_protocol="http/protobuf",
                    otlp_timeout_seconds=args.otlp_timeout,
                    **base,
                ),
                tmp,
            )
    healthy = results["healthy"]["runs_s"]
    for name in ("frozen_s3", "stuck_collector"):
        runs = results[name]["runs_s"]
        results[name]["extra_s"] = [round(r - h, 3) for r, h in zip(runs, healthy, strict=True)]
    results["timeouts"] = {"store_timeout_seconds": args.store_timeout, "otlp_timeout_seconds": args.otlp_timeout}
    results["sequence"] = ["flow with 10 tasks", "parent with 3 observed subflows", "flow with 10 tasks"]
    report("bench_faults", results)


if __name__ == "__main__":
    main()
