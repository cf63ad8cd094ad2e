"""The health report's table artifacts: which rows each shows, in what order, with what cells (pure).

Prefect's UI shows a table artifact in a pane about 844 px wide in a 1,400 px browser window (the
run's details take the right-hand side) and scrolls the rest out of sight. The per-flow table
with its full names (``success_rate``), raw timestamps (``2026-12-03T15:48:14.944163+00:00``) and
two 14-day sparklines needed 1,498 px, so its retry and sparkline columns were off-screen. Here:

- ``synthobs-flows`` shows short headers and cells as people read them (``85.7 %``,
  ``81.31``, ``2026-12-03 15:48``): about 720 px;
- the sparklines go to ``synthobs-flow-trends`` (flow, success/day, p95/day), as the terminal
  shows them in a "Flow trends" table of their own;
- in the quality and GPU tables the sparkline follows the names and the average it draws, instead of
  trailing the ids (off-screen);
- rates (rows/s) read as ``reports.numbers`` writes them in every table.

Every other table keeps its column names and raw values (``table_rows``); ``--json`` and the
flow's return value keep every raw value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prefect_synthobs.reports.cells import display_value, escape, header
from prefect_synthobs.reports.fits import TREND_EPOCHS

__all__ = ["ARTIFACTS", "EMPTY_TABLES", "artifact_table", "flow_trends_table", "flows_table", "table_rows"]

FLOWS = "synthobs-flows"
FLOW_TRENDS = "synthobs-flow-trends"

ARTIFACTS = {  # key -> (report attribute, description)
    FLOWS: (
        "flows",
        "Per-flow health: runs, not completed, success rate, p95 duration in seconds, failed and retried task "
        f"runs, last success (UTC). Daily trends: {FLOW_TRENDS}.",
    ),
    FLOW_TRENDS: (
        "flows",
        "Per flow, one character per UTC day (newest last, · no data): success rate (0 to 100 %) and p95 "
        "duration (scaled to the flow's own range).",
    ),
    "synthobs-slowest-tasks": ("slowest_tasks", "Slowest tasks by p95 duration."),
    "synthobs-failures": ("failures", "Most recent failed, crashed or cancelled flow runs (messages redacted)."),
    "synthobs-failed-tasks": (
        "failed_tasks",
        "Most recent failed or crashed task runs, in completed flows too (messages redacted).",
    ),
    "synthobs-quality": (
        "quality",
        "Quality checks per table, model and metric: pass rate, threshold, average, trend vs the previous window.",
    ),
    "synthobs-models": (
        "models",
        "Models side by side: one row per table and model with its latest scores in the window (overall, "
        "diagnostic, detection, TSTR, privacy), gate pass rate and fit time; never averaged across models.",
    ),
    "synthobs-training": (
        "training",
        "Every fit in the window: table, model, status, epochs, fit rows and seconds, mean epoch seconds, final "
        f"losses with their trend (vs {TREND_EPOCHS} epochs earlier) and per-epoch sparklines, NaN/inf losses, the "
        "fit's flow run's rows and rows/s; epochs recorded by hand (no model id) one line per flow run.",
    ),
    "synthobs-gpu": ("gpus", "GPU per device: mean/max utilisation, peak memory, energy."),
    "synthobs-privacy": ("privacy", "Privacy budgets: used, remaining, LOW under 20 % left."),
}


# What an empty table artifact says, in a real column: a table whose only column has no name renders
# as an empty header and an empty row in the Prefect UI.
EMPTY_TABLES = {
    FLOWS: "No flow runs in this window.",
    FLOW_TRENDS: "No flow runs in this window, or the report was made without trend days.",
    "synthobs-slowest-tasks": "No task runs in this window.",
    "synthobs-failures": "No failed, crashed or cancelled flow runs in this window.",
    "synthobs-failed-tasks": "No failed or crashed task runs in this window.",
    "synthobs-quality": "No quality checks in this window.",
    "synthobs-models": "No quality checks in this window, so no model to compare.",
    "synthobs-training": "No model fit and no training epoch in this window.",
    "synthobs-gpu": "No GPU samples in this window (no GPU on these hosts, or GPU sampling is off).",
    "synthobs-privacy": "No privacy budget spent in this window.",
}

_SPARKLINE = "_by_day"
_ARTIFACT_TIME = "%Y-%m-%d %H:%M"  # the year too: an artifact is read long after it was made


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a Prefect table artifact: names escaped, missing values empty, rates as people read
    them (``87,962``: ``reports.numbers``); other numbers as they are."""
    return [
        {
            k: (
                escape(v)
                if isinstance(v, str)
                else ""
                if v is None
                else display_value(k, v)
                if k.endswith("_per_s") and not isinstance(v, bool)
                else v
            )
            for k, v in r.items()
        }
        for r in rows
    ]


def _cell(column: str, value: Any) -> Any:
    """A cell of a formatted table: counts stay numbers, text is escaped, every other value reads as in
    the terminal (``display_value``), times with their year."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return escape(display_value(column, value, time_format=_ARTIFACT_TIME))


def _ordered(rows: list[dict[str, Any]], first: Sequence[str], drop: Callable[[str], bool]) -> list[str]:
    """The columns of ``rows``: ``first`` (those present) in that order, then the rest as they come."""
    present = list(dict.fromkeys(c for r in rows for c in r if not drop(c)))
    return [c for c in first if c in present] + [c for c in present if c not in first]


def flows_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``synthobs-flows``: the report's per-flow rows without their sparklines, short headers
    (``success``, ``p95 s``, ``task fails``, ``retries``, ``last ok (UTC)``), formatted cells."""
    columns = _ordered(
        rows,
        ("flow", "runs", "failed", "success_rate", "p95_duration_s", "failed_tasks", "retried_tasks", "last_success"),
        lambda c: c.endswith(_SPARKLINE),
    )
    names = {c: header(c) for c in columns} | {"last_success": "last ok (UTC)"}
    return [{names[c]: _cell(c, r.get(c)) for c in columns} for r in rows]


def flow_trends_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``synthobs-flow-trends``: each flow's sparklines (``success/day``, ``p95/day``); none when the
    report has no trends."""
    if not any(c.endswith(_SPARKLINE) for r in rows for c in r):
        return []
    columns = _ordered(
        rows, ("flow", "success_by_day", "p95_by_day"), lambda c: c != "flow" and not c.endswith(_SPARKLINE)
    )
    return [{header(c): _cell(c, r.get(c)) for c in columns} for r in rows]


def _sparkline_after(first: Sequence[str]) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """A view that moves ``first`` (the names and the value the sparkline draws) and then the sparkline to
    the front; column names and values unchanged."""

    def view(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sparklines = [c for c in dict.fromkeys(c for r in rows for c in r) if c.endswith(_SPARKLINE)]
        columns = _ordered(rows, [*first, *sparklines], lambda _c: False)
        return table_rows([{c: r.get(c) for c in columns} for r in rows])

    return view


VIEWS: dict[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]]] = {
    FLOWS: flows_table,
    FLOW_TRENDS: flow_trends_table,
    "synthobs-quality": _sparkline_after(("table", "model", "metric", "average")),
    "synthobs-gpu": _sparkline_after(("host", "gpu", "name", "util_mean")),
}
"""Tables shown differently from the report's rows (``table_rows`` for the others)."""


def artifact_table(key: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table artifact ``key`` shows for the report's ``rows``; one ``status`` row saying what it
    lacks when there is nothing to show."""
    shown = VIEWS.get(key, table_rows)(rows)
    return shown or [{"status": EMPTY_TABLES[key]}]
