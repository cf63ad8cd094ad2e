"""The benchmark scripts still run against today's schemas and APIs (tiny sizes; figures not checked).

Slow tier: each is a child process (a benchmark that runs flows starts its own Prefect server,
``prefect_test_harness``), so none needs the session's ``prefect_server``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, subprocess_env

pytestmark = pytest.mark.slow


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
    data = _run_bench(script, args, result, env, tmp_path)
    assert data["benchmark"] == result
    table = _table(result, env)
    assert "no result" not in table and "figure" in table, table


def _run_bench(script: str, args: list[str], result: str, env: dict[str, str], out: Path) -> dict[str, Any]:
    """Run ``benchmarks/script`` with ``args`` (results to ``out``, by ``env``); its result's JSON."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / f"{result}.json").read_text())  # type: ignore[no-any-return]


def _table(result: str, env: dict[str, str]) -> str:
    """``python -m benchmarks --table result``'s output (and its errors)."""
    table = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--table", result],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return table.stdout + table.stderr


def test_autolog_benchmark_runs_and_records(tmp_path: Path) -> None:
    """bench_autolog.py (SDV's CTGAN, autolog on vs off) at a tiny size: it runs, and what autolog recorded
    is exactly the fits made with it on (runs in the SDV environment: scripts/test.sh's second run)."""
    pytest.importorskip("sdv", reason="needs SDV: runs in the sdv environment (scripts/test.sh)")
    env = subprocess_env(SYNTHOBS_BENCH_RESULTS=str(tmp_path))
    args = ["--epochs", "2", "--rows", "500", "--sample-rows", "1000", "--repeats", "1", "--settle", "0"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_autolog.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "autolog.json").read_text())
    assert data["benchmark"] == "autolog" and data["library"] == "sdv" and data["device"] == "cpu"
    assert data["recorded_models"] == data["expected_models"] == 2  # the warm-up fit and the round's, autolog on
    assert data["recorded_epoch_rows"] == data["expected_epoch_rows"] == 8
    assert data["synthobs_epoch_hook_us_median"] > 0 and data["synthobs_fit_wrapper_ms_median"] > 0
    for part in ("fit", "sample"):
        assert data[part]["median_ratio"] > 0 and data[part]["target_median_ratio"] == 1.01


def test_the_overhead_benchmark_measures_its_own_noise_floor(tmp_path: Path) -> None:
    """``bench_overhead.py --aa`` (tiny): a plain flow in the observed one's place, reported as ``overhead_aa``
    with every round's ratio; the table shows the A/A rows."""
    env = subprocess_env(SYNTHOBS_BENCH_RESULTS=str(tmp_path))
    args = ["--aa", "--rounds", "2", "--tasks", "3", "--settle", "0"]
    data = _run_bench("bench_overhead.py", args, "overhead_aa", env, tmp_path)
    assert data["aa"] is True and len(data["ratios"]) == 2 and data["synthobs_worker_ms_per_task_median"] is None
    assert "A/A noise floor" in _table("overhead_aa", env)


def test_the_chance_a_costless_change_fails_comes_from_the_rounds_spread() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _rows_perf import aa_rows, chance_median_above

    assert chance_median_above([1.0] * 9, 9, 1.05) == 0.0
    assert chance_median_above([1.2] * 9, 9, 1.05) == 1.0
    wide = [0.75, 0.8, 0.9, 0.95, 1.0, 1.02, 1.1, 1.2, 1.4]
    # more rounds, a tighter median: the chance of crossing a limit above the typical ratio falls
    assert 0 < chance_median_above(wide, 70, 1.05) < chance_median_above(wide, 9, 1.05) < 0.5
    rows = aa_rows(
        {"tasks_per_flow": 200, "rounds": 9, "ratio_spread": [0.75, 1.4], "median_ratio": 1.02, "ratio_of_medians": 1.0}
        | {"ratios": wide}
    )
    assert len(rows) == 3 and rows[1][1].endswith("%")
