"""Detection: can a classifier tell real rows from synthetic ones? Pure numpy/pandas.

``logistic_detection`` is SDMetrics' ``single_table.LogisticDetection``
(identical in SDMetrics 0.29 and 0.32), reproduced step by step:

1. Columns: the primary key, alternate keys, columns marked ``pii`` and every
   column whose sdtype is not ``numerical``, ``datetime`` or ``categorical``
   are dropped (so ``boolean`` and ``id`` columns are not used).
2. Encoding (SDMetrics' own ``HyperTransformer``, chosen by the real
   column's values, not its sdtype): numbers → themselves, missing values
   filled with the real column's mean; datetimes → integer nanoseconds,
   filled with the real mean; booleans (a categorical column holding
   ``True``/``False``) → 0/1, filled with the real mode; anything else →
   one-hot over every category, a missing value being a category of its own.
   Infinite values become missing.
3. The rows of both tables (real labelled 1, synthetic 0) are split by a
   stratified 3-fold split. Per fold, on the training rows: missing values
   are filled with the column mean, every column is centred on its median and
   divided by its interquartile range (1 where that is 0), and an
   L2-penalised logistic regression is fitted (scikit-learn's defaults:
   ``C=1``, penalty ½‖w‖², data term summed, intercept not penalised).
4. Each fold gives the ROC AUC of the predicted P(real) on its held-out rows;
   the fold score is ``2·max(AUC, 0.5) − 1``; the result is
   ``1 − mean(fold scores)``: 1.0 when the classifier cannot tell the tables
   apart, 0.0 when it separates them perfectly.

Differences from SDMetrics, on purpose:

- The folds are seeded: ``seed`` gives exactly the fold assignment of
  ``StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)``, so a
  score is reproducible. SDMetrics shuffles unseeded, so its score varies
  from run to run (by a few hundredths on tables of a few hundred rows).
- The model is fitted to the optimum (Newton's method to machine
  precision); scikit-learn's L-BFGS stops at a gradient tolerance of 1e-4,
  which moves a fold's AUC by up to a few 1e-4.
- Categories are encoded over both tables. SDMetrics fits its encoder on
  the real table only and raises ``ValueError: Found unknown categories``
  when the synthetic table holds a category (or a missing value) the real one
  lacks.
- Only the key columns themselves are dropped: SDMetrics also drops any
  column whose name is a substring of a string primary key (``column in
  primary_key``: key ``"user_id"`` drops a column ``"user"``).
- Columns are matched by name; SDMetrics stacks the synthetic table's
  columns by position, so a differently ordered synthetic table misaligns.
- One-hot columns are never materialised: a category enters the model as a
  code, with the penalty its robust scaling implies (the same model and
  optimum), so high-cardinality columns stay cheap in time and memory.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.scores.metadata import accepts_sdv_metadata
from prefect_synthobs.scores.stats import average_ranks, numeric_values

__all__ = ["logistic_detection"]

N_SPLITS = 3
_KEPT_SDTYPES = ("numerical", "datetime", "categorical")
# Up to this many parameters Newton steps solve the dense Hessian; above, conjugate gradients.
_DENSE_MAX_PARAMETERS = 512
_EPS = float(np.finfo(np.float64).eps)
_MAX_NEWTON = 100


@dataclass(frozen=True)
class _Table:
    """Both tables encoded, real rows first (SDMetrics' HyperTransformer output).

    ``numbers`` holds the columns encoded as one number each (missing values
    already filled, infinities as NaN); ``codes`` the categorical columns as
    category indices (their labels in ``categories``, column by column).
    """

    numbers: np.ndarray  # (N, p) float64
    number_names: list[str]
    codes: np.ndarray  # (q, N) int64, each categorical column's category indices
    sizes: tuple[int, ...]  # categories per categorical column
    categories: list[str]  # (K,) "column=category" names, column by column
    n_real: int


# -- validation and encoding -------------------------------------------------------


def _columns(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The columns SDMetrics' detection metrics model, in the real table's order."""
    for label, df in (("real", real), ("synthetic", synthetic)):
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"the {label} table must be a pandas DataFrame, got {type(df).__name__}")
        if len(df) < N_SPLITS:
            raise ValueError(
                f"the {label} table needs at least {N_SPLITS} rows for a {N_SPLITS}-fold split, got {len(df)}"
            )
    columns = metadata.get("columns") if isinstance(metadata, Mapping) else None
    if not isinstance(columns, Mapping) or not all(isinstance(m, Mapping) for m in columns.values()):
        raise ValueError('metadata must look like {"columns": {"age": {"sdtype": "numerical"}, ...}}')
    if set(real.columns) != set(synthetic.columns):
        only_real = sorted(map(str, set(real.columns) - set(synthetic.columns)))
        only_syn = sorted(map(str, set(synthetic.columns) - set(real.columns)))
        raise ValueError(
            f"the real and synthetic tables must have the same columns (only in real: {only_real}, "
            f"only in synthetic: {only_syn})"
        )
    missing = [c for c in columns if c not in real.columns]
    if missing:
        raise ValueError(f"metadata names column(s) {missing} missing from the data")
    unknown = [c for c in real.columns if c not in columns]
    if unknown:
        raise ValueError(f"column(s) {unknown} of the data are not in the metadata")
    keys: set[Any] = set()
    for key in (metadata.get("primary_key"), *(metadata.get("alternate_keys") or ())):
        keys.update(key if isinstance(key, list | tuple) else [key])
    kept = {
        c: columns[c]
        for c in real.columns
        if c not in keys and columns[c].get("sdtype") in _KEPT_SDTYPES and not columns[c].get("pii")
    }
    if not kept:
        raise ValueError(
            "no column to learn from: logistic_detection uses numerical, datetime and categorical columns "
            "that are neither keys nor pii"
        )
    return kept


def _as_datetime(series: pd.Series, name: str, meta: Mapping[str, Any]) -> pd.Series:
    """A datetime column as naive datetimes (UTC for zoned ones), parsed with the
    metadata's ``datetime_format`` if it holds strings (as SDMetrics)."""
    if not pd.api.types.is_datetime64_any_dtype(series):
        fmt = meta.get("datetime_format")
        if fmt is None:
            raise ValueError(
                f"datetime column {name!r} does not hold datetimes and its metadata has no 'datetime_format'"
            )
        try:
            series = pd.to_datetime(series, format=fmt)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"datetime column {name!r} cannot be parsed with format {fmt!r}: {exc}") from None
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series


def _kind(series: pd.Series) -> str:
    """SDMetrics' HyperTransformer kind of a real column: ``M`` datetime,
    ``b`` boolean, ``f`` number, ``O`` anything else (one-hot)."""
    values = series.dropna()
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return "M"
    if values.dtype == object:
        values = values.infer_objects()
    if pd.api.types.is_bool_dtype(values.dtype):
        return "b"
    if pd.api.types.is_timedelta64_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        return "f"
    return "O"


def _number_column(real: pd.Series, synthetic: pd.Series, kind: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Real and synthetic values of a one-number column, missing values filled
    from the real column (mean, or mode for booleans)."""
    try:
        if kind == "M":
            r, s = numeric_values(real), numeric_values(synthetic)  # integer nanoseconds
        elif kind == "b":
            r = pd.to_numeric(real, errors="coerce").to_numpy(dtype=np.float64)
            s = pd.to_numeric(synthetic, errors="coerce").to_numpy(dtype=np.float64)
        elif pd.api.types.is_timedelta64_dtype(real.dropna().infer_objects().dtype):
            r = pd.to_timedelta(real).to_numpy(dtype="m8[ns]").astype(np.int64).astype(np.float64)
            s = pd.to_timedelta(synthetic).to_numpy(dtype="m8[ns]").astype(np.int64).astype(np.float64)
            r[real.isna().to_numpy()], s[synthetic.isna().to_numpy()] = np.nan, np.nan
        else:
            r = pd.to_numeric(real).to_numpy(dtype=np.float64)
            s = pd.to_numeric(synthetic).to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {name!r} holds values that are not all numbers or all datetimes: {exc}") from None
    if kind == "b":
        values, counts = np.unique(r[~np.isnan(r)], return_counts=True)
        fill = float(values[np.argmax(counts)]) if values.size else np.nan  # the smallest most frequent
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing real column: no fill
            fill = float(np.nanmean(r)) if r.size else np.nan
    return np.where(np.isnan(r), fill, r), np.where(np.isnan(s), fill, s)


def _category_codes(real: pd.Series, synthetic: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes over the categories of both tables (sorted, missing last) and their labels."""
    both = pd.concat([real, synthetic], ignore_index=True).astype(object)
    codes, uniques = pd.factorize(both, use_na_sentinel=True)
    values = list(uniques)
    try:
        order = sorted(range(len(values)), key=lambda i: values[i])
    except TypeError:  # mixed types: sorted by text
        order = sorted(range(len(values)), key=lambda i: (type(values[i]).__name__, str(values[i])))
    rank = np.empty(len(values) + 1, dtype=np.int64)
    rank[order] = np.arange(len(values))
    rank[-1] = len(values)  # the missing value, code -1
    labels = [str(values[i]) for i in order]
    if (codes < 0).any():
        labels.append("<NA>")
    return rank[codes], labels


def _encode(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Mapping[str, Any]) -> _Table:
    columns = _columns(real, synthetic, metadata)
    numbers_real: list[np.ndarray] = []
    numbers_syn: list[np.ndarray] = []
    number_names: list[str] = []
    codes: list[np.ndarray] = []
    sizes: list[int] = []
    categories: list[str] = []
    for name, meta in columns.items():
        r, s = real[name], synthetic[name]
        if meta.get("sdtype") == "datetime":
            r, s = _as_datetime(r, name, meta), _as_datetime(s, name, meta)
        kind = _kind(r)
        if kind == "O":
            c, labels = _category_codes(r, s)
            codes.append(c)
            sizes.append(len(labels))
            categories.extend(f"{name}={label}" for label in labels)
        else:
            nr, ns = _number_column(r, s, kind, name)
            numbers_real.append(nr)
            numbers_syn.append(ns)
            number_names.append(name)
    n = len(real) + len(synthetic)
    numbers = (
        np.concatenate([np.column_stack(numbers_real), np.column_stack(numbers_syn)])
        if number_names
        else np.empty((n, 0))
    )
    numbers[np.isinf(numbers)] = np.nan
    return _Table(
        numbers=numbers,
        number_names=number_names,
        codes=np.vstack(codes) if codes else np.empty((0, n), dtype=np.int64),
        sizes=tuple(sizes),
        categories=categories,
        n_real=len(real),
    )


# -- folds ---------------------------------------------------------------------------


def _test_folds(n_real: int, n_synthetic: int, seed: int) -> np.ndarray:
    """Each row's test fold: exactly scikit-learn's
    ``StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)`` on labels
    ``[1]*n_real + [0]*n_synthetic`` (the legacy ``RandomState`` stream is
    stable across numpy versions)."""
    rng = np.random.RandomState(seed)
    y_order = np.repeat([0, 1], [n_real, n_synthetic])  # classes in order of appearance: real, synthetic
    allocation = np.asarray([np.bincount(y_order[i::N_SPLITS], minlength=2) for i in range(N_SPLITS)])
    folds = np.empty(n_real + n_synthetic, dtype=np.int64)
    for k, rows in enumerate((slice(0, n_real), slice(n_real, None))):
        folds_for_class = np.arange(N_SPLITS).repeat(allocation[:, k])
        rng.shuffle(folds_for_class)
        folds[rows] = folds_for_class
    return folds


# -- the classifier ------------------------------------------------------------------


def _indicator_stats(ones: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Median and interquartile range of 0/1 columns with ``ones`` ones in ``n``
    rows, as ``np.median`` and ``np.percentile`` (linear) give them."""

    def value(i: int) -> np.ndarray:  # the i-th smallest value of each column
        return (i >= n - ones).astype(np.float64)

    def quantile(q: float) -> np.ndarray:
        h = q * (n - 1)
        lo = int(np.floor(h))
        t = h - lo
        a, b = value(lo), value(min(lo + 1, n - 1))
        out: np.ndarray = b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t
        return out

    median = value(n // 2) if n % 2 else (value(n // 2 - 1) + value(n // 2)) / 2
    return median, quantile(0.75) - quantile(0.25)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(−z))``, bit for bit scipy's ``expit`` (behind scikit-learn's
    ``predict_proba``), so probabilities saturate into ties at 0 and 1 as there."""
    with np.errstate(over="ignore"):
        out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


@dataclass(frozen=True)
class _Design:
    """Rows as the model sees them: ``[numbers | one-hot(codes) | 1]``.

    ``xt`` holds the robust-scaled numbers, transposed. The one-hot columns
    stay codes: scikit-learn's robust-scaled indicator ``(e_j − c_j)/s_j``
    with coefficient ``w_j`` is the raw indicator ``e_j`` with coefficient
    ``v_j = w_j/s_j`` and penalty ``½ s_j² v_j²``, the centring going into
    the unpenalised intercept: the same model and optimum, with no dense
    one-hot matrix and a Hessian built from bincounts.
    """

    xt: np.ndarray  # (p, n) float64
    codes: np.ndarray  # (q, n) int64, each categorical column's category indices
    sizes: tuple[int, ...]  # categories per categorical column
    penalty: np.ndarray  # (p + K,) penalty weights; the intercept (last parameter) has none

    @property
    def n_parameters(self) -> int:
        return len(self.penalty) + 1

    def _blocks(self) -> list[slice]:
        offsets = np.cumsum((self.xt.shape[0], *self.sizes))
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(offsets)]

    def dot(self, theta: np.ndarray) -> np.ndarray:
        """The linear predictor ``z`` of every row."""
        z: np.ndarray = theta[: self.xt.shape[0]] @ self.xt + theta[-1]
        for k, block in enumerate(self._blocks()):
            z += theta[block][self.codes[k]]
        return z

    def tdot(self, u: np.ndarray) -> np.ndarray:
        """``designᵀ · u``."""
        p = self.xt.shape[0]
        out = np.empty(self.n_parameters)
        out[:p] = self.xt @ u
        for k, block in enumerate(self._blocks()):
            out[block] = np.bincount(self.codes[k], u, minlength=self.sizes[k])
        out[-1] = u.sum()
        return out

    def hessian(self, weights: np.ndarray) -> np.ndarray:
        """``designᵀ · diag(weights) · design`` plus the penalty, built block by block."""
        p = self.xt.shape[0]
        h = np.empty((self.n_parameters, self.n_parameters))
        xw = self.xt * weights
        h[:p, :p] = xw @ self.xt.T
        h[:p, -1] = h[-1, :p] = xw.sum(axis=1)
        h[-1, -1] = weights.sum()
        blocks = self._blocks()
        for k, block in enumerate(blocks):
            codes, size = self.codes[k], self.sizes[k]
            counts = np.bincount(codes, weights, minlength=size)
            h[block, block] = np.diag(counts)
            h[block, -1] = h[-1, block] = counts
            for j in range(p):
                h[block, j] = h[j, block] = np.bincount(codes, xw[j], minlength=size)
            for m in range(k + 1, len(blocks)):
                other = self.sizes[m]
                cross = np.bincount(codes * other + self.codes[m], weights, minlength=size * other)
                h[block, blocks[m]] = cross.reshape(size, other)
                h[blocks[m], block] = cross.reshape(size, other).T
        diagonal = np.arange(len(self.penalty))
        h[diagonal, diagonal] += self.penalty
        return h

    def newton_step(self, gradient: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Solve ``H · step = gradient``: directly, or by preconditioned conjugate
        gradients when there are too many parameters for a dense Hessian."""
        if self.n_parameters <= _DENSE_MAX_PARAMETERS:
            try:
                step: np.ndarray = np.linalg.solve(self.hessian(weights), gradient)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(self.hessian(weights), gradient, rcond=None)[0]
            return step
        # Conjugate gradients in coordinates where every column is centred on its
        # weighted mean (the intercept absorbing it), so no column is collinear
        # with the intercept; preconditioned by the exact inverse of the numbers'
        # block and the diagonal for the categories and the intercept.
        p = self.xt.shape[0]
        total = float(weights.sum())
        xw = self.xt * weights
        counts = np.concatenate(
            [xw.sum(axis=1)]
            + [np.bincount(self.codes[k], weights, minlength=size) for k, size in enumerate(self.sizes)]
        )
        means = counts / total

        def to_old(v: np.ndarray) -> np.ndarray:  # T: centred coordinates -> the model's
            out: np.ndarray = v.copy()
            out[-1] -= means @ v[:-1]
            return out

        def to_new(g: np.ndarray) -> np.ndarray:  # Tᵀ
            out: np.ndarray = g.copy()
            out[:-1] -= means * g[-1]
            return out

        head = xw @ self.xt.T - total * np.outer(means[:p], means[:p])
        head[np.arange(p), np.arange(p)] += self.penalty[:p]
        head_inverse = np.linalg.pinv(head, hermitian=True) if p else np.empty((0, 0))
        diagonal = np.ones(self.n_parameters)
        diagonal[p:-1] = counts[p:] * (1.0 - means[p:]) + self.penalty[p:]
        diagonal[-1] = total
        diagonal = np.maximum(diagonal, np.finfo(np.float64).tiny)

        def precondition(r: np.ndarray) -> np.ndarray:
            out: np.ndarray = r / diagonal
            out[:p] = head_inverse @ r[:p]
            return out

        def hess(v: np.ndarray) -> np.ndarray:
            old = to_old(v)
            out = self.tdot(weights * self.dot(old))
            out[:-1] += self.penalty * old[:-1]
            return to_new(out)

        step = np.zeros(self.n_parameters)
        r = to_new(gradient)
        zr = precondition(r)
        d = zr.copy()
        rz = float(r @ zr)
        target = 1e-24 * rz
        for _ in range(max(50, min(self.n_parameters, 2000))):
            hd = hess(d)
            curvature = float(d @ hd)
            if not rz > 0 or not curvature > 0:
                break
            alpha = rz / curvature
            step += alpha * d
            r -= alpha * hd
            zr = precondition(r)
            rz_new = float(r @ zr)
            if rz_new <= target:
                break
            d = zr + (rz_new / rz) * d
            rz = rz_new
        return to_old(step)


def _objective(
    z: np.ndarray, y: np.ndarray, theta: np.ndarray, penalty: np.ndarray, w: np.ndarray | None = None
) -> float:
    loss = np.logaddexp(0.0, z) - y * z
    return float((np.sum(loss) if w is None else w @ loss) + 0.5 * np.dot(penalty, theta[:-1] ** 2))


def _fit(design: _Design, y: np.ndarray, theta: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Minimise Σ wᵢ·(log(1 + e^zᵢ) − yᵢ·zᵢ) + ½ Σ penalty·θ² (z = design·θ, the intercept
    last and unpenalised; ``w`` None: every weight 1) by damped Newton steps, to machine
    precision. Detection fits unweighted; TSTR's balanced logistic regression weighted."""
    n = len(y) if w is None else float(w.sum())
    z = design.dot(theta)
    f = _objective(z, y, theta, design.penalty, w)
    for _ in range(_MAX_NEWTON):
        p = _sigmoid(z)
        gradient = design.tdot(p - y if w is None else w * (p - y))
        gradient[:-1] += design.penalty * theta[:-1]
        step = design.newton_step(gradient, p * (1.0 - p) if w is None else w * p * (1.0 - p))
        decrement = float(gradient @ step)  # ≈ 2·(f − f*) near the optimum
        if not np.isfinite(decrement):
            break
        if decrement <= 1e-12 * n:  # in the quadratic region: one last full step, then done
            final: np.ndarray = theta - step
            return final
        dz = design.dot(step)
        t = 1.0
        while t > 1e-12:
            new_theta, new_z = theta - t * step, z - t * dz
            new_f = _objective(new_z, y, new_theta, design.penalty, w)
            if new_f <= f - 1e-4 * t * decrement:
                break
            t /= 2
        else:
            break  # no decrease left: at the optimum to rounding
        theta, z, f = new_theta, new_z, new_f
    return theta


def _impute_scale(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's ``SimpleImputer`` then ``RobustScaler``, fitted on ``train``:
    missing values → the training mean (columns all missing in training
    dropped), then centred on the training median and divided by the
    interquartile range (1 where below 10·eps). Returns both, transposed
    (columns as rows), and the kept columns."""
    keep = np.ones(train.shape[1], dtype=bool)
    if np.isnan(train).any() or np.isnan(test).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(train, axis=0)
        keep = ~np.isnan(means)
        train, test, means = train[:, keep], test[:, keep], means[keep]
        for block in (train, test):
            rows, cols = np.nonzero(np.isnan(block))
            block[rows, cols] = means[cols]
    train_t, test_t = np.ascontiguousarray(train.T), np.ascontiguousarray(test.T)
    if len(train_t):
        q25, median, q75 = np.percentile(train_t, [25, 50, 75], axis=1)
        scale = q75 - q25
        scale[scale < 10 * _EPS] = 1.0
        for block in (train_t, test_t):
            block -= median[:, None]
            block /= scale[:, None]
    return train_t, test_t, keep


@dataclass(frozen=True)
class _FoldFit:
    """One fold: the held-out rows' P(real) and the model in scikit-learn's terms."""

    proba: np.ndarray
    theta: np.ndarray  # the fitted parameters (numbers, raw indicators, intercept)
    coef: dict[str, float]  # coefficients of the robust-scaled columns, as scikit-learn's ``coef_``
    intercept: float  # as scikit-learn's ``intercept_``


def _fit_fold(table: _Table, test_rows: np.ndarray, start: np.ndarray | None) -> _FoldFit:
    """Fit on the rows outside ``test_rows``; predict those."""
    train_rows = ~test_rows
    y = (np.arange(len(test_rows)) < table.n_real)[train_rows].astype(np.float64)
    x_train, x_test, kept = _impute_scale(table.numbers[train_rows], table.numbers[test_rows])
    codes_train, codes_test = table.codes[:, train_rows], table.codes[:, test_rows]
    n_train = len(y)
    ones = np.concatenate(
        [np.bincount(codes_train[k], minlength=size) for k, size in enumerate(table.sizes)]
        or [np.empty(0, dtype=np.int64)]
    )
    center, scale = _indicator_stats(ones, n_train)
    scale[scale < 10 * _EPS] = 1.0
    penalty = np.concatenate([np.ones(len(x_train)), scale**2])
    design = _Design(x_train, codes_train, table.sizes, penalty)
    if start is None or len(start) != design.n_parameters:
        start = np.zeros(design.n_parameters)
    theta = _fit(design, y, start)
    proba = _sigmoid(_Design(x_test, codes_test, table.sizes, penalty).dot(theta))
    p = len(x_train)
    names = [n for n, k in zip(table.number_names, kept, strict=True) if k] + table.categories
    coef = np.concatenate([theta[:p], theta[p:-1] * scale])
    intercept = float(theta[-1] + theta[p:-1] @ center)
    return _FoldFit(proba, theta, dict(zip(names, coef.tolist(), strict=True)), intercept)


def _roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC (Mann–Whitney U over average ranks, so ties count one half)."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _fold_fits(table: _Table, folds: np.ndarray) -> list[tuple[float, _FoldFit]]:
    """Each fold's ROC AUC and fit."""
    positive = np.arange(len(folds)) < table.n_real
    out: list[tuple[float, _FoldFit]] = []
    start = None
    for k in range(N_SPLITS):
        test_rows = folds == k
        fit = _fit_fold(table, test_rows, start)
        start = fit.theta  # warm start: the folds' optima are close
        out.append((_roc_auc(fit.proba, positive[test_rows]), fit))
    return out


@accepts_sdv_metadata
def logistic_detection(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: Mapping[str, Any],
    seed: int = 0,
) -> float:
    """1 − 2·max(AUC − 0.5, 0) of a logistic regression telling real rows from synthetic ones.

    SDMetrics' ``LogisticDetection``: the AUC is the ROC AUC over a stratified
    3-fold split, clipped and averaged per fold (``1 − mean(2·max(AUC, 0.5)
    − 1)``). Keys, pii and boolean/id columns are not used; numbers and
    datetimes are mean-filled, categories one-hot encoded (over both tables,
    missing values a category of their own); per fold the columns are
    mean-imputed and robust-scaled on the training rows and an L2
    logistic regression (C=1) is fitted to its optimum. See the module
    docstring for every step and the differences from SDMetrics.

    Args:
        real: The real table.
        synthetic: The synthetic table (same columns).
        metadata: SDV single-table metadata: ``{"columns": {name: {"sdtype":
            ...}}}``, optionally with ``primary_key``, ``alternate_keys`` and a
            column's ``pii`` flag or ``datetime_format``.
        seed: Seeds the fold shuffle: the folds of scikit-learn's
            ``StratifiedKFold(3, shuffle=True, random_state=seed)``.

    Returns:
        A score in [0, 1]: 1.0 when the classifier does no better than chance,
        0.0 when it separates the tables perfectly.

    Raises:
        ValueError: A table is not a DataFrame or has fewer than 3 rows, the
            tables' columns differ, a column is missing from the metadata or
            the data, no column is left to learn from, or a column's values do
            not fit its type.

    Example:
        ```python
        from prefect_synthobs.scores.detection import logistic_detection

        metadata = {"columns": {"age": {"sdtype": "numerical"}, "plan": {"sdtype": "categorical"}}}
        score = logistic_detection(real, synthetic, metadata, seed=0)  # 1.0: indistinguishable
        ```
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    table = _encode(real, synthetic, metadata)
    folds = _test_folds(len(real), len(synthetic), int(seed))
    scores = [2.0 * max(auc, 0.5) - 1.0 for auc, _ in _fold_fits(table, folds)]
    return float(1.0 - np.mean(scores))
