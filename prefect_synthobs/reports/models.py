"""Models side by side: the leaderboard of the health report and the short names models go by.

Two generators trained on the same table (a copula at 0.916, a CTGAN at 0.738) are two rows here,
never one averaged "customers 0.827". Every quality row carries the ``model_id`` and ``model_type``
of the model that made the synthetic table (``instrument.models.model_identity``); rows without a
model id (recorded before the columns existed, or with no ``model=``) form their own ``(no model)``
row per table, never merged with named ones.

Pure: frames in, rows and names out (``leaderboard``, ``model_labels``). The ``models`` table
(one row per fit, written by generator autolog) gives each model's ``fit_seconds``; a store written
before it existed reads it as empty, and the column stays empty.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs import catalog as names
from prefect_synthobs.health import tables
from prefect_synthobs.telemetry.redaction import redact_optional

NO_MODEL = "(no model)"
"""What a table's rows without a model id are called in the leaderboard."""

MODELS_TABLE: str = names.MODELS
"""The store's table of fits (one row per fit, ``fit_seconds``)."""
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
MAX_SUFFIX = 12
"""At most this many: ids alike in their last 12 characters are told apart by ``" #2"``."""
MAX_LABEL = 64
"""A name longer than this (an id passed as a string, another writer's) is shown cut, its ends kept."""

Key = tuple[str | None, str | None]
"""``(table, model_id)``: one leaderboard row, one trend series."""


def _text(value: Any) -> str | None:
    """A store string as ``str``; ``None``, ``NaN`` and ``pd.NA`` as ``None``."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)


def _round(value: Any, digits: int = 4) -> float | None:
    """A finite number rounded; ``None``, NaN and ±inf (a score that overflowed) as ``None``."""
    if value is None or pd.isna(value) or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def finite_scores(values: Any) -> pd.Series:
    """Numbers as ``float64`` with NaN for anything not a finite number (±inf is no score, it is missing)."""
    scores: pd.Series = pd.to_numeric(pd.Series(values).astype(object), errors="coerce").astype("float64")
    finite: pd.Series = scores.where(np.isfinite(scores))
    return finite


def text_column(frame: pd.DataFrame, column: str) -> pd.Series:
    """``frame[column]`` as Python strings with ``None`` for missing (categoricals and all); a frame
    without the column (read from a store written before it existed) gives all ``None``."""
    if column not in frame.columns:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    values = np.asarray(frame[column].astype(object), dtype=object)
    missing = pd.isna(values)  # element by element as ``_text``: None, NaN, pd.NA and NaT
    out = values.copy()
    out[missing] = None
    present = ~missing
    if pd.api.types.infer_dtype(values[present], skipna=False) not in ("string", "empty"):
        # numbers, bytes, mixed: ``str`` of each (the rare case; a store's strings skip this loop)
        out[present] = [v if type(v) is str else str(v) for v in values[present]]
    text: pd.Series = pd.Series(out, index=frame.index, dtype=object)
    return text


def model_id_column(frame: pd.DataFrame) -> pd.Series:
    """The frame's ``model_id`` column as ``text_column`` does, an empty id read as none (another
    writer's ``""`` or blank id names no model)."""
    ids = text_column(frame, "model_id")
    return pd.Series([i if i and i.strip() else None for i in ids], index=ids.index, dtype=object)


def shown_id(model_id: str | None, redact_pii: bool) -> str | None:
    """A model id as a report shows it: redacted again (``redact_pii``), as error messages are: a store
    can hold rows another writer made without redaction. Ids made by synthobs or SDV come out as they are."""
    return redact_optional(model_id, enabled=redact_pii)


def _short(text: str) -> str:
    """A name cut to ``MAX_LABEL`` characters, its start and end kept (ids differ at either end)."""
    if len(text) <= MAX_LABEL:
        return text
    half = (MAX_LABEL - 1) // 2
    return f"{text[:half]}…{text[-half:]}"


def _suffixes(ids: Sequence[str]) -> dict[str, str]:
    """The shortest common length (at least ``MIN_SUFFIX``, at most ``MAX_SUFFIX``) of the ids' ends that
    tells them apart: one more than the longest end two of them share, found between neighbours in
    order of their reversed text (linear in the ids' length, not quadratic). Ends that still collide
    at ``MAX_SUFFIX`` are told apart by ``_unique``."""
    backwards = sorted({i[::-1] for i in ids})
    shared = 0
    for a, b in itertools.pairwise(backwards):
        n = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            n += 1
        shared = max(shared, n)
    k = min(max(MIN_SUFFIX, shared + 1), MAX_SUFFIX)
    return {i: i[-k:] for i in ids}


class _Names:
    """Hands out names unique within a scope: ``name``, else ``name #2``, ``#3``... Linear for many
    alike names: the number tried first is the one after the last handed out for that name."""

    def __init__(self) -> None:
        self._taken: set[tuple[Any, str]] = set()
        self._next: dict[tuple[Any, str], int] = {}

    def take(self, scope: Any, name: str) -> str:
        unique, n = name, self._next.get((scope, name), 1)
        while (scope, unique) in self._taken:
            n += 1
            unique = f"{name} #{n}"
        self._next[(scope, name)] = n
        self._taken.add((scope, unique))
        return unique


def _unique(labels: dict[Key, str]) -> dict[Key, str]:
    """Labels made unique within each table: a name two keys share (an id ``"(no model)"`` next to rows
    without a model, an id equal to another model's type, two ids that redact alike) gets ``" #2"``,
    ``" #3"`` on all but the first, in a fixed order (rows without a model first, then by id)."""
    names_ = _Names()
    order = sorted(labels, key=lambda k: (k[0] or "", k[0] is None, k[1] is not None, k[1] or ""))
    return {key: names_.take(key[0], labels[key]) for key in order}


def _types(models: Iterable[tuple[str | None, str | None, str | None]]) -> dict[Key, str | None]:
    """Each ``(table, model_id)``'s type: its last non-null one in ``models``' order."""
    types: dict[Key, str | None] = {}
    for table, model_id, model_type in models:
        key = (table, model_id)
        if model_type is not None or key not in types:
            types[key] = model_type if model_type is not None else types.get(key)
    return types


def lineage(model_id: str | None, model_type: str | None, redact_pii: bool = True) -> str:
    """The line of models a check belongs to: its model's type (every fit of a CTGAN, retrained nightly
    with a new id each time, is one line), the id where no type is known (an id passed as a string;
    redacted with ``redact_pii``), ``""`` for a check that names no model. An id passed as a string that
    equals a type's name shares that type's line."""
    return model_type or shown_id(model_id, redact_pii) or ""


def model_labels(
    models: Iterable[tuple[str | None, str | None, str | None]], *, redact_pii: bool = True
) -> dict[Key, str]:
    """A short name per ``(table, model_id)`` from ``(table, model_id, model_type)`` triples, unique within
    its table: the model's type (``GaussianCopulaSynthesizer``), or its id (redacted with ``redact_pii``,
    cut to ``MAX_LABEL``) when it has no type; the end of its id added only where two models of the table
    would otherwise share a type (``CTGAN 3f9a1c``, ``CTGAN 77b0e2``); any name still shared gets ``" #2"``.
    A table's rows without a model id are ``NO_MODEL``.

    A model seen with several types (an id passed as a string in one check, as the object in another)
    takes its last non-null one in ``models``' order.
    """
    by_type: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    labels: dict[Key, str] = {}
    for (table, model_id), model_type in _types(models).items():
        if model_id is None:
            labels[(table, None)] = NO_MODEL
        elif model_type is None:
            labels[(table, model_id)] = _short(shown_id(model_id, redact_pii) or "")
        else:
            by_type[(table, _short(model_type))].append(model_id)
    for (table, base), ids in by_type.items():
        if len(ids) == 1:
            labels[(table, ids[0])] = base
        else:
            shown = {i: shown_id(i, redact_pii) or "" for i in ids}
            tails = _suffixes(list(shown.values()))
            for model_id in ids:
                labels[(table, model_id)] = f"{base} {tails[shown[model_id]]}"
    return _unique(labels)


def series_names(
    models: Iterable[tuple[str | None, str | None, str | None]], *, redact_pii: bool = True
) -> dict[Key, str]:
    """A trend series name per ``(table, model_id)``, one per model line (``lineage``): every fit of a type
    is one series, ``"customers · CTGAN"``; an id without a type its own, ``"customers · copula-v2"``; a
    table's rows without a model id the table's name alone, or ``"customers · (no model)"`` where the
    table has named models too. Two lines never share a name (``" #2"``, ``" #3"``)."""
    types = _types(models)
    named = {table for (table, model_id) in types if model_id is not None}
    lines: dict[tuple[str | None, str], str] = {}
    for (table, model_id), model_type in types.items():
        line = lineage(model_id, model_type, redact_pii)
        if line == "" and table not in named:
            lines[(table, line)] = table or ""
        else:
            lines[(table, line)] = f"{table or ''} · {_short(line) if line else NO_MODEL}"
    names_ = _Names()
    order = sorted(lines, key=lambda k: (k[0] or "", k[0] is None, k[1]))
    unique = {key: names_.take(None, lines[key]) for key in order}
    return {(t, m): unique[(t, lineage(m, k, redact_pii))] for (t, m), k in types.items()}


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
            "fit_seconds": finite_scores(models["fit_seconds"])
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


def leaderboard(
    quality: pd.DataFrame, models: pd.DataFrame | None = None, *, redact_pii: bool = True
) -> list[dict[str, Any]]:
    """One row per (table, model) of the window's ``quality_checks`` rows (pure).

    Each row: ``table``; ``model`` (``model_labels``' name); ``model_type``; ``checks`` (the model's
    rows: every score recorded counts once, so the rows of all models add up to the window's);
    ``pass_rate`` (share of its gated rows that passed, ``None`` when none was gated); the latest finite
    value in the window of each of ``LEADERBOARD_SCORES`` (±inf and NaN are no value); ``fit_seconds`` (its
    latest fit in ``models``, when that frame is given and has it); ``model_id`` (redacted with
    ``redact_pii``). Rows without a model id are the table's ``(no model)`` row. Each fit is its own row;
    ordered by table, then the latest fit of each line (``lineage``: a type) before older fits, then
    ``overall`` (best first, none last), then name.
    """
    if not len(quality):
        return []
    frame = pd.DataFrame(
        {
            "table": text_column(quality, "table_name"),
            "model_id": model_id_column(quality),
            "model_type": text_column(quality, "model_type"),
            "metric": text_column(quality, "metric"),
            "score": finite_scores(quality["score"]).to_numpy(),
            "threshold": pd.to_numeric(quality["threshold"], errors="coerce").astype("float64"),
            "passed": quality["passed"].astype(object),
            "time": pd.to_datetime(quality["time"], utc=True),
        }
    ).sort_values("time", kind="stable")
    fits = _fits(models)
    triples = [
        (t, m, k or (fits.get(m, (None, None))[1] if m is not None else None))
        for t, m, k in zip(frame.table, frame.model_id, frame.model_type, strict=True)
    ]
    labels = model_labels(triples, redact_pii=redact_pii)
    resolved = _types(triples)
    keys: dict[tuple[Any, ...], int] = {}
    frame["code"] = _codes(zip(frame.table, frame.model_id, strict=True), keys)
    checks = frame.groupby("code", sort=False).size()
    last_seen = frame.groupby("code", sort=False).time.max()
    gated = frame[frame.threshold.notna()]
    pass_rate = gated.passed.astype("boolean").fillna(False).astype(bool).groupby(gated.code, sort=False).mean()
    types = frame.model_type.dropna().groupby(frame.code, sort=False).last()  # the latest (frame is in time order)
    # each score's latest value (at the same time, the higher); NaN (a gate on a score never computed) is no value
    scored = frame[frame.metric.isin(LEADERBOARD_SCORES) & frame.score.notna()]
    latest = scored.sort_values(["time", "score"], kind="stable").groupby(["code", "metric"]).score.last().to_dict()
    newest: dict[tuple[str | None, str], Any] = {}  # each line's latest check: its current fit
    for (table, model_id), code in keys.items():
        line = (table, lineage(model_id, resolved[(table, model_id)], redact_pii))
        newest[line] = max(newest.get(line, last_seen[code]), last_seen[code])
    rows = []
    for (table, model_id), code in keys.items():
        fit_seconds, fit_type = fits.get(model_id, (None, None)) if model_id is not None else (None, None)
        line = (table, lineage(model_id, resolved[(table, model_id)], redact_pii))
        row: dict[str, Any] = {
            "table": table,
            "model": labels[(table, model_id)],
            "model_type": str(types[code]) if code in types.index else fit_type,
            "checks": int(checks[code]),
            "pass_rate": _round(pass_rate[code]) if code in pass_rate.index else None,
        }
        row.update({metric: _round(latest.get((code, metric))) for metric in LEADERBOARD_SCORES})
        row["fit_seconds"] = fit_seconds
        row["model_id"] = shown_id(model_id, redact_pii)
        rows.append((last_seen[code] < newest[line], row))
    rows.sort(
        key=lambda older_row: (
            older_row[1]["table"] is None,  # a table without a name last
            older_row[1]["table"] or "",
            older_row[0],  # each line's latest fit first, its older fits after
            older_row[1]["overall"] is None,
            -(older_row[1]["overall"] or 0.0),
            older_row[1]["model"],
        )
    )
    return [row for _, row in rows]


def quality_table(current: pd.DataFrame, previous: pd.DataFrame, *, redact_pii: bool = True) -> list[dict[str, Any]]:
    """The health report's quality table: one row per (table, model, metric), so two models of one table
    never share a row (``model``: ``model_labels``' name, ``NO_MODEL`` for checks that name none, or ``None``
    when no check in the window names one; ``model_type``; ``model_id``: the id, redacted with
    ``redact_pii``). Its trend compares the model's average with the average of its line's checks
    (``lineage``: the same table, model type and metric, whichever fit) in the window before, so a model
    retrained with a new id still has one. Non-finite scores count as missing (pure)."""
    if not len(current):
        return []
    tables_, model_ids = text_column(current, "table_name"), model_id_column(current)
    triples = list(zip(tables_, model_ids, text_column(current, "model_type"), strict=True))
    labels = model_labels(triples, redact_pii=redact_pii)
    resolved = _types(triples)
    keys: dict[tuple[Any, ...], int] = {}
    metrics = text_column(current, "metric")
    codes = pd.Series(_codes(zip(tables_, model_ids, metrics, strict=True), keys), index=current.index)
    scores = pd.Series(finite_scores(current.score).to_numpy(), index=current.index)
    average = scores.groupby(codes, sort=False).mean()
    checks = codes.groupby(codes, sort=False).size()
    gated = current.threshold.notna()
    checked = current[gated]
    pass_rate = checked.passed.astype("boolean").fillna(False).astype(bool).groupby(codes[gated], sort=False).mean()
    threshold = checked.threshold.astype("float64").groupby(codes[gated], sort=False).last()
    before: dict[tuple[Any, ...], float] = {}
    if len(previous):  # the same (table, line, metric) in the window before; lines only seen there get no row
        old_tables, old_ids = text_column(previous, "table_name"), model_id_column(previous)
        old_types = _types(zip(old_tables, old_ids, text_column(previous, "model_type"), strict=True))
        old_metrics = text_column(previous, "metric")
        old_lines = [
            (t, lineage(m, old_types[(t, m)], redact_pii), metric)
            for t, m, metric in zip(old_tables, old_ids, old_metrics, strict=True)
        ]
        line_codes: dict[tuple[Any, ...], int] = {}
        old = pd.Series(_codes(old_lines, line_codes), index=previous.index)
        means = pd.Series(finite_scores(previous.score).to_numpy(), index=previous.index).groupby(old).mean().dropna()
        before = {line: float(means[c]) for line, c in line_codes.items() if c in means.index}
    any_model = any(m is not None for m in model_ids)  # else no model column at all (a store from before them)
    rows = []
    for (table, model_id, metric), code in sorted(
        keys.items(),
        key=lambda kc: (
            kc[0][0] is None,
            kc[0][0] or "",
            labels[(kc[0][0], kc[0][1])] if kc[0][1] is not None else "",
            kc[0][2] or "",
        ),
    ):
        model_type = resolved[(table, model_id)]
        line = (table, lineage(model_id, model_type, redact_pii), metric)
        mean = _round(average[code])
        rows.append(
            {
                "table": table,
                "model": labels[(table, model_id)] if model_id is not None or any_model else None,
                "metric": metric,
                "checks": int(checks[code]),
                "pass_rate": _round(pass_rate[code]) if code in pass_rate.index else None,
                "threshold": _round(threshold[code]) if code in threshold.index else None,
                "average": mean,
                "trend": _round(average[code] - before[line]) if line in before and mean is not None else None,
                "model_type": model_type,
                "model_id": shown_id(model_id, redact_pii),
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
