"""Disclosure protection: how well synthetic rows hide real rows' sensitive values.

The definitions are SDMetrics' (``DisclosureProtection``,
``DisclosureProtectionEstimate`` and the CAP metrics; identical in SDMetrics
0.29 and 0.32), reproduced exactly with vectorised numpy/pandas (SDMetrics
loops over rows in Python). The tests compare with values SDMetrics computed
on the same data, to 1e-9.

An attacker knows some columns of a real row (the *known* columns, the key)
and wants its *sensitive* columns. CAP (correct attribution probability)
takes every synthetic row whose key equals the real row's and scores the
share of them that carry the real row's sensitive values; the protection is
1 − the mean share over the real rows:

- ``"cap"``: real rows whose key no synthetic row has are left out (no real
  row found: ``nan``).
- ``"zero_cap"``: those rows count with a share of 0.
- ``"generalized_cap"``: those rows use the synthetic rows whose keys are
  nearest in Hamming distance (number of differing known columns).

``disclosure_protection`` divides by a baseline, the protection of guessing
uniformly among the real table's distinct sensitive values
(``1 − 1 / Π distinct values per sensitive column``), and caps at 1:
``min(protection / baseline, 1)`` (``nan`` when the baseline is 0, that is
when every sensitive column is constant). 1 = the synthetic table tells an
attacker no more than a uniform guess; 0 = it reveals every sensitive value.

How values are compared, as SDMetrics does:

- Missing values (NaN, None, NaT) of a column are one category of their own,
  equal to each other and to nothing else.
- Columns in ``continuous_column_names`` are binned first: the edges are those
  of ``pandas.cut(real, num_discrete_bins)`` (equal widths over the real
  range), the outermost edges opened to ±∞ for the synthetic column; values
  are then compared by bin. Datetimes are binned on their int64 nanoseconds,
  where SDMetrics (through ``pd.to_numeric``) turns NaT into the smallest
  int64: a binned datetime column *with missing values* therefore has bins
  stretching back to the year 1677, so all its present dates share a bin or
  two (real NaT become the missing category, synthetic NaT the first bin).
  That is SDMetrics' number, reproduced for parity; to bin dates
  meaningfully, drop or fill the NaT first.
- Every other column is compared by value (numbers, strings, booleans,
  timestamps) across the two tables.

Where this module differs from SDMetrics (on purpose):

- Datetime columns are accepted unbinned. SDMetrics raises ``TypeError`` for
  one whose real column has no missing values (its type check runs after the
  missing values were filled, which turns a column with NaT into objects).
- The columns need only be in both tables (SDMetrics wants identical column
  sets); a column both known and sensitive, an empty table, or a missing
  column raise ``ValueError``.
- ``categorical_cap`` treats missing values as a category, as
  ``DisclosureProtection`` does before it calls CAP. SDMetrics'
  ``CategoricalCAP.compute`` on raw data compares missing values by object
  identity (a float NaN never matches, not even another NaN, while the one
  ``np.nan`` object in an object column matches itself), and its generalized
  CAP's Hamming distance counts every NaN as different; on data without
  missing values the two agree.
- ``disclosure_protection_estimate`` is seeded (see there).

Re-exported by ``prefect_synthobs.quality``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "categorical_cap",
    "disclosure_protection",
    "disclosure_protection_breakdown",
    "disclosure_protection_estimate",
    "disclosure_protection_estimate_breakdown",
]

COMPUTATION_METHODS = ("cap", "zero_cap", "generalized_cap")
DEFAULT_NUM_DISCRETE_BINS = 10
DEFAULT_NUM_ROWS_SUBSAMPLE = 1000
DEFAULT_NUM_ITERATIONS = 10
# Elements per block of the Hamming-distance work of the generalized CAP (memory bound).
_BLOCK = 1 << 22


@dataclass(frozen=True)
class _Prepared:
    """Both tables as integer codes, shared between the tables column by column.

    ``known_*`` has one column of codes per known column (missing values and,
    for binned columns, bins are codes too); ``sensitive_*`` is one code per
    row for the combination of the sensitive columns.
    """

    known_real: np.ndarray  # (n_real, d) int64
    known_synthetic: np.ndarray  # (n_synthetic, d) int64
    sensitive_real: np.ndarray  # (n_real,) int64
    sensitive_synthetic: np.ndarray  # (n_synthetic,) int64
    baseline: float


def _names(value: str | Sequence[str] | None, what: str) -> list[str]:
    if value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    if len(set(names)) != len(names):
        raise ValueError(f"{what} column names list a column twice: {names}")
    return names


def _method(computation_method: str) -> str:
    method = str(computation_method).lower()
    if method not in COMPUTATION_METHODS:
        raise ValueError(
            f"unknown computation method {computation_method!r}; use one of {', '.join(map(repr, COMPUTATION_METHODS))}"
        )
    return method


def _positive_int(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{what}` must be an integer greater than zero, got {value!r}")
    return int(value)


def _validate(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    known: str | Sequence[str],
    sensitive: str | Sequence[str],
    continuous: str | Sequence[str] | None = None,
) -> tuple[list[str], list[str], list[str]]:
    if not isinstance(real, pd.DataFrame) or not isinstance(synthetic, pd.DataFrame):
        raise ValueError("real and synthetic data must be pandas DataFrames")
    known_names = _names(known, "known")
    sensitive_names = _names(sensitive, "sensitive")
    continuous_names = _names(continuous, "continuous")
    if not known_names:
        raise ValueError("give at least one known column name")
    if not sensitive_names:
        raise ValueError("give at least one sensitive column name")
    both = [c for c in known_names if c in sensitive_names]
    if both:
        raise ValueError(f"column(s) {both} are both known and sensitive; a column is one or the other")
    for label, table in (("real", real), ("synthetic", synthetic)):
        for what, names in (("known", known_names), ("sensitive", sensitive_names), ("continuous", continuous_names)):
            missing = [c for c in names if c not in table.columns]
            if missing:
                raise ValueError(f"{what} column(s) {missing} are missing from the {label} data")
        if len(table) == 0:
            raise ValueError(f"the {label} data has no rows")
    return known_names, sensitive_names, continuous_names


def _numeric(column: pd.Series, name: str) -> np.ndarray:
    """The column as ``pd.to_numeric`` gives it in SDMetrics' environment (pandas 2):
    datetimes and timedeltas as int64 nanoseconds with NaT as the smallest int64."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert(None)
        dtype = column.dtype
    if pd.api.types.is_datetime64_dtype(dtype):
        return np.asarray(column.astype("datetime64[ns]")).view(np.int64)
    if pd.api.types.is_timedelta64_dtype(dtype):
        return np.asarray(column.astype("timedelta64[ns]")).view(np.int64)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_numeric_dtype(dtype):
        if column.isna().any():
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.asarray(column.to_numpy())
    try:
        values = np.asarray(pd.to_numeric(column.to_numpy()))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"continuous column {name!r} must hold numbers or datetimes: {exc}") from None
    if values.dtype == bool:  # pandas.cut works on booleans as int64
        values = values.astype(np.int64)
    if values.dtype.kind not in "iuf":
        raise ValueError(f"continuous column {name!r} must hold numbers or datetimes, not {values.dtype}")
    return values


def _cut_edges(values: np.ndarray, num_bins: int, name: str) -> np.ndarray:
    """``pandas.cut(values, num_bins, retbins=True)``'s edges (pandas 2.3, what SDMetrics runs on),
    with its numpy-scalar arithmetic (an int64 range overflows there, and here)."""
    present = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    if present.size == 0:
        raise ValueError(f"continuous column {name!r} has no values in the real data to bin")
    lo, hi = present.min(), present.max()
    if values.dtype.kind == "f" and (np.isinf(lo) or np.isinf(hi)):
        raise ValueError(f"continuous column {name!r} holds infinity; it cannot be binned")
    with np.errstate(over="ignore"):
        if lo == hi:  # pandas widens a constant column by 0.1 % before binning
            lo = lo - (0.001 * abs(lo) if lo != 0 else 0.001)
            hi = hi + (0.001 * abs(hi) if hi != 0 else 0.001)
            edges = np.linspace(lo, hi, num_bins + 1, endpoint=True)
        else:
            edges = np.linspace(lo, hi, num_bins + 1, endpoint=True)
            edges[0] -= (hi - lo) * 0.001
    if len(np.unique(edges)) < len(edges) and len(edges) != 2:
        raise ValueError(f"continuous column {name!r}: its range is too narrow for {num_bins} distinct bin edges")
    return edges


def _bin_codes(values: np.ndarray, edges: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin of each value (right-closed, as ``pandas.cut``); outside or missing: ``num_bins``."""
    ids = np.searchsorted(edges, values, side="left")
    outside = (ids == 0) | (ids == len(edges))
    if values.dtype.kind == "f":
        outside |= np.isnan(values)
    return np.where(outside, num_bins, ids - 1).astype(np.int64)


def _discretize(real: pd.Series, synthetic: pd.Series, num_bins: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    real_values = _numeric(real, name)
    edges = _cut_edges(real_values, num_bins, name)
    open_edges = edges.copy()
    open_edges[0], open_edges[-1] = -np.inf, np.inf
    return _bin_codes(real_values, edges, num_bins), _bin_codes(_numeric(synthetic, name), open_edges, num_bins)


def _factorize(real: pd.Series, synthetic: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Shared codes of two columns' values; every missing value gets one code of its own."""
    if real.dtype != synthetic.dtype:
        real, synthetic = real.astype(object), synthetic.astype(object)
    both = pd.concat([real.reset_index(drop=True), synthetic.reset_index(drop=True)], ignore_index=True)
    codes, uniques = pd.factorize(both, use_na_sentinel=True)
    codes = np.where(codes < 0, len(uniques), codes).astype(np.int64)
    return codes[: len(real)], codes[len(real) :]


def _row_ids(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Dense ids of the rows' value combinations (equal rows, equal ids)."""
    ids = np.asarray(columns[0], dtype=np.int64)
    for column in columns[1:]:
        ids = pd.factorize(ids * (int(column.max()) + 1) + column)[0].astype(np.int64)
    return ids


def _prepare(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    known: list[str],
    sensitive: list[str],
    continuous: list[str],
    num_bins: int,
) -> _Prepared:
    codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for column in known + sensitive:
        if column in continuous:
            codes[column] = _discretize(real[column], synthetic[column], num_bins, column)
        else:
            codes[column] = _factorize(real[column], synthetic[column])
    n_real = len(real)
    sensitive_ids = _row_ids([np.concatenate(codes[c]) for c in sensitive])
    distinct = math.prod(len(np.unique(codes[c][0])) for c in sensitive)
    return _Prepared(
        known_real=np.column_stack([codes[c][0] for c in known]),
        known_synthetic=np.column_stack([codes[c][1] for c in known]),
        sensitive_real=sensitive_ids[:n_real],
        sensitive_synthetic=sensitive_ids[n_real:],
        baseline=1 - float(1 / distinct),
    )


def _nearest_shares(
    query_known: np.ndarray,
    query_sensitive: np.ndarray,
    known_synthetic: np.ndarray,
    sensitive_synthetic: np.ndarray,
) -> np.ndarray:
    """Generalized CAP's share for each query row by brute force: among the synthetic rows
    whose keys are nearest to the row's key in Hamming distance (every distinct query key
    against every distinct synthetic key, in blocks), the share with the row's sensitive value."""
    key_synthetic = _row_ids([known_synthetic[:, j] for j in range(known_synthetic.shape[1])])
    pair_synthetic = _row_ids([key_synthetic, sensitive_synthetic])
    # distinct synthetic keys, their sizes, and their (key, sensitive value) counts sorted by value
    keys, first, key_size = np.unique(key_synthetic, return_index=True, return_counts=True)
    key_codes = known_synthetic[first]
    position = np.searchsorted(keys, key_synthetic)
    _, pair_first, pair_size = np.unique(pair_synthetic, return_index=True, return_counts=True)
    entry_value = sensitive_synthetic[pair_first]
    order = np.argsort(entry_value, kind="stable")
    entry_value, entry_key, entry_size = entry_value[order], position[pair_first][order], pair_size[order]

    # distinct queries: (key, sensitive value) pairs, sorted by key
    query_key = _row_ids([query_known[:, j] for j in range(query_known.shape[1])])
    pairs, pair_index, inverse = np.unique(
        query_key * (int(query_sensitive.max()) + 1) + query_sensitive, return_index=True, return_inverse=True
    )
    q_key = query_key[pair_index]
    q_value = query_sensitive[pair_index]
    distinct_keys, key_index, q_key = np.unique(q_key, return_index=True, return_inverse=True)
    q_codes = query_known[pair_index][key_index]
    start_entry = np.searchsorted(entry_value, q_value, side="left")
    n_entries = np.searchsorted(entry_value, q_value, side="right") - start_entry

    shares = np.empty(len(pairs))
    n_keys = len(keys)
    step = max(1, _BLOCK // max(n_keys, 1))
    for lo_key in range(0, len(distinct_keys), step):
        hi_key = min(lo_key + step, len(distinct_keys))
        distance = np.zeros((hi_key - lo_key, n_keys), dtype=np.int32)
        for j in range(q_codes.shape[1]):
            distance += q_codes[lo_key:hi_key, j, None] != key_codes[None, :, j]
        nearest = distance == distance.min(axis=1, keepdims=True)
        pooled = nearest.astype(np.float64) @ key_size.astype(np.float64)
        lo, hi = np.searchsorted(q_key, [lo_key, hi_key])
        # the pairs of these keys, in pieces of at most _BLOCK gathered entries
        bounds = np.concatenate([[0], np.cumsum(n_entries[lo:hi])])
        a = lo
        while a < hi:
            b = max(a + 1, lo + int(np.searchsorted(bounds, bounds[a - lo] + _BLOCK, side="right")) - 1)
            b = min(b, hi)
            counts = n_entries[a:b]
            owner = np.repeat(np.arange(b - a), counts)
            offsets = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
            entry = np.repeat(start_entry[a:b], counts) + offsets
            hits = nearest[q_key[a:b][owner] - lo_key, entry_key[entry]] * entry_size[entry]
            found = np.bincount(owner, weights=hits, minlength=b - a)
            shares[a:b] = found / pooled[q_key[a:b] - lo_key]
            a = b
    result: np.ndarray = shares[inverse.reshape(-1)]
    return result


def _matches(
    query_known: np.ndarray,
    query_sensitive: np.ndarray,
    known_synthetic: np.ndarray,
    sensitive_synthetic: np.ndarray,
    columns: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: how many synthetic rows equal it on ``columns`` (all of them
    when there are none), and how many of those also carry its sensitive value."""
    n_query = len(query_sensitive)
    sensitive = np.concatenate([query_sensitive, sensitive_synthetic])
    if not columns:
        pooled = np.full(n_query, len(sensitive_synthetic), dtype=np.int64)
        hits = np.bincount(sensitive[n_query:], minlength=int(sensitive.max()) + 1)[query_sensitive]
        return pooled, hits
    keys = _row_ids([np.concatenate([query_known[:, j], known_synthetic[:, j]]) for j in columns])
    pairs = _row_ids([keys, sensitive])
    pooled = np.bincount(keys[n_query:], minlength=int(keys.max()) + 1)[keys[:n_query]]
    hits = np.bincount(pairs[n_query:], minlength=int(pairs.max()) + 1)[pairs[:n_query]]
    return pooled, hits


def _generalized_shares(
    query_known: np.ndarray,
    query_sensitive: np.ndarray,
    known_synthetic: np.ndarray,
    sensitive_synthetic: np.ndarray,
    *,
    brute_force: bool | None = None,
) -> np.ndarray:
    """Generalized CAP's share for query rows whose key no synthetic row has.

    Level by level: the synthetic keys at Hamming distance k from a query key are
    those equal to it on exactly d − k columns, so (when none is nearer) they are
    found by matching on each set of d − k columns, and each such key matches on
    one set only. Where the sets of columns get too many for that to pay, the
    rest is done by comparing every query key with every synthetic key
    (``brute_force``: always, never, or ``None``: whichever costs less).
    """
    n_columns = query_known.shape[1]
    n_synthetic = len(sensitive_synthetic)
    n_keys = len(np.unique(_row_ids([known_synthetic[:, j] for j in range(n_columns)])))
    shares = np.zeros(len(query_sensitive))
    todo = np.arange(len(query_sensitive))
    for distance in range(1, n_columns + 1):
        n_sets = math.comb(n_columns, distance)
        by_sets = n_sets * (len(todo) + n_synthetic) * (n_columns - distance + 1) * 50
        if brute_force or (brute_force is None and len(todo) * n_keys * n_columns < by_sets):
            shares[todo] = _nearest_shares(
                query_known[todo], query_sensitive[todo], known_synthetic, sensitive_synthetic
            )
            break
        pooled = np.zeros(len(todo), dtype=np.int64)
        hits = np.zeros(len(todo), dtype=np.int64)
        for columns in itertools.combinations(range(n_columns), n_columns - distance):
            p, h = _matches(query_known[todo], query_sensitive[todo], known_synthetic, sensitive_synthetic, columns)
            pooled += p
            hits += h
        done = pooled > 0
        shares[todo[done]] = hits[done] / pooled[done]
        todo = todo[~done]
        if not len(todo):
            break
    return shares


def _protection(
    method: str,
    known_real: np.ndarray,
    known_synthetic: np.ndarray,
    sensitive_real: np.ndarray,
    sensitive_synthetic: np.ndarray,
) -> float:
    """1 − the attacker's mean share of correct sensitive values (SDMetrics' CAP metrics' result)."""
    n_real = len(sensitive_real)
    pooled, hits = _matches(
        known_real, sensitive_real, known_synthetic, sensitive_synthetic, range(known_real.shape[1])
    )
    found = pooled > 0
    share = np.zeros(n_real)
    np.divide(hits, pooled, out=share, where=found)
    if method == "cap":
        count = int(found.sum())
        return math.nan if count == 0 else 1.0 - float(share[found].sum()) / count
    if method == "generalized_cap" and not found.all():
        lost = ~found
        share[lost] = _generalized_shares(known_real[lost], sensitive_real[lost], known_synthetic, sensitive_synthetic)
    return 1.0 - float(share.sum()) / n_real


def _score(protection: float, baseline: float) -> float:
    if baseline == 0:
        return math.nan
    return float(min(protection / baseline, 1.0))


def _validated(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    known_column_names: str | Sequence[str],
    sensitive_column_names: str | Sequence[str],
    continuous_column_names: str | Sequence[str] | None,
    num_bins: int,
) -> _Prepared:
    """The checked columns of both tables, encoded (``_validate`` then ``_prepare``)."""
    known, sensitive, continuous = _validate(
        real, synthetic, known_column_names, sensitive_column_names, continuous_column_names
    )
    return _prepare(real, synthetic, known, sensitive, continuous, num_bins)


def _breakdown(protection: float, baseline: float) -> dict[str, float]:
    return {"score": _score(protection, baseline), "cap_protection": protection, "baseline_protection": baseline}


def categorical_cap(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    key_fields: str | Sequence[str],
    sensitive_fields: str | Sequence[str],
    *,
    computation_method: str = "cap",
) -> float:
    """SDMetrics' ``CategoricalCAP`` (or ``CategoricalZeroCAP``, ``CategoricalGeneralizedCAP``):
    1 − the mean share of synthetic rows with a real row's key that carry its sensitive values.

    Values are compared as they are (no binning); missing values are one
    category (see the module docstring for how that differs from SDMetrics on
    raw data with NaN).

    Args:
        real: The real table.
        synthetic: The synthetic table.
        key_fields: Columns the attacker knows.
        sensitive_fields: Columns the attacker wants to learn.
        computation_method: ``"cap"`` (real rows with no matching synthetic key are
            left out), ``"zero_cap"`` (they count as 0) or ``"generalized_cap"``
            (they use the synthetic keys nearest in Hamming distance).

    Returns:
        The protection in [0, 1] (higher is safer); ``nan`` for ``"cap"`` when no
        real row's key is in the synthetic table.

    Raises:
        ValueError: A missing or doubly listed column, an empty table, or an unknown method.

    Example:
        ```python
        from prefect_synthobs.scores.disclosure import categorical_cap

        protection = categorical_cap(real, synthetic, ["age_band", "zip"], ["diagnosis"])
        ```
    """
    method = _method(computation_method)
    known, sensitive, _ = _validate(real, synthetic, key_fields, sensitive_fields)
    prep = _prepare(real, synthetic, known, sensitive, [], DEFAULT_NUM_DISCRETE_BINS)
    return _protection(method, prep.known_real, prep.known_synthetic, prep.sensitive_real, prep.sensitive_synthetic)


def disclosure_protection_breakdown(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    known_column_names: str | Sequence[str],
    sensitive_column_names: str | Sequence[str],
    computation_method: str = "cap",
    continuous_column_names: str | Sequence[str] | None = None,
    num_discrete_bins: int = DEFAULT_NUM_DISCRETE_BINS,
) -> dict[str, float]:
    """``disclosure_protection`` with its parts (SDMetrics' ``DisclosureProtection.compute_breakdown``).

    Returns:
        ``{"score", "cap_protection", "baseline_protection"}``.

    Example:
        ```python
        from prefect_synthobs.scores.disclosure import disclosure_protection_breakdown

        parts = disclosure_protection_breakdown(
            real, synthetic, ["age", "zip"], ["diagnosis"], continuous_column_names=["age"]
        )
        print(parts["score"], parts["cap_protection"], parts["baseline_protection"])
        ```
    """
    method = _method(computation_method)
    bins = _positive_int(num_discrete_bins, "num_discrete_bins")
    prep = _validated(real, synthetic, known_column_names, sensitive_column_names, continuous_column_names, bins)
    protection = _protection(
        method, prep.known_real, prep.known_synthetic, prep.sensitive_real, prep.sensitive_synthetic
    )
    return _breakdown(protection, prep.baseline)


def disclosure_protection(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    known_column_names: str | Sequence[str],
    sensitive_column_names: str | Sequence[str],
    computation_method: str = "cap",
    continuous_column_names: str | Sequence[str] | None = None,
    num_discrete_bins: int = DEFAULT_NUM_DISCRETE_BINS,
) -> float:
    """SDMetrics' ``DisclosureProtection``: CAP protection against an attacker who knows
    ``known_column_names`` of a real row, relative to a uniform guess, capped at 1.

    Args:
        real: The real table.
        synthetic: The synthetic table.
        known_column_names: Columns the attacker knows.
        sensitive_column_names: Columns the attacker wants to learn.
        computation_method: ``"cap"``, ``"zero_cap"`` or ``"generalized_cap"``
            (case-insensitive; see the module docstring).
        continuous_column_names: Columns to bin into ``num_discrete_bins`` equal-width
            bins over the real range before comparing (others compare by value);
            one that is neither known nor sensitive is only checked to exist.
        num_discrete_bins: Number of bins for the continuous columns.

    Returns:
        ``min(protection / baseline, 1)`` in [0, 1], higher is safer: 1 = no better
        than guessing uniformly among the real sensitive values, 0 = every
        sensitive value given away. ``nan`` when every sensitive column is
        constant (baseline 0) or, for ``"cap"``, when no real row's key is in
        the synthetic table. A synthetic copy of the real table scores 0
        (unless a key is shared by rows with different sensitive values).

    Raises:
        ValueError: A missing or doubly listed column (also one both known and
            sensitive), an empty table, an unknown method, a bin count that is
            not a positive integer, or a continuous column that cannot be binned.

    Example:
        ```python
        from prefect_synthobs.scores.disclosure import disclosure_protection

        score = disclosure_protection(
            real, synthetic, ["age", "zip"], ["diagnosis"], continuous_column_names=["age"]
        )
        ```
    """
    return disclosure_protection_breakdown(
        real,
        synthetic,
        known_column_names,
        sensitive_column_names,
        computation_method,
        continuous_column_names,
        num_discrete_bins,
    )["score"]


def disclosure_protection_estimate_breakdown(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    known_column_names: str | Sequence[str],
    sensitive_column_names: str | Sequence[str],
    computation_method: str = "cap",
    continuous_column_names: str | Sequence[str] | None = None,
    num_discrete_bins: int = DEFAULT_NUM_DISCRETE_BINS,
    num_rows_subsample: int = DEFAULT_NUM_ROWS_SUBSAMPLE,
    num_iterations: int = DEFAULT_NUM_ITERATIONS,
    seed: int = 0,
) -> dict[str, float]:
    """``disclosure_protection_estimate`` with its parts
    (SDMetrics' ``DisclosureProtectionEstimate.compute_breakdown``).

    Returns:
        ``{"score", "cap_protection", "baseline_protection"}``; ``cap_protection``
        is the mean over the iterations.

    Example:
        ```python
        from prefect_synthobs.scores.disclosure import disclosure_protection_estimate_breakdown

        parts = disclosure_protection_estimate_breakdown(real, synthetic, ["zip"], ["diagnosis"], seed=1)
        ```
    """
    method = _method(computation_method)
    bins = _positive_int(num_discrete_bins, "num_discrete_bins")
    subsample = _positive_int(num_rows_subsample, "num_rows_subsample")
    iterations = _positive_int(num_iterations, "num_iterations")
    prep = _validated(real, synthetic, known_column_names, sensitive_column_names, continuous_column_names, bins)
    # SDMetrics draws with DataFrame.sample, i.e. the global RandomState's choice(n, size, replace=False),
    # real then synthetic; a RandomState seeded here draws the same rows as np.random.seed(seed) there.
    state = np.random.RandomState(seed)
    n_real, n_synthetic = len(prep.sensitive_real), len(prep.sensitive_synthetic)
    total = 0.0
    for _ in range(iterations):
        rows = state.choice(n_real, size=min(subsample, n_real), replace=False)
        synthetic_rows = state.choice(n_synthetic, size=min(subsample, n_synthetic), replace=False)
        total += _protection(
            method,
            prep.known_real[rows],
            prep.known_synthetic[synthetic_rows],
            prep.sensitive_real[rows],
            prep.sensitive_synthetic[synthetic_rows],
        )
    protection = total / iterations
    return _breakdown(protection, prep.baseline)


def disclosure_protection_estimate(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    known_column_names: str | Sequence[str],
    sensitive_column_names: str | Sequence[str],
    computation_method: str = "cap",
    continuous_column_names: str | Sequence[str] | None = None,
    num_discrete_bins: int = DEFAULT_NUM_DISCRETE_BINS,
    num_rows_subsample: int = DEFAULT_NUM_ROWS_SUBSAMPLE,
    num_iterations: int = DEFAULT_NUM_ITERATIONS,
    seed: int = 0,
) -> float:
    """SDMetrics' ``DisclosureProtectionEstimate``: ``disclosure_protection`` with the CAP
    protection averaged over ``num_iterations`` subsamples of ``num_rows_subsample`` rows
    of each table (drawn without replacement; binning and baseline use the whole tables).

    Seeded, so the same call gives the same number. SDMetrics' version draws from
    NumPy's global random state (unseeded); after ``np.random.seed(seed)`` its
    ``compute_breakdown`` draws the same rows as this function and gives the same
    number. (SDMetrics' ``compute`` does not pass ``num_rows_subsample`` and
    ``num_iterations`` on, and always uses 1000 and 10; this function honours them.)
    ``disclosure_protection`` itself is fast here (100,000 rows in well under a
    second), so the estimate is only worth it for very large tables.

    Args:
        real: The real table.
        synthetic: The synthetic table.
        known_column_names: Columns the attacker knows.
        sensitive_column_names: Columns the attacker wants to learn.
        computation_method: ``"cap"``, ``"zero_cap"`` or ``"generalized_cap"``.
        continuous_column_names: Columns to bin before comparing.
        num_discrete_bins: Number of bins for the continuous columns.
        num_rows_subsample: Rows drawn from each table per iteration.
        num_iterations: Number of subsamples averaged.
        seed: Seed of the subsampling (``numpy.random.RandomState``).

    Returns:
        ``min(mean protection / baseline, 1)``; ``nan`` as for ``disclosure_protection``
        (for ``"cap"``: when any subsample has no real key in the synthetic one).

    Raises:
        ValueError: As ``disclosure_protection``, or a subsample size or iteration
            count that is not a positive integer.

    Example:
        ```python
        from prefect_synthobs.scores.disclosure import disclosure_protection_estimate

        score = disclosure_protection_estimate(
            real, synthetic, ["zip"], ["diagnosis"], num_rows_subsample=5000, num_iterations=20, seed=1
        )
        ```
    """
    return disclosure_protection_estimate_breakdown(
        real,
        synthetic,
        known_column_names,
        sensitive_column_names,
        computation_method,
        continuous_column_names,
        num_discrete_bins,
        num_rows_subsample,
        num_iterations,
        seed,
    )["score"]
