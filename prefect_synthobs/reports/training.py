"""Training in the health report: every fit of the window, its epochs and losses, and a loss curve.

``build_training`` is pure: the ``models``, ``training_epochs`` and ``flow_runs`` frames in, plain rows
out (``Training``). A line is one fit: each ``models`` row in the window is one line (a synthesizer
object fitted twice keeps its ``model_id``: two lines), with the epochs recorded for it (an epoch row
belongs to the first fit of its model that ended at or after it). Epochs of a model with no ``models``
row after them (a fit still running, or one that ended without writing its row) are one line with no
status; epochs recorded by hand with ``record_epoch`` (no model id) are one ``(no model id)`` line per
flow run. No row is dropped silently, none is counted twice.

A store written before these columns and this table existed reads them as null (``HealthStore.read``),
and a frame lacking a column reads as nulls here too, so old stores still report.

``loss_curve_svg`` draws the losses of one fit per epoch (autolog publishes it when a fit ends).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from prefect_synthobs.health import tables
from prefect_synthobs.reports.charts import line_chart, sparkline
from prefect_synthobs.reports.fits import (
    NO_TIME,
    FitLine,
    bucketed,
    epoch_seconds,
    final_losses,
    fit_lines,
    floats,
    ints,
    loss_trend,
    losses_of,
)
from prefect_synthobs.reports.models import model_labels, shown_id, text_column

MAX_CURVE_POINTS = 120
"""At most this many points per loss in ``loss_curve_svg``; longer fits are drawn in buckets of epochs."""
MAX_SPARK_POINTS = 24
"""At most this many characters in a loss's sparkline (buckets of epochs beyond)."""
NO_MODEL_ID = "(no model id)"
"""The name of the line of epochs recorded by hand (``record_epoch``: no model id) in a flow run."""

MODEL_COLUMNS: list[str] = tables.MODELS.select(
    "time",
    "flow_run_id",
    "flow_name",
    "model_id",
    "library",
    "synthesizer",
    "model_type",
    "table_name",
    "fit_rows",
    "fit_columns",
    "fit_seconds",
    "epochs",
    "status",
    "error_type",
    "final_losses",
)
"""The ``models`` columns the Training section reads (checked against the table at import)."""
EPOCH_COLUMNS: list[str] = tables.TRAINING_EPOCHS.select(
    "time", "flow_run_id", "flow_name", "model_type", "epoch", "loss_type", "loss", "model_id", "epoch_seconds"
)
"""The ``training_epochs`` columns the Training section reads."""
RUN_COLUMNS: list[str] = tables.FLOW_RUNS.select("flow_run_id", "table_name", "rows", "duration_s")
"""The ``flow_runs`` columns it reads: a fit's run's rows and rows per second, a hand line's table."""

STATUSES = ("completed", "failed", "stopped")

TRAINING_HEADERS = {
    "fit_rows": "fit rows",
    "fit_columns": "fit cols",
    "epoch_seconds_mean": "epoch s",
    "run_rows": "run rows",
    "run_rows_per_s": "rows/s",
    "final_losses": "final losses",
    "loss_by_epoch": "losses by epoch",
    "nonfinite_losses": "NaN",
    "nonfinite": "NaN",
    "vs_epoch": "vs ep",
    "change": "trend",
    "by_epoch": "by epoch",
    "no_fit_row": "no fit row",
}
"""Short headers of the Training tables in the terminal and the overview (JSON keeps the names)."""
TRAINING_VIEWS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Training",
        "training",
        (
            "table",
            "model",
            "status",
            "epochs",
            "fit_rows",
            "fit_seconds",
            "epoch_seconds_mean",
            "nonfinite_losses",
            "run_rows_per_s",
        ),
    ),
    ("Training losses", "training_losses", ("table", "model", "loss", "final", "vs_epoch", "change", "by_epoch")),
    (
        "Training per table",
        "training_tables",
        ("table", "fits", "completed", "failed", "stopped", "other", "no_fit_row", "epochs", "fit_seconds", "types"),
    ),
)
"""The Training section in the terminal: ``(title, report attribute, columns)`` (``compact_view``)."""


def compact_view(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """``rows`` cut to ``columns`` for the terminal and the overview, leaving out a column whose every
    value is empty or zero (no NaN loss, no failed fit), so the tables fit 100 columns; a loss's change
    carries its arrow (``↓ -0.5``) (pure; JSON and the artifact keep every column)."""
    kept = [c for c in columns if c in ("table", "model") or any(r.get(c) not in (None, 0, "") for r in rows)]
    out = []
    for r in rows:
        row = {c: r.get(c) for c in kept}
        if "change" in row and row["change"] is not None:
            row["change"] = f"{r.get('arrow') or ''} {row['change']:+.4g}".strip()
        out.append(row)
    return out


@dataclass
class Training:
    """The Training section as plain rows (no I/O)."""

    fits: list[dict[str, Any]] = field(default_factory=list)
    """One row per fit (see the module): table, model, status, epochs, fit rows and seconds, mean epoch
    seconds, final losses with their trend, the fit's flow run's rows and rows per second."""
    losses: list[dict[str, Any]] = field(default_factory=list)
    """One row per fit and loss type: final loss, the epoch it is compared with, change, sparkline."""
    tables: list[dict[str, Any]] = field(default_factory=list)
    """One row per table: fits by status, epochs, fit seconds, model types."""


def _iso(ns: int | None) -> str | None:
    return None if ns is None or ns == NO_TIME else pd.Timestamp(ns, tz="UTC").isoformat()


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# -- the loss curve ---------------------------------------------------------------------------------


def _point(point: Any) -> tuple[int, float | None] | None:
    """``(epoch, loss)`` from a pair; a loss that is not a finite number is ``None``; no epoch: ``None``."""
    try:
        epoch, loss = point
        e = float(epoch)
        if not math.isfinite(e) or e != int(e) or abs(e) > 2**52:
            return None
        value = float(loss)
    except (TypeError, ValueError, OverflowError):
        try:
            return (int(point[0]), None) if float(point[0]).is_integer() else None
        except (TypeError, ValueError, OverflowError, IndexError, KeyError):
            return None
    return int(e), (value if math.isfinite(value) else None)


def loss_curve_svg(losses: Mapping[str, Sequence[tuple[int, float]]], *, title: str) -> str:
    """An SVG chart of one fit's losses: x the epoch number, y the loss, one line per loss type (pure).

    Points whose loss is NaN or infinite are skipped (the line breaks there); a loss with no finite
    point keeps its legend entry; one epoch is one marker; no point at all draws the empty chart.
    Fits longer than ``MAX_CURVE_POINTS`` epochs are drawn one point per bucket of epochs (its last
    finite loss). Names are shown as text (``charts.line_chart``: escaped, controls written out).

    Args:
        losses: Loss type → ``(epoch, loss)`` pairs, in any order (a repeated epoch: the last pair).
        title: The chart's title.

    Returns:
        The SVG document (``charts.markdown_image`` makes it a markdown image).
    """
    by_type: dict[str, dict[int, float | None]] = {}
    for name, points in losses.items():
        series: dict[int, float | None] = {}
        for point in points:
            parsed = _point(point)
            if parsed is not None:
                series[parsed[0]] = parsed[1]
        by_type[str(name)] = series
    every = {e: 0.0 for series in by_type.values() for e in series}
    epochs, _ = bucketed(every, MAX_CURVE_POINTS)  # the x axis (no epoch: the empty chart)
    step = epochs[1] - epochs[0] if len(epochs) > 1 else 1
    lines: dict[str, list[float | None]] = {}
    for name, series in by_type.items():
        values: list[float | None] = [None] * len(epochs)
        for epoch in sorted(series):
            if series[epoch] is not None:
                values[(epoch - epochs[0]) // step] = series[epoch]
        lines[name] = values
    try:
        return line_chart(title, epochs, lines, from_zero=False, x_title="epoch")
    except ValueError:  # loss types named like quality scores of opposite directions: names say "loss"
        return line_chart(title, epochs, {f"{n} (loss)": v for n, v in lines.items()}, from_zero=False, x_title="epoch")


# -- the section (pure) -----------------------------------------------------------------------------


def _end(line: FitLine) -> int:
    """When the line's fit ended (its ``models`` row), else its last epoch (ns; 0: never)."""
    return line.time if line.time is not None else max((r.time for r in line.epochs), default=0)


def _labels(shown: list[FitLine], redact_pii: bool) -> list[str]:
    """A name per line, unique within its table: the model's type (its id's end where two models of
    one table share a type, ``models.model_labels``), ``fit k/n`` (in time order) for a model fitted n
    times in the window, ``(no model id)`` and the flow run id's start for epochs recorded by hand; a
    name still shared gets ``#2``, ``#3``."""
    labels = model_labels(
        [
            (line.table, line.model_id, line.model_type or line.fit.get("synthesizer"))
            for line in shown
            if not line.hand
        ],
        redact_pii=redact_pii,
    )
    fits_of: dict[tuple[str | None, str | None], list[int]] = defaultdict(list)
    for k, line in enumerate(shown):
        if not line.hand and line.model_id is not None:
            fits_of[(line.table, line.model_id)].append(k)
    number = {}
    for ks in fits_of.values():
        for n, k in enumerate(sorted(ks, key=lambda k: (_end(shown[k]), k)), 1):
            number[k] = f" fit {n}/{len(ks)}" if len(ks) > 1 else ""
    taken: set[tuple[str | None, str]] = set()
    out = []
    for k, line in enumerate(shown):
        if line.hand:
            name = f"{NO_MODEL_ID} {line.flow_run_id[:8]}" if line.flow_run_id else NO_MODEL_ID
        elif line.model_id is None:
            name = f"{line.model_type or line.fit.get('synthesizer') or ''} {NO_MODEL_ID}".strip()
        else:
            name = labels[(line.table, line.model_id)] + number[k]
        unique, n = name, 1
        while (line.table, unique) in taken:
            n += 1
            unique = f"{name} #{n}"
        taken.add((line.table, unique))
        out.append(unique)
    return out


def build_training(
    models: pd.DataFrame | None,
    epochs: pd.DataFrame | None,
    runs: pd.DataFrame | None,
    since: datetime,
    until: datetime,
    *,
    flow_name: str | None = None,
    redact_pii: bool = True,
) -> Training:
    """The Training section for ``[since, until)`` (pure).

    Args:
        models: ``models`` rows up to ``until`` (earlier fits place epochs; only the window's are shown).
        epochs: ``training_epochs`` rows (those before ``since`` count only for a fit in the window).
        runs: ``flow_runs`` rows: a fit's run's ``rows`` and rows per second (``rows / duration_s``,
            the whole run's: sampling and the rest), and a hand line's table.
        since: Window start.
        until: Window end.
        flow_name: Only this flow's fits.
        redact_pii: Redact the model ids shown (``models.shown_id``).
    """
    models = models if models is not None else pd.DataFrame()
    epochs = epochs if epochs is not None else pd.DataFrame()
    runs = runs if runs is not None else pd.DataFrame()
    start, end = int(pd.Timestamp(since).value), int(pd.Timestamp(until).value)
    shown = fit_lines(models, epochs, start, end, flow_name)
    run_info: dict[str, tuple[str | None, int | None, float | None]] = {}
    for run, table, rows, duration in zip(
        text_column(runs, "flow_run_id"),
        text_column(runs, "table_name"),
        ints(runs, "rows"),
        floats(runs, "duration_s"),
        strict=True,
    ):
        if run is not None:
            run_info[run] = (table, rows, duration)
    for line in shown:  # epochs without a fit row: the table their flow run was observed with
        if line.table is None and not line.fit:
            line.table = run_info.get(line.flow_run_id or "", (None, None, None))[0]
    # the latest first within each table; tables by name, a fit without a table last
    shown.sort(
        key=lambda line: (
            line.table is None,
            line.table or "",
            -_end(line),
            line.hand,
            line.model_id or "",  # the rest only breaks ties: the same rows in any order, the same lines
            line.flow_run_id or "",
            line.fit.get("status") or "",
        )
    )
    labels = _labels(shown, redact_pii)
    fits, loss_rows = [], []
    for line, label in zip(shown, labels, strict=True):
        per_type = losses_of(line)
        recorded, seconds_mean = epoch_seconds(line)
        trends = {
            name: loss_trend([(e, v) for e, v in values.items() if v is not None]) for name, values in per_type.items()
        }
        stored = final_losses(line.fit.get("final_losses"))
        for name, value in stored.items():  # a library that gave only its last losses
            trends.setdefault(name, {"final": value, "vs_epoch": None, "change": None, "arrow": None})
        nonfinite = sum(v is None for values in per_type.values() for v in values.values())
        _table, rows, duration = run_info.get(line.flow_run_id or "", (None, None, None))
        model_id = shown_id(line.model_id, redact_pii)
        sparks = {name: sparkline(bucketed(values, MAX_SPARK_POINTS)[1]) for name, values in per_type.items()}
        last_time = line.time if line.time is not None else max((r.time for r in line.epochs), default=None)
        fits.append(
            {
                "table": line.table,
                "model": label,
                "status": line.fit.get("status"),
                "epochs": line.fit.get("epochs") if line.fit.get("epochs") is not None else (recorded or None),
                "fit_rows": line.fit.get("fit_rows"),
                "fit_seconds": _round(line.fit.get("fit_seconds"), 3),
                "epoch_seconds_mean": _round(seconds_mean, 4),
                "final_losses": "; ".join(
                    f"{name} {t['final']:.4g}" + (f" {t['arrow']}" if t["arrow"] else "")
                    for name, t in sorted(trends.items())
                    if t["final"] is not None
                )
                or None,
                "loss_by_epoch": " ".join(f"{name} {spark}" for name, spark in sparks.items()) or None,
                "run_rows_per_s": _round(rows / duration, 1) if rows and duration else None,
                "time": _iso(last_time),
                "flow": line.flow_name,
                "model_type": line.model_type,
                "synthesizer": line.fit.get("synthesizer"),
                "library": line.fit.get("library"),
                "fit_columns": line.fit.get("fit_columns"),
                "run_rows": rows,
                "nonfinite_losses": nonfinite,
                "error_type": line.fit.get("error_type"),
                "flow_run_id": line.flow_run_id,
                "model_id": model_id,
            }
        )
        for name, t in sorted(trends.items()):
            values = per_type.get(name, {})
            loss_rows.append(
                {
                    "table": line.table,
                    "model": label,
                    "loss": name,
                    "epochs": sum(v is not None for v in values.values()),
                    "final": _round(t["final"], 6),
                    "vs_epoch": t["vs_epoch"],
                    "change": _round(t["change"], 6),
                    "arrow": t["arrow"],
                    "by_epoch": sparks.get(name),
                    "nonfinite": sum(v is None for v in values.values()),
                    "model_id": model_id,
                }
            )
    return Training(fits, loss_rows, per_table(fits))


def per_table(fits: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fits per table from the fit rows: how many, by status (``other``: a status none of ``STATUSES``;
    ``no_fit_row``: epochs without a ``models`` row, recorded by hand or by a fit that has not written
    one; the counts add up to ``fits``), epochs, fit seconds summed, model types; the tables in the
    fits' order (pure)."""
    groups: dict[str | None, list[Mapping[str, Any]]] = {}
    for row in fits:
        groups.setdefault(row["table"], []).append(row)
    out = []
    for table, rows in groups.items():
        statuses = [r["status"] for r in rows]
        seconds = [r["fit_seconds"] for r in rows if r["fit_seconds"] is not None]
        epochs = [r["epochs"] for r in rows if r["epochs"] is not None]
        out.append(
            {
                "table": table,
                "fits": len(rows),
                **{status: statuses.count(status) for status in STATUSES},
                "other": sum(s is not None and s not in STATUSES for s in statuses),  # another writer's word
                "no_fit_row": statuses.count(None),
                "epochs": sum(epochs) if epochs else None,
                "fit_seconds": round(sum(seconds), 3) if seconds else None,
                "types": ", ".join(sorted({r["model_type"] for r in rows if r["model_type"]})) or None,
                "time": max((r["time"] for r in rows if r["time"]), default=None),
            }
        )
    return out


def training_summary(fits: Sequence[Mapping[str, Any]]) -> str:
    """One sentence for the overview from the fit rows: fits by status, epochs (counts only, no store text)."""
    counts = {status: sum(r["status"] == status for r in fits) for status in STATUSES}
    parts = [f"{counts[s]} {s}" for s in STATUSES if counts[s]]
    other = sum(r["status"] is not None and r["status"] not in STATUSES for r in fits)
    if other:
        parts.append(f"{other} with another status")
    unfinished = sum(r["status"] is None for r in fits)
    if unfinished:
        parts.append(f"{unfinished} with epochs but no fit row (a fit still running, or epochs recorded by hand)")
    epochs = sum(r["epochs"] or 0 for r in fits)
    return (
        f"{len(fits)} fit(s) in this window: {', '.join(parts)}; {epochs:,} epochs. Each fit: the "
        "`synthobs-training` artifact; its final losses with their trend and sparklines: `synthobs-training-curves`."
    )
