"""Timezone-aware datetime columns: scored as their UTC instants, as SDMetrics 0.29 / 0.32 score them.

The multi-table reports on such columns are compared with SDMetrics in ``test_multi_table``
(the ``shop_tz`` reference dataset); here the single-table ``quality_report`` is checked
against a value recorded from SDMetrics, and both against the same data made naive in UTC.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from ref_multi_table import frames, load, reference

from prefect_synthobs.quality import multi_table_diagnostic_report, multi_table_quality_report, quality_report
from prefect_synthobs.scores.stats import numeric_values

META = {"columns": {"t": {"sdtype": "datetime"}, "x": {"sdtype": "numerical"}, "c": {"sdtype": "categorical"}}}

# SDMetrics 0.29.0 and 0.32.0 (pandas 2.3.3), QualityReport().generate(*_tables(), META).get_score(): the
# same from both, and the same as on the data made naive in UTC (0.9517969735482763 on the wall clock)
SDMETRICS_OVERALL = 0.9517598074309002


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """200 rows around the Paris spring-forward night (2024-03-31), so UTC and wall clock differ."""
    rng = np.random.default_rng(5)
    base = pd.Timestamp("2024-03-30", tz="Europe/Paris").value
    out = []
    for shift in (0, 20_000):
        ns = base + (rng.integers(0, 86400 * 5, 200) + shift) * 10**9
        t = pd.Series(pd.to_datetime(ns, utc=True).tz_convert("Europe/Paris"))
        x = ns / 1e14 + rng.normal(size=200)
        out.append(pd.DataFrame({"t": t, "x": x, "c": rng.choice(list("ab"), 200).astype(object)}))
    return out[0], out[1]


def _naive(df: pd.DataFrame, *, utc: bool = True) -> pd.DataFrame:
    t = df["t"].dt.tz_convert("UTC") if utc else df["t"]
    out: pd.DataFrame = df.assign(t=t.dt.tz_localize(None))
    return out


def test_numeric_values_of_an_aware_column_are_its_utc_instants() -> None:
    wall = pd.Series([pd.Timestamp("2024-03-31 01:30"), pd.NaT, pd.Timestamp("2024-03-31 03:30")])
    aware = wall.dt.tz_localize("Europe/Paris")
    values = numeric_values(aware)
    expected = numeric_values(aware.dt.tz_convert("UTC").dt.tz_localize(None))
    np.testing.assert_array_equal(values, expected)
    assert math.isnan(values[1])
    assert values[2] - values[0] == 3600 * 1e9  # one hour apart: the clocks went forward at 02:00
    assert numeric_values(aware, datetime_unit=1e9)[0] == pd.Timestamp("2024-03-31 00:30").value / 1e9


def test_quality_report_scores_aware_datetimes_as_sdmetrics() -> None:
    real, synthetic = _tables()
    report = quality_report(real, synthetic, META)
    assert report.overall == pytest.approx(SDMETRICS_OVERALL, abs=1e-9)
    naive = quality_report(_naive(real), _naive(synthetic), META)
    assert report.overall == naive.overall
    pd.testing.assert_frame_equal(report.column_shapes, naive.column_shapes)
    wall_clock = quality_report(_naive(real, utc=False), _naive(synthetic, utc=False), META)
    assert abs(wall_clock.overall - report.overall) > 1e-6  # the test can tell instants from wall clocks


def test_multi_table_reports_score_aware_datetimes_as_their_instants() -> None:
    ref = reference("0_32")["datasets"]["shop_tz"]
    real, synthetic = frames("shop_tz", ref["metadata"])
    assert isinstance(real["orders"]["ordered_at"].dtype, pd.DatetimeTZDtype)
    assert str(real["orders"]["ordered_at"].dt.tz) != str(synthetic["orders"]["ordered_at"].dt.tz)
    quality = multi_table_quality_report(real, synthetic, ref["metadata"])
    assert quality.overall == pytest.approx(ref["quality"]["overall"], abs=1e-9)
    # the instants are shop's: the quality numbers are the naive data's
    plain = multi_table_quality_report(*load("shop", ref["metadata"]), ref["metadata"])
    assert quality.properties == pytest.approx(plain.properties, abs=1e-12)
    diagnostic = multi_table_diagnostic_report(real, synthetic, ref["metadata"])
    assert diagnostic.overall == pytest.approx(ref["diagnostic"]["overall"], abs=1e-9)
    # different zones in real and synthetic are different dtypes, which SDMetrics' Data Structure counts
    assert diagnostic.properties["Data Structure"] < 1.0
