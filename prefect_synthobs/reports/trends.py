"""Daily trends for the health report: success rate and p95 duration per flow, quality per table and
model (never averaged across models), GPU utilisation and energy, privacy budget used.

``build_trends`` is pure (frames in, daily series out); ``load_trend_frames`` reads the store for
the trend's days with column and partition pruning, reducing ``gpu_samples`` (the one large table
here: a sample per device per interval) to daily figures one day at a time, so memory stays that of
one day's samples whatever the period. Days are UTC calendar days; the last one ends at the report's
``until`` (so today is partial).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import pandas as pd

from prefect_synthobs import catalog as names
from prefect_synthobs.reports.models import finite_scores, lineage, model_id_column, series_names, text_column

DEFAULT_TREND_DAYS = 14
MAX_TREND_DAYS = 92

TREND_COLUMNS: dict[str, list[str]] = {
    names.FLOW_RUNS: ["flow_name", "state_type", "start_time", "duration_s"],
    names.QUALITY_CHECKS: ["time", "flow_name", "table_name", "model_id", "model_type", "metric", "score"],
    names.PRIVACY_LEDGER: ["time", "flow_name", "dataset", "spent", "budget"],
}
GPU_COLUMNS = ["time", "host", "gpu_index", "utilization", "energy_j"]
GPU_DAILY = "gpu_daily"
OVERALL_METRIC = "overall"  # the quality metric the per-table chart follows  # the frame key of the reduced GPU samples

Daily = list[float | None]


@dataclass
class Trends:
    """One value per day per series (``None``: nothing recorded that day). Plain values, no I/O."""

    days: list[date]
    success_rate: dict[str, Daily] = field(default_factory=dict)
    """Per flow: share of its runs that started that day and completed (flows with most runs first)."""
    p95_duration_s: dict[str, Daily] = field(default_factory=dict)
    """Per flow: p95 duration of its runs that started that day, seconds."""
    quality: dict[str, Daily] = field(default_factory=dict)
    """Per table and model line (``series_names``: ``"customers · CTGAN"``, every fit of that type; an id
    without a type its own line): its ``overall`` quality score that day, the day's latest check of that
    line (a model retrained twice a day shows its newest fit, never a mean of two fits); the most
    recently checked first. Two types are never one line."""
    quality_by_metric: dict[tuple[str, str, str], Daily] = field(default_factory=dict)
    """Per (table, line, metric), line as ``reports.models.lineage`` (the model type, else the id),
    ``""`` for a missing table or model: the day's latest score."""
    gpu_util: dict[str, Daily] = field(default_factory=dict)
    """Per device (``host/gpuN``): mean utilisation that day, 0–1."""
    gpu_energy_kwh: dict[str, Daily] = field(default_factory=dict)
    """Per host: energy its GPUs used that day, kWh."""
    privacy_used: dict[str, Daily] = field(default_factory=dict)
    """Per dataset: budget spent so far at the end of the day (carried over days without spending)."""
    privacy_budget: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        def flat(series: dict[Any, Daily]) -> dict[str, Daily]:  # a tuple's empty parts (no model) left out
            return {(" / ".join(p for p in k if p) if isinstance(k, tuple) else str(k)): v for k, v in series.items()}

        return {
            "days": [d.isoformat() for d in self.days],
            "success_rate": flat(self.success_rate),
            "p95_duration_s": flat(self.p95_duration_s),
            "quality": flat(self.quality),
            "quality_by_metric": flat(self.quality_by_metric),
            "gpu_util": flat(self.gpu_util),
            "gpu_energy_kwh": flat(self.gpu_energy_kwh),
            "privacy_used": flat(self.privacy_used),
            "privacy_budget": self.privacy_budget,
        }


def trend_days(since: datetime, until: datetime, minimum: int = DEFAULT_TREND_DAYS) -> list[date]:
    """The UTC days a trend covers: at least ``minimum`` days, or the report's window if longer
    (at most ``MAX_TREND_DAYS``), ending with ``until``'s day."""
    if minimum < 1:
        raise ValueError(f"trend days must be at least 1, got {minimum}")
    last = until.astimezone(timezone.utc).date()
    first_of_window = since.astimezone(timezone.utc).date()
    n = min(max(minimum, (last - first_of_window).days + 1), MAX_TREND_DAYS)
    return [last - timedelta(days=n - 1 - k) for k in range(n)]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def daily_gpu(samples: pd.DataFrame) -> pd.DataFrame:
    """Raw ``gpu_samples`` rows → one row per (day, host, gpu_index): mean utilisation, energy, samples (pure)."""
    if not len(samples):
        empty: pd.DataFrame = pd.DataFrame(columns=["day", "host", "gpu_index", "util_mean", "energy_j", "samples"])
        return empty
    frame = pd.DataFrame(
        {
            "day": pd.to_datetime(samples["time"], utc=True).dt.date,
            "host": samples["host"].astype(object),
            "gpu_index": samples["gpu_index"].astype("int64"),
            "utilization": samples["utilization"].astype("float64"),
            "energy_j": samples["energy_j"].astype("float64"),
        }
    )
    grouped = frame.groupby(["day", "host", "gpu_index"], sort=True, dropna=False)
    out: pd.DataFrame = grouped.agg(
        util_mean=("utilization", "mean"), energy_j=("energy_j", lambda s: s.sum(min_count=1)), samples=("day", "size")
    ).reset_index()
    return out


def load_trend_frames(
    store: Any, days: list[date], until: datetime, flow_name: str | None = None
) -> dict[str, pd.DataFrame]:
    """The store's rows for the trend's days, pruned to the columns the trends need;
    ``gpu_samples`` is read a day at a time and kept only as ``daily_gpu`` rows (key ``GPU_DAILY``)."""
    start = _midnight(days[0])
    frames: dict[str, pd.DataFrame] = {}
    for table, columns in TREND_COLUMNS.items():
        strings = [c for c in ("flow_name", "state_type", "table_name", "metric", "dataset") if c in columns]
        df = store.read(table, since=start, until=until, columns=columns, categorical=strings)
        if flow_name is not None and "flow_name" in df.columns:
            df = df[df.flow_name == flow_name]
        frames[table] = df
    reduced = []
    for day in days:
        end = min(_midnight(day + timedelta(days=1)), until)
        samples = store.read(names.GPU_SAMPLES, since=_midnight(day), until=end, columns=GPU_COLUMNS)
        if len(samples):
            reduced.append(daily_gpu(samples))
        del samples
    frames[GPU_DAILY] = pd.concat(reduced, ignore_index=True) if reduced else daily_gpu(pd.DataFrame())
    return frames


def _round(value: Any, digits: int = 4) -> float | None:
    if value is None or pd.isna(value):
        return None
    return round(float(value), digits)


def _series(
    frame: pd.DataFrame, key: str | list[str], value: str, days: list[date], digits: int = 4
) -> dict[Any, Daily]:
    """``frame`` (one row per key and day, a ``day`` column) → key → one value per day."""
    out: dict[Any, Daily] = {}
    index = {d: i for i, d in enumerate(days)}
    for k, group in frame.groupby(key, sort=False, observed=True, dropna=False):
        row: Daily = [None] * len(days)
        for day, v in zip(group["day"], group[value], strict=True):
            if day in index:
                row[index[day]] = _round(v, digits)
        out[k if not isinstance(k, tuple) or len(k) > 1 else k[0]] = row
    return out


def _day_column(times: pd.Series) -> pd.Series:
    return pd.to_datetime(times, utc=True).dt.date


def _quality_series(
    quality: pd.DataFrame, days: list[date], redact_pii: bool = True
) -> tuple[dict[str, Daily], dict[tuple[str, str, str], Daily]]:
    """``quality_checks`` rows → (``overall`` per table and model line, every metric per table, line and metric).

    One score per table and line that means the same thing every day: ``overall`` (higher is better). A
    mean of all its checks would mix in scores where lower is better (exact_match_rate) and jump when a new
    check appears; every metric has its own sparkline in the quality table. A line is a model type
    (``reports.models.lineage``): a pipeline that fits a new CTGAN every night is one CTGAN series whose
    decline shows, not fourteen one-point series. Two types of one table are two series, never one mean:
    a copula at 0.92 and a CTGAN at 0.74 are not a table at 0.83. The day's value is the latest check of
    that day (the newest fit's); a non-finite score is no value.
    """
    tables, models, types = (
        text_column(quality, "table_name"),
        model_id_column(quality),
        text_column(quality, "model_type"),
    )
    triples = list(zip(tables, models, types, strict=True))
    labels = series_names(triples, redact_pii=redact_pii)
    known: dict[tuple[str | None, str | None], str | None] = {}
    for table, model_id, model_type in triples:  # each model's last non-null type, as series_names takes it
        if model_type is not None or (table, model_id) not in known:
            known[(table, model_id)] = model_type or known.get((table, model_id))
    q = pd.DataFrame(
        {
            "series": [labels[key] for key in zip(tables, models, strict=True)],
            "table": tables.fillna(""),
            "line": [lineage(m, known[(t, m)], redact_pii) for t, m in zip(tables, models, strict=True)],
            "metric": quality.metric.astype(object),
            "time": pd.to_datetime(quality.time, utc=True),
            "score": finite_scores(quality.score).to_numpy(),
        }
    )
    q = q.sort_values(["time", "score"], kind="stable")  # last(): the latest finite score, the higher at one time
    q["day"] = q.time.dt.date
    overall = q[q.metric == OVERALL_METRIC]
    per_line = overall.groupby(["series", "day"], sort=True).score.last().reset_index()
    series = _series(per_line, "series", "score", days)
    # the most recently checked lines first: a chart draws the first few, and old ones drop out first
    last_day = per_line.groupby("series").day.max()
    order = sorted(series, key=lambda name: (-last_day[name].toordinal(), name))
    per_metric = q.groupby(["table", "line", "metric", "day"], sort=True).score.last().reset_index()
    return {name: series[name] for name in order}, _series(per_metric, ["table", "line", "metric"], "score", days)


def build_trends(frames: dict[str, pd.DataFrame], days: list[date], *, redact_pii: bool = True) -> Trends:
    """Daily series from ``load_trend_frames``' frames (pure); model ids that name a series are redacted
    with ``redact_pii`` (a store can hold rows another writer made without redaction)."""
    trends = Trends(days=list(days))
    runs = frames.get(names.FLOW_RUNS, pd.DataFrame())
    if len(runs):
        r = pd.DataFrame(
            {
                "flow": runs.flow_name.astype(object),
                "day": _day_column(runs.start_time),
                "ok": (runs.state_type.astype(object) == "COMPLETED").astype(float),
                "duration": runs.duration_s.astype("float64"),
            }
        )
        busiest = r.flow.value_counts().index.tolist()  # most runs first: the charts draw the first few
        per_day = r.groupby(["flow", "day"], sort=False)
        stats = pd.DataFrame(
            {"success": per_day.ok.mean(), "p95": per_day.duration.quantile(0.95, interpolation="linear")}
        ).reset_index()
        success = _series(stats, "flow", "success", days)
        p95 = _series(stats, "flow", "p95", days, 3)
        trends.success_rate = {f: success[f] for f in busiest if f in success}
        trends.p95_duration_s = {f: p95[f] for f in busiest if f in p95}

    quality = frames.get(names.QUALITY_CHECKS, pd.DataFrame())
    if len(quality):
        trends.quality, trends.quality_by_metric = _quality_series(quality, days, redact_pii)

    gpu = frames.get(GPU_DAILY, pd.DataFrame())
    if len(gpu):
        g = gpu.assign(device=gpu.host.astype(str) + "/gpu" + gpu.gpu_index.astype(str))
        util = g.groupby(["device", "day"], sort=True).util_mean.mean().reset_index()
        trends.gpu_util = _series(util, "device", "util_mean", days)
        energy = g.groupby(["host", "day"], sort=True).energy_j.sum(min_count=1).reset_index()
        energy["kwh"] = energy.energy_j / 3.6e6
        trends.gpu_energy_kwh = _series(energy, "host", "kwh", days, 6)

    ledger = frames.get(names.PRIVACY_LEDGER, pd.DataFrame())
    if len(ledger):
        led = pd.DataFrame(
            {
                "dataset": ledger.dataset.astype(object),
                "time": pd.to_datetime(ledger.time, utc=True),
                "spent": ledger.spent.astype("float64"),
                "budget": ledger.budget.astype("float64"),
            }
        ).sort_values("time")
        led["day"] = led.time.dt.date
        last = led.groupby(["dataset", "day"], sort=True).last().reset_index()
        used = _series(last, "dataset", "spent", days)
        for row in used.values():  # carry the total over days without spending
            carried: float | None = None
            for i, v in enumerate(row):
                carried = v if v is not None else carried
                row[i] = carried
        trends.privacy_used = used
        trends.privacy_budget = {
            str(d): _round(g.budget.iloc[-1]) for d, g in led.groupby("dataset", sort=True, observed=True)
        }
    return trends
