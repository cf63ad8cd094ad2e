"""The report's task aggregates from DuckDB (``reports.health_query``) against plain pandas over the same files.

Generated stores hold runs written twice (the same ``event_id``; a hook and an ``api`` row; two hook rows),
rows on both sides of the window's edges, files of other time units and of older layouts (no ``source``, no
``run_count``), and none at all. Counts must be equal, quantiles equal within float tolerance.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prefect_synthobs as so
from conftest import free_port
from prefect_synthobs import catalog as names
from prefect_synthobs.health.tables import SOURCE_API, SOURCE_HOOK, schema_for
from prefect_synthobs.reports import health as hr
from prefect_synthobs.reports.health_query import BY_TASK, FAILED_ROWS, summarize, summarize_rows

UNTIL = datetime(2026, 11, 20, 6, tzinfo=timezone.utc)
SINCE = UNTIL - timedelta(hours=30)
SCHEMA = schema_for(names.TASK_RUNS)
STATES = ["COMPLETED", "COMPLETED", "FAILED", "CRASHED", "RUNNING", None]


def _row(i: int, draw: Any) -> dict[str, Any]:
    start = SINCE + timedelta(seconds=draw(st.integers(-6 * 3600, 36 * 3600)))  # both edges of the window
    duration = draw(st.one_of(st.none(), st.just(float("nan")), st.floats(0, 1e4, allow_nan=False)))
    return {
        **dict.fromkeys(SCHEMA.names),
        "event_id": f"e{i}",
        "task_run_id": draw(st.one_of(st.just(f"t{i}"), st.just(None))) if i % 7 == 0 else f"t{i}",
        "flow_name": draw(st.sampled_from(["a", "b", None])),
        "task_name": draw(st.sampled_from(["x", "y"])),
        "state_type": draw(st.sampled_from(STATES)),
        "start_time": start,
        "end_time": start + timedelta(seconds=draw(st.integers(0, 100))),
        "duration_s": duration,
        "run_count": draw(st.one_of(st.none(), st.integers(1, 3))),
        "error_message": f"boom {i}",
        "source": SOURCE_HOOK,
    }


@st.composite
def stores(draw: Any) -> list[tuple[list[dict[str, Any]], str]]:
    """Files (rows, layout): each run's first row, then the rows that wrote it again, spread over files."""
    rows: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 25))):
        first = _row(i, draw)
        rows.append(first)
        for k, kind in enumerate(draw(st.lists(st.sampled_from(["same", "api", "hook"]), max_size=2)), 1):
            if kind == "same":
                rows.append(dict(rows[-1]))
                continue
            rows.append(
                {
                    **first,
                    "event_id": f"e{i}-{k}",
                    "state_type": draw(st.sampled_from(STATES)),
                    "end_time": first["end_time"] + timedelta(seconds=k),
                    "duration_s": draw(st.floats(0, 1e4)),
                    "source": SOURCE_API if kind == "api" else SOURCE_HOOK,
                }
            )
    files = draw(st.integers(1, 3))
    where = [draw(st.integers(0, files - 1)) for _ in rows]
    layouts = [draw(st.sampled_from(["us", "us", "ms", "ns", "old"])) for _ in range(files)]
    if "old" in layouts:  # a store from before these columns: no row has them (copies of a row stay the same)
        rows = [{**r, "run_count": None, "source": None} for r in rows]
    return [([r for r, w in zip(rows, where, strict=True) if w == f], layouts[f]) for f in range(files)]


def _write(fs: pafs.FileSystem, root: str, files: list[tuple[list[dict[str, Any]], str]]) -> None:
    for rows, layout in files:
        if not rows:
            continue
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        if layout in ("ms", "ns"):  # another writer's time unit: the store casts it
            for name in ("start_time", "end_time"):
                table = table.set_column(
                    table.schema.get_field_index(name), name, table[name].cast(pa.timestamp(layout, tz="UTC"))
                )
        elif layout == "old":  # an older layout: no source, no run_count
            table = table.drop_columns(["source", "run_count"])
        for day in sorted({r["start_time"].date() for r in rows}):
            part = table.filter(pa.compute.equal(pa.compute.cast(table["start_time"], pa.date32()), pa.scalar(day)))
            directory = f"{root}/{names.TASK_RUNS}/date={day.isoformat()}"
            fs.create_dir(directory, recursive=True)
            pq.write_table(part, f"{directory}/part-{uuid.uuid4().hex}.parquet", filesystem=fs)


def expected(files: list[tuple[list[dict[str, Any]], str]]) -> pd.DataFrame:
    """Plain pandas: the window's rows, one per run (final state, hook before api, latest end), aggregated."""
    rows = pd.DataFrame(
        [r for f, _layout in files for r in f],
        columns=SCHEMA.names,
    )
    rows = rows[(rows.start_time >= SINCE) & (rows.start_time < UNTIL)].copy()
    rows["unfinished"] = ~rows.state_type.isin(["COMPLETED", "FAILED", "CRASHED", "CANCELLED"])
    rows["api"] = rows.source == SOURCE_API
    rows = rows.sort_values(["unfinished", "api", "end_time"], ascending=[True, True, False], kind="stable")
    named = rows[rows.task_run_id.notna()].drop_duplicates("task_run_id")
    rows = pd.concat([named, rows[rows.task_run_id.isna()]])
    out = []
    for (flow, task), g in rows.groupby(["flow_name", "task_name"], dropna=False):
        d = pd.to_numeric(g.duration_s).dropna()
        out.append(
            {
                "flow_name": None if pd.isna(flow) else flow,
                "task_name": task,
                "runs": len(g),
                "failed": int(g.state_type.isin(["FAILED", "CRASHED"]).sum()),
                "retried": int((pd.to_numeric(g.run_count).fillna(1) > 1).sum()),
                "p95": float(np.percentile(d, 95)) if len(d) else None,
                "max": float(d.max()) if len(d) else None,
            }
        )
    return pd.DataFrame(out, columns=["flow_name", "task_name", "runs", "failed", "retried", "p95", "max"])


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    key = lambda f: f.assign(k=f.flow_name.fillna("\0") + "/" + f.task_name).sort_values("k").reset_index(drop=True)  # noqa: E731
    got, want = key(got), key(want)
    assert list(got.k) == list(want.k)
    for column in ("runs", "failed", "retried"):
        assert list(got[column].astype(int)) == list(want[column].astype(int)), column
    for column in ("p95", "max"):
        g, w = pd.to_numeric(got[column]).to_numpy(float), pd.to_numeric(want[column]).to_numpy(float)
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-9, equal_nan=True)


@given(files=stores())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_engine_counts_what_pandas_counts(files: list[tuple[list[dict[str, Any]], str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _write(pafs.LocalFileSystem(), tmp, files)
        store = so.HealthStore(tmp)
        want = expected(files)
        summary = summarize(store, SINCE, UNTIL)
        if summary is None:  # other writers' units in the window: HealthStore.read reads those (load_frames falls back)
            assert any(layout in ("ms", "ns") for f, layout in files if f)
        else:
            assert summary is not None
            _same(summary[BY_TASK], want)
        if not any(layout in ("ms", "ns") for f, layout in files if f):
            assert summary is not None  # the store's own layouts, old ones too: the engine reads them
        frames = hr.load_frames(store, SINCE, UNTIL)  # the engine or the fallback: the same numbers
        _same(
            frames[BY_TASK] if BY_TASK in frames else summarize_rows(frames[FAILED_ROWS], SINCE, UNTIL)[BY_TASK], want
        )
        report = hr.build_report(frames, SINCE, UNTIL)
        assert report.totals["tasks"] == want.runs.sum()
        assert report.totals["failed_tasks"] == want.failed.sum()
        assert report.totals["retried_tasks"] == want.retried.sum()
        assert len(report.failed_tasks) == min(10, int(want.failed.sum()))
        times = [t["time"] for t in report.failed_tasks]
        assert times == sorted(times, reverse=True)  # the most recent first


def test_an_empty_store_and_a_missing_table_summarise_to_nothing(tmp_path: Path) -> None:
    summary = summarize(so.HealthStore(str(tmp_path)), SINCE, UNTIL)
    assert summary is not None and summary[BY_TASK].empty and summary[FAILED_ROWS].empty
    assert (
        hr.build_report(hr.load_frames(so.HealthStore(str(tmp_path)), SINCE, UNTIL), SINCE, UNTIL).totals["tasks"] == 0
    )


@pytest.fixture
def s3() -> Iterator[tuple[pafs.S3FileSystem, dict[str, str]]]:
    port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bkt", method="PUT"), timeout=10).close()
        options = {"access_key": "k", "secret_key": "s", "endpoint_override": endpoint, "region": "us-east-1"}
        fs = pafs.S3FileSystem(**{**options, "endpoint_override": f"127.0.0.1:{port}"}, scheme="http")
        yield fs, options
    finally:
        moto.terminate()
        moto.wait()


@pytest.mark.slow  # moto in server mode: the slow tier's (not in the wheel's test-fast extra)
def test_an_s3_store_is_summarised_through_pyarrow_as_pandas_counts(
    s3: tuple[pafs.S3FileSystem, dict[str, str]],
) -> None:
    fs, options = s3
    rng = np.random.default_rng(3)
    rows = []
    for i in range(300):
        start = SINCE + timedelta(seconds=int(rng.integers(-3 * 3600, 33 * 3600)))
        first = {
            **dict.fromkeys(SCHEMA.names),
            "event_id": f"e{i}",
            "task_run_id": f"t{i}",
            "flow_name": f"f{i % 3}",
            "task_name": f"t{i % 5}",
            "state_type": ["COMPLETED", "FAILED", "RUNNING"][i % 3],
            "start_time": start,
            "end_time": start + timedelta(seconds=5),
            "duration_s": float(rng.exponential(3.0)),
            "run_count": int(i % 4 == 0) + 1,
            "source": SOURCE_HOOK,
        }
        rows.append(first)
        if i % 10 == 0:
            rows.append({**first, "event_id": f"a{i}", "source": SOURCE_API, "state_type": "COMPLETED"})
        if i % 13 == 0:
            rows.append(dict(first))
    files = [(rows[: len(rows) // 2], "us"), (rows[len(rows) // 2 :], "us")]
    _write(fs, "bkt/store", files)
    store = so.HealthStore("s3://bkt/store", storage_options=options)
    summary = summarize(store, SINCE, UNTIL, "f1")
    assert summary is not None
    want = expected(files)
    _same(summary[BY_TASK], want[want.flow_name == "f1"])
    report = hr.report_for(store, SINCE, UNTIL, days=None)
    assert report.totals["tasks"] == want.runs.sum() and report.totals["failed_tasks"] == want.failed.sum()


def test_a_window_too_large_for_the_engine_is_a_clear_error_not_a_row_by_row_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of memory in DuckDB raises ``ReportTooLarge`` (what to do in its message): the row-by-row fallback
    would need far more memory than DuckDB had (about 14 GB at 100 M rows)."""
    from prefect_synthobs.reports import health_query

    n = 200_000
    rng = np.random.default_rng(1)
    starts = pd.Timestamp(SINCE + timedelta(hours=1)) + pd.to_timedelta(rng.uniform(0, 20 * 3600, n), unit="s")
    so.HealthStore(str(tmp_path)).write(
        names.TASK_RUNS,
        pa.table(
            {
                **{name: pa.nulls(n, SCHEMA.field(name).type) for name in SCHEMA.names},
                "event_id": [f"e{i}" for i in range(n)],
                "task_run_id": [f"t{i}" for i in range(n)],
                "flow_name": ["f"] * n,
                "task_name": [f"task-{i % 5000}" for i in range(n)],
                "state_type": ["COMPLETED"] * n,
                "start_time": pa.array(starts.to_pydatetime(), SCHEMA.field("start_time").type),
                "end_time": pa.array(starts.to_pydatetime(), SCHEMA.field("end_time").type),
                "duration_s": rng.exponential(2.0, n),
                "source": [SOURCE_HOOK] * n,
            },
            schema=SCHEMA,
        ),
    )
    monkeypatch.setattr(health_query, "AGGREGATE_MEMORY_LIMIT", "1MB")
    with pytest.raises(health_query.ReportTooLarge, match="--since"):
        summarize(so.HealthStore(str(tmp_path)), SINCE, UNTIL, memory_limit="1MB")
    bounded = summarize
    monkeypatch.setattr(hr, "summarize", lambda *a, **k: bounded(*a, **k, memory_limit="1MB"))
    with pytest.raises(health_query.ReportTooLarge):  # load_frames does not fall back to reading rows
        hr.load_frames(so.HealthStore(str(tmp_path)), SINCE, UNTIL)


def test_synthobs_report_says_what_to_do_when_the_window_is_too_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect_synthobs import cli
    from prefect_synthobs.reports import health_query

    row = {**dict.fromkeys(SCHEMA.names), "event_id": "e", "task_run_id": "t", "start_time": SINCE, "tags": []}
    so.HealthStore(str(tmp_path)).write(names.TASK_RUNS, pa.Table.from_pylist([row], schema=SCHEMA))

    def too_large(*args: Any, **kwargs: Any) -> None:
        raise health_query.ReportTooLarge("synthobs: the health report's aggregates ran out of memory; use --since")

    monkeypatch.setattr(hr, "summarize", too_large)
    assert cli.main(["report", "--store", str(tmp_path)]) == 2  # one line, no traceback
    err = capsys.readouterr().err
    assert "ran out of memory" in err and "Traceback" not in err
