"""The benchmark scripts still run against today's schemas and APIs (tiny sizes; figures not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, subprocess_env


@pytest.mark.parametrize(
    ("script", "args", "result"),
    [
        ("bench_store_write.py", ["--rows", "2000", "--repeats", "1"], "store_write"),
        ("bench_report.py", ["--rows", "20000"], "report"),
        ("bench_writers.py", ["--writers", "2", "--rows", "500", "--batch", "250"], "writers"),
        ("bench_otel.py", ["--only", "collection", "--repeats", "3"], "otel"),
        ("bench_redaction.py", ["--repeats", "20"], "redaction"),
        ("bench_multi_table.py", ["--rows", "3000"], "multi_table"),
    ],
)
def test_benchmark_runs_and_reports(tmp_path: Path, script: str, args: list[str], result: str) -> None:
    env = subprocess_env(SYNTHOBS_BENCH_RESULTS=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / f"{result}.json").read_text())
    assert data["benchmark"] == result
    table = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--table", result],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "no result" not in table.stdout and "figure" in table.stdout, table.stdout + table.stderr
