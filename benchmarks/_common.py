"""Shared helpers for the benchmark scripts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
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
