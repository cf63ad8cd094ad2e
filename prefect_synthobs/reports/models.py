"""Models side by side: the leaderboard of the health report and the short names models go by.

Two generators trained on the same table (a copula at 0.916, a CTGAN at 0.738) are two rows here,
never one averaged "customers 0.827". Every quality row carries the ``model_id`` and ``model_type``
of the model that made the synthetic table (``instrument.models.model_identity``); rows without a
model id (recorded before the columns existed, or with no ``model=``) form their own ``(no model)``
row per table, never merged with named ones.

Pure: frames in, rows and names out (``leaderboard``, ``model_labels``). The ``models`` table
(one row per fit, with ``fit_seconds``) is read where the store defines it, else ignored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from prefect_synthobs import catalog as names
from prefect_synthobs.health import tables

NO_MODEL = "(no model)"
"""What a table's rows without a model id are called in the leaderboard."""

MODELS_TABLE: str = getattr(names, "MODELS", "models")
"""The store's table of fits (one row per fit, ``fit_seconds``), where the store defines it."""
MODEL_FRAME_COLUMNS = ("time", "model_id", "model_type", "fit_seconds")
"""The columns the leaderboard reads from ``MODELS_TABLE``."""

LEADERBOARD_SCORES = (
    "overall",
    "diagnostic",
    "detection",
    "tstr_ratio",
    "exact_match_rate",
    "dcr_overfitting_protection",
    "membership_inference_auc",
    "disclosure_protection",
)
"""The scores the leaderboard shows, each the model's latest value in the window."""
PRIVACY_SCORES = LEADERBOARD_SCORES[4:]

MIN_SUFFIX = 6
"""Characters of a model id's end that tell two models of one type apart (more where 6 do not)."""

Key = tuple[str | None, str | None]
"""``(table, model_id)``: one leaderboard row, one trend series."""


def _text(value: Any) -> str | None:
    """A store string as ``str``; ``None``, ``NaN`` and ``pd.NA`` as ``None``."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)


def _round(value: Any, digits: int = 4) -> float | None:
    if value is None or pd.isna(value):
        return None
    return round(float(value), digits)


def text_column(frame: pd.DataFrame, column: str) -> pd.Series:
    """``frame[column]`` as Python strings with ``None`` for missing (categoricals and all); a frame
    without the column (read from a store written before it existed) gives all ``None``."""
    if column not in frame.columns:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return pd.Series([_text(v) for v in frame[column].astype(object)], index=frame.index, dtype=object)


def model_id_column(frame: pd.DataFrame) -> pd.Series:
    """The frame's ``model_id`` column as ``text_column`` does, an empty id read as none (another
    writer's ``""`` names no model)."""
    ids = text_column(frame, "model_id")
    return pd.Series([i or None for i in ids], index=ids.index, dtype=object)


def _suffixes(ids: Sequence[str]) -> dict[str, str]:
    """The shortest common length (at least ``MIN_SUFFIX``) of the ids' ends that tells them all apart."""
    longest = max(len(i) for i in ids)
    for k in range(MIN_SUFFIX, longest + 1):
        tails = {i[-k:] for i in ids}
        if len(tails) == len(ids):
            return {i: i[-k:] for i in ids}
    return {i: i for i in ids}  # distinct ids at full length: never reached


def model_labels(models: Iterable[tuple[str | None, str | None, str | None]]) -> dict[Key, str]:
    """A short name per ``(table, model_id)`` from ``(table, model_id, model_type)`` triples, unique within
    its table: the model's type (``GaussianCopulaSynthesizer``), or its id when it has no type; the end
    of its id added only where two models of the table would otherwise share a name
    (``CTGAN 3f9a1c``, ``CTGAN 77b0e2``). A table's rows without a model id are ``NO_MODEL``.

    A model seen with several types (an id passed as a string in one check, as the object in another)
    takes its last non-null one in ``models``' order.
    """
    types: dict[Key, str | None] = {}
    for table, model_id, model_type in models:
        key = (table, model_id)
        if model_type is not None or key not in types:
            types[key] = model_type if model_type is not None else types.get(key)
    by_base: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    labels: dict[Key, str] = {}
    for (table, model_id), model_type in types.items():
        if model_id is None:
            labels[(table, None)] = NO_MODEL
        else:
            by_base[(table, model_type or model_id)].append(model_id)
    for (table, base), ids in by_base.items():
        if len(ids) == 1:
            labels[(table, ids[0])] = base
        else:
            for model_id, tail in _suffixes(sorted(ids)).items():
                labels[(table, model_id)] = f"{base} {tail}"
    return labels


def series_names(models: Iterable[tuple[str | None, str | None, str | None]]) -> dict[Key, str]:
    """A trend series name per ``(table, model_id)``: ``"customers · GaussianCopulaSynthesizer"``
    (``model_labels``' name after the table's); a table's rows without a model id are the table's
    name alone, or ``"customers · (no model)"`` where the table has named models too. Unique: a
    name that two keys would share gets ``" #2"``, ``" #3"``."""
    labels = model_labels(models)
    named = {table for (table, model_id) in labels if model_id is not None}
    out: dict[Key, str] = {}
    taken: set[str] = set()
    for (table, model_id), label in labels.items():
        name = table or ""
        if model_id is not None or table in named:
            name = f"{name} · {label}"
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name} #{n}"
        taken.add(unique)
        out[(table, model_id)] = unique
    return out


def _codes(keys: Iterable[tuple[Any, ...]], known: dict[tuple[Any, ...], int] | None = None) -> list[int]:
    """A group number per key, the keys as they are (``None`` a key of its own, never a named model's,
    whatever characters the names hold); ``known`` collects the keys in order of first sight."""
    index = known if known is not None else {}
    return [index.setdefault(key, len(index)) for key in keys]


def _fits(models: pd.DataFrame | None) -> dict[str, tuple[float | None, str | None]]:
    """``model_id`` → (its latest fit's ``fit_seconds``, its ``model_type``) from the ``models`` frame,
    read defensively: no frame, or a frame lacking the columns, gives nothing."""
    if models is None or not len(models) or "model_id" not in models.columns:
        return {}
    frame = pd.DataFrame(
        {
            "model_id": model_id_column(models),
            "model_type": text_column(models, "model_type"),
            "fit_seconds": pd.to_numeric(models["fit_seconds"], errors="coerce")
            if "fit_seconds" in models.columns
            else pd.Series([None] * len(models), index=models.index, dtype="float64"),
            "time": pd.to_datetime(models["time"], utc=True) if "time" in models.columns else pd.NaT,
        }
    )
    out: dict[str, tuple[float | None, str | None]] = {}
    for model_id, group in frame[frame.model_id.notna()].groupby("model_id", sort=False):
        ordered = group.sort_values("time", kind="stable")
        seconds = ordered.fit_seconds.dropna()
        types = ordered.model_type.dropna()
        out[str(model_id)] = (
            _round(seconds.iloc[-1], 3) if len(seconds) else None,
            str(types.iloc[-1]) if len(types) else None,
        )
    return out


def leaderboard(quality: pd.DataFrame, models: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """One row per (table, model) of the window's ``quality_checks`` rows (pure).

    Each row: ``table``; ``model`` (``model_labels``' name); ``model_type``; ``checks`` (the model's
    rows: every score recorded counts once, so the rows of all models add up to the window's);
    ``pass_rate`` (share of its gated rows that passed, ``None`` when none was gated); the latest value
    in the window of each of ``LEADERBOARD_SCORES``; ``fit_seconds`` (its latest fit in ``models``,
    when that frame is given and has it); ``model_id``. Rows without a model id are the table's
    ``(no model)`` row. Ordered by table, then ``overall`` (best first, none last), then name.
    """
    if not len(quality):
        return []
    frame = pd.DataFrame(
        {
            "table": text_column(quality, "table_name"),
            "model_id": model_id_column(quality),
            "model_type": text_column(quality, "model_type"),
            "metric": text_column(quality, "metric"),
            "score": pd.to_numeric(quality["score"], errors="coerce").astype("float64"),
            "threshold": pd.to_numeric(quality["threshold"], errors="coerce").astype("float64"),
            "passed": quality["passed"].astype(object),
            "time": pd.to_datetime(quality["time"], utc=True),
        }
    ).sort_values("time", kind="stable")
    fits = _fits(models)
    labels = model_labels(
        (t, m, k or (fits.get(m, (None, None))[1] if m is not None else None))
        for t, m, k in zip(frame.table, frame.model_id, frame.model_type, strict=True)
    )
    keys: dict[tuple[Any, ...], int] = {}
    frame["code"] = _codes(zip(frame.table, frame.model_id, strict=True), keys)
    checks = frame.groupby("code", sort=False).size()
    gated = frame[frame.threshold.notna()]
    pass_rate = gated.passed.fillna(False).astype(bool).groupby(gated.code, sort=False).mean()
    types = frame.model_type.dropna().groupby(frame.code, sort=False).last()  # the latest (frame is in time order)
    # each score's latest value (at the same time, the higher); NaN (a gate on a score never computed) is no value
    scored = frame[frame.metric.isin(LEADERBOARD_SCORES) & frame.score.notna()]
    latest = scored.sort_values(["time", "score"], kind="stable").groupby(["code", "metric"]).score.last().to_dict()
    rows = []
    for (table, model_id), code in keys.items():
        fit_seconds, fit_type = fits.get(model_id, (None, None)) if model_id is not None else (None, None)
        row: dict[str, Any] = {
            "table": table,
            "model": labels[(table, model_id)],
            "model_type": str(types[code]) if code in types.index else fit_type,
            "checks": int(checks[code]),
            "pass_rate": _round(pass_rate[code]) if code in pass_rate.index else None,
        }
        row.update({metric: _round(latest.get((code, metric))) for metric in LEADERBOARD_SCORES})
        row["fit_seconds"] = fit_seconds
        row["model_id"] = model_id
        rows.append(row)
    rows.sort(
        key=lambda r: (
            r["table"] is None,  # a table without a name last
            r["table"] or "",
            r["overall"] is None,
            -(r["overall"] or 0.0),
            r["model"],
        )
    )
    return rows


def quality_table(current: pd.DataFrame, previous: pd.DataFrame) -> list[dict[str, Any]]:
    """The health report's quality table: one row per (table, model, metric), so two models of one table
    never share a row (``model``: ``model_labels``' name, ``NO_MODEL`` for checks that name none, or ``None``
    when no check in the window names one; ``model_id``: the id itself); its trend compares with the same
    model's checks of the window before (pure)."""
    if not len(current):
        return []
    tables_, model_ids = text_column(current, "table_name"), model_id_column(current)
    labels = model_labels(zip(tables_, model_ids, text_column(current, "model_type"), strict=True))
    keys: dict[tuple[Any, ...], int] = {}
    metrics = text_column(current, "metric")
    codes = pd.Series(_codes(zip(tables_, model_ids, metrics, strict=True), keys), index=current.index)
    scores = current.score.astype("float64")
    average = scores.groupby(codes, sort=False).mean()
    checks = codes.groupby(codes, sort=False).size()
    gated = current.threshold.notna()
    checked = current[gated]
    pass_rate = checked.passed.fillna(False).astype(bool).groupby(codes[gated], sort=False).mean()
    threshold = checked.threshold.astype("float64").groupby(codes[gated], sort=False).last()
    before: dict[Any, float] = {}
    if len(previous):  # the same (table, model, metric) in the window before; keys only seen there get no row
        old_keys = zip(
            text_column(previous, "table_name"), model_id_column(previous), text_column(previous, "metric"), strict=True
        )
        old = pd.Series(_codes(old_keys, keys), index=previous.index)
        before = previous.score.astype("float64").groupby(old, sort=False).mean().dropna().to_dict()
    any_model = any(m is not None for m in model_ids)  # else no model column at all (a store from before them)
    rows = []
    for (table, model_id, metric), code in sorted(
        ((k, c) for k, c in keys.items() if c in checks.index),
        key=lambda kc: (
            kc[0][0] is None,
            kc[0][0] or "",
            labels[(kc[0][0], kc[0][1])] if kc[0][1] is not None else "",
            kc[0][2] or "",
        ),
    ):
        rows.append(
            {
                "table": table,
                "model": labels[(table, model_id)] if model_id is not None or any_model else None,
                "metric": metric,
                "checks": int(checks[code]),
                "pass_rate": _round(pass_rate[code]) if code in pass_rate.index else None,
                "threshold": _round(threshold[code]) if code in threshold.index else None,
                "average": _round(average[code]),
                "trend": _round(average[code] - before[code]) if code in before else None,
                "model_id": model_id,
            }
        )
    return rows


def present(rows: list[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """``rows`` cut to ``columns``, leaving out a column no row has a value in (a score nobody
    computed); ``[]`` when only ``table`` and ``model`` would be left."""
    kept = [c for c in columns if c in ("table", "model") or any(r.get(c) is not None for r in rows)]
    if not [c for c in kept if c not in ("table", "model")]:
        return []
    return [{c: r.get(c) for c in kept} for r in rows]


TERMINAL_VIEWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Models",
        ("table", "model", "checks", "pass_rate", "overall", "diagnostic", "detection", "tstr_ratio", "fit_seconds"),
    ),
    ("Model privacy", ("table", "model", *PRIVACY_SCORES)),
)
"""The leaderboard in the terminal: two tables, so that each fits 100 columns."""
MARKDOWN_COLUMNS = ("table", "model", "checks", "pass_rate", *LEADERBOARD_SCORES, "fit_seconds")
"""The leaderboard in the overview markdown (the ``synthobs-models`` artifact has every column)."""

LEADERBOARD_HEADERS = {
    "diagnostic": "diag",
    "detection": "detect",
    "tstr_ratio": "tstr",
    "exact_match_rate": "exact match",
    "dcr_overfitting_protection": "DCR protect",
    "membership_inference_auc": "MIA AUC",
    "disclosure_protection": "disclosure",
    "fit_seconds": "fit s",
}
"""Short headers of the leaderboard's columns (JSON and the artifact keep the names)."""

QUALITY_COLUMNS: list[str] = tables.QUALITY_CHECKS.select(
    "time", "table_name", "model_id", "model_type", "metric", "score", "threshold", "passed"
)
"""The ``quality_checks`` columns the leaderboard reads (checked against the table at import)."""
