"""Single-column scores and the Diagnostic report, against SDMetrics 0.29 and 0.32 (to 1e-9)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ref_columns import text_dates
from sdmetrics_reference import load

from prefect_synthobs.quality import (
    boundary_adherence,
    category_adherence,
    category_coverage,
    diagnostic_report,
    key_uniqueness,
    missing_value_similarity,
    range_coverage,
    statistic_similarity,
)

HERE = Path(__file__).resolve().parents[1] / "reference"
VERSIONS = {
    p.stem.rsplit("_sdmetrics_", 1)[1]: json.loads(p.read_text()) for p in HERE.glob("columns_sdmetrics_*.json")
}
CASES = [(v, name) for v, ref in sorted(VERSIONS.items()) for name in sorted(ref["datasets"])]


def frames(name: str, metadata: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    if name == "keyed_text":
        return text_dates(*load("keyed", metadata))
    return load(name, metadata)


def close(ours: float, theirs: float | None) -> bool:
    if theirs is None:
        return math.isnan(ours)
    return abs(ours - theirs) <= 1e-9


def test_reference_versions_are_there() -> None:
    assert {"0_29", "0_32"} <= set(VERSIONS)


@pytest.mark.parametrize(("version", "name"), CASES)
def test_single_column_scores_equal_sdmetrics(version: str, name: str) -> None:
    ref = VERSIONS[version]["datasets"][name]
    real, synthetic = frames(name, ref["metadata"])
    functions = {
        "missing_value_similarity": missing_value_similarity,
        "range_coverage": range_coverage,
        "boundary_adherence": boundary_adherence,
        "category_coverage": category_coverage,
        "category_adherence": category_adherence,
        "key_uniqueness": key_uniqueness,
        "statistic_similarity_mean": lambda r, s: statistic_similarity(r, s, "mean"),
        "statistic_similarity_median": lambda r, s: statistic_similarity(r, s, "median"),
        "statistic_similarity_std": lambda r, s: statistic_similarity(r, s, statistic="std"),
    }
    checked = 0
    for column, expected in ref["columns"].items():
        for metric, value in expected.items():
            ours = functions[metric](real[column], synthetic[column])
            assert close(ours, value), (column, metric, ours, value)
            checked += 1
    assert checked >= len(ref["columns"])


@pytest.mark.parametrize(("version", "name"), CASES)
def test_diagnostic_report_equals_sdmetrics(version: str, name: str) -> None:
    ref = VERSIONS[version]["datasets"][name]
    real, synthetic = frames(name, ref["metadata"])
    report = diagnostic_report(real, synthetic, ref["metadata"])
    expected = ref["diagnostic"]
    ours_details = [
        (row["Column"], row["Metric"], row["Score"])
        for row in report.details.to_dict("records")
        if version != "0_29" or row["Metric"] != "DatetimeFormatAdherence"  # 0.29 has no format check
    ]
    theirs = [(d["Column"], d["Metric"], d["Score"]) for d in expected["details"]]
    assert [(c, m) for c, m, _ in ours_details] == [(c, m) for c, m, _ in theirs]
    for (_, metric, ours), (_, _, value) in zip(ours_details, theirs, strict=True):
        assert close(ours, value), (metric, ours, value)
    if version == "0_29" and "DatetimeFormatAdherence" in set(report.details["Metric"]):
        return  # the property means differ by that check, compared row by row above
    for prop, value in expected["properties"].items():
        assert close(report.properties[prop], value), (prop, report.properties[prop], value)
    assert close(report.overall, expected["overall"])


def test_properties_of_the_scores() -> None:
    real = pd.Series([0.0, 5.0, 10.0])
    assert range_coverage(real, pd.Series([2.0, 10.0])) == pytest.approx(0.8)
    assert math.isnan(range_coverage(pd.Series([1.0, 1.0]), pd.Series([1.0])))
    assert boundary_adherence(real, pd.Series([5.0, 11.0, None])) == pytest.approx(1 / 3)
    assert boundary_adherence(pd.Series([0.0, None, 10.0]), pd.Series([5.0, 11.0, None])) == 0.5
    assert category_coverage(pd.Series(["a", "b", None]), pd.Series(["a", "c"])) == 0.5
    assert category_adherence(pd.Series(["a", "b"]), pd.Series(["a", "c", None, "b"])) == 0.5
    assert missing_value_similarity(pd.Series([1, None]), pd.Series([1, 2, 3, 4])) == 0.5
    assert statistic_similarity(real, pd.Series([1.0, 6.0, 11.0])) == pytest.approx(0.9)
    assert statistic_similarity(real, pd.Series([100.0])) == 0.0
    assert key_uniqueness(pd.Series([1, 2, 3]), pd.Series([1, 1, None, 4])) == 0.5
    composite = pd.DataFrame({"a": [1, 1, 2], "b": ["x", "y", "x"]})
    assert key_uniqueness(composite, composite) == 1.0
    with pytest.raises(ValueError, match="statistic must be"):
        statistic_similarity(real, real, "mode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Series"):
        range_coverage(pd.DataFrame({"a": [1]}), real)  # type: ignore[arg-type]


def test_diagnostic_report_rejects_bad_input_and_checks_a_composite_key() -> None:
    real = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "v": [0.5, 1.5]})
    synthetic = pd.DataFrame({"a": [1, 1], "b": ["x", "x"], "v": [0.7, 9.0]})
    meta = {
        "columns": {"a": {"sdtype": "id"}, "b": {"sdtype": "id"}, "v": {"sdtype": "numerical"}},
        "primary_key": ["a", "b"],
    }
    report = diagnostic_report(real, synthetic, meta)
    assert report.details.iloc[0]["Metric"] == "KeyUniqueness" and report.details.iloc[0]["Score"] == 0.5
    assert report.properties == {"Data Validity": 0.5, "Data Structure": 1.0}
    with pytest.raises(ValueError, match="missing from the synthetic data"):
        diagnostic_report(real, synthetic.drop(columns="v"), meta)
    with pytest.raises(ValueError, match="DataFrame"):
        diagnostic_report(real, None, meta)  # type: ignore[arg-type]


@pytest.mark.slow  # 100k rows: the slow tier
def test_diagnostic_report_100k_rows_by_20_columns_runs() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    data = {f"n{i}": rng.normal(size=n) for i in range(10)}
    data.update({f"c{i}": rng.choice(["a", "b", "c"], n).astype(object) for i in range(10)})
    real = pd.DataFrame(data)
    meta = {"columns": {c: {"sdtype": "numerical" if c[0] == "n" else "categorical"} for c in real}}
    report = diagnostic_report(real, real.sample(frac=1.0, random_state=1), meta)
    assert report.overall == 1.0
