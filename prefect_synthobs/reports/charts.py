"""Pictures for the health report, with no plotting library: SVG line charts and Unicode sparklines.

Everything here is pure text in, text out. The Prefect UI renders a markdown artifact's images
but strips raw HTML (an inline ``<svg>`` element disappears), so a chart goes into the overview as
an image whose source is a ``data:image/svg+xml;base64,…`` URI (checked in a real browser by
``tests/e2e/test_report_screenshot.py``). Where no image can go (table artifacts, the terminal),
a series becomes a sparkline such as ``▁▃▅█``.

Charts draw on their own light card, so they read the same in the UI's dark and light themes.
A chart tells the truth about its data (``tests/reports/test_charts_truth.py`` checks it in
headless Chromium): an axis given limits keeps them, a score's axis never runs past [0, 1], every
point has a marker (its series' shape and colour), points of different series on the same day
sit side by side, and scores where higher is better never share an axis with scores where lower is.
"""

from __future__ import annotations

import base64
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import Literal, NamedTuple

from prefect_synthobs.catalog import LOWER_IS_BETTER_METRICS, UNIT_INTERVAL_METRICS
from prefect_synthobs.reports.text import visible, xml_text

# colour-blind-safe enough and distinct on white; a series keeps its colour in every chart
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
# a marker shape per colour, so series whose colours a reader cannot tell apart still differ
MARKERS = ("circle", "square", "triangle", "diamond", "triangle-down", "plus", "cross", "star")
MAX_SERIES = len(PALETTE)
SPARK_LEVELS = "▁▂▃▄▅▆▇█"
NO_VALUE = "·"  # a day with no data in a sparkline

Series = Sequence[float | None]
Direction = Literal["higher", "lower"]

# Quality scores where a lower value is better: the ``max_*`` gates of ``QualityGates`` (a test keeps
# the two in step). Every other score is better higher (``record_quality``'s contract).
# Scores whose direction is known (the rest are user metrics, better higher by contract).
_KNOWN_METRICS = UNIT_INTERVAL_METRICS | LOWER_IS_BETTER_METRICS | {"tstr_ratio"}
DIRECTION_LABELS: dict[Direction, str] = {"higher": "higher is better", "lower": "lower is better"}


def _base_metric(metric: str) -> str:
    """``ks_complement:age`` → ``ks_complement``: a per-column score has its metric's direction."""
    return metric.split(":", 1)[0].strip()


def score_direction(metric: str) -> Direction:
    """Whether a higher or a lower value of the quality score ``metric`` is better.

    ``exact_match_rate`` and ``membership_inference_auc`` (the scores with a ``max_*`` gate) are
    better lower; every other score, a user's own included, is better higher. A per-column name
    (``ks_complement:age``) has its metric's direction.
    """
    return "lower" if _base_metric(metric) in LOWER_IS_BETTER_METRICS else "higher"


def split_by_direction(names: Iterable[str]) -> dict[Direction, list[str]]:
    """Metric names grouped by ``score_direction`` (order kept), so each group gets its own chart."""
    out: dict[Direction, list[str]] = {"higher": [], "lower": []}
    for name in names:
        out[score_direction(name)].append(name)
    return out


def _known_direction(name: str) -> Direction | None:
    return score_direction(name) if _base_metric(name) in _KNOWN_METRICS else None


def sparkline(values: Series, lo: float | None = None, hi: float | None = None) -> str:
    """One character per value, ``▁`` (lowest) to ``█`` (highest); ``·`` where a value is missing.

    Args:
        values: The series (e.g. one value per day).
        lo: The value drawn as ``▁`` (default: the series' minimum).
        hi: The value drawn as ``█`` (default: the series' maximum).

    Returns:
        The sparkline; all equal values draw at mid height, an empty series is ``""``.
    """
    clean = _floats(values)
    present = [v for v in clean if v is not None]
    if not present:
        return NO_VALUE * len(clean)
    low = min(present) if lo is None else lo
    high = max(present) if hi is None else hi
    top = len(SPARK_LEVELS) - 1
    out = []
    for v in clean:
        if v is None:
            out.append(NO_VALUE)
        elif high <= low:
            out.append(SPARK_LEVELS[top // 2])
        else:
            share = (min(max(v, low), high) - low) / (high - low)
            out.append(SPARK_LEVELS[round(share * top)])
    return "".join(out)


def _floats(values: Series) -> list[float | None]:
    """The series as floats, ``None`` for missing, NaN or infinite values (nothing to draw)."""
    out: list[float | None] = []
    for v in values:
        f = None if v is None else float(v)
        out.append(None if f is None or not math.isfinite(f) else f)
    return out


def _nice_step(span: float, ticks: int = 4) -> float:
    raw = span / max(ticks, 1)
    if not (math.isfinite(raw) and raw > 0):
        return math.nan
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude * (1 + 1e-9):  # 0.2 / 4 computed as 0.05000000000000003 is 0.05
            return float(factor * magnitude)
    return float(10 * magnitude)


def _clean(value: float) -> float:
    """``value`` to 12 significant digits: 3 × 0.05 is 0.15, not 0.15000000000000002."""
    return float(f"{value:.12g}")


class Axis(NamedTuple):
    """A y axis: its bottom, its top and its labelled ticks (all within ``[lo, hi]``, ascending)."""

    lo: float
    hi: float
    ticks: list[float]


def y_axis(
    values: Sequence[float], *, y_min: float | None = None, y_max: float | None = None, from_zero: bool = True
) -> Axis:
    """The y axis for finite ``values``.

    Rules (a chart must not suggest what the data does not say):

    - a limit given is the axis' end, exactly: never widened, never rounded (a value beyond it is
      drawn at the edge, hollow);
    - a free end holds every value and is rounded out to a tick step; ``from_zero`` puts zero in;
    - a single value or a constant series opens up around the value by a tenth of it (1 for zero),
      not by a whole unit: one score of 0.9 gets 0.8–1, not 0.9–1.9;
    - when every value lies in [0, 1] (a score, a rate), padding and rounding stop at 0 and 1: an
      axis past a score's natural bound reads as room the score could reach.

    Raises:
        ValueError: A limit that is not finite (or beyond ±1e300), or ``y_min >= y_max``.
    """
    for limit in (y_min, y_max):
        if limit is not None and not (math.isfinite(limit) and abs(limit) <= 1e300):
            raise ValueError(
                f"an axis limit must be a finite number within ±1e300 (room for the other end), got {limit!r}"
            )
    if y_min is not None and y_max is not None and y_min >= y_max:
        raise ValueError(f"y_min ({y_min!r}) must be below y_max ({y_max!r})")
    data = [float(v) for v in values if math.isfinite(v)]
    if not data:
        data = [y_min if y_min is not None else y_max if y_max is not None else 0.0]
    data_lo, data_hi = min(data), max(data)
    unit = data_lo >= 0.0 and data_hi <= 1.0
    lo = data_lo if y_min is None else y_min
    hi = data_hi if y_max is None else y_max
    if from_zero:
        lo = min(lo, 0.0) if y_min is None else lo
        hi = max(hi, 0.0) if y_max is None else hi
    if hi - lo <= max(1e-9 * max(abs(lo), abs(hi)), 1e-200):  # one value, constant, or all beyond a limit
        v = hi if y_max is not None else lo
        pad = abs(v) * 0.1 or 1.0
        if y_max is None:
            hi = max(hi, v + pad)
        if y_min is None and not (y_max is None and from_zero and lo == 0.0):  # from zero: open upwards only
            lo = min(lo, v - pad)
    lo, hi = max(lo, -sys.float_info.max), min(hi, sys.float_info.max)  # padding past the float range
    step = _nice_step(hi - lo)
    if math.isfinite(step) and step > 0:
        if y_max is None:
            rounded = _clean(math.ceil(hi / step - 1e-9) * step)
            hi = max(rounded, hi) if math.isfinite(rounded) else hi
        if y_min is None:
            rounded = _clean(math.floor(lo / step + 1e-9) * step)
            lo = min(rounded, lo) if math.isfinite(rounded) else lo
    if unit:  # a score's axis stops at its bounds (the values lie inside them)
        if y_min is None and hi > 0.0:
            lo = max(lo, 0.0)
        if y_max is None and lo < 1.0:
            hi = min(hi, 1.0)
    return Axis(lo, hi, _ticks(lo, hi, step))


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    """The multiples of ``step`` between ``lo`` and ``hi`` (the step a free end was rounded to, so
    that end is a tick); both ends when the step is lost in float precision."""
    if not (math.isfinite(step) and step > 0) or not math.isfinite(lo / step) or not math.isfinite(hi / step):
        return [lo, hi]
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    if last - first > 50:  # the step is lost in float precision: label the ends only
        return [lo, hi]
    ticks: list[float] = []
    for k in range(first, last + 1):
        t = min(max(_clean(k * step), lo), hi)
        if not ticks or t > ticks[-1]:
            ticks.append(t)
    return ticks or [lo, hi]


def _short(name: str, limit: int = 28) -> str:
    """``name`` cut to ``limit`` characters in the middle: the end keeps what tells two series apart
    (the id suffix of two models of one type)."""
    return name if len(name) <= limit else name[: limit - 8] + "…" + name[-7:]


_PLUS = ((-1, -3), (1, -3), (1, -1), (3, -1), (3, 1), (1, 1), (1, 3), (-1, 3), (-1, 1), (-3, 1), (-3, -1), (-1, -1))
_STAR = tuple(
    (
        (1.25 if k % 2 == 0 else 0.55) * math.cos(math.pi * (k / 5 - 0.5)),
        (1.25 if k % 2 == 0 else 0.55) * math.sin(math.pi * (k / 5 - 0.5)),
    )
    for k in range(10)
)
# each shape's outline for a half width of 1 (the circle is drawn as a circle)
_OUTLINES: dict[str, tuple[tuple[float, float], ...]] = {
    "square": ((-0.9, -0.9), (0.9, -0.9), (0.9, 0.9), (-0.9, 0.9)),
    "triangle": ((0, -1.2), (1.15, 0.8), (-1.15, 0.8)),
    "diamond": ((0, -1.3), (1.1, 0), (0, 1.3), (-1.1, 0)),
    "triangle-down": ((0, 1.2), (1.15, -0.8), (-1.15, -0.8)),
    "plus": tuple((a / 2.6, b / 2.6) for a, b in _PLUS),
    "cross": tuple(((a - b) / 3.4, (a + b) / 3.4) for a, b in _PLUS),
    "star": _STAR,
}


def _marker(shape: str, x: float, y: float, r: float, colour: str, *, hollow: bool = False) -> str:
    """One point: ``shape`` with half width ``r``, placed by ``translate(x y)`` (so a reader of the SVG
    finds every point's place the same way), filled in ``colour`` with a white rim that parts it from
    lines and neighbours; ``hollow``: white inside, a point beyond a fixed axis limit drawn at the edge."""
    fill, stroke, rim = ("#ffffff", colour, 1.5) if hollow else (colour, "#ffffff", 1)
    attributes = (
        f'class="marker" transform="translate({x:.1f} {y:.1f})" fill="{fill}" stroke="{stroke}" stroke-width="{rim}"'
    )
    if shape not in _OUTLINES:
        return f'<circle {attributes} r="{r:.1f}"/>'
    points = " ".join(f"{r * dx:.1f},{r * dy:.1f}" for dx, dy in _OUTLINES[shape])
    return f'<polygon {attributes} points="{points}"/>'


def _check_directions(names: Iterable[str], direction: Direction | None) -> None:
    """Refuse a chart that puts scores of opposite directions on one axis (see ``line_chart``)."""
    known = {n: d for n in names if (d := _known_direction(n)) is not None}
    if not known:
        return
    expected = direction or next(iter(known.values()))  # without a direction: the first score's
    wrong = sorted(n for n, d in known.items() if d != expected)
    if wrong:
        against = f"a chart where {DIRECTION_LABELS[direction]}" if direction else "other scores"
        raise ValueError(
            f"{', '.join(map(visible, wrong))} cannot share an axis with {against}: "
            "higher-is-better and lower-is-better scores go in separate charts (split_by_direction)"
        )


def line_chart(
    title: str,
    days: Sequence[date] | Sequence[int],
    series: Mapping[str, Series],
    *,
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    y_min: float | None = None,
    y_max: float | None = None,
    from_zero: bool = True,
    limits: Mapping[str, float] | None = None,
    direction: Direction | None = None,
    width: int = 640,
    height: int = 230,
    x_title: str | None = None,
) -> str:
    """An SVG line chart of daily series: a marker per day with a value, lines joining consecutive days.

    Each series has its colour and its marker shape (``PALETTE``, ``MARKERS``). The markers of
    different series on one day sit side by side within the day's slot, so equal values do not hide
    each other: apart while the slot allows (four series: up to 20 days on 640 pixels), beyond that
    overlapping in part, each shape's white rim still showing where the next begins (a 92-day
    window has 6 pixels a day); a day without a value breaks the line, and a lone point is still a
    marker.

    Args:
        title: The chart's title, drawn at its top left (and the SVG's ``<title>``).
        days: The x axis, one entry per day (labelled ``MM-DD``), or whole numbers such as epochs
            (labelled as they are; one slot each, so the caller passes every number of a range).
        series: Name → one value per day (``None``, NaN, infinite: nothing that day). Only the
            first ``MAX_SERIES`` are drawn; the chart says how many were left out.
        y_format: How a y-axis tick is written (e.g. as a percentage).
        y_min: Fixed bottom of the y axis, kept exactly (default: from the data, see ``y_axis``).
        y_max: Fixed top of the y axis, kept exactly (default: from the data). A value beyond a
            fixed limit is drawn hollow at the edge.
        from_zero: Without ``y_min``, start the axis at zero (durations, counts); ``False``
            fits it to the data (scores that move in their second decimal).
        limits: Name → a level drawn as a dashed line in that series' colour (e.g. a budget).
        direction: ``"higher"`` or ``"lower"``: which way is better for every series (scores);
            the y axis says so.
        width: Width in pixels.
        height: Height in pixels.
        x_title: A word for the x axis (``"epoch"``), drawn left of its first label.

    Returns:
        The SVG document (UTF-8 text), valid XML whatever the names hold: control and format
        characters in a name are written out (``\\x1b``), ``&``, ``<``, ``>`` escaped (``xml_text``).

    Raises:
        ValueError: Series named after quality scores of opposite directions (``score_direction``:
            ``overall`` with ``exact_match_rate``), or against ``direction``: one axis would show a
            rise as good for one and bad for the other. Bad axis limits (``y_axis``).
    """
    _check_directions(series, direction)
    names = list(series)[:MAX_SERIES]
    left, right, top, bottom = 58, 16, 34, 26
    legend_rows = math.ceil(len(names) / 3) if names else 0
    height += 16 * legend_rows
    plot_w, plot_h = width - left - right, height - top - bottom - 16 * legend_rows
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="Helvetica, Arial, sans-serif" font-size="11">',
        f"<title>{xml_text(title)}</title>",
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" rx="6" fill="#ffffff" stroke="#d1d5db"/>',
        f'<text x="12" y="21" font-size="13" font-weight="bold" fill="#111827">{xml_text(title)}</text>',
    ]
    clean = {n: _floats(series[n]) for n in names}
    levels = {n: float(v) for n, v in (limits or {}).items() if n in names and math.isfinite(float(v))}
    values = [v for n in names for v in clean[n][: len(days)] if v is not None] + list(levels.values())
    if not values or not days:
        parts.append(
            f'<text x="{width / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="#6b7280">'
            "no data in this period</text></svg>"
        )
        return "".join(parts)
    lo, hi, ticks = y_axis(values, y_min=y_min, y_max=y_max, from_zero=from_zero)
    slot = plot_w / len(days)
    room = 0.8 * slot / len(names)  # each series' share of a day's slot
    radius = min(5.0, max(2.5, room / 2))  # markers of one day apart (touching at most) while room allows
    spread = min(2 * radius + 2, room) if len(names) > 1 else 0.0

    def x_of(i: int, k: int | None = None) -> float:  # day i's centre, or series k's place in its slot
        return left + slot * (i + 0.5) + (0.0 if k is None else (k - (len(names) - 1) / 2) * spread)

    def y_of(v: float) -> float:
        return top + plot_h * (1 - (min(max(v, lo), hi) - lo) / (hi - lo))

    for t in ticks:
        y = y_of(t)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#4b5563">{xml_text(y_format(t))}</text>'
        )
    if direction is not None:
        middle = top + plot_h / 2
        parts.append(
            f'<text x="14" y="{middle:.1f}" transform="rotate(-90 14 {middle:.1f})" text-anchor="middle" '
            f'fill="#4b5563">{DIRECTION_LABELS[direction]}</text>'
        )
    every = max(1, math.ceil(len(days) / 8))
    for i, day in enumerate(days):
        if i % every == 0 or i == len(days) - 1:
            parts.append(
                f'<text x="{x_of(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#4b5563">'
                f"{f'{day:%m-%d}' if isinstance(day, date) else day}</text>"
            )
    if x_title:
        parts.append(
            f'<text x="{left - 6}" y="{top + plot_h + 16}" text-anchor="end" fill="#4b5563">{xml_text(x_title)}</text>'
        )
    markers: list[str] = []  # drawn last: no line covers a point
    for k, name in enumerate(names):
        colour, shape = PALETTE[k], MARKERS[k % len(MARKERS)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(clean[name][: len(days)]):
            if v is None:
                runs.append([])
                continue
            x, y = x_of(i, k), y_of(v)
            runs[-1].append(f"{x:.1f},{y:.1f}")
            markers.append(_marker(shape, x, y, radius, colour, hollow=not lo <= v <= hi))
        for run in runs:
            if len(run) > 1:
                parts.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="2" '
                    'stroke-linejoin="round"/>'
                )
        if name in levels:
            y = y_of(levels[name])
            parts.append(
                f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{colour}" '
                'stroke-width="1.5" stroke-dasharray="6 4"/>'
            )
            parts.append(
                f'<text x="{left + plot_w - 4}" y="{y - 5:.1f}" text-anchor="end" fill="{colour}">'
                f"{xml_text(_short(visible(name)))} limit {xml_text(y_format(levels[name]))}</text>"
            )
        col, row = k % 3, k // 3
        lx, ly = left + col * (plot_w / 3), top + plot_h + 34 + 16 * row
        parts.append(
            f'<line class="legend" x1="{lx:.1f}" y1="{ly - 4}" x2="{lx + 18:.1f}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(_marker(shape, lx + 9, ly - 4, 4.5, colour).replace('class="marker"', 'class="legend"'))
        parts.append(f'<text x="{lx + 24:.1f}" y="{ly}" fill="#111827">{xml_text(_short(visible(name)))}</text>')
    parts += markers
    left_out = len(series) - len(names)
    if left_out > 0:
        parts.append(
            f'<text x="{width - 12}" y="21" text-anchor="end" fill="#6b7280">+{left_out} more not drawn</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def data_uri(svg: str) -> str:
    """The SVG as a ``data:`` URI an ``<img>`` (or a markdown image) can show."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def markdown_image(svg: str, alt: str) -> str:
    """A markdown image of the SVG (alt text stripped of what would end the image's brackets, controls written out)."""
    safe = visible(alt.replace("\n", " ")).replace("[", "(").replace("]", ")")
    return f"![{safe}]({data_uri(svg)})"
