"""SDMetrics' ML efficacy pipeline (``single_table/efficacy``, the same in 0.29 and 0.32), numpy only.

``MLEfficacyMetric.compute(test_data, train_data, target=...)`` fits a model
on the training table and scores its predictions for the test rows. Before
the model, step by step as SDMetrics (and what ``encode`` reproduces):

1. Its ``HyperTransformer`` is fitted on the training table and applied to the
   test table, column by column, by the training column's values (not its
   sdtype): numbers → themselves, missing values → the training mean;
   datetimes → integer nanoseconds, missing → the training mean; booleans
   (``True``/``False`` with missing values) → 1/0, missing → the training
   mode; anything else → one-hot over the training table's categories (sorted,
   a missing value a category of its own). Infinite values become missing.
2. A scikit-learn ``Pipeline`` fitted on the training rows:
   ``SimpleImputer()`` (missing → the training mean; a column with no value in
   training is dropped), ``RobustScaler()`` (centred on the training median,
   divided by the interquartile range, 1 where that is 0), then the model.

The models (``logistic_predict``, ``tree_predict``, ``linear_predict``):

- ``BinaryLogisticRegression``: ``LogisticRegression(solver="lbfgs",
  class_weight="balanced", max_iter=50)``: L2 penalty ``½‖w‖²`` (C = 1), the
  intercept unpenalised, each class weighing ``n / (2·n_class)``. Solved here
  to the optimum by Newton's method; scikit-learn's lbfgs stops after 50
  iterations or at a gradient of 1e-4, which can move a prediction whose
  score is near 0 (one or two test rows in a few hundred on the reference
  data, an F1 a few 1e-3 away).
- ``MulticlassDecisionTreeClassifier``: ``DecisionTreeClassifier(max_depth=30,
  class_weight="balanced")``: see ``prefect_synthobs.scores.tree`` (scikit-learn
  breaks ties between features at random, unseeded; this tree does not).
- ``LinearRegression``: ordinary least squares with an intercept
  (scikit-learn 1.9 solves it with ``scipy.linalg.lstsq(cond=1e-6)`` on the
  centred matrix: the minimum-norm solution, singular values under 1e-6 of the
  largest cut; the same here).

Differences from SDMetrics, on purpose:

- A category (or a missing value) that the test rows hold and the training
  table lacks is encoded as all zeros (scikit-learn's
  ``handle_unknown="ignore"``); SDMetrics raises ``ValueError: Found unknown
  categories``.
- Rows are aligned by position; SDMetrics re-indexes a datetime column from 0,
  so a test table whose index is not ``0 … n-1`` gets its datetimes misaligned.
- ``None`` and ``NaN`` in a categorical column are one missing category
  (scikit-learn keeps two); values beyond the float32 range are clipped for
  the tree (scikit-learn refuses them); a target near the float range overflows nothing.
- One-hot columns stay codes, so many categories cost no dense one-hot matrix.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.scores.detection import (
    _as_datetime,
    _Design,
    _fit,
    _impute_scale,
    _indicator_stats,
    _kind,
    _number_column,
)
from prefect_synthobs.scores.tree import fit_tree

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "Features",
    "encode",
    "f1_score",
    "linear_predict",
    "logistic_fit",
    "logistic_predict",
    "macro_f1_score",
    "no_skill",
    "numpy_backed",
    "r2_score",
    "skill_se",
    "sorted_values",
    "tree_predict",
]

_EPS = float(np.finfo(np.float64).eps)
# SDMetrics' model parameters
LOGISTIC_C = 1.0
TREE_MAX_DEPTH = 30
LSTSQ_COND = 1e-6  # scikit-learn 1.9's LinearRegression(tol=1e-6), passed to lstsq as ``cond``
BOOTSTRAP_RESAMPLES = 1000  # resamples of the test rows behind ``skill_se`` (classification)
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Features:
    """Training and test rows as SDMetrics' pipeline hands them to its model.

    ``train``/``test`` hold the number columns, imputed and robust-scaled,
    transposed (a row per column); ``codes_*`` each categorical column's
    category index per row (-1: a category the training table lacks);
    ``center``/``scale`` the robust scaling of each one-hot column (median
    and interquartile range of its 0/1 values in training, 1 where that is 0).
    """

    train: np.ndarray  # (p, n_train)
    test: np.ndarray  # (p, n_test)
    codes_train: np.ndarray  # (q, n_train) int64
    codes_test: np.ndarray  # (q, n_test) int64
    sizes: tuple[int, ...]
    center: np.ndarray  # (K,)
    scale: np.ndarray  # (K,)
    names: list[str]  # the p numbers, then "column=category" for the K one-hot columns

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """The (rows, features) matrices scikit-learn's model sees: numbers, then
        robust-scaled one-hot columns, for the training and the test rows."""
        out = []
        p, low, high = self.train.shape[0], -self.center / self.scale, (1.0 - self.center) / self.scale
        for numbers, codes in ((self.train, self.codes_train), (self.test, self.codes_test)):
            n = numbers.shape[1]
            x = np.empty((n, p + low.size))
            x[:, :p] = numbers.T
            x[:, p:] = low  # every indicator 0, robust-scaled
            offset = p
            for k, size in enumerate(self.sizes):
                rows = np.flatnonzero(codes[k] >= 0)
                columns = offset + codes[k][rows]
                x[rows, columns] = high[columns - p]
                offset += size
            out.append(x)
        return out[0], out[1]


def numpy_backed(series: pd.Series) -> pd.Series:
    """pandas' nullable columns as numpy ones: numbers as float64, booleans and
    categoricals as objects (missing values as missing)."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or (
        pd.api.types.is_bool_dtype(dtype) and isinstance(dtype, pd.api.extensions.ExtensionDtype)
    ):
        out: pd.Series = series.astype(object).where(series.notna(), None)
        return out
    if pd.api.types.is_numeric_dtype(dtype) and isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return series.astype("float64")
    return series


def sorted_values(values: list[Any]) -> list[Any]:
    """Values sorted as scikit-learn sorts labels and categories; mixed types by type, then text."""
    try:
        return sorted(values)
    except TypeError:  # mixed types: by type, then text
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _train_codes(train: pd.Series, test: pd.Series) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Category indices over the training table's categories (sorted, missing
    last), -1 in the test rows for a category the training table lacks."""
    tr, te = train.astype(object), test.astype(object)
    tr_missing, te_missing = tr.isna().to_numpy(), te.isna().to_numpy()
    index = pd.Index(sorted_values(list(pd.unique(tr[~tr_missing]))), dtype=object)
    size = len(index)
    codes_train = index.get_indexer(tr.where(~tr_missing, None)).astype(np.int64)
    codes_test = index.get_indexer(te.where(~te_missing, None)).astype(np.int64)
    labels = [str(v) for v in index]
    if tr_missing.any():
        codes_train[tr_missing] = size
        codes_test[te_missing] = size
        labels.append("<NA>")
    else:
        codes_test[te_missing] = -1
    return codes_train, codes_test, labels


def encode(train: pd.DataFrame, test: pd.DataFrame, columns: Mapping[str, Mapping[str, Any]]) -> Features:
    """SDMetrics' HyperTransformer fitted on ``train`` and applied to both, then
    SimpleImputer and RobustScaler fitted on the training rows (module docstring)."""
    numbers_train: list[np.ndarray] = []
    numbers_test: list[np.ndarray] = []
    number_names: list[str] = []
    codes_train: list[np.ndarray] = []
    codes_test: list[np.ndarray] = []
    sizes: list[int] = []
    categories: list[str] = []
    for name, meta in columns.items():
        tr, te = numpy_backed(train[name]).reset_index(drop=True), numpy_backed(test[name]).reset_index(drop=True)
        if meta.get("sdtype") == "datetime":
            tr, te = _as_datetime(tr, name, meta), _as_datetime(te, name, meta)
        kind = _kind(tr)
        if kind == "O":
            try:
                ctr, cte, labels = _train_codes(tr, te)
            except TypeError as exc:  # a list or a dict among the values
                raise ValueError(f"column {name!r} holds values that cannot be categories: {exc}") from None
            codes_train.append(ctr)
            codes_test.append(cte)
            sizes.append(len(labels))
            categories.extend(f"{name}={label}" for label in labels)
        else:
            if kind == "M" and not pd.api.types.is_datetime64_any_dtype(te):
                raise ValueError(f"column {name!r} holds datetimes in training but not in the test rows")
            ntr, nte = _number_column(tr, te, kind, name)
            numbers_train.append(ntr)
            numbers_test.append(nte)
            number_names.append(name)
    n_train, n_test = len(train), len(test)
    x_train = np.column_stack(numbers_train) if numbers_train else np.empty((n_train, 0))
    x_test = np.column_stack(numbers_test) if numbers_test else np.empty((n_test, 0))
    x_train[np.isinf(x_train)] = np.nan
    x_test[np.isinf(x_test)] = np.nan
    train_t, test_t, kept = _impute_scale(x_train, x_test)
    ctr_all = np.vstack(codes_train) if codes_train else np.empty((0, n_train), dtype=np.int64)
    cte_all = np.vstack(codes_test) if codes_test else np.empty((0, n_test), dtype=np.int64)
    ones = np.concatenate(
        [np.bincount(c, minlength=s) for c, s in zip(ctr_all, sizes, strict=True)] or [np.empty(0, dtype=np.int64)]
    )
    center, scale = _indicator_stats(ones, n_train)
    scale[scale < 10 * _EPS] = 1.0
    return Features(
        train=train_t,
        test=test_t,
        codes_train=ctr_all,
        codes_test=cte_all,
        sizes=tuple(sizes),
        center=center,
        scale=scale,
        names=[n for n, k in zip(number_names, kept, strict=True) if k] + categories,
    )


# -- logistic regression ---------------------------------------------------------------


def _fit_logistic(design: _Design, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Minimise Σ wᵢ·(log(1 + e^zᵢ) − yᵢ·zᵢ) + ½ Σ penalty·θ² from θ = 0 (detection's Newton fit)."""
    return _fit(design, y, np.zeros(design.n_parameters), w)


def _linear_predictor(features: Features, theta: np.ndarray) -> np.ndarray:
    """z for the test rows; a category the training table lacks adds nothing (its
    robust-scaled zeros are in the intercept, as for any row)."""
    p = features.test.shape[0]
    z: np.ndarray = theta[:p] @ features.test + theta[-1]
    offset = p
    for k, size in enumerate(features.sizes):
        block = np.append(theta[offset : offset + size], 0.0)  # code -1 → the appended 0
        z += block[features.codes_test[k]]
        offset += size
    return z


def logistic_fit(features: Features, positive: np.ndarray) -> tuple[_Design, np.ndarray, np.ndarray]:
    """SDMetrics' ``BinaryLogisticRegression`` model fitted to its optimum on the
    training rows (``positive``: bool per row, both values present): the design,
    the sample weights (``class_weight="balanced"``) and the parameters (numbers,
    raw indicators, intercept; see ``_Design``)."""
    y = positive.astype(np.float64)
    n, n_pos = y.size, float(y.sum())
    w = np.where(positive, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))
    penalty = np.concatenate([np.full(features.train.shape[0], 1.0 / LOGISTIC_C), features.scale**2 / LOGISTIC_C])
    design = _Design(features.train, features.codes_train, features.sizes, penalty)
    return design, w, _fit_logistic(design, y, w)


def logistic_predict(features: Features, positive: np.ndarray) -> np.ndarray:
    """True where SDMetrics' ``BinaryLogisticRegression`` model, fitted on the training
    rows, predicts the positive class for a test row (decision function > 0)."""
    _, _, theta = logistic_fit(features, positive)
    out: np.ndarray = _linear_predictor(features, theta) > 0
    return out


# -- decision tree and linear regression -----------------------------------------------


def tree_predict(features: Features, y: np.ndarray, n_classes: int) -> np.ndarray:
    """SDMetrics' ``MulticlassDecisionTreeClassifier`` model: class indices predicted
    for the test rows (``y``: the training rows' class indices, 0 … n_classes-1)."""
    tree = fit_tree(features.train, features.codes_train, features.sizes, y, n_classes, max_depth=TREE_MAX_DEPTH)
    return tree.predict(features.test, features.codes_test)


def _binary_exponent(values: np.ndarray) -> int:
    """``e`` with ``max |values| < 2**e`` (0 if all zero): scaling by ``2**-e`` is exact, and no overflow."""
    top = float(np.max(np.abs(values))) if values.size else 0.0
    return int(np.frexp(top)[1]) if top > 0 else 0


def linear_predict(features: Features, y: np.ndarray) -> np.ndarray:
    """SDMetrics' ``LinearRegression`` model: least squares with an intercept on the
    training rows (minimum-norm, singular values under ``LSTSQ_COND`` of the
    largest cut, as scikit-learn 1.9), predicted for the test rows; ``y`` fitted
    scaled by a power of two (exact, so the same predictions, and no overflow)."""
    x_train, x_test = features.dense()
    e = _binary_exponent(y)
    y = np.ldexp(y, -e)
    x_offset = x_train.mean(axis=0)
    y_offset = float(y.mean())
    x_train -= x_offset  # centred in place: the matrix is large
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        coef = np.linalg.lstsq(x_train, y - y_offset, rcond=LSTSQ_COND)[0]
    intercept = y_offset - float(x_offset @ coef)
    with np.errstate(over="ignore"):
        out: np.ndarray = np.ldexp(x_test @ coef + intercept, e)
    return out


# -- scores, the no-skill baseline and its noise ---------------------------------------


def f1_score(true_positive: np.ndarray, predicted_positive: np.ndarray) -> float:
    """scikit-learn's ``f1_score`` of the positive class: 2·tp / (positives + predicted positives), 0 if both 0."""
    denominator = int(true_positive.sum()) + int(predicted_positive.sum())
    return 2.0 * int((true_positive & predicted_positive).sum()) / denominator if denominator else 0.0


def _label_codes(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Both label arrays as indices into their sorted union (scikit-learn's order)."""
    both = np.concatenate([y_true, y_pred]).astype(object)
    labels = pd.Index(sorted_values(list(pd.unique(both))), dtype=object)
    codes = labels.get_indexer(both)
    return codes[: len(y_true)], codes[len(y_true) :], len(labels)


def macro_f1_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """scikit-learn's ``f1_score(average="macro")``: the mean F1 over every label
    that occurs in the true or the predicted labels."""
    t, p, k = _label_codes(y_true, y_pred)
    tp = np.bincount(t[t == p], minlength=k)
    denominator = np.bincount(t, minlength=k) + np.bincount(p, minlength=k)
    return float(np.mean(2.0 * tp / denominator))


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """scikit-learn's ``r2_score`` (``force_finite``: 1 for a perfect fit, 0 for an imperfect
    one of a constant target), on values scaled by a power of two (exact): -inf only below -1e300."""
    e = _binary_exponent(y)
    with np.errstate(over="ignore", invalid="ignore"):
        y, pred = np.ldexp(y, -e), np.ldexp(pred, -e)
        residual = float(((y - pred) ** 2).sum())
        total = float(((y - y.mean()) ** 2).sum())
    if residual == 0.0:
        return 1.0
    return 0.0 if total == 0.0 else 1.0 - residual / total


def no_skill(kind: str, true_counts: np.ndarray) -> np.ndarray:
    """The no-skill baseline (``prefect_synthobs.scores.utility``) from the test rows' class counts
    ``(..., classes)`` (``binary``: the positive class last): the best constant or chance."""
    counts = np.asarray(true_counts, dtype=np.float64)
    n = counts.sum(axis=-1)
    if kind == "binary":
        positives = counts[..., -1]
        out: np.ndarray = np.maximum(2.0 * positives / (n + positives), positives / n)
        return out
    k = (counts > 0).sum(axis=-1)
    constant = np.max(2.0 * counts / (n[..., None] + counts), axis=-1) / k
    out = np.maximum(constant, 1.0 / k)
    return out


def _confusion_scores(kind: str, true: np.ndarray, predicted: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """F1 (``binary``: the positive class last) or macro-F1 from per-class counts ``(..., k)`` of
    true labels, predictions and hits (both), as ``f1_score``/``macro_f1_score``."""
    denominator = true + predicted
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denominator > 0, 2.0 * hits / denominator, 0.0)
    if kind == "binary":
        out: np.ndarray = f1[..., -1]
        return out
    out = f1.sum(axis=-1) / (denominator > 0).sum(axis=-1)
    return out


def _per_class(draws: np.ndarray, classes: np.ndarray, k: int) -> np.ndarray:
    """Sums of the columns of ``draws`` (resamples, cells) by each cell's class: (resamples, k)."""
    order = np.argsort(classes, kind="stable")
    present, starts = np.unique(classes[order], return_index=True)
    out = np.zeros((draws.shape[0], k))
    if present.size:
        out[:, present] = np.add.reduceat(draws[:, order], starts, axis=1)
    return out


def skill_se(kind: str, y_test: np.ndarray, pred: np.ndarray) -> float:
    """The standard error of (score − no-skill baseline) of the predictions ``pred``
    for the test rows: F1/macro-F1 over ``BOOTSTRAP_RESAMPLES`` seeded bootstrap
    resamples of the rows (the occupied cells of the confusion matrix redrawn: the
    same distribution as redrawing rows, at the cost of those cells); R² by the delta method."""
    if kind == "regression":
        e = _binary_exponent(y_test)
        with np.errstate(over="ignore", invalid="ignore"):
            y, p = np.ldexp(y_test, -e), np.ldexp(pred, -e)
            residual, spread = (y - p) ** 2, (y - y.mean()) ** 2
            a, v = residual.mean(), spread.mean()
            influence = -(residual - a) / v + (a / v**2) * (spread - v)
            return float(influence.std(ddof=1) / math.sqrt(y.size))
    if kind == "binary":
        t, p, k = y_test.astype(np.int64), pred.astype(bool).astype(np.int64), 2
    else:
        t, p, k = _label_codes(y_test, pred)
    cells, counts = np.unique(t * k + p, return_counts=True)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    chunk = max(1, min(BOOTSTRAP_RESAMPLES, 4_000_000 // cells.size))  # bounded memory for many classes
    margins = []
    for start in range(0, BOOTSTRAP_RESAMPLES, chunk):
        size = min(chunk, BOOTSTRAP_RESAMPLES - start)
        draws = rng.multinomial(len(y_test), counts / counts.sum(), size=size).astype(np.float64)
        true, predicted = _per_class(draws, cells // k, k), _per_class(draws, cells % k, k)
        diagonal = cells // k == cells % k
        hits = _per_class(draws[:, diagonal], cells[diagonal] // k, k)
        margins.append(_confusion_scores(kind, true, predicted, hits) - no_skill(kind, true))
    return float(np.concatenate(margins).std(ddof=1))
