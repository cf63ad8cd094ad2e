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

The model leaderboard (2,230 px: every score, the model id) and the training table (3,559 px: 21
columns, two sparklines per fit) did not fit either. Here at most 828 px each (Chromium with the UI's
stylesheet), with names such as ``GaussianCopulaSynthesizer`` and losses ``generator``/``discriminator``:

- ``synthobs-models``: table, model, checks, ``passed``, ``overall``, ``diag``, ``detect``, ``tstr``,
  ``fit s``; the privacy scores in ``synthobs-models-privacy``; each model's table, type and id in
  ``synthobs-models-details``, a few lines per model (``detail``, ``value``);
- ``synthobs-training``: table, model, status, epochs, fit rows and columns, fit and epoch seconds,
  NaN losses; each loss's final value with its trend's arrow and its sparkline in
  ``synthobs-training-curves`` (one row per fit and loss); each fit's end time, flow, flow run id, library,
  synthesizer, type, run rows and rows/s, error and model id in ``synthobs-training-details``, a few lines
  per fit (an id is about 500 px: beside the table's and the model's names it would not fit).

Every other table keeps its column names and raw values (``table_rows``); ``--json`` and the
flow's return value keep every raw value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prefect_synthobs.reports.cells import display_value, escape, header
from prefect_synthobs.reports.fits import TREND_EPOCHS
from prefect_synthobs.reports.models import PRIVACY_SCORES

__all__ = [
    "ARTIFACTS",
    "EMPTY_TABLES",
    "artifact_table",
    "flow_trends_table",
    "flows_table",
    "models_details_table",
    "models_privacy_table",
    "models_table",
    "table_rows",
    "training_curves_table",
    "training_details_table",
    "training_table",
]

FLOWS = "synthobs-flows"
FLOW_TRENDS = "synthobs-flow-trends"
MODELS = "synthobs-models"
MODELS_PRIVACY = "synthobs-models-privacy"
MODELS_DETAILS = "synthobs-models-details"
TRAINING = "synthobs-training"
TRAINING_CURVES = "synthobs-training-curves"
TRAINING_DETAILS = "synthobs-training-details"

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
        "Quality checks per table, model and metric: pass rate, threshold, average, trend vs the previous window "
        f"(each model's type and id: {MODELS_DETAILS}).",
    ),
    MODELS: (
        "models",
        "Models side by side: one row per table and model with its checks, gate pass rate, latest scores in the "
        "window (overall, diagnostic, detection, TSTR ratio) and fit seconds; never averaged across models. "
        f"Privacy scores: {MODELS_PRIVACY}; types and ids: {MODELS_DETAILS}.",
    ),
    MODELS_PRIVACY: (
        "models",
        "Privacy scores per table and model, each its latest in the window: exact match rate, DCR overfitting "
        "protection, membership inference AUC, disclosure protection.",
    ),
    MODELS_DETAILS: (
        "models",
        "Each model of synthobs-models, a line per detail: model (as named there), table, type, model id.",
    ),
    TRAINING: (
        "training",
        "Every fit in the window: table, model, status, epochs, fit rows and columns, fit seconds, mean epoch "
        "seconds, NaN/inf losses; epochs recorded by hand (no model id) one line per flow run. Losses: "
        f"{TRAINING_CURVES}; flow runs and ids: {TRAINING_DETAILS}.",
    ),
    TRAINING_CURVES: (
        "training_losses",
        "Each fit's losses: the final value with its trend (vs the loss "
        f"{TREND_EPOCHS} epochs earlier, or the first: ↓ ↑, → within 0.1 %), and one character per epoch or bucket "
        "of epochs (· a NaN or infinite loss).",
    ),
    TRAINING_DETAILS: (
        "training",
        "Each fit of synthobs-training, a line per detail: model (as named there), table, end time (UTC), flow, "
        "flow run id, library, synthesizer, type, the run's rows and rows/s, error, model id.",
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
    MODELS: "No quality checks in this window, so no model to compare.",
    MODELS_PRIVACY: "No privacy score (exact match, DCR, membership inference, disclosure) in this window.",
    MODELS_DETAILS: "No quality checks in this window, so no model to describe.",
    TRAINING: "No model fit and no training epoch in this window.",
    TRAINING_CURVES: "No loss recorded by a fit in this window.",
    TRAINING_DETAILS: "No model fit and no training epoch in this window.",
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


def _columns(
    rows: list[dict[str, Any]], columns: Sequence[str], names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """``rows`` cut to ``columns`` (every one, empty cells where a row has none), short headers, formatted cells."""
    names = {c: header(c) for c in columns} | (names or {})
    return [{names[c]: _cell(c, r.get(c)) for c in columns} for r in rows]


def _details(rows: list[dict[str, Any]], details: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each row as lines of ``detail`` and ``value``: first ``model`` (its name as its table shows it), then
    each of ``details`` (column, name) it has a value for, ``table`` always. A record per row rather than
    columns: an id alone is about 500 px, beside the names it would not fit."""
    out = []
    for r in rows:
        out.append({"detail": "model", "value": _cell("model", r.get("model"))})
        for k, (column, name) in enumerate(details):
            if k == 0 or r.get(column) not in (None, ""):
                out.append({"detail": name, "value": _cell(column, r.get(column))})
    return out


def models_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``synthobs-models``: each model's checks, gate pass rate, overall, diagnostic, detection and TSTR
    scores and fit seconds (``passed``, ``diag``, ``detect``, ``tstr``, ``fit s``)."""
    return _columns(rows, _MODEL_COLUMNS)


def models_privacy_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``synthobs-models-privacy``: each model's privacy scores; none when no model has one."""
    if not any(r.get(c) is not None for r in rows for c in PRIVACY_SCORES):
        return []
    return _columns(rows, ("table", "model", *PRIVACY_SCORES))


def models_details_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``synthobs-models-details``: each leaderboard model's table, type and model id, one line each."""
    return _details(rows, (("table", "table"), ("model_type", "type"), ("model_id", "model id")))


def training_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``synthobs-training``: each fit's status, epochs, the rows and columns it was fitted on in one cell
    (``rows × cols``: ``20,000 × 12``), fit and mean epoch seconds, NaN/inf losses (``fit s``, ``epoch s``,
    ``NaN``)."""
    shaped = [r | {"fit_shape": _shape(r.get("fit_rows"), r.get("fit_columns"))} for r in rows]
    return _columns(shaped, _TRAINING_COLUMNS, {"fit_shape": "rows × cols"})


def _shape(rows: Any, columns: Any) -> str | None:
    """``20,000 × 12``; ``?`` for the one not known; ``None`` when neither is."""
    if rows is None and columns is None:
        return None
    return " × ".join("?" if v is None else display_value("fit_rows", v) for v in (rows, columns))


def training_curves_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``synthobs-training-curves``: one row per fit and loss (the report's ``training_losses``): its final
    value to four significant digits with the trend's arrow (``0.85 ↑``, as ``synthobs-training`` showed it),
    the sparkline per epoch (``·``: NaN/inf)."""
    finals = [
        r | {"final": None if r.get("final") is None else f"{r['final']:.4g} {r.get('arrow') or ''}".strip()}
        for r in rows
    ]
    return _columns(finals, ("table", "model", "loss", "final", "by_epoch"))


def training_details_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``synthobs-training-details``: each fit's table, end time (UTC), flow, flow run id, library,
    synthesizer, type, run rows and rows/s, error and model id, one line each."""
    return _details(rows, _TRAINING_DETAILS)


_MODEL_COLUMNS = (
    "table",
    "model",
    "checks",
    "pass_rate",
    "overall",
    "diagnostic",
    "detection",
    "tstr_ratio",
    "fit_seconds",
)
_TRAINING_COLUMNS = (
    "table",
    "model",
    "status",
    "epochs",
    "fit_shape",
    "fit_seconds",
    "epoch_seconds_mean",
    "nonfinite_losses",
)
_TRAINING_DETAILS = (
    ("table", "table"),
    ("time", "end (UTC)"),
    ("flow", "flow"),
    ("flow_run_id", "flow run id"),
    ("library", "library"),
    ("synthesizer", "synthesizer"),
    ("model_type", "type"),
    ("run_rows", "run rows"),
    ("run_rows_per_s", "run rows/s"),
    ("error_type", "error"),
    ("model_id", "model id"),
)


def _sparkline_after(
    first: Sequence[str], drop: Sequence[str] = ()
) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """A view that moves ``first`` (the names and the value the sparkline draws) and then the sparkline to
    the front, without the columns ``drop`` (shown in another table); column names and values unchanged."""

    def view(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sparklines = [c for c in dict.fromkeys(c for r in rows for c in r) if c.endswith(_SPARKLINE)]
        columns = [c for c in _ordered(rows, [*first, *sparklines], lambda _c: False) if c not in drop]
        return table_rows([{c: r.get(c) for c in columns} for r in rows])

    return view


VIEWS: dict[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]]] = {
    FLOWS: flows_table,
    FLOW_TRENDS: flow_trends_table,
    MODELS: models_table,
    MODELS_PRIVACY: models_privacy_table,
    MODELS_DETAILS: models_details_table,
    TRAINING: training_table,
    TRAINING_CURVES: training_curves_table,
    TRAINING_DETAILS: training_details_table,
    # the model's type and id are in MODELS_DETAILS: the model's name says which it is, and the table fits
    "synthobs-quality": _sparkline_after(("table", "model", "metric", "average"), drop=("model_type", "model_id")),
    "synthobs-gpu": _sparkline_after(("host", "gpu", "name", "util_mean")),
}
"""Tables shown differently from the report's rows (``table_rows`` for the others)."""


def artifact_table(key: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table artifact ``key`` shows for the report's ``rows``; one ``status`` row saying what it
    lacks when there is nothing to show."""
    shown = VIEWS.get(key, table_rows)(rows)
    return shown or [{"status": EMPTY_TABLES[key]}]
