"""The report's pictures: sparklines and SVG line charts (pure text, checked as parsed XML)."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from prefect_synthobs.reports.charts import (
    MAX_SERIES,
    NO_VALUE,
    PALETTE,
    data_uri,
    line_chart,
    markdown_image,
    sparkline,
)

SVG = "{http://www.w3.org/2000/svg}"
DAYS = [date(2026, 11, 1) + timedelta(days=k) for k in range(7)]


def test_sparkline_maps_the_range_onto_eight_levels() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0, None, float("nan"), 0.0]) == f"█{NO_VALUE}{NO_VALUE}▁"
    assert sparkline([0.5, 0.5]) == "▄▄"  # no spread: mid height, not a fake trend
    assert sparkline([]) == ""
    assert sparkline([None, None]) == NO_VALUE * 2


def test_sparkline_on_a_fixed_scale() -> None:
    # a success rate between 90 % and 100 % drawn on 0..1 stays near the top
    assert sparkline([0.9, 1.0], 0.0, 1.0) == "▇█"
    assert sparkline([2.0, -1.0], 0.0, 1.0) == "█▁"  # clipped to the scale


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def marker_ys(root: ET.Element) -> list[float]:
    """Where each point's marker sits (``translate(x y)``), top to bottom of the picture."""
    return [
        float(e.get("transform", "").removeprefix("translate(").rstrip(")").split()[1])
        for e in root.iter()
        if e.get("class") == "marker"
    ]


def test_a_line_chart_is_valid_svg_with_a_line_and_markers_per_series() -> None:
    svg = line_chart("p95 (s)", DAYS, {"a": [1, 2, 3, 4, 5, 6, 7], "b": [7, 6, 5, 4, 3, 2, 1]})
    root = parse(svg)
    lines = root.findall(f"{SVG}polyline")
    assert [line.get("stroke") for line in lines] == [PALETTE[0], PALETTE[1]]
    assert all(len(line.get("points", "").split()) == 7 for line in lines)
    assert len(marker_ys(root)) == 14
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "p95 (s)" in texts and "a" in texts and "b" in texts
    assert "11-01" in texts and "11-07" in texts  # the first and last day are labelled


def test_a_rising_series_is_drawn_rising() -> None:
    root = parse(line_chart("t", DAYS, {"a": [1, 2, 3, 4, 5, 6, 7]}))
    points = [tuple(map(float, p.split(","))) for p in root.find(f"{SVG}polyline").get("points").split()]  # type: ignore[union-attr]
    xs, ys = zip(*points, strict=True)
    assert list(xs) == sorted(xs)
    assert list(ys) == sorted(ys, reverse=True)  # SVG's y grows downwards


def test_days_without_a_value_break_the_line() -> None:
    root = parse(line_chart("t", DAYS, {"a": [1, 2, None, 4, 5, None, 7]}))
    runs = [len(p.get("points", "").split()) for p in root.findall(f"{SVG}polyline")]
    assert runs == [2, 2]  # the lone last point is a dot, not a line
    assert len(marker_ys(root)) == 5


def test_names_are_escaped_and_long_ones_shortened() -> None:
    hostile = '<script>alert("x")</script> & a very long flow name indeed'
    svg = line_chart("<b>title</b>", DAYS, {hostile: [1] * 7})
    root = parse(svg)  # still well-formed XML
    assert "<script>" not in svg
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert "<b>title</b>" in texts
    # cut in the middle: the end (what tells two models of one type apart) stays
    assert any(t.startswith("<script>") and t.endswith("… indeed") and len(t) == 28 for t in texts)


def test_only_the_first_series_are_drawn_and_the_chart_says_so() -> None:
    series = {f"flow-{k}": [float(k)] * 7 for k in range(MAX_SERIES + 3)}
    root = parse(line_chart("t", DAYS, series))
    assert len(root.findall(f"{SVG}polyline")) == MAX_SERIES
    assert "+3 more not drawn" in [t.text for t in root.iter(f"{SVG}text")]


def test_fixed_axis_and_fitted_axis() -> None:
    percent = parse(line_chart("t", DAYS, {"a": [0.5] * 7}, y_min=0, y_max=1, y_format=lambda v: f"{100 * v:.0f} %"))
    ticks = [t.text for t in percent.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks[0] == "0 %" and ticks[-1] == "100 %"
    fitted = parse(line_chart("t", DAYS, {"a": [0.91, 0.93, 0.92, 0.9, 0.95, 0.94, 0.93]}, from_zero=False))
    lowest = float(next(t.text for t in fitted.iter(f"{SVG}text") if t.get("text-anchor") == "end"))  # type: ignore[arg-type]
    assert 0.85 <= lowest <= 0.9  # scores that move in the second decimal are not squashed at the top


def test_a_limit_is_a_dashed_line_in_its_series_colour() -> None:
    root = parse(line_chart("budget", DAYS, {"customers": [0.5, 1, 1.5, 2, 2, 2, 2.5]}, limits={"customers": 5.0}))
    dashed = [line for line in root.findall(f"{SVG}line") if line.get("stroke-dasharray")]
    assert len(dashed) == 1 and dashed[0].get("stroke") == PALETTE[0]
    dots = marker_ys(root)
    assert float(dashed[0].get("y1", 0)) < min(dots)  # the limit is above every point: the axis made room


def test_no_data_says_so() -> None:
    root = parse(line_chart("t", DAYS, {"a": [None] * 7}))
    assert "no data in this period" in [t.text for t in root.iter(f"{SVG}text")]
    assert not root.findall(f"{SVG}polyline")


def test_a_markdown_image_carries_the_svg_as_a_data_uri() -> None:
    svg = line_chart("t", DAYS, {"a": [1] * 7})
    image = markdown_image(svg, "p95 [s]")
    match = re.fullmatch(r"!\[([^\]]*)\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", image)
    assert match is not None
    assert match.group(1) == "p95 (s)"
    assert base64.b64decode(match.group(2)).decode() == svg
    assert data_uri(svg) in image


@pytest.mark.parametrize("values", [[1e-9, 2e-9], [1e9, 3e9], [-5, 5], [0, 0]])
def test_axes_for_any_scale(values: list[float]) -> None:
    root = parse(line_chart("t", DAYS[:2], {"a": values}))
    ys = marker_ys(root)
    assert len(ys) == 2
    for y in ys:  # every point inside the picture
        assert 0 <= y <= float(root.get("height", 0))
