"""Pictures for the health report, with no plotting library: SVG line charts and Unicode sparklines.

Everything here is pure text in, text out. The Prefect UI renders a markdown artifact's images
but strips raw HTML (an inline ``<svg>`` element disappears), so a chart goes into the overview as
an image whose source is a ``data:image/svg+xml;base64,…`` URI (checked in a real browser by
``tests/e2e/test_report_screenshot.py``). Where no image can go (table artifacts, the terminal),
a series becomes a sparkline such as ``▁▃▅█``.

Charts draw on their own light card, so they read the same in the UI's dark and light themes.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from datetime import date

from prefect_synthobs.reports.text import visible, xml_text

# colour-blind-safe enough and distinct on white; a series keeps its colour in every chart
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
MAX_SERIES = len(PALETTE)
SPARK_LEVELS = "▁▂▃▄▅▆▇█"
NO_VALUE = "·"  # a day with no data in a sparkline

Series = Sequence[float | None]


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
    """The series as floats, ``None`` for missing or NaN values."""
    out: list[float | None] = []
    for v in values:
        f = None if v is None else float(v)
        out.append(None if f is None or math.isnan(f) else f)
    return out


def _nice_step(span: float, ticks: int = 4) -> float:
    raw = span / max(ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _axis(
    values: list[float], y_min: float | None, y_max: float | None, from_zero: bool
) -> tuple[float, float, list[float]]:
    lo = min(values) if y_min is None else y_min
    hi = max(values) if y_max is None else y_max
    if y_min is None and from_zero and lo > 0:
        lo = 0.0
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    step = _nice_step(hi - lo)
    if y_max is None:
        hi = math.ceil(hi / step - 1e-9) * step
    if y_min is None:
        lo = math.floor(lo / step + 1e-9) * step
    ticks = [lo + k * step for k in range(round((hi - lo) / step) + 1)]
    return lo, hi, ticks


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def line_chart(
    title: str,
    days: Sequence[date],
    series: dict[str, Series],
    *,
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    y_min: float | None = None,
    y_max: float | None = None,
    from_zero: bool = True,
    limits: dict[str, float] | None = None,
    width: int = 640,
    height: int = 230,
) -> str:
    """An SVG line chart of daily series: one line (with a dot per day) per series, gaps where a day has no value.

    Args:
        title: The chart's title, drawn at its top left.
        days: The x axis, one entry per day.
        series: Name → one value per day (``None``: nothing that day). Only the first
            ``MAX_SERIES`` are drawn; the legend says how many were left out.
        y_format: How a y-axis tick is written (e.g. as a percentage).
        y_min: Fixed bottom of the y axis (default: from the data, zero when that fits).
        y_max: Fixed top of the y axis (default: from the data).
        from_zero: Without ``y_min``, start the axis at zero (durations, counts); ``False``
            fits it to the data (scores that move in their second decimal).
        limits: Name → a level drawn as a dashed line in that series' colour (e.g. a budget).
        width: Width in pixels.
        height: Height in pixels.

    Returns:
        The SVG document (UTF-8 text), valid XML whatever the names hold: control and format
        characters in a name are written out (``\\x1b``), ``&``, ``<``, ``>`` escaped (``xml_text``).
    """
    names = list(series)[:MAX_SERIES]
    left, right, top, bottom = 58, 16, 34, 26
    legend_rows = math.ceil(len(names) / 3) if names else 0
    height += 16 * legend_rows
    plot_w, plot_h = width - left - right, height - top - bottom - 16 * legend_rows
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="11">',
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" rx="6" fill="#ffffff" stroke="#d1d5db"/>',
        f'<text x="12" y="21" font-size="13" font-weight="bold" fill="#111827">{xml_text(title)}</text>',
    ]
    clean = {n: _floats(series[n]) for n in names}
    levels = {n: float(v) for n, v in (limits or {}).items() if n in names and not math.isnan(float(v))}
    values = [v for n in names for v in clean[n] if v is not None] + list(levels.values())
    if not values or not days:
        parts.append(
            f'<text x="{width / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="#6b7280">'
            "no data in this period</text></svg>"
        )
        return "".join(parts)
    lo, hi, ticks = _axis(values, y_min, y_max, from_zero)

    def x_of(i: int) -> float:
        return left + (plot_w * (i + 0.5) / len(days))

    def y_of(v: float) -> float:
        return top + plot_h * (1 - (min(max(v, lo), hi) - lo) / (hi - lo))

    for t in ticks:
        y = y_of(t)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#4b5563">{xml_text(y_format(t))}</text>'
        )
    every = max(1, math.ceil(len(days) / 8))
    for i, day in enumerate(days):
        if i % every == 0 or i == len(days) - 1:
            parts.append(
                f'<text x="{x_of(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#4b5563">'
                f"{day:%m-%d}</text>"
            )
    for k, name in enumerate(names):
        colour = PALETTE[k]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(clean[name][: len(days)]):
            if v is not None:
                x, y = x_of(i), y_of(v)
                runs[-1].append(f"{x:.1f},{y:.1f}")
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
            elif runs[-1]:
                runs.append([])
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
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="10" height="10" rx="2" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14:.1f}" y="{ly}" fill="#111827">{xml_text(_short(visible(name)))}</text>')
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
