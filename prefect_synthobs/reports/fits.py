"""Which epochs belong to which fit: the ``models`` and ``training_epochs`` rows grouped into fits (pure).

A fit is one ``models`` row (a synthesizer object fitted twice keeps its ``model_id``: two fits). An
epoch row carrying a model id belongs to the first fit of that model that ended at or after it
(``time`` is when the epoch ended; the fit's row is written when the fit ends). Epochs after a model's
last fit row are one open fit with no row (still running, or ended without writing one); epochs
recorded by hand (``record_epoch``: no model id) are one fit per flow run. ``reports.training`` turns
the fits into the report's rows; a loss's trend (``loss_trend``) and its epochs in buckets
(``bucketed``, for sparklines and charts) are here too.

Every value is read defensively: a frame may lack a column (a store from before it), any cell may be
null, and a number that is NaN or infinite reads as ``None``.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.reports.models import model_id_column, text_column

TREND_EPOCHS = 5
"""A loss's trend compares its last value with its value this many epochs earlier (else its first)."""
TREND_TOLERANCE = 1e-3
"""A change smaller than this share of the larger of the two losses is flat (``→``)."""


@dataclass
class EpochRecord:
    """One ``training_epochs`` row: one loss type of one epoch."""

    time: int  # ns since the epoch, for ordering and assignment to fits
    epoch: int | None
    loss_type: str | None
    loss: float | None  # None: missing, NaN or infinite
    seconds: float | None
    flow_run_id: str | None = None
    flow_name: str | None = None
    model_type: str | None = None

    def order(self) -> tuple[Any, ...]:
        """Time order; rows of one time by a finite loss after a missing one, the larger last, then by
        every other value: the same rows in any order sort alike (an epoch written twice shows one value)."""
        return (
            self.time,
            self.loss is not None,
            self.loss or 0.0,
            self.flow_run_id or "",
            self.flow_name or "",
            self.model_type or "",
            self.loss_type or "",
            -1 if self.epoch is None else self.epoch,
            -1.0 if self.seconds is None else self.seconds,
        )


@dataclass
class FitLine:
    """One fit: its ``models`` row's values (``None`` where it has none) and its epochs."""

    model_id: str | None
    table: str | None
    model_type: str | None
    flow_name: str | None
    flow_run_id: str | None
    time: int | None
    fit: dict[str, Any] = field(default_factory=dict)
    epochs: list[EpochRecord] = field(default_factory=list)
    hand: bool = False
    """Epochs recorded by hand (no model id): one such fit per flow run."""


def floats(frame: pd.DataFrame, column: str) -> list[float | None]:
    """The column as finite floats, ``None`` for missing, NaN, infinite or not a number."""
    values = _float_array(frame, column)
    out = values.astype(object)  # Python floats
    out[~np.isfinite(values)] = None
    result: list[float | None] = out.tolist()
    return result


def ints(frame: pd.DataFrame, column: str) -> list[int | None]:
    """The column as whole numbers (``floats`` truncated), ``None`` where it has none."""
    values = _float_array(frame, column)
    whole = np.isfinite(values)
    whole[whole] = np.abs(values[whole]) <= 2**62
    out = np.full(len(values), None, dtype=object)
    out[whole] = values[whole].astype(np.int64).tolist()  # truncated toward zero, as ``int`` does
    result: list[int | None] = out.tolist()
    return result


def _float_array(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The column as ``float64`` with NaN for anything not a number (all NaN without the column)."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    series = pd.Series(frame[column])
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "fiu":  # plain numpy numbers: no detour
        plain: np.ndarray = series.to_numpy(dtype="float64", copy=True)
        return plain
    coerced: np.ndarray = pd.to_numeric(series.astype(object), errors="coerce").astype("float64").to_numpy(copy=True)
    return coerced


NO_TIME = 2**63 - 1  # a row without a time sorts last (and belongs to no fit but the open one)


def times(frame: pd.DataFrame, column: str = "time") -> list[int]:
    """The column as UTC nanoseconds since 1970, ``NO_TIME`` where it has none."""
    if column not in frame.columns:
        return [NO_TIME] * len(frame)
    stamps = pd.to_datetime(pd.Series(frame[column]), utc=True, errors="coerce")
    return [NO_TIME if pd.isna(t) else int(t.value) for t in stamps]


def final_losses(text: str | None) -> dict[str, float]:
    """The ``final_losses`` JSON of a ``models`` row: finite numbers by loss type; anything else ignored."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for name, value in data.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[str(name)] = float(value)
    return out


def _fit_keys(frame: pd.DataFrame) -> list[str | None]:
    """Which fit each row belongs to: its ``fit_id`` (autolog's, one per fit), else its model id (rows
    written before fits had ids, or by hand)."""
    model_ids = list(model_id_column(frame))
    if "fit_id" not in frame.columns:
        return model_ids
    return [fit or model for fit, model in zip(text_column(frame, "fit_id"), model_ids, strict=True)]


def _epoch_records(epochs: pd.DataFrame) -> tuple[list[EpochRecord], list[str | None], list[str | None]]:
    """The epoch rows as records, with the fit each belongs to (``_fit_keys``) and its model id."""
    columns = zip(
        times(epochs),
        ints(epochs, "epoch"),
        text_column(epochs, "loss_type"),
        floats(epochs, "loss"),
        floats(epochs, "epoch_seconds"),
        text_column(epochs, "flow_run_id"),
        text_column(epochs, "flow_name"),
        text_column(epochs, "model_type"),
        strict=True,
    )
    return [EpochRecord(*values) for values in columns], _fit_keys(epochs), list(model_id_column(epochs))


_FIT_TEXT = ("library", "synthesizer", "status", "error_type", "final_losses")
_FIT_INTS = ("fit_rows", "fit_columns", "epochs")


def fit_lines(
    models: pd.DataFrame, epochs: pd.DataFrame, since: int, until: int, flow_name: str | None
) -> list[FitLine]:
    """Every fit of the window with its epochs (see the module for the rules)."""
    m_ids, m_keys, m_times = list(model_id_column(models)), _fit_keys(models), times(models)
    m_text = {c: list(text_column(models, c)) for c in ("flow_name", "flow_run_id", "table_name", "model_type")}
    fit_values: dict[str, list[Any]] = {c: list(text_column(models, c)) for c in _FIT_TEXT}
    fit_values.update({c: ints(models, c) for c in _FIT_INTS})
    fit_values["fit_seconds"] = floats(models, "fit_seconds")
    fits: dict[str, list[tuple[int, int]]] = defaultdict(list)  # model id -> [(time, models row)], in time order
    for k, (key, t) in enumerate(zip(m_keys, m_times, strict=True)):
        if key is not None:
            fits[key].append((t, k))
    for pairs in fits.values():
        pairs.sort()
    lines: dict[int, FitLine] = {}
    for k, t in enumerate(m_times):
        if since <= t < until and (flow_name is None or m_text["flow_name"][k] == flow_name):
            lines[k] = FitLine(
                m_ids[k],
                m_text["table_name"][k],
                m_text["model_type"][k],
                m_text["flow_name"][k],
                m_text["flow_run_id"][k],
                t,
                {c: values[k] for c, values in fit_values.items()},
            )
    records, e_keys, e_ids = _epoch_records(epochs)
    open_lines: dict[str, FitLine] = {}
    hand: dict[str | None, FitLine] = {}
    for record, key, model_id in zip(records, e_keys, e_ids, strict=True):
        if record.time >= until:
            continue
        run = record.flow_run_id
        if key is None:  # recorded by hand: the window's only, one line per flow run
            if record.time >= since:
                hand.setdefault(run, FitLine(None, None, None, None, run, None, hand=True)).epochs.append(record)
            continue
        pairs = fits.get(key, [])
        j = bisect.bisect_left(pairs, (record.time, -1))  # the first fit of this key ending at or after it
        if j < len(pairs):
            if pairs[j][1] in lines:  # else a fit before the window (or another flow's): not shown
                lines[pairs[j][1]].epochs.append(record)
        else:
            open_lines.setdefault(key, FitLine(model_id, None, None, None, None, None)).epochs.append(record)
    shown = list(lines.values())
    shown += [line for line in open_lines.values() if any(r.time >= since for r in line.epochs)]
    shown += list(hand.values())
    for line in shown:
        line.epochs.sort(key=EpochRecord.order)
        if line.time is None:  # no fit row: the flow run, flow and type of its latest epoch
            last = line.epochs[-1]
            line.flow_run_id, line.flow_name, line.model_type = last.flow_run_id, last.flow_name, last.model_type
    return shown


def losses_of(line: FitLine) -> dict[str, dict[int, float | None]]:
    """Loss type → epoch → its loss (``None``: NaN, infinite or missing), the latest row of each epoch."""
    out: dict[str, dict[int, float | None]] = defaultdict(dict)
    for r in line.epochs:
        if r.loss_type is not None and r.epoch is not None:
            out[r.loss_type][r.epoch] = r.loss
    return dict(sorted(out.items()))


def epoch_seconds(line: FitLine) -> tuple[int, float | None]:
    """How many distinct epochs the line recorded, and their mean duration: one value per epoch (its
    rows per loss type carry the same; an epoch written twice counts once, with its longer value)."""
    per_epoch: dict[int, float | None] = {}
    for r in line.epochs:
        if r.epoch is not None:
            known = [s for s in (per_epoch.get(r.epoch), r.seconds) if s is not None]
            per_epoch[r.epoch] = max(known) if known else None
    values = [s for s in per_epoch.values() if s is not None]
    return len(per_epoch), (sum(values) / len(values) if values else None)


def loss_trend(points: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """The trend of one loss from its finite ``(epoch, loss)`` points (any order; pure).

    Returns ``final`` (the last epoch's loss) and ``final_epoch``; ``vs_epoch`` and ``reference``: the
    latest point at least ``TREND_EPOCHS`` epochs before the last, else the first; ``change`` (final
    minus reference) and ``arrow`` (``↓``, ``↑``, or ``→`` when the change is within ``TREND_TOLERANCE``
    of the larger loss). With one point, no reference, change or arrow; with none, all ``None``.
    """
    ordered = sorted(points)
    if not ordered:
        return {"final": None, "final_epoch": None, "reference": None, "vs_epoch": None, "change": None, "arrow": None}
    last_epoch, final = ordered[-1]
    if len(ordered) == 1:
        return {
            "final": final,
            "final_epoch": last_epoch,
            "reference": None,
            "vs_epoch": None,
            "change": None,
            "arrow": None,
        }
    earlier = [p for p in ordered[:-1] if p[0] <= last_epoch - TREND_EPOCHS]
    ref_epoch, reference = earlier[-1] if earlier else ordered[0]
    change = final - reference
    tolerance = TREND_TOLERANCE * max(abs(final), abs(reference))
    arrow = "↓" if change < -tolerance else "↑" if change > tolerance else "→"
    return {
        "final": final,
        "final_epoch": last_epoch,
        "reference": reference,
        "vs_epoch": ref_epoch,
        "change": change,
        "arrow": arrow,
    }


def bucketed(values: Mapping[int, float | None], limit: int) -> tuple[list[int], list[float | None]]:
    """``(epochs, values)`` over the whole range of ``values``' epochs, at most ``limit`` points: one per
    epoch while that fits, else one per bucket of consecutive epochs (labelled by its first) holding
    the bucket's last finite value. An epoch or a bucket without one is ``None`` (a gap; pure)."""
    if not values:
        return [], []
    keys = sorted(values)
    first, last = keys[0], keys[-1]
    step = max(1, -(-(last - first + 1) // max(limit, 1)))
    out: list[float | None] = [None] * ((last - first) // step + 1)
    for epoch in keys:  # ascending: a bucket keeps its last finite value
        value = values[epoch]
        if value is not None:
            out[(epoch - first) // step] = value
    return [first + k * step for k in range(len(out))], out
