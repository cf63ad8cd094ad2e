"""What ``synthobs demo`` prints after the pipeline: every duration says what it is, numbers read as numbers."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefect_synthobs.reports.demo_summary import flow_run_lines, metric_lines, runs_of, wall_time_line
from prefect_synthobs.reports.numbers import count_text, rate_text

RUNS = pd.DataFrame(
    {
        "flow_run_id": ["p", "t", "g", "q", "other"],
        "parent_flow_run_id": [None, "p", "p", "p", None],
        "flow_name": ["synthetic-pipeline", "train-generator", "generate-synthetic", "check-quality", "x"],
        "kind": ["other", "training", "generation", "quality", "other"],
        "state_type": ["COMPLETED"] * 5,
        "duration_s": [21.04, 13.52, 0.25, 7.151, 1.0],
        "rows": [None, None, 22000.0, None, None],  # an integer column with gaps: floats, as the store gives it
        "rows_per_s": [None, None, 87962.004, None, None],
    }
)


def test_the_wall_time_says_it_is_one_and_what_it_holds() -> None:
    line = wall_time_line("Completed", 33.64)
    assert line.startswith("pipeline completed in 33.6 s of wall time (") and "Prefect's start included" in line
    assert len(line) <= 100
    own_server = wall_time_line("Failed", 5.0, temporary_server=False)
    assert own_server == "pipeline failed in 5.0 s of wall time (this command so far)"


def test_each_flow_run_line_labels_its_run_time_and_reads_its_numbers() -> None:
    lines = flow_run_lines(runs_of(RUNS, "p"))
    heading, header, *rows = lines
    assert heading == "flow runs in this demo (run time: from each run's start to its end):"
    assert re.fullmatch(r"  flow +kind +state +run time  rows", header)
    assert [r.split()[0] for r in rows] == [
        "synthetic-pipeline",
        "train-generator",
        "generate-synthetic",
        "check-quality",
    ]
    pipeline, _train, generate, check = rows
    assert pipeline.endswith("21.04 s") and check.endswith("7.15 s")  # the two unexplained durations
    assert generate.endswith("0.25 s  22,000 rows, 87,962 rows/s")  # not 22000.0 rows, not 87,962.00
    # the run time sits under its header: one column for every line
    at = header.index("run time") + len("run time")
    assert all(r[at - 1] == "s" for r in rows)


@given(
    rows=st.integers(1, 10**9),
    seconds=st.floats(min_value=0.001, max_value=1e5, allow_nan=False),
)
def test_rows_and_rates_are_written_by_the_shared_helpers(rows: int, seconds: float) -> None:
    frame = RUNS.iloc[[2]].assign(rows=float(rows), rows_per_s=rows / seconds, duration_s=seconds)
    line = flow_run_lines(frame)[-1]
    assert line.endswith(f"{count_text(rows)} rows, {rate_text(rows / seconds)} rows/s")
    assert ".0 rows" not in line and "e+" not in line


def test_a_run_without_a_duration_or_rows_still_prints() -> None:
    frame = RUNS.iloc[[3]].assign(duration_s=float("nan"), rows=pd.NA)
    assert flow_run_lines(frame)[-1].split() == ["check-quality", "quality", "COMPLETED"]


def test_metric_lines_keep_the_series_and_read_the_values() -> None:
    exposition = "\n".join(
        [
            "# HELP synthobs_flow_runs_total Flow runs.",
            "# TYPE synthobs_flow_runs_total counter",
            'synthobs_flow_runs_total{flow="my flow",kind="other",state="COMPLETED"} 1.0',
            'synthobs_flow_runs_created{flow="my flow",kind="other",state="COMPLETED"} 1.7e+09',
            'synthobs_generation_rows_total{flow="g",model_type="ctgan",table="t"} 20000.0',
            "synthobs_generation_rows_per_second 87962.004",
            "synthobs_flow_runs_total_other 3.0",
        ]
    )
    lines = metric_lines(exposition, ["synthobs_flow_runs_total", "synthobs_generation_rows_total"])
    assert lines == [
        'synthobs_flow_runs_total{flow="my flow",kind="other",state="COMPLETED"} 1',  # a label with a space
        'synthobs_generation_rows_total{flow="g",model_type="ctgan",table="t"} 20,000',
    ]


@pytest.mark.parametrize("root", ["p", "other", "missing"])
def test_runs_of_takes_a_run_and_its_subflows(root: str) -> None:
    expected = {"p": {"p", "t", "g", "q"}, "other": {"other"}, "missing": set()}[root]
    assert set(runs_of(RUNS, root).flow_run_id) == expected
