"""Shared helpers for the benchmark scripts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path(os.environ.get("SYNTHOBS_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
"""Where results go (``SYNTHOBS_BENCH_RESULTS``: elsewhere, e.g. the tests' smoke runs)."""


def report(name: str, data: dict[str, Any]) -> None:
    data = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        **data,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    print(json.dumps(data, indent=2))


def median(values: list[float]) -> float:
    return statistics.median(values)


def bench_bucket(endpoint: str, bucket: str = "bench") -> None:
    """Wait (up to about 10 s) until the S3 server at ``endpoint`` answers, then create ``bucket`` there."""
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10)
