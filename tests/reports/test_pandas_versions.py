"""synthobs' own pandas calls raise no FutureWarning or DeprecationWarning, on pandas 2 (SDV's) as on 3.

SDV and SDMetrics pin pandas < 3, so every SDV user runs synthobs on pandas 2.x. There the report's
frames are what trips pandas' deprecations: the store's text columns come back as categoricals (grouping
them without ``observed=`` warned, and grouped in the categories no run of the window has: a flow with no
run, whose success rate divided by zero), booleans with gaps come back as object columns (``fillna`` on
them warned), and a multi-table report concatenates empty details. These tests build exactly those
frames and run the pure functions with synthobs' warnings made errors; they run in whichever environment
runs them (the fast tier runs in both).
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from report_history import FLOWS, fill_history

import prefect_synthobs as so
from prefect_synthobs import catalog as names
from prefect_synthobs.reports import health as hr
from prefect_synthobs.scores.fidelity import contingency_similarity
from prefect_synthobs.scores.multi_table import multi_table_quality_report
from prefect_synthobs.scores.relationships import children_per_parent

UNTIL = datetime(2026, 11, 20, 15, 30, tzinfo=timezone.utc)
OURS = r"prefect_synthobs(\.|$)"  # warnings pandas attributes to synthobs' code (its stack level)


@contextmanager
def our_warnings_are_errors() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("error", category=FutureWarning, module=OURS)
        warnings.filterwarnings("error", category=DeprecationWarning, module=OURS)
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> so.HealthStore:
    url = str(tmp_path_factory.mktemp("pandas-versions") / "store")
    fill_history(url, UNTIL, days=3)
    # checks without a gate: ``passed`` is null there, so the column reads back as object booleans with gaps
    so.HealthStore(url).write(
        names.QUALITY_CHECKS,
        [
            {
                "event_id": uuid.uuid4().hex,
                "time": UNTIL - timedelta(hours=h),
                "flow_name": "quality-check",
                "table_name": "customers",
                "model_id": f"GaussianCopulaSynthesizer_{h}",
                "model_type": "gaussian_copula",
                "metric": "overall",
                "score": 0.9,
                "threshold": None,
                "passed": None,
            }
            for h in (1, 2)
        ],
    )
    return so.HealthStore(url)


def test_the_store_gives_the_frames_pandas_2_warns_about(store: so.HealthStore) -> None:
    frames = hr.load_frames(store, UNTIL - timedelta(hours=6), UNTIL, FLOWS[0])
    runs = frames[names.FLOW_RUNS]
    assert isinstance(runs.flow_name.dtype, pd.CategoricalDtype) and isinstance(runs.kind.dtype, pd.CategoricalDtype)
    # categories no run of the frame has: grouping on them must not make empty groups
    assert set(runs.flow_name.astype(object)) == {FLOWS[0]} and set(runs.flow_name.cat.categories) == set(FLOWS)
    passed = hr.load_frames(store, UNTIL - timedelta(hours=6), UNTIL, None)[names.QUALITY_CHECKS].passed
    assert passed.dtype == object and passed.isna().any() and passed.notna().any()  # booleans with gaps


@pytest.mark.parametrize("flow_name", [None, FLOWS[0]])
@pytest.mark.parametrize("hours", [6, 72])
def test_the_report_raises_no_warning_and_lists_only_flows_that_ran(
    store: so.HealthStore, flow_name: str | None, hours: int
) -> None:
    since = UNTIL - timedelta(hours=hours)
    with our_warnings_are_errors():
        report = hr.report_for(store, since, UNTIL, flow_name, days=3)
        text = hr.overview_markdown(report)
    runs = store.read(names.FLOW_RUNS)
    runs = runs[(runs.start_time >= since) & (runs.start_time < UNTIL)]
    if flow_name is not None:
        runs = runs[runs.flow_name == flow_name]
    # one row per flow and per kind that ran in the window: none for a category without a run
    assert sorted(r["flow"] for r in report.flows) == sorted(set(runs.flow_name))
    assert sorted(r["kind"] for r in report.overview) == sorted(set(runs.kind))
    assert all(r["runs"] > 0 for r in [*report.flows, *report.overview])
    assert sum(r["runs"] for r in report.flows) == len(runs)
    assert "synthobs health" in text
    models = {r["model_id"]: r for r in report.models if r.get("model_id")}
    if flow_name in (None, "quality-check") and models:  # the checks without a gate have no pass rate
        assert all(r["pass_rate"] is None for k, r in models.items() if k.startswith("GaussianCopulaSynthesizer_"))


@pytest.mark.parametrize(
    ("parents", "children"),
    [
        (["a", "b", None, "c"], ["a", "a", None, "b", "zz"]),
        ([1, 2, None, 3], [1, 1, None, 2, 99]),  # object integers with a gap: pandas 2 downcast them, warning
    ],
)
def test_children_per_parent_counts_with_gaps_in_object_keys(parents: list[object], children: list[object]) -> None:
    with our_warnings_are_errors():
        counts = children_per_parent(pd.Series(parents, dtype=object), pd.Series(children, dtype=object))
    assert counts.tolist() == [2.0, 1.0, 1.0, 0.0]  # a missing child key counts for the missing parent key


def test_a_multi_table_report_with_an_empty_table_keeps_numeric_scores() -> None:
    rng = np.random.default_rng(0)
    parents = pd.DataFrame({"id": range(50), "age": rng.normal(40, 10, 50)})
    children = pd.DataFrame({"id": range(200), "parent_id": rng.integers(0, 50, 200), "amount": rng.gamma(2, 3, 200)})
    meta = {
        "tables": {
            "parents": {"primary_key": "id", "columns": {"id": {"sdtype": "id"}, "age": {"sdtype": "numerical"}}},
            "children": {
                "primary_key": "id",
                "columns": {"id": {"sdtype": "id"}, "parent_id": {"sdtype": "id"}, "amount": {"sdtype": "numerical"}},
            },
            "notes": {"columns": {"id": {"sdtype": "id"}}},  # nothing scored: its details are empty
        },
        "relationships": [
            {
                "parent_table_name": "parents",
                "parent_primary_key": "id",
                "child_table_name": "children",
                "child_foreign_key": "parent_id",
            }
        ],
    }
    real = {"parents": parents, "children": children, "notes": pd.DataFrame({"id": range(3)})}
    synthetic = {k: v.sample(frac=1.0, random_state=1).reset_index(drop=True) for k, v in real.items()}
    with our_warnings_are_errors():
        report = multi_table_quality_report(real, synthetic, meta)
    shapes = report.details["Column Shapes"]
    assert pd.api.types.is_float_dtype(shapes["Score"]) and shapes["Score"].notna().all()  # not object
    assert set(shapes["Table"]) == {"parents", "children"}
    assert 0 <= report.overall <= 1


def test_contingency_of_categoricals_counts_only_seen_cells() -> None:
    cats = pd.CategoricalDtype(["x", "y", "never"])
    real = pd.DataFrame(
        {"a": pd.Series(["x", "y", "x", "y"], dtype=cats), "b": pd.Series(["x", "x", "y", "y"], dtype=cats)}
    )
    with our_warnings_are_errors():
        same = contingency_similarity(real, real.copy())
        half = contingency_similarity(real, real.assign(b=real.a))
    assert same == pytest.approx(1.0)
    assert half == pytest.approx(0.5)  # the same as the frames as object columns
    assert half == pytest.approx(contingency_similarity(real.astype(object), real.assign(b=real.a).astype(object)))


def test_the_filter_makes_a_warning_raised_in_synthobs_code_an_error() -> None:
    """What ``our_warnings_are_errors`` (and the fast tier's filterwarnings) catch: a warning attributed to
    a synthobs module, as pandas attributes its deprecations to the caller's line; not one of pandas' own."""
    code = compile("import warnings\nwarnings.warn('deprecated', FutureWarning)", "health.py", "exec")
    with our_warnings_are_errors(), pytest.raises(FutureWarning):
        exec(code, {"__name__": "prefect_synthobs.reports.health"})
    with our_warnings_are_errors(), pytest.warns(FutureWarning):
        exec(code, {"__name__": "pandas.core.frame"})
    if pd.__version__.startswith("2."):  # the very call the report made on pandas 2
        frame = pd.DataFrame({"k": pd.Categorical(["a"], categories=["a", "b"]), "v": [1]})
        grouped = compile("frame.groupby('k').v.sum()", "health.py", "exec")
        with our_warnings_are_errors(), pytest.raises(FutureWarning, match="observed=False"):
            exec(grouped, {"__name__": "prefect_synthobs.reports.health", "frame": frame})
