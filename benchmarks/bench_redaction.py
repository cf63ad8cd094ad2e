"""Redaction cost: µs per message for typical log lines, with and without secrets, 200 and 2,000 characters.

Also times detect-secrets' ``scan_line`` (the pattern source the tests check against) on the
same lines when it is installed, to show why it is a test reference and not a run-time dependency,
and a 100 kB hostile string (no pattern may backtrack on it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(__file__))

from _common import median, report

from prefect_synthobs.telemetry.redaction import redact

CLEAN = (
    "2026-05-01T12:00:00.123456+00:00 INFO Task run 'generate-3f1' - flow train-ctgan run "
    "3f1c2a1e-8d4b-4c1e-9a7e-2b1f0c9d8e7a finished in 12.3s: 10,000 rows, fidelity 0.93 passed (gate 0.80); "
)
SECRETS = (
    "2026-05-01T12:00:00Z ERROR load failed for josé@exämple.de: connect postgres://etl:hunter2@db:5432/x "
    "password='p4ss w0rd' Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl AKIAIOSFODNN7EXAMPLE "
)


def sized(base: str, size: int) -> str:
    return (base * (size // len(base) + 1))[:size]


def time_per_call(fn: Callable[[str], object], text: str, repeats: int) -> float:
    """Median over 5 rounds of the µs one call costs."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn(text)
        rounds.append((time.perf_counter() - start) / repeats * 1e6)
    return median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2000, help="calls per round (5 rounds)")
    args = parser.parse_args()
    results: dict[str, float] = {}
    for label, base in (("clean", CLEAN), ("secrets", SECRETS)):
        for size in (200, 2000):
            text = sized(base, size)
            results[f"redact_{label}_{size}_us"] = round(time_per_call(redact, text, args.repeats), 2)
    hostile = "a" * 50_000 + "@" + "-." * 25_000
    start = time.perf_counter()
    redact(hostile)
    results["redact_hostile_100kB_ms"] = round((time.perf_counter() - start) * 1e3, 2)
    try:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings
    except ImportError:
        pass
    else:
        with default_settings():
            for label, base in (("clean", CLEAN), ("secrets", SECRETS)):
                text = sized(base, 200)
                results[f"detect_secrets_scan_line_{label}_200_us"] = round(
                    time_per_call(lambda line: list(scan_line(line)), text, max(args.repeats // 20, 5)), 1
                )
    report("redaction", {"repeats": args.repeats, **results})


if __name__ == "__main__":
    main()
