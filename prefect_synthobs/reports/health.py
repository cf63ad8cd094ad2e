"""The health report: the store's tables turned into dashboards.

``build_report`` is pure: frames in, a ``HealthReport`` (plain tables and
numbers) out. ``load_frames`` reads the store for a window with column and
partition pruning; ``publish_artifacts`` and ``render_text`` are the outputs
(Prefect artifacts, the terminal). Store text is made safe where it is shown,
never in the data: escaped in markdown (``escape``: a flow called ``<b>|x`` cannot
break a table), written out in the terminal and in SVG (``reports.text``: an
escape sequence in a name shows as ``\\x1b[2J``, it never clears the screen).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from rich.console import Console
from rich.table import Table
from rich.text import Text

from prefect_synthobs import catalog as names
from prefect_synthobs.health import tables
from prefect_synthobs.health.dedupe import one_row_per_run

# defined there; also health's names (``hr.escape``, ``hr.table_rows``, ``hr.EMPTY_TABLES``)
from prefect_synthobs.reports.artifact_tables import ARTIFACTS as ARTIFACTS
from prefect_synthobs.reports.artifact_tables import EMPTY_TABLES as EMPTY_TABLES
from prefect_synthobs.reports.artifact_tables import artifact_table
from prefect_synthobs.reports.artifact_tables import table_rows as table_rows
from prefect_synthobs.reports.cells import TIME_COLUMNS, header, pct
from prefect_synthobs.reports.cells import bar as bar
from prefect_synthobs.reports.cells import display_value as display_value
from prefect_synthobs.reports.cells import escape as escape
from prefect_synthobs.reports.cells import markdown_table as markdown_table
from prefect_synthobs.reports.charts import line_chart, markdown_image, sparkline
from prefect_synthobs.reports.health_query import BY_TASK, FAILED_ROWS, summarize, summarize_rows
from prefect_synthobs.reports.models import (
    MARKDOWN_COLUMNS,
    MODEL_FRAME_COLUMNS,
    MODELS_TABLE,
    TERMINAL_VIEWS,
    leaderboard,
    present,
    quality_table,
)
from prefect_synthobs.reports.text import terminal_text
from prefect_synthobs.reports.training import (
    EPOCH_COLUMNS,
    MODEL_COLUMNS,
    RUN_COLUMNS,
    TRAINING_VIEWS,
    build_training,
    compact_view,
    training_summary,
)
from prefect_synthobs.reports.trends import (
    DEFAULT_TREND_DAYS,
    Trends,
    build_trends,
    load_trend_frames,
    trend_days,
)
from prefect_synthobs.telemetry.redaction import redact

LOW_BUDGET_SHARE = 0.2  # a privacy budget with less than this share left is flagged LOW

# the columns the report reads, checked against the table definitions at import
COLUMNS: dict[str, list[str]] = {
    t.name: t.select(*columns)
    for t, columns in (
        (
            tables.FLOW_RUNS,
            (
                "flow_run_id",
                "flow_name",
                "kind",
                "state_type",
                "start_time",
                "end_time",
                "duration_s",
                "rows",
                "error_type",
                "error_message",
                "gpu_util_mean",
                *(c for c in RUN_COLUMNS if c not in ("flow_run_id", "rows", "duration_s")),  # Training's
                # how many attempts the run took, where the store's flow rows say it (newer stores)
                *(("run_count",) if "run_count" in tables.FLOW_RUNS.columns else ()),
            ),
        ),
        (
            tables.TASK_RUNS,
            (
                "flow_name",
                "task_name",
                "state_type",
                "start_time",
                "duration_s",
                "run_count",
                "error_type",
                "error_message",
            ),
        ),
        (
            tables.QUALITY_CHECKS,
            ("time", "flow_name", "table_name", "model_id", "model_type", "metric", "score", "threshold", "passed"),
        ),
        (
            tables.GPU_SAMPLES,
            ("time", "host", "gpu_index", "gpu_uuid", "gpu_name", "utilization", "memory_used_bytes", "energy_j"),
        ),
        (tables.PRIVACY_LEDGER, ("time", "flow_name", "dataset", "epsilon", "spent", "budget", "remaining")),
    )
}


@dataclass
class HealthReport:
    """Everything the dashboards show, as plain values (no I/O)."""

    since: datetime
    until: datetime
    overview: list[dict[str, Any]]
    flows: list[dict[str, Any]]
    slowest_tasks: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    quality: list[dict[str, Any]]
    gpus: list[dict[str, Any]]
    privacy: list[dict[str, Any]]
    gate_pass_rate: float | None
    totals: dict[str, Any] = field(default_factory=dict)
    failed_tasks: list[dict[str, Any]] = field(default_factory=list)
    """Most recent failed or crashed task runs, in completed flows too (messages redacted)."""
    trends: Trends | None = None
    """Daily series over the trend's days (``with_trends``); ``None``: no trend pictures."""
    models: list[dict[str, Any]] = field(default_factory=list)
    """The models side by side: one row per (table, model) (``reports.models.leaderboard``)."""
    training: list[dict[str, Any]] = field(default_factory=list)
    """One row per fit in the window, epochs recorded by hand one per flow run (``reports.training``)."""
    training_losses: list[dict[str, Any]] = field(default_factory=list)
    """One row per fit and loss type: final loss, its trend, a sparkline per epoch."""
    training_tables: list[dict[str, Any]] = field(default_factory=list)
    """Fits per table: by status, epochs, fit seconds, model types."""

    @property
    def empty(self) -> bool:
        """Nothing to show: no finished run, and no fit or epoch (a long fit's epochs show while it runs)."""
        return not self.totals.get("runs") and not self.training

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "totals": self.totals,
            "overview": self.overview,
            "flows": self.flows,
            "slowest_tasks": self.slowest_tasks,
            "failures": self.failures,
            "failed_tasks": self.failed_tasks,
            "quality": self.quality,
            "models": self.models,
            "training": self.training,
            "training_losses": self.training_losses,
            "training_tables": self.training_tables,
            "gpus": self.gpus,
            "privacy": self.privacy,
            "gate_pass_rate": self.gate_pass_rate,
            "trends": self.trends.as_dict() if self.trends is not None else None,
        }


# -- reading (edge) ----------------------------------------------------------------


_RUN_ID = tables.TASK_RUNS.run_id_column or "task_run_id"
_TASK_RUN_KEYS = (_RUN_ID, "source", "end_time", "state_type")  # what ``one_row_per_run`` decides with


def one_task_row_per_run(frame: pd.DataFrame, keep: list[str] | None = None) -> pd.DataFrame:
    """``task_runs`` rows (with ``task_run_id``, ``source``, ``end_time``) as ``HealthStore.read`` keeps
    them: one row per run, chosen by ``one_row_per_run``; then only the ``keep`` columns (pure).

    ``read(deduplicate=True)`` does the same but also reads and hashes every ``event_id``: the task
    rows are the millions, and a row written twice (same ``event_id``) is one run written twice, so
    one hash of the run ids finds both kinds of repeat, and only the repeated runs go through
    ``one_row_per_run`` (a store with no repeat costs the hash alone).
    """
    repeated = frame[_RUN_ID].duplicated(keep=False).to_numpy()
    if repeated.any():
        rows = np.flatnonzero(repeated)
        candidates = frame.iloc[rows]
        chosen = one_row_per_run(
            pa.table(
                {
                    _RUN_ID: pa.Array.from_pandas(candidates[_RUN_ID].astype(object), type=pa.string()),
                    "source": pa.Array.from_pandas(candidates["source"].astype(object), type=pa.string()),
                    "state_type": pa.Array.from_pandas(candidates["state_type"].astype(object), type=pa.string()),
                    "end_time": pa.Array.from_pandas(candidates["end_time"]),
                    "row": pa.array(rows),
                }
            ),
            _RUN_ID,
            "end_time",
        )
        keep_rows = ~repeated
        keep_rows[chosen["row"].to_numpy()] = True
        frame = frame[keep_rows].reset_index(drop=True)
    if keep is not None:
        frame = frame[keep]
    return frame


def load_frames(
    store: Any, since: datetime, until: datetime, flow_name: str | None = None, previous: bool = True
) -> dict[str, pd.DataFrame]:
    """The tables the report needs, for ``[since, until)`` (and, for quality
    trends, the window before it; for privacy budgets, their whole ledger, a row
    per spend, so a budget shows on a day nothing was spent), read with column
    and partition pruning; ``flow_name`` keeps that flow's rows of every table
    that names its flow (GPU samples do not). Each table holds what
    ``HealthStore.read`` returns: one row per flow run and per task run
    (``one_row_per_run``), no ``event_id`` twice, so the report counts what
    ``read`` counts (task runs: ``one_task_row_per_run``)."""
    span = until - since
    frames = {}
    for table, columns in COLUMNS.items():
        start: datetime | None = since - span if previous and table == names.QUALITY_CHECKS else since
        if table == names.PRIVACY_LEDGER:
            start = None
        strings = [
            c
            for c in ("flow_name", "task_name", "kind", "state_type", "table_name", "metric", "dataset")
            if c in columns
        ]
        if table == names.TASK_RUNS:
            summary = summarize(store, since, until, flow_name)  # aggregates, not rows (None: odd files)
            if summary is not None:
                frames.update(summary)
                continue
            df = one_task_row_per_run(
                store.read(
                    table,
                    since=start,
                    until=until,
                    columns=[*columns, *(c for c in _TASK_RUN_KEYS if c not in columns)],
                    categorical=[*strings, "source"],
                    deduplicate=False,
                ),
                keep=columns,
            )
        else:
            df = store.read(table, since=start, until=until, columns=columns, categorical=strings)
        if flow_name is not None and "flow_name" in df.columns:
            df = df[df.flow_name == flow_name]
        frames[table] = df
    # the fits, all of them (a model checked now may be old; earlier fits of a model place its epochs), and
    # the epochs of the window and the one before (a fit that ends in the window may have begun before it)
    columns = [*MODEL_FRAME_COLUMNS, *(c for c in MODEL_COLUMNS if c not in MODEL_FRAME_COLUMNS)]
    frames[MODELS_TABLE] = store.read(MODELS_TABLE, until=until, columns=columns)
    epochs = store.read(
        names.TRAINING_EPOCHS,
        since=since - span if previous else since,
        until=until,
        columns=EPOCH_COLUMNS,
        categorical=["flow_name", "loss_type"],
    )
    frames[names.TRAINING_EPOCHS] = epochs[epochs.flow_name == flow_name] if flow_name is not None else epochs
    return frames


# -- the report (pure) -----------------------------------------------------------------


def _num(value: Any, digits: int = 4) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else round(f, digits)


def _p95(values: pd.Series) -> float | None:
    values = values.dropna()
    return _num(np.percentile(values, 95)) if len(values) else None


def _text(value: Any) -> Any:
    """A missing value (``None``, ``NaN``, ``pd.NA``) as ``None``, so no table shows ``nan``."""
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _count(value: Any) -> int | None:
    """A whole number from the store, ``None`` where it is missing."""
    return None if value is None or pd.isna(value) else int(value)


def _ts(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


def build_report(
    frames: dict[str, pd.DataFrame],
    since: datetime,
    until: datetime,
    *,
    top: int = 10,
    redact_pii: bool = True,
    flow_name: str | None = None,
) -> HealthReport:
    """Compute every dashboard table from the store's frames for the window.

    ``redact_pii`` redacts the error messages and model ids it shows (``telemetry.redaction.redact``)
    again: a store can hold rows another writer made without redaction. ``flow_name``: the flow the
    frames were read for (``load_frames``), so the Training section shows that flow's fits only (the
    ``models`` frame holds every flow's: the leaderboard looks fits up by model id)."""
    message: Callable[[Any], Any] = (lambda v: redact(v) if isinstance(v, str) else v) if redact_pii else _text
    runs = frames[names.FLOW_RUNS]
    runs = (
        runs[(runs.start_time >= pd.Timestamp(since)) & (runs.start_time < pd.Timestamp(until))] if len(runs) else runs
    )
    quality = frames[names.QUALITY_CHECKS]
    gpu = frames[names.GPU_SAMPLES]
    ledger = frames[names.PRIVACY_LEDGER]

    current_q = quality[quality.time >= pd.Timestamp(since)] if len(quality) else quality
    previous_q = quality[quality.time < pd.Timestamp(since)] if len(quality) else quality
    gated = current_q[current_q.threshold.notna()] if len(current_q) else current_q
    gate_pass_rate = _num(gated.passed.astype(bool).mean()) if len(gated) else None

    overview = []
    for kind, group in runs.groupby("kind", sort=True, observed=True) if len(runs) else []:
        ok = group.state_type == "COMPLETED"
        duration = group.duration_s.dropna()
        rows = int(group["rows"].fillna(0).sum())
        overview.append(
            {
                "kind": kind,
                "runs": len(group),
                "success_rate": _num(ok.mean()),
                "avg_duration_s": _num(duration.mean(), 3) if len(duration) else None,
                "p95_duration_s": _p95(group.duration_s),
                "rows": rows,
                "rows_per_s": _num(rows / duration.sum(), 1) if rows and duration.sum() > 0 else None,
                "gpu_util_mean": _num(group.gpu_util_mean.mean()) if group.gpu_util_mean.notna().any() else None,
            }
        )

    # the window's task runs, summarised (load_frames did it where the rows lie; hand-made frames here)
    summary = frames if BY_TASK in frames else summarize_rows(frames[names.TASK_RUNS], since, until)
    by_task, bad_tasks = summary[BY_TASK], summary[FAILED_ROWS]
    per_flow = by_task.groupby("flow_name", dropna=False)[["failed", "retried"]].sum()
    task_counts = {flow: (int(r.failed), int(r.retried)) for flow, r in per_flow.iterrows()}

    flows = []
    for flow, group in runs.groupby("flow_name", sort=True, observed=True) if len(runs) else []:
        ok = group[group.state_type == "COMPLETED"]
        n_failed, n_retried = task_counts.get(flow, (0, 0))
        flows.append(
            {
                "flow": flow,
                "runs": len(group),
                "failed": int((group.state_type != "COMPLETED").sum()),
                "success_rate": _num(len(ok) / len(group)),
                "p95_duration_s": _p95(group.duration_s),
                "last_success": _ts(ok.end_time.max()) if len(ok) else None,
                "failed_tasks": n_failed,
                "retried_tasks": n_retried,
            }
        )
    flows.sort(key=lambda r: (r["success_rate"] if r["success_rate"] is not None else 1.0, r["flow"]))

    slowest = [
        {
            "flow": _text(r.flow_name),
            "task": _text(r.task_name),
            "runs": int(r.runs),
            "p95_duration_s": _num(r.p95),
            "max_duration_s": _num(r.max),
        }
        for r in by_task.sort_values(
            ["p95", "flow_name", "task_name"], ascending=[False, True, True], na_position="last", kind="stable"
        )
        .head(top)
        .itertuples()
    ]

    failed = runs[runs.state_type.isin(["FAILED", "CRASHED", "CANCELLED"])] if len(runs) else runs
    failures = (
        [
            {
                "time": _ts(r.start_time),
                "flow": r.flow_name,
                "state": r.state_type,
                "attempts": _count(getattr(r, "run_count", None)),
                "error_type": _text(r.error_type),
                "error_message": message(_text(r.error_message)),
            }
            for r in failed.sort_values("start_time", ascending=False).head(top).itertuples()
        ]
        if len(failed)
        else []
    )

    quality_rows = quality_table(current_q, previous_q, redact_pii=redact_pii)

    gpus = []
    if len(gpu):
        for (host, index, _uuid), group in gpu.groupby(
            ["host", "gpu_index", "gpu_uuid"], dropna=False, sort=True, observed=True
        ):
            gpus.append(
                {
                    "host": host,
                    "gpu": int(str(index)),
                    "name": group.gpu_name.iloc[-1],
                    "util_mean": _num(group.utilization.mean()),
                    "util_max": _num(group.utilization.max()),
                    "memory_peak_bytes": int(group.memory_used_bytes.max())
                    if group.memory_used_bytes.notna().any()
                    else None,
                    "energy_j": _num(group.energy_j.sum(), 1) if group.energy_j.notna().any() else None,
                    "samples": len(group),
                }
            )

    privacy = []
    if len(ledger):  # the whole ledger up to ``until``: a budget's state shows even if nothing was spent lately
        ledger = ledger[ledger.time < pd.Timestamp(until)]
        in_window = ledger.time >= pd.Timestamp(since)
        for dataset, group in ledger.sort_values("time").groupby("dataset", sort=True, observed=True):
            last = group.iloc[-1]
            share = last.remaining / last.budget if last.budget else 0.0
            privacy.append(
                {
                    "dataset": dataset,
                    "spent_in_window": _num(group.epsilon[in_window[group.index]].sum()),
                    "used": _num(last.spent),
                    "budget": _num(last.budget),
                    "remaining": _num(last.remaining),
                    "status": "LOW" if share < LOW_BUDGET_SHARE else "ok",
                }
            )

    failed_tasks = [
        {
            "time": _ts(r.start_time),
            "flow": r.flow_name,
            "task": r.task_name,
            "state": r.state_type,
            "attempts": _count(r.run_count),
            "error_type": _text(r.error_type),
            "error_message": message(_text(r.error_message)),
        }
        for r in bad_tasks.head(top).itertuples()  # the most recent first
    ]
    totals = {
        "runs": len(runs),
        "failed": int((runs.state_type != "COMPLETED").sum()) if len(runs) else 0,
        "rows": int(runs["rows"].fillna(0).sum()) if len(runs) else 0,
        "tasks": int(by_task.runs.sum()),
        "failed_tasks": int(by_task.failed.sum()),
        "retried_tasks": int(by_task.retried.sum()),
    }
    training = build_training(
        frames.get(MODELS_TABLE),
        frames.get(names.TRAINING_EPOCHS),
        frames[names.FLOW_RUNS],
        since,
        until,
        flow_name=flow_name,
        redact_pii=redact_pii,
    )
    return HealthReport(
        since,
        until,
        overview,
        flows,
        slowest,
        failures,
        quality_rows,
        gpus,
        privacy,
        gate_pass_rate,
        totals,
        failed_tasks,
        models=leaderboard(current_q, frames.get(MODELS_TABLE), redact_pii=redact_pii),
        training=training.fits,
        training_losses=training.losses,
        training_tables=training.tables,
    )


def with_trends(report: HealthReport, trends: Trends) -> HealthReport:
    """The report with its trends, and a sparkline column (one character per day, oldest first) in the
    flows, quality and GPU tables, where a picture cannot go (pure: returns a new report)."""
    by_model_metric = trends.quality_by_metric  # keyed (table, line, metric), "" for none
    flows = [
        {
            **r,
            "success_by_day": sparkline(trends.success_rate.get(r["flow"], []), 0.0, 1.0),
            "p95_by_day": sparkline(trends.p95_duration_s.get(r["flow"], [])),
        }
        for r in report.flows
    ]
    quality = [
        {
            **r,
            "score_by_day": sparkline(
                by_model_metric.get(
                    (r["table"] or "", r.get("model_type") or r.get("model_id") or "", str(r["metric"])), []
                )
            ),
        }
        for r in report.quality
    ]
    gpus = [
        {**g, "util_by_day": sparkline(trends.gpu_util.get(f"{g['host']}/gpu{g['gpu']}", []), 0.0, 1.0)}
        for g in report.gpus
    ]
    return dataclasses.replace(report, flows=flows, quality=quality, gpus=gpus, trends=trends)


def report_for(
    store: Any,
    since: datetime,
    until: datetime,
    flow_name: str | None = None,
    *,
    days: int | None = DEFAULT_TREND_DAYS,
    progress: Callable[[str], None] | None = None,
    redact_pii: bool = True,
) -> HealthReport:
    """Read the store and build the report for ``[since, until)``, with daily trends over at least
    ``days`` days ending at ``until`` (``None``: no trends, one read less).

    Args:
        store: The ``HealthStore`` to read.
        since: Window start.
        until: Window end.
        flow_name: Only this flow's runs.
        days: Trend length in days (the window's if longer); ``None`` for no trends.
        progress: Called with a short line as each stage starts (a CLI shows it).
        redact_pii: Redact the error messages and model ids the report shows (the ``redact_pii`` setting).
    """
    say = progress or (lambda _line: None)
    say("reading the store…")
    frames = load_frames(store, since, until, flow_name)
    say("building the report…")
    report = build_report(frames, since, until, redact_pii=redact_pii, flow_name=flow_name)
    if days is None:
        return report
    trend = trend_days(since, until, days)
    say(f"reading {len(trend)} days of trends…")
    frames = load_trend_frames(store, trend, until, flow_name)
    return with_trends(report, build_trends(frames, trend, redact_pii=redact_pii))


# -- rendering (pure) ----------------------------------------------------------------------


def overview_markdown(report: HealthReport) -> str:
    """The overview artifact: per kind, then quality, privacy and GPU at a glance."""
    window = f"{report.since:%Y-%m-%d %H:%M} → {report.until:%Y-%m-%d %H:%M} UTC"
    if report.empty:
        return (
            f"# synthobs health\n\n{window}\n\n**No runs in this window.** Nothing was recorded "
            "between these times; check that flows are decorated with `observe` and write to this store."
        )
    lines = [
        f"# synthobs health\n\n{window} · {report.totals['runs']} runs, {report.totals['failed']} not "
        f"completed, {report.totals['rows']:,} rows generated; {report.totals.get('failed_tasks', 0)} task runs "
        f"failed, {report.totals.get('retried_tasks', 0)} retried\n",
        "| kind | runs | success | | avg s | p95 s | rows | rows/s | GPU util |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.overview:
        lines.append(
            f"| {escape(r['kind'])} | {r['runs']} | {pct(r['success_rate'])} | `{bar(r['success_rate'])}` | "
            f"{display_value('avg_duration_s', r['avg_duration_s'])} | "
            f"{display_value('p95_duration_s', r['p95_duration_s'])} | {r['rows']:,} | "
            f"{display_value('rows_per_s', r['rows_per_s'])} | {display_value('gpu_util_mean', r['gpu_util_mean'])} |"
        )
    lines.append(f"\n**Quality gates passed:** {pct(report.gate_pass_rate)} `{bar(report.gate_pass_rate)}`")
    shown = present(report.models, MARKDOWN_COLUMNS)
    if shown:  # each model its own row: two models of one table are never one averaged number
        lines.append("\n## Models\n\nOne row per table and model; each score is the model's latest in the window.\n")
        lines.append(markdown_table([{header(c): display_value(c, v) for c, v in r.items()} for r in shown]))
    if report.training:
        lines.append(f"\n## Training\n\n{training_summary(report.training)}\n")
        per_table = compact_view(report.training_tables, (*TRAINING_VIEWS[2][2], "time"))
        lines.append(markdown_table([{header(c): display_value(c, v) for c, v in r.items()} for r in per_table]))
    if report.privacy:
        budgets = ", ".join(
            f"{escape(p['dataset'])} {escape(p['remaining'])} left of {escape(p['budget'])}"
            + (" **LOW**" if p["status"] == "LOW" else "")
            for p in report.privacy
        )
        lines.append(f"\n**Privacy budgets:** {budgets}")
    if report.gpus:
        util = [g["util_mean"] for g in report.gpus if g["util_mean"] is not None]
        mean = sum(util) / len(util) if util else None
        lines.append(f"\n**GPU utilisation:** {pct(mean)} `{bar(mean)}` over {len(report.gpus)} device(s)")
    if report.trends is not None:
        pictures = trend_pictures(report.trends)
        if pictures:
            t = report.trends
            lines.append(f"\n## Trends, {len(t.days)} days to {t.days[-1]:%Y-%m-%d} (UTC days, today so far)\n")
            lines += [f"{markdown_image(svg, alt)}\n" for alt, svg in pictures]
    return "\n".join(lines)


def _pct_tick(value: float) -> str:
    return f"{100 * value:.0f} %"


def trend_pictures(trends: Trends) -> list[tuple[str, str]]:
    """The overview's charts as ``(alt text, SVG)``: success rate and p95 duration per flow, quality per
    table, GPU utilisation and energy, privacy budget used; a chart with no data is left out (pure)."""
    days = trends.days
    charts = [
        ("Success rate per flow per day", trends.success_rate, {"y_min": 0.0, "y_max": 1.0, "y_format": _pct_tick}),
        ("p95 duration per flow per day (s)", trends.p95_duration_s, {}),
        (
            "Overall quality score per table and model per day",
            trends.quality,
            {"y_min": 0.0, "y_max": 1.0, "direction": "higher"},
        ),
        ("GPU utilisation per device per day", trends.gpu_util, {"y_min": 0.0, "y_max": 1.0, "y_format": _pct_tick}),
        ("GPU energy per host per day (kWh)", trends.gpu_energy_kwh, {}),
        (
            "Privacy budget used per dataset (ε, end of day; dashed: its budget)",
            trends.privacy_used,
            {"limits": {k: v for k, v in trends.privacy_budget.items() if v is not None}},
        ),
    ]
    out = []
    for title, series, options in charts:
        if any(v is not None for values in series.values() for v in values):
            out.append((title, line_chart(title, days, {str(k): v for k, v in series.items()}, **options)))  # type: ignore[arg-type]
    return out


def publish_artifacts(report: HealthReport) -> dict[str, Any]:
    """Create the report's Prefect artifacts (inside a flow run); returns their ids by key."""
    ids: dict[str, Any] = {
        "synthobs-overview": create_markdown_artifact(
            markdown=overview_markdown(report), key="synthobs-overview", description="synthobs health overview"
        )
    }
    for key, (attr, description) in ARTIFACTS.items():
        table = artifact_table(key, getattr(report, attr))
        ids[key] = create_table_artifact(table=table, key=key, description=description)
    gated = report.gate_pass_rate is not None
    ids["synthobs-quality-gates"] = create_progress_artifact(  # a progress artifact cannot say n/a: its text does
        progress=100.0 * (report.gate_pass_rate or 0.0),
        key="synthobs-quality-gates",
        description="Share of quality gate checks passed in the window."
        if gated
        else "No quality gate was checked in the window (0 here means none, not all failed).",
    )
    return ids


def window(
    since: str | datetime | None, until: datetime | None = None, default: timedelta = timedelta(hours=24)
) -> tuple[datetime, datetime]:
    """``(since, until)`` from a timestamp or a duration such as ``24h``, ``7d``, ``90m``."""
    until = until or datetime.now(timezone.utc)
    if since is None:
        return until - default, until
    if isinstance(since, datetime):
        return since, until
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", since)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return until - timedelta(**{unit: float(match.group(1))}), until
    try:
        ts = pd.Timestamp(since)
    except ValueError:
        raise ValueError(f"since must be a duration like 24h, 7d, 90m or a timestamp, got {since!r}") from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts >= pd.Timestamp(until):
        raise ValueError(f"since must be before the window's end ({until:%Y-%m-%d %H:%M} UTC), got {since!r}")
    return ts.to_pydatetime(), until


_NAME_COLUMNS = {"flow", "task", "table", "model", "metric", "dataset", "host", "name", "kind", "error_message"}
_NAME_COLUMNS.update({"loss", "types"})  # Training's loss types and model types wrap too
# JSON and the artifacts keep these; the terminal leaves them out so the GPU and quality tables fit 100 columns
_NOT_IN_TERMINAL = {"samples", "model_id", "model_type"}


def _cell(column: str, value: Any) -> str:
    """A terminal table cell: ``display_value`` with every control and escape sequence written out."""
    return terminal_text(display_value(column, value))


def render_text(report: HealthReport, console: Any = None) -> None:
    """The dashboards in the terminal, with ``rich`` (which Prefect ships).

    Store text never reaches the terminal raw: every cell is ``terminal_text`` (escape sequences,
    controls and bidi overrides written out as ``\\x1b``, ``\\u202e``) printed as a ``rich.text.Text``
    (no markup: a flow called ``[bold]x[/]`` shows as that)."""
    # piped output is not cut to 80 columns: tables keep their names whole
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    console.print(f"[bold]synthobs health[/bold]  {report.since:%Y-%m-%d %H:%M} → {report.until:%Y-%m-%d %H:%M} UTC")
    if report.empty:
        console.print("No runs in this window.")
        return
    t = report.totals
    console.print(
        f"{t['runs']} runs, {t['failed']} not completed, {t['rows']:,} rows generated, "
        f"{t.get('failed_tasks', 0)} task runs failed, {t.get('retried_tasks', 0)} retried; "
        f"quality gates passed {pct(report.gate_pass_rate)} {bar(report.gate_pass_rate)}"
    )
    if report.trends is not None and report.trends.days:
        days = report.trends.days
        console.print(f"sparklines: one character per UTC day, {days[0]:%m-%d} → {days[-1]:%m-%d} (· no data)")
    flow_trends: list[dict[str, Any]] = [
        {k: r[k] for k in ("flow", "success_by_day", "p95_by_day") if k in r} for r in report.flows
    ]
    sections: list[tuple[str, list[dict[str, Any]], str | None]] = [
        ("Overview", report.overview, None),
        # the flows' sparklines in a table of their own: both side by side with the counts overflow 100 columns
        ("Flows", [{k: v for k, v in r.items() if not k.endswith("_by_day")} for r in report.flows], None),
        ("Flow trends", flow_trends if report.trends is not None else [], None),
        ("Slowest tasks", report.slowest_tasks, "synthobs-slowest-tasks"),
        ("Recent failures", report.failures, "synthobs-failures"),
        ("Failed tasks", report.failed_tasks, "synthobs-failed-tasks"),
        ("Quality", report.quality, "synthobs-quality"),
        # the leaderboard: "Models" says when it is empty; its privacy half is left out when nothing computed one
        *(
            (title, present(report.models, columns), "synthobs-models" if k == 0 else None)
            for k, (title, columns) in enumerate(TERMINAL_VIEWS)
        ),
        # Training: every fit, its losses, per table ("Training" says when there is none)
        *(
            (
                title,
                compact_view(getattr(report, attr), columns),
                "synthobs-training" if k == 0 else None,
            )
            for k, (title, attr, columns) in enumerate(TRAINING_VIEWS)
        ),
        ("GPUs", report.gpus, "synthobs-gpu"),
        ("Privacy budgets", report.privacy, "synthobs-privacy"),
    ]
    for title, rows, empty_key in sections:
        if not rows:
            if empty_key is not None:
                console.print(Text(f"{title}: {EMPTY_TABLES[empty_key]}", style="dim"))
            continue
        # a column with no value in any row (e.g. GPU utilisation on hosts without a GPU) is left out
        # (and the GPU sample count, which JSON and the artifact keep: the GPU table then fits 100 columns)
        columns = [c for c in rows[0] if c not in _NOT_IN_TERMINAL and any(r.get(c) is not None for r in rows)]
        table = Table(title=title, title_justify="left")
        for column in columns:
            if column.endswith("_by_day"):  # a sparkline is whole or useless: never cut (its newest days are last)
                width = max(len(str(r.get(column) or "")) for r in rows)
                table.add_column(header(column), no_wrap=True, min_width=width)
            elif column in _NAME_COLUMNS:  # a long name wraps, it is not cut; a short one stays on one line
                longest = max(len(_cell(column, r.get(column))) for r in rows)
                table.add_column(header(column), overflow="fold", min_width=min(longest, 12))
            else:  # numbers and times stay on one line
                width = max(len(_cell(column, r.get(column))) for r in rows)
                table.add_column(
                    header(column),
                    justify="left" if column in TIME_COLUMNS else "right",
                    no_wrap=True,
                    min_width=width,
                )
        for row in rows:
            table.add_row(*[Text(_cell(c, row.get(c))) for c in columns])  # never markup
        console.print(table)
