"""Privacy-risk scores for synthetic tables, pure pandas/numpy, memory-bounded.

Distances follow SDMetrics 0.29's distance to closest record (DCR): per
column, a numerical or datetime difference divided by the reference column's
range and capped at 1 (a constant reference column: 0 if equal, else 1); a
categorical or boolean column: 0 if equal, else 1; a missing value is 0 from
another missing value and 1 from anything else. A row's distance is the mean
over the columns; its DCR is the smallest distance to any reference row.
Work is done in blocks of ``chunk_size`` × ``chunk_size`` rows, so memory
stays bounded whatever the table sizes. Categories share one encoding across
both tables.

Re-exported by ``prefect_synthobs.scores.fidelity``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.scores.metadata import accepts_sdv_metadata
from prefect_synthobs.scores.stats import average_ranks, numeric_values

__all__ = [
    "dcr",
    "dcr_baseline_protection",
    "dcr_overfitting_protection",
    "exact_match_rate",
    "membership_inference_auc",
    "new_row_synthesis",
]

DEFAULT_CHUNK_SIZE = 1000
_CONTINUOUS = ("numerical", "datetime")
_DISCRETE = ("categorical", "boolean")


@dataclass(frozen=True)
class _Encoded:
    """Both tables as arrays.

    Continuous columns are divided by the reference range (so a distance is
    ``min(|a − b|, 1)``), NaN filled with 0 and flagged in ``*_nan``; columns
    with a zero range (``const``) compare for equality instead. Discrete
    columns are one-hot over one shared encoding (missing is a category of its
    own), so the number of equal discrete columns between two rows is one
    matrix product.
    """

    cont_data: np.ndarray  # (n, c) scaled, NaN -> 0
    cont_ref: np.ndarray  # (m, c)
    nan_data: np.ndarray  # (n, c) bool
    nan_ref: np.ndarray  # (m, c) bool
    const: np.ndarray  # (c,) bool: zero range
    outside: np.ndarray  # (n, c) bool: data value outside the reference range (distance may exceed 1)
    onehot_data: np.ndarray  # (n, K) float64
    onehot_ref: np.ndarray  # (m, K)
    codes_data: np.ndarray  # (n, d) int64 shared category codes (missing: its own code)
    codes_ref: np.ndarray  # (m, d)
    n_discrete: int
    columns: list[str]
    offset: np.ndarray  # (c,) reference minimum / scale: value = (scaled + offset) × scale

    def as_float32(self) -> _Encoded:
        """The same tables in float32: half the memory traffic, for screening."""
        return _Encoded(
            self.cont_data.astype(np.float32),
            self.cont_ref.astype(np.float32),
            self.nan_data,
            self.nan_ref,
            self.const,
            self.outside,
            self.onehot_data.astype(np.float32),
            self.onehot_ref.astype(np.float32),
            self.codes_data,
            self.codes_ref,
            self.n_discrete,
            self.columns,
            self.offset,
        )


def _columns(metadata: Mapping[str, Any], data: pd.DataFrame, reference: pd.DataFrame) -> dict[str, str]:
    columns = metadata.get("columns") if isinstance(metadata, Mapping) else None
    if not isinstance(columns, Mapping):
        raise ValueError('metadata must look like {"columns": {"age": {"sdtype": "numerical"}, ...}}')
    out = {}
    for name, meta in columns.items():
        sdtype = meta.get("sdtype") if isinstance(meta, Mapping) else None
        if sdtype in (*_CONTINUOUS, *_DISCRETE) and name in data.columns and name in reference.columns:
            out[name] = sdtype
    if not out:
        raise ValueError("no numerical, datetime, categorical or boolean column is in both tables")
    return out


def _seconds(series: pd.Series) -> np.ndarray:
    return numeric_values(series, datetime_unit=1e9)  # datetimes in seconds, as SDMetrics


def _encode(data: pd.DataFrame, reference: pd.DataFrame, metadata: Mapping[str, Any]) -> _Encoded:
    for label, df in (("data", data), ("reference", reference)):
        if not isinstance(df, pd.DataFrame) or df.empty:
            raise ValueError(f"the {label} table must be a non-empty DataFrame")
    sdtypes = _columns(metadata, data, reference)
    cont = [c for c, t in sdtypes.items() if t in _CONTINUOUS]
    disc = [c for c, t in sdtypes.items() if t in _DISCRETE]
    n, m = len(data), len(reference)
    raw_data = np.column_stack([_seconds(data[c]) for c in cont]) if cont else np.empty((n, 0))
    raw_ref = np.column_stack([_seconds(reference[c]) for c in cont]) if cont else np.empty((m, 0))
    nan_data, nan_ref = np.isnan(raw_data), np.isnan(raw_ref)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing reference column
        ranges = (np.nanmax(raw_ref, axis=0) - np.nanmin(raw_ref, axis=0)) if cont else np.empty(0)
        origin = np.nan_to_num(np.nanmin(raw_ref, axis=0)) if cont else np.empty(0)
    const = ~(ranges > 0)  # zero (or undefined) range: equal or not
    scale = np.where(const, 1.0, ranges)
    # shifted to the reference minimum and scaled by its range: in-range values lie in [0, 1]
    cont_data = np.where(nan_data, 0.0, (raw_data - origin) / scale)
    cont_ref = np.where(nan_ref, 0.0, (raw_ref - origin) / scale)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = np.nanmin(np.where(nan_ref, np.nan, cont_ref), axis=0) if cont else np.empty(0)
        hi = np.nanmax(np.where(nan_ref, np.nan, cont_ref), axis=0) if cont else np.empty(0)
    outside = ~nan_data & ((cont_data < lo) | (cont_data > hi) | ~np.isfinite(lo))
    blocks_data, blocks_ref = [], []
    codes_data = np.empty((n, len(disc)), dtype=np.int64)
    codes_ref = np.empty((m, len(disc)), dtype=np.int64)
    for k, c in enumerate(disc):
        codes, uniques = pd.factorize(
            pd.concat([data[c], reference[c]], ignore_index=True).astype(object), use_na_sentinel=True
        )
        codes = np.where(codes < 0, len(uniques), codes)  # missing: a category of its own
        codes_data[:, k], codes_ref[:, k] = codes[:n], codes[n:]
        eye = np.eye(len(uniques) + 1)
        blocks_data.append(eye[codes[:n]])
        blocks_ref.append(eye[codes[n:]])
    onehot_data = np.hstack(blocks_data) if blocks_data else np.empty((n, 0))
    onehot_ref = np.hstack(blocks_ref) if blocks_ref else np.empty((m, 0))
    return _Encoded(
        cont_data,
        cont_ref,
        nan_data,
        nan_ref,
        const,
        outside,
        onehot_data,
        onehot_ref,
        codes_data,
        codes_ref,
        len(disc),
        [*cont, *disc],
        origin / scale,
    )


def _block_distances(enc: _Encoded, rows: slice, refs: slice) -> np.ndarray:
    """Summed per-column distances between data rows ``rows`` and reference rows
    ``refs`` (divide by the number of columns for the mean), in ``enc``'s dtype."""
    n_rows, n_refs = rows.stop - rows.start, refs.stop - refs.start
    dtype = enc.cont_data.dtype if enc.cont_data.size else enc.onehot_data.dtype
    total = np.zeros((n_rows, n_refs), dtype=dtype)
    buf = np.empty((n_rows, n_refs), dtype=dtype)
    for j in range(enc.cont_data.shape[1]):
        a, b = enc.cont_data[rows, j][:, None], enc.cont_ref[refs, j][None, :]
        np.subtract(a, b, out=buf)
        np.abs(buf, out=buf)
        if enc.const[j]:
            np.greater(buf, 0, out=buf, casting="unsafe")
        else:  # |a − b| ≤ 1 already when a lies in the reference range: cap only the rows outside it
            far = np.flatnonzero(enc.outside[rows, j])
            if far.size:
                buf[far] = np.minimum(buf[far], 1.0)
        a_nan, b_nan = enc.nan_data[rows, j], enc.nan_ref[refs, j]
        if a_nan.any() or b_nan.any():  # missing: 0 from missing, 1 from a value
            buf[a_nan, :] = ~b_nan
            buf[:, b_nan] = ~a_nan[:, None]
        total += buf
    if enc.n_discrete:
        matches = enc.onehot_data[rows] @ enc.onehot_ref[refs].T
        total += enc.n_discrete - matches
    return total


def _pair_distances(enc: _Encoded, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Exact (float64) summed distances of the row pairs ``(i[k], j[k])``."""
    total = np.zeros(i.size)
    for c in range(enc.cont_data.shape[1]):
        diff = np.abs(enc.cont_data[i, c] - enc.cont_ref[j, c])
        d = (diff > 0).astype(np.float64) if enc.const[c] else np.minimum(diff, 1.0)
        a_nan, b_nan = enc.nan_data[i, c], enc.nan_ref[j, c]
        total += np.where(a_nan ^ b_nan, 1.0, np.where(a_nan & b_nan, 0.0, d))
    if enc.n_discrete:
        total += (enc.codes_data[i] != enc.codes_ref[j]).sum(axis=1)
    return total


def _screening_margin(columns: int) -> float:
    """A bound on the float32 error of a summed distance over ``columns`` columns:
    per-column rounding (≤ ~2.4e-7 each, values in [0, 1]) plus accumulation
    (≤ columns × ulp(columns)), with a factor 4 to spare."""
    return 4 * (columns * 2.4e-7 + columns * columns * 6e-8) + 1e-6


@accepts_sdv_metadata
def dcr(
    data: pd.DataFrame, reference: pd.DataFrame, metadata: Mapping[str, Any], *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> pd.Series:
    """Distance to closest record: for each row of ``data``, its distance to the
    nearest row of ``reference`` (0 = an identical row exists, 1 = nothing alike).

    Args:
        data: Rows to measure (usually the synthetic table).
        reference: Rows to compare with (usually the real table).
        metadata: ``{"columns": {name: {"sdtype": ...}}}``.
        chunk_size: Rows per block on each side; memory is about
            ``chunk_size² × 16`` bytes.

    Raises:
        ValueError: Empty tables, bad metadata, or no column in common.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    enc = _encode(data, reference, metadata)
    fast = enc.as_float32()
    margin = _screening_margin(len(enc.columns))
    n, m = enc.cont_data.shape[0], enc.cont_ref.shape[0]
    out = np.empty(n)

    def row_block(i: int) -> None:
        # float32 screens every pair; the few pairs within the error margin of
        # a row's float32 minimum are then measured exactly in float64
        rows = slice(i, min(i + chunk_size, n))
        best = np.full(rows.stop - rows.start, np.inf)
        for k in range(0, m, chunk_size):
            refs = slice(k, min(k + chunk_size, m))
            screened = _block_distances(fast, rows, refs)
            low = screened.min(axis=1)
            live = np.flatnonzero(low - margin < best)
            if live.size == 0:
                continue
            near = screened[live] <= (low[live] + margin)[:, None]
            r, c = np.nonzero(near)
            local_rows = live[r]
            exact = _pair_distances(enc, rows.start + local_rows, refs.start + c)
            np.minimum.at(best, local_rows, exact)
        out[rows] = best / len(enc.columns)

    starts = range(0, n, chunk_size)
    workers = min(_workers(), len(starts))
    if workers <= 1:
        for i in starts:
            row_block(i)
    else:  # numpy releases the GIL in these loops: blocks run in parallel
        with ThreadPoolExecutor(workers, thread_name_prefix="synthobs-dcr") as pool:
            list(pool.map(row_block, starts))
    return pd.Series(out, index=data.index, name="dcr")


def _workers() -> int:
    """Threads for distance work: the CPUs this process may use (memory grows
    by about ``3 × chunk_size² × 8`` bytes per thread)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


@accepts_sdv_metadata
def exact_match_rate(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: Mapping[str, Any] | None = None,
) -> float:
    """Share of synthetic rows identical to some real row (over the common
    columns, or the metadata's; missing equals missing). Lower is safer."""
    if metadata is not None:
        columns = list(_columns(metadata, synthetic, real))
    else:
        columns = [c for c in synthetic.columns if c in real.columns]
    if not columns:
        raise ValueError("the real and synthetic tables have no column in common")
    if synthetic.empty:
        raise ValueError("the synthetic table is empty")
    keys = pd.concat([real[columns], synthetic[columns]], ignore_index=True).astype(object)
    codes = np.column_stack([pd.factorize(keys[c], use_na_sentinel=True)[0] for c in columns])
    real_rows = {tuple(row) for row in codes[: len(real)]}
    return float(np.mean([tuple(row) in real_rows for row in codes[len(real) :]]))


@accepts_sdv_metadata
def new_row_synthesis(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: Mapping[str, Any],
    *,
    numerical_match_tolerance: float = 0.01,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> float:
    """Share of synthetic rows that match no real row (SDMetrics' NewRowSynthesis).

    A numerical or datetime value matches when within ``numerical_match_tolerance``
    × |synthetic value|; categories must be equal; missing matches missing.
    """
    enc = _encode(synthetic, real, metadata)
    n, m = enc.cont_data.shape[0], enc.cont_ref.shape[0]
    new = np.empty(n, dtype=bool)
    for i in range(0, n, chunk_size):
        rows = slice(i, min(i + chunk_size, n))
        found = np.zeros(rows.stop - rows.start, dtype=bool)
        for k in range(0, m, chunk_size):
            refs = slice(k, min(k + chunk_size, m))
            if enc.n_discrete:  # every discrete column equal (missing equals missing)
                match = (enc.onehot_data[rows] @ enc.onehot_ref[refs].T) == enc.n_discrete
            else:
                match = np.ones((rows.stop - rows.start, refs.stop - refs.start), dtype=bool)
            for j in range(enc.cont_data.shape[1]):
                a, b = enc.cont_data[rows, j][:, None], enc.cont_ref[refs, j][None, :]
                a_nan, b_nan = enc.nan_data[rows, j][:, None], enc.nan_ref[refs, j][None, :]
                # |a − b| <= tol·|a| in the original units (values are shifted and scaled)
                close = np.abs(b - a) <= np.abs(numerical_match_tolerance * (a + enc.offset[j]))
                match &= np.where(a_nan, b_nan, close & ~b_nan)
            found |= match.any(axis=1)
        new[rows] = ~found
    return float(new.mean())


@accepts_sdv_metadata
def dcr_overfitting_protection(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    metadata: Mapping[str, Any],
    *,
    iterations: int = 10,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, float]:
    """Whether synthetic rows sit closer to the training rows than to unseen ones.

    A synthetic row counts as "closer to training" when its DCR to the training
    table is smaller than to the holdout table; a generator that did not copy
    its training data has about half its rows there, so the score is
    ``min(2 × (1 − share closer to training), 1)`` (1 = no sign of overfitting).

    Unequal sizes are handled honestly: with more training rows than holdout
    rows, every synthetic row would look closer to training by chance alone, so
    the larger table is subsampled (seeded, ``iterations`` draws, averaged) to
    the smaller one's size. Equal sizes give SDMetrics' number exactly.

    Returns:
        ``{"score", "closer_to_training", "closer_to_holdout"}``.
    """
    if len(train) == 0 or len(holdout) == 0:
        raise ValueError("train and holdout tables must have rows")
    rng = np.random.default_rng(seed)
    size = min(len(train), len(holdout))
    draws = 1 if len(train) == len(holdout) else max(int(iterations), 1)
    shares = []
    for _ in range(draws):
        t = train if len(train) == size else train.iloc[np.sort(rng.choice(len(train), size, replace=False))]
        h = holdout if len(holdout) == size else holdout.iloc[np.sort(rng.choice(len(holdout), size, replace=False))]
        to_train = dcr(synthetic, t, metadata, chunk_size=chunk_size).to_numpy()
        to_holdout = dcr(synthetic, h, metadata, chunk_size=chunk_size).to_numpy()
        shares.append(float(np.mean(to_train < to_holdout)))
    closer = float(np.mean(shares))
    return {"score": min((1.0 - closer) * 2, 1.0), "closer_to_training": closer, "closer_to_holdout": 1 - closer}


def _random_like(real: pd.DataFrame, columns: dict[str, str], n: int, rng: np.random.Generator) -> pd.DataFrame:
    out = {}
    for c, sdtype in columns.items():
        col = real[c]
        present = col.dropna()
        if sdtype in _CONTINUOUS and len(present):
            if pd.api.types.is_datetime64_any_dtype(col):
                lo, hi = present.min(), present.max()
                values: Any = lo + pd.to_timedelta(rng.uniform(0, (hi - lo).total_seconds(), n), unit="s")
            else:
                values = rng.uniform(float(present.min()), float(present.max()), n)
        else:
            uniques = present.unique()
            values = rng.choice(np.asarray(uniques, dtype=object), n) if len(uniques) else np.full(n, None)
        series = pd.Series(values)
        series[rng.random(n) < col.isna().mean()] = None
        out[c] = series
    frame: pd.DataFrame = pd.DataFrame(out)
    return frame


@accepts_sdv_metadata
def dcr_baseline_protection(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: Mapping[str, Any],
    *,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, float]:
    """How far synthetic rows are from real ones, against random rows drawn from
    the real columns' ranges and categories: ``min(median DCR synthetic /
    median DCR random, 1)`` (1 = as far as random noise). Seeded (SDMetrics'
    own version is not), so the number is reproducible.

    Returns:
        ``{"score", "median_dcr_synthetic", "median_dcr_random"}``.
    """
    columns = _columns(metadata, synthetic, real)
    random = _random_like(real, columns, len(synthetic), np.random.default_rng(seed))
    syn_median = float(dcr(synthetic, real, metadata, chunk_size=chunk_size).median())
    rnd_median = float(dcr(random, real, metadata, chunk_size=chunk_size).median())
    score = math.nan if rnd_median == 0 else min(syn_median / rnd_median, 1.0)
    return {"score": score, "median_dcr_synthetic": syn_median, "median_dcr_random": rnd_median}


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties half."""
    ranks = average_ranks(np.concatenate([positive, negative]))
    n_pos, n_neg = positive.size, negative.size
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@accepts_sdv_metadata
def membership_inference_auc(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: Mapping[str, Any],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> float:
    """AUC of a distance attack telling training rows from holdout rows.

    The attacker scores each real row by how close the synthetic table comes
    to it (minus its DCR to the synthetic rows) and guesses "member" for close
    ones. 0.5: the synthetic data says nothing about membership; 1.0: every
    training row is given away. Lower is safer.
    """
    if len(train) == 0 or len(holdout) == 0:
        raise ValueError("train and holdout tables must have rows")
    members = -dcr(train, synthetic, metadata, chunk_size=chunk_size).to_numpy()
    others = -dcr(holdout, synthetic, metadata, chunk_size=chunk_size).to_numpy()
    return _auc(members, others)
