"""The report's charts tell the truth: the axis math (hypothesis), the refusal to mix score directions,
and what headless Chromium draws (each series' markers visible, even four equal points on one day).

Set ``SYNTHOBS_CHART_SHOTS=DIR`` to keep the browser's screenshots in DIR.
"""

from __future__ import annotations

import base64
import itertools
import math
import os
import re
import shutil
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

import pytest
from e2e.test_report_screenshot import browse
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_synthobs.catalog import UNIT_INTERVAL_METRICS
from prefect_synthobs.config.blocks import QualityGates
from prefect_synthobs.reports.charts import (
    LOWER_IS_BETTER_METRICS,
    MARKERS,
    PALETTE,
    data_uri,
    line_chart,
    score_direction,
    split_by_direction,
    y_axis,
)

SVG = "{http://www.w3.org/2000/svg}"
DAY = date(2026, 11, 1)
FLOWS = ["train-model", "generate-rows", "check-quality", "health-report"]
WIDTH = 640  # line_chart's default
PLOT = (58, 34, WIDTH - 16, 34 + 170)  # its plot area: left, top, right, bottom (the legend is below)

# -- the axis math --------------------------------------------------------------------------------

VALUES = st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=40)
LIMIT = st.none() | st.floats(-1e300, 1e300)  # beyond: refused (no room left for the other end)


def assert_ticks_inside(axis_lo: float, axis_hi: float, ticks: list[float]) -> None:
    assert ticks, "an axis has labelled ticks"
    assert ticks == sorted(set(ticks))
    assert all(axis_lo <= t <= axis_hi for t in ticks)


@given(VALUES, st.booleans())
@settings(max_examples=400, deadline=None)
def test_a_free_axis_holds_every_value(values: list[float], from_zero: bool) -> None:
    lo, hi, ticks = y_axis(values, from_zero=from_zero)
    assert math.isfinite(lo) and math.isfinite(hi) and lo < hi
    assert all(lo <= v <= hi for v in values)
    if from_zero:
        assert lo <= 0.0 <= hi
    assert_ticks_inside(lo, hi, ticks)


@given(VALUES, LIMIT, LIMIT, st.booleans())
@settings(max_examples=400, deadline=None)
def test_a_limit_given_is_the_axis_end_exactly(
    values: list[float], y_min: float | None, y_max: float | None, from_zero: bool
) -> None:
    if y_min is not None and y_max is not None and y_min >= y_max:
        with pytest.raises(ValueError, match="below y_max"):
            y_axis(values, y_min=y_min, y_max=y_max, from_zero=from_zero)
        return
    lo, hi, ticks = y_axis(values, y_min=y_min, y_max=y_max, from_zero=from_zero)
    assert math.isfinite(lo) and math.isfinite(hi) and lo < hi
    if y_min is not None:
        assert lo == y_min  # never widened, never rounded
    if y_max is not None:
        assert hi == y_max
    inside = [v for v in values if (y_min is None or v >= y_min) and (y_max is None or v <= y_max)]
    assert all(lo <= v <= hi for v in inside)  # a free end still makes room for the data
    assert_ticks_inside(lo, hi, ticks)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40), st.booleans())
@settings(max_examples=300, deadline=None)
def test_scores_in_the_unit_interval_never_get_an_axis_past_it(values: list[float], from_zero: bool) -> None:
    lo, hi, ticks = y_axis(values, from_zero=from_zero)
    assert 0.0 <= lo < hi <= 1.0
    assert all(lo <= v <= hi for v in values)
    assert_ticks_inside(lo, hi, ticks)


@pytest.mark.parametrize(
    ("values", "from_zero", "expected"),
    [
        ([0.93], False, (0.8, 1.0)),  # one score on its first day: room around it, never past 1 (was 0.6-1.6)
        ([1.0], False, (0.9, 1.0)),
        ([0.0], False, (0.0, 1.0)),
        ([0.0], True, (0.0, 1.0)),
        ([12.0, 12.0], True, (0.0, 15.0)),  # a constant duration: from zero, as before
        ([12.0, 12.0], False, (10.0, 14.0)),  # a constant outside [0, 1]: a tenth either side, rounded
        ([-3.0], False, (-3.4, -2.6)),
    ],
)
def test_a_single_or_constant_value_gets_a_sensible_axis(
    values: list[float], from_zero: bool, expected: tuple[float, float]
) -> None:
    lo, hi, _ = y_axis(values, from_zero=from_zero)
    assert (lo, hi) == pytest.approx(expected)


@given(
    st.dictionaries(
        st.sampled_from(FLOWS),
        st.lists(st.none() | st.floats(-10.0, 10.0), min_size=1, max_size=30),
        min_size=1,
    ),
    LIMIT,
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_every_value_is_a_marker_inside_the_plot(
    series: dict[str, list[float | None]], y_min: float | None, from_zero: bool
) -> None:
    days = [DAY + timedelta(days=k) for k in range(max(len(v) for v in series.values()))]
    root = ET.fromstring(line_chart("t", days, series, y_min=y_min, from_zero=from_zero))
    found = markers(root)
    assert len(found) == sum(v is not None for values in series.values() for v in values)
    for marker in found:
        x, y = centre(marker)
        assert 58 <= x <= WIDTH - 16 and 34 <= y <= 34 + 170  # the plot area: left, right, top, bottom


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.775, 0.92, 0.9], [0.75, 0.8, 0.85, 0.9, 0.95]),  # 0.95 - 0.75 is 0.2000000000000001: still 0.05 a step
        ([0.91, 0.95], [0.91, 0.92, 0.93, 0.94, 0.95]),
        ([0.0, 1.0], [0.0, 0.25, 0.5, 0.75, 1.0]),
        ([3.0, 97.0], [0.0, 25.0, 50.0, 75.0, 100.0]),
    ],
)
def test_a_fitted_axis_is_labelled_at_both_ends_and_between(values: list[float], expected: list[float]) -> None:
    lo, hi, ticks = y_axis(values, from_zero=False)
    assert ticks == pytest.approx(expected)
    assert (lo, hi) == pytest.approx((expected[0], expected[-1]))


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="below y_max"):
        y_axis([0.5], y_min=1.0, y_max=1.0)
    with pytest.raises(ValueError, match="finite"):
        y_axis([0.5], y_max=math.inf)
    with pytest.raises(ValueError, match="within"):
        y_axis([0.5], y_min=1.7e308)


# -- scores of opposite directions never share an axis ---------------------------------------------


def test_lower_is_better_scores_are_the_max_gates() -> None:
    gated_max = {name.removeprefix("max_") for name in QualityGates.model_fields if name.startswith("max_")}
    assert gated_max == LOWER_IS_BETTER_METRICS
    assert score_direction("exact_match_rate") == "lower"
    assert score_direction("membership_inference_auc") == "lower"
    assert score_direction("overall") == "higher"
    assert score_direction("ks_complement:age") == "higher"  # a per-column score: its metric's direction
    assert score_direction("my_own_metric") == "higher"  # record_quality: higher is better
    assert split_by_direction(["overall", "exact_match_rate", "ks_complement:age", "membership_inference_auc"]) == {
        "higher": ["overall", "ks_complement:age"],
        "lower": ["exact_match_rate", "membership_inference_auc"],
    }
    assert all(score_direction(m) == "higher" for m in UNIT_INTERVAL_METRICS - LOWER_IS_BETTER_METRICS)


def test_a_chart_refuses_to_mix_directions() -> None:
    days = [DAY, DAY + timedelta(days=1)]
    with pytest.raises(ValueError, match="exact_match_rate cannot share an axis"):
        line_chart("quality", days, {"overall": [0.9, 0.91], "exact_match_rate": [0.01, 0.0]})
    with pytest.raises(ValueError, match="lower is better"):
        line_chart("privacy", days, {"column_shapes:age": [0.9, 0.8]}, direction="lower")
    # one direction, or series that are not scores (flows, tables): drawn
    assert line_chart("q", days, {"overall": [0.9, 0.91], "ks_complement:x": [0.8, 0.7]}, direction="higher")
    assert line_chart("q", days, {"customers": [0.9, 0.91], "orders": [0.8, 0.7]})
    assert line_chart("privacy", days, {"exact_match_rate": [0.01, 0.0]}, direction="lower")


def test_the_axis_says_which_way_is_better() -> None:
    root = ET.fromstring(line_chart("privacy", [DAY], {"exact_match_rate": [0.02]}, direction="lower"))
    assert "lower is better" in [t.text for t in root.iter(f"{SVG}text")]
    assert root.findtext(f"{SVG}title") == "privacy"  # the accessible name, besides the drawn title


# -- markers ----------------------------------------------------------------------------------------


def markers(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter() if e.get("class") == "marker"]


def centre(marker: ET.Element) -> tuple[float, float]:
    found = re.fullmatch(r"translate\(([-\d.]+) ([-\d.]+)\)", marker.get("transform", ""))
    assert found is not None, marker.attrib
    return float(found.group(1)), float(found.group(2))


def half_width(marker: ET.Element) -> float:
    if marker.tag == f"{SVG}circle":
        return float(marker.get("r", "nan"))
    return max(abs(float(p.split(",")[0])) for p in marker.get("points", "").split())


def shape_of(marker: ET.Element) -> str:
    """The marker's outline around its centre: the same shape at another place reads the same."""
    return marker.get("points") or "circle"


def test_four_series_on_one_day_at_one_value_are_four_markers_side_by_side() -> None:
    root = ET.fromstring(line_chart("Success rate", [DAY], {f: [1.0] for f in FLOWS}, y_min=0.0, y_max=1.0))
    found = markers(root)
    assert [m.get("fill") for m in found] == list(PALETTE[:4])  # one per series, a series' colour each
    assert len({shape_of(m) for m in found}) == 4  # and a shape each
    xs = sorted(centre(m)[0] for m in found)
    assert all(b - a > half_width(m) * 2 for a, b, m in zip(xs, xs[1:], found, strict=False))  # no overlap
    assert len({round(centre(m)[1], 1) for m in found}) == 1  # at the same height: the value is not bent


def test_a_series_with_one_point_shows_and_lines_join_only_consecutive_days() -> None:
    days = [DAY + timedelta(days=k) for k in range(5)]
    root = ET.fromstring(line_chart("t", days, {"a": [None, None, 0.5, None, None], "b": [1, 2, None, 4, 5]}))
    assert len(markers(root)) == 1 + 4
    runs = [len(p.get("points", "").split()) for p in root.findall(f"{SVG}polyline")]
    assert runs == [2, 2]  # b's two runs; a's lone point is a marker, not a line


def test_a_fixed_axis_is_never_widened_and_points_beyond_it_are_hollow() -> None:
    days = [DAY, DAY + timedelta(days=1)]
    root = ET.fromstring(line_chart("t", days, {"a": [0.5, 1.3]}, y_min=0.0, y_max=1.0))
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks[0] == "0" and ticks[-1] == "1"
    inside, beyond = markers(root)
    assert inside.get("fill") == PALETTE[0] and beyond.get("fill") == "#ffffff"  # drawn at the top, hollow


def test_marker_shapes_follow_the_colours() -> None:
    assert len(MARKERS) == len(PALETTE) == len(set(MARKERS))
    days = [DAY]
    root = ET.fromstring(line_chart("t", days, {f"s{k}": [float(k)] for k in range(len(PALETTE))}))
    assert len({shape_of(m) for m in markers(root)}) == len(PALETTE)


# -- in a real browser ------------------------------------------------------------------------------

LONG = [DAY - timedelta(days=91 - k) for k in range(92)]  # the report's longest window


def long_series() -> dict[str, list[float | None]]:
    """Four flows over 92 days: a rise, a dip, gaps, and days where all four are at 100 %."""
    out: dict[str, list[float | None]] = {}
    for k, flow in enumerate(FLOWS):
        values: list[float | None] = []
        for i in range(len(LONG)):
            if i % 10 == 0:
                values.append(1.0)  # everyone at 100 % that day
            elif (i + 3 * k) % 17 == 0:
                values.append(None)  # no run that day
            else:
                values.append(round(0.6 + 0.4 * abs(math.sin((i + 9 * k) / 11)), 3))
        out[flow] = values
    return out


CHARTS = {
    "first-day": line_chart(
        "Overall quality score per table per day",
        [DAY],
        {f: [0.93 + 0.01 * k] for k, f in enumerate(FLOWS)},
        from_zero=False,
    ),
    "same-day": line_chart("Success rate per flow per day", [DAY], {f: [1.0] for f in FLOWS}, y_min=0.0, y_max=1.0),
    "one-table-first-day": line_chart(
        "Overall quality score per table per day", [DAY], {"customers": [0.93]}, from_zero=False
    ),
    "two-weeks-all-100": line_chart(
        "Success rate per flow per day", LONG[-14:], {f: [1.0] * 14 for f in FLOWS}, y_min=0.0, y_max=1.0
    ),
    "long-window": line_chart("Success rate per flow per day", LONG, long_series(), y_min=0.0, y_max=1.0),
    "lower-is-better": line_chart(
        "Privacy scores per day (customers)",
        LONG[-14:],
        {
            "exact_match_rate": [0.0, 0.0, 0.01, None, 0.0, 0.0, 0.02, 0.0, 0.0, None, None, 0.01, 0.0, 0.0],
            "membership_inference_auc": [
                0.52,
                0.51,
                0.55,
                None,
                0.5,
                0.53,
                0.58,
                0.52,
                0.51,
                0.5,
                None,
                0.54,
                0.5,
                0.52,
            ],
        },
        y_min=0.0,
        y_max=1.0,
        direction="lower",
    ),
}


def close(pixel: tuple[int, ...], colour: str) -> bool:
    target = (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))
    return all(abs(a - b) <= 24 for a, b in zip(pixel, target, strict=True))


def centres_shown(png: Path, svg: str) -> list[bool]:
    """For each marker of the chart: is the screen at its centre its colour (drawn, and not covered)?"""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        return [
            close(rgb.getpixel((math.floor(x), math.floor(y))), m.get("fill", ""))
            for m in markers(ET.fromstring(svg))
            for x, y in [centre(m)]
        ]


def region_pixels(png: Path, box: tuple[int, int, int, int], colour: str) -> int:
    """Pixels within ``box`` (left, top, right, bottom) close to ``colour``."""
    from PIL import Image

    with Image.open(png) as image:
        return sum(1 for p in image.convert("RGB").crop(box).getdata() if close(p, colour))


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    """Each chart as the Prefect UI shows it (an ``<img>`` with a data URI), screenshotted alone:
    name → (PNG, the chart's height)."""
    tmp = tmp_path_factory.mktemp("charts")
    out = {}
    for name, svg in CHARTS.items():
        height = int(ET.fromstring(svg).get("height", "0"))
        page = tmp / f"{name}.html"
        page.write_text(f'<html><body style="margin:0"><img alt="{name}" src="{data_uri(svg)}"></body></html>')
        png = tmp / f"{name}.png"
        dom = browse(page.as_uri(), tmp, screenshot=png, size=f"{WIDTH},{height}", expect="<img")
        shown = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', dom)
        assert shown is not None and base64.b64decode(shown.group(1)).decode() == svg
        out[name] = (png, height)
        if keep := os.environ.get("SYNTHOBS_CHART_SHOTS"):
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(png, Path(keep) / png.name)
    return out


@pytest.mark.slow
def test_the_first_day_chart_keeps_a_scores_axis(screenshots: dict[str, tuple[Path, int]]) -> None:
    root = ET.fromstring(CHARTS["first-day"])
    ticks = [float(t.text or "nan") for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks[-1] <= 1.0 and ticks[0] >= 0.5  # not 0.6-1.6: nothing past a score's bound
    png, _ = screenshots["first-day"]
    assert centres_shown(png, CHARTS["first-day"]) == [True] * 4  # every table's marker is on the screen


@pytest.mark.slow
def test_one_score_on_its_first_day_is_not_drawn_on_a_0_6_to_1_6_axis(
    screenshots: dict[str, tuple[Path, int]],
) -> None:
    root = ET.fromstring(CHARTS["one-table-first-day"])
    ticks = [float(t.text or "nan") for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks[0] == pytest.approx(0.8) and ticks[-1] == pytest.approx(1.0)
    png, _ = screenshots["one-table-first-day"]
    assert centres_shown(png, CHARTS["one-table-first-day"]) == [True]  # the lone point is on the screen


@pytest.mark.slow
def test_a_lower_is_better_chart_says_so_in_its_margin(screenshots: dict[str, tuple[Path, int]]) -> None:
    root = ET.fromstring(CHARTS["lower-is-better"])
    assert "lower is better" in [t.text for t in root.iter(f"{SVG}text")]
    png, _ = screenshots["lower-is-better"]
    margin = (0, 34, 22, 204)  # left of the ticks: the rotated label, nothing in a chart without a direction
    assert region_pixels(png, margin, "#4b5563") >= 15
    assert region_pixels(screenshots["same-day"][0], margin, "#4b5563") == 0
    assert region_pixels(png, PLOT, PALETTE[0]) >= 200 and region_pixels(png, PLOT, PALETTE[1]) >= 200


@pytest.mark.slow
def test_four_equal_points_on_one_day_are_four_visible_markers(screenshots: dict[str, tuple[Path, int]]) -> None:
    png, _ = screenshots["same-day"]
    assert len(markers(ET.fromstring(CHARTS["same-day"]))) == 4
    assert centres_shown(png, CHARTS["same-day"]) == [True] * 4  # none hides another
    seen = {colour: region_pixels(png, PLOT, colour) for colour in PALETTE[:4]}
    assert all(n >= 20 for n in seen.values()), seen  # whole markers, not slivers


@pytest.mark.slow
def test_four_flows_at_100_percent_for_two_weeks_are_four_rows_of_markers(
    screenshots: dict[str, tuple[Path, int]],
) -> None:
    found = markers(ET.fromstring(CHARTS["two-weeks-all-100"]))
    xs = sorted(centre(m)[0] for m in found)
    assert all(b - a >= 2 * half_width(found[0]) for a, b in itertools.pairwise(xs))  # all 56 apart
    png, _ = screenshots["two-weeks-all-100"]
    assert centres_shown(png, CHARTS["two-weeks-all-100"]) == [True] * 56  # every flow, every day


@pytest.mark.slow
def test_a_long_window_draws_every_series(screenshots: dict[str, tuple[Path, int]]) -> None:
    root = ET.fromstring(CHARTS["long-window"])
    values = long_series()
    assert len(markers(root)) == sum(v is not None for s in values.values() for v in s)
    labels = [
        t
        for t in root.iter(f"{SVG}text")
        if t.get("text-anchor") == "middle" and re.fullmatch(r"\d\d-\d\d", t.text or "")
    ]
    assert 8 <= len(labels) <= 13  # dates stay readable (one label every few days)
    png, _ = screenshots["long-window"]
    for colour in PALETTE[:4]:
        assert region_pixels(png, PLOT, colour) >= 200, colour
