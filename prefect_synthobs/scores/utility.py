"""Utility: train on synthetic, test on real (TSTR), scored as SDMetrics' ML efficacy.

``tstr`` fits one model on the synthetic table and one on the real training
table, scores both on the same held-out real rows, and compares them with what
no skill at all scores there:

- Metric and model: SDMetrics' ML efficacy metrics
  (``prefect_synthobs.scores.efficacy`` reproduces their pipeline). A
  ``boolean`` or ``categorical`` target with two classes in the real tables is
  scored by the F1 of its positive class (``BinaryLogisticRegression``), one
  with more classes by the macro-averaged F1 (``MulticlassDecisionTreeClassifier``),
  a ``numerical`` (or ``datetime``) target by R² (``LinearRegression``). So
  ``synthetic_score`` is ``Metric.compute(real_test, synthetic, target=...)``
  and ``real_score`` is ``Metric.compute(real_test, real_train, target=...)``.
- Positive class (binary): ``True`` for a boolean target, ``1`` for numbers
  that hold it, otherwise the first label of the real test rows, as SDMetrics
  picks it (``positive_label=`` chooses another). SDMetrics takes the first
  test label also for booleans stored as objects (pandas' ``object`` dtype); here
  ``True`` is positive whatever the dtype.
- ``baseline_score``: the best score a constant prediction reaches on the real
  test rows with the same metric: F1 ``2P/(n+P)`` (every row predicted
  positive, P positives in n rows), macro-F1 ``max_c 2P_c/(n+P_c) / K`` (the
  most frequent class, K classes in the test rows), R² ``0`` (the test mean;
  any other constant scores less).
- ``ratio``: the share of the real model's skill over that baseline that the
  synthetic model keeps, ``(synthetic − baseline) / (real − baseline)``: 1 as
  useful as the real data, 0 or less no better than no skill (so any
  ``min_tstr_ratio`` gate above 0 fails it), NaN with a ``note`` when the real
  model itself does not beat the baseline (the task cannot judge).
  ``score_ratio`` is the plain ``synthetic / real``.

Binary or not is decided by the labels of the real tables (train and test);
the synthetic model learns "positive or not", so a label only the synthetic
table holds counts as not positive (SDMetrics does the same for a text target).
Rows whose target is missing are left out (SDMetrics would raise). The
features are the metadata's other ``numerical``, ``datetime``, ``categorical``
and ``boolean`` columns that are neither keys nor ``pii`` (SDMetrics uses
every column it is given).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.scores.detection import _as_datetime
from prefect_synthobs.scores.efficacy import (
    encode,
    linear_predict,
    logistic_predict,
    numpy_backed,
    sorted_values,
    tree_predict,
)
from prefect_synthobs.scores.stats import numeric_values

__all__ = ["tstr"]

_FEATURE_SDTYPES = ("numerical", "datetime", "categorical", "boolean")
_TABLES = ("real_train", "synthetic", "real_test")


def _features(
    frames: Mapping[str, pd.DataFrame], target: str, metadata: Mapping[str, Any]
) -> tuple[dict[str, Mapping[str, Any]], str]:
    """The feature columns (in the real training table's order) and the target's sdtype."""
    for label, df in frames.items():
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"{label} must be a pandas DataFrame, got {type(df).__name__}")
    columns = metadata.get("columns") if isinstance(metadata, Mapping) else None
    if not isinstance(columns, Mapping) or not all(isinstance(m, Mapping) for m in columns.values()):
        raise ValueError('metadata must look like {"columns": {"age": {"sdtype": "numerical"}, ...}}')
    if target not in columns:
        raise ValueError(f"metadata must describe the target column {target!r}")
    sdtype = columns[target].get("sdtype")
    if sdtype not in _FEATURE_SDTYPES:
        raise ValueError(f"target {target!r} has sdtype {sdtype!r}: tstr predicts {', '.join(_FEATURE_SDTYPES)}")
    keys: set[Any] = set()
    for key in (metadata.get("primary_key"), *(metadata.get("alternate_keys") or ())):
        keys.update(key if isinstance(key, list | tuple) else [key])
    for label, df in frames.items():
        if target not in df.columns:
            raise ValueError(f"target column {target!r} is missing from {label}")
    features = {
        c: columns[c]
        for c in frames["real_train"].columns
        if c != target
        and c in columns
        and c not in keys
        and columns[c].get("sdtype") in _FEATURE_SDTYPES
        and not columns[c].get("pii")
    }
    for label, df in frames.items():
        missing = [c for c in features if c not in df.columns]
        if missing:
            raise ValueError(f"feature column(s) {missing} are missing from {label}")
    if not features:
        raise ValueError(
            f"no feature column to predict {target!r} from: tstr uses the metadata's numerical, datetime, "
            "categorical and boolean columns that are neither keys nor pii"
        )
    return features, str(sdtype)


def _regression_target(values: pd.Series, label: str, meta: Mapping[str, Any]) -> np.ndarray:
    """A numerical target as float64, a datetime one as integer nanoseconds."""
    if meta.get("sdtype") == "datetime":
        values = _as_datetime(values, "the target", meta)
    try:
        y = numeric_values(numpy_backed(values))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the numerical target of {label} holds values that are not numbers: {exc}") from None
    if np.isinf(y).any():
        raise ValueError(f"the numerical target of {label} holds infinite values")
    return y


def _f1(true_positive: np.ndarray, predicted_positive: np.ndarray) -> float:
    """scikit-learn's ``f1_score`` of the positive class: 2·tp / (positives + predicted positives), 0 if both 0."""
    denominator = int(true_positive.sum()) + int(predicted_positive.sum())
    return 2.0 * int((true_positive & predicted_positive).sum()) / denominator if denominator else 0.0


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """scikit-learn's ``f1_score(average="macro")``: the mean F1 over every label
    that occurs in the true or the predicted labels."""
    both = np.concatenate([y_true, y_pred]).astype(object)
    labels = pd.Index(sorted_values(list(pd.unique(both))), dtype=object)  # scikit-learn's order
    codes = labels.get_indexer(both)
    t, p = codes[: len(y_true)], codes[len(y_true) :]
    k = len(labels)
    tp = np.bincount(t[t == p], minlength=k)
    denominator = np.bincount(t, minlength=k) + np.bincount(p, minlength=k)
    return float(np.mean(2.0 * tp / denominator))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    """scikit-learn's ``r2_score`` (``force_finite``: 1 for a perfect fit, 0 for
    an imperfect one of a constant target)."""
    residual = float(((y - pred) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    if residual == 0.0:
        return 1.0
    return 0.0 if total == 0.0 else 1.0 - residual / total


def _score(kind: str, y_test: np.ndarray, pred: np.ndarray) -> float:
    """The task's metric: F1 of the positive class, macro-F1 or R²."""
    if kind == "binary":
        return _f1(y_test, pred.astype(bool))
    if kind == "multiclass":
        return _macro_f1(y_test, pred)
    return _r2(y_test, pred.astype(np.float64))


def _baseline(kind: str, y_test: np.ndarray) -> float:
    """The best score of a constant prediction for ``y_test`` (module docstring)."""
    if kind == "binary":
        positives = float(y_test.sum())
        return 2.0 * positives / (len(y_test) + positives)
    if kind == "multiclass":
        counts = pd.Series(y_test).value_counts().to_numpy(dtype=np.float64)
        return float(np.max(2.0 * counts / (len(y_test) + counts)) / len(counts))
    return 0.0


def _positive_label(real: np.ndarray, test: np.ndarray, chosen: Any) -> Any:
    """The positive class of a binary target (module docstring)."""
    labels = list(pd.unique(real))
    if chosen is not None:
        if not any(chosen == v for v in labels):
            raise ValueError(f"positive_label {chosen!r} is not a label of the real target ({labels!r})")
        return chosen
    if all(isinstance(v, bool | np.bool_) for v in labels):
        return True
    numbers = all(isinstance(v, int | float | np.integer | np.floating) for v in labels)
    if numbers and any(v == 1 for v in labels):
        return 1
    first = test[0]
    return first.item() if isinstance(first, np.generic) else first


def _predict(
    train: pd.DataFrame,
    y: np.ndarray,
    test: pd.DataFrame,
    features: Mapping[str, Mapping[str, Any]],
    task: str,
    estimator: Callable[[], Any] | None,
) -> np.ndarray:
    """The test rows' predictions of a model trained on ``train`` (SDMetrics'
    ``_fit_predict``): one training value → that value for every row."""
    values = pd.unique(y)
    if len(values) == 1:
        return np.full(len(test), values[0], dtype=y.dtype)
    encoded = encode(train, test, features)
    if estimator is not None:
        x_train, x_test = encoded.dense()
        model = estimator()
        model.fit(x_train, y)
        pred = np.asarray(model.predict(x_test))
        if pred.shape[:1] != (len(test),):
            raise ValueError(f"estimator predicted {pred.shape[:1]} values for {len(test)} test rows")
        if task == "binary":
            out: np.ndarray = np.equal(pred.astype(object), True).astype(bool)
        else:
            out = pred.astype(np.float64) if task == "regression" else pred.astype(object)
        return out
    if task == "binary":
        return logistic_predict(encoded, y.astype(bool))
    if task == "regression":
        return linear_predict(encoded, y)
    classes = np.asarray(sorted_values(list(values)), dtype=object)
    codes = pd.Index(classes).get_indexer(y)
    predicted: np.ndarray = classes[tree_predict(encoded, codes, len(classes))]
    return predicted


def tstr(
    real_train: pd.DataFrame,
    synthetic: pd.DataFrame,
    real_test: pd.DataFrame,
    target: str,
    metadata: Mapping[str, Any],
    *,
    estimator: Callable[[], Any] | None = None,
    positive_label: Any = None,
) -> dict[str, Any]:
    """Train on synthetic, test on real, against train on real, test on real, and no skill.

    See the module docstring for the metric, the baseline and the ratio.

    Args:
        real_train: Real rows the real-data model learns from.
        synthetic: Synthetic rows the synthetic-data model learns from.
        real_test: Real rows both models are scored on (held out from both).
        target: The column to predict.
        metadata: ``{"columns": {name: {"sdtype": ...}}}`` (optionally
            ``primary_key``, ``alternate_keys``, a column's ``pii`` flag or
            ``datetime_format``); the target's sdtype picks the task.
        estimator: A factory (a class, say) of objects with ``fit(X, y)`` and
            ``predict(X)`` to use instead of SDMetrics' model; it gets SDMetrics'
            feature matrices (numbers, robust-scaled one-hot columns) and, for a
            binary target, ``y`` True for the positive class.
        positive_label: The positive class of a binary target (default: see
            the module docstring).

    Returns:
        ``ratio``, ``synthetic_score``, ``real_score``, ``baseline_score``,
        ``score_ratio`` (synthetic / real, NaN unless real > 0), ``task``
        (``classification`` or ``regression``), ``metric`` (``f1``,
        ``macro_f1`` or ``r2``), ``positive_label`` (binary tasks, else None)
        and ``note`` (why ``ratio`` is NaN, else None).

    Raises:
        ValueError: A table is not a DataFrame, the target or a feature column is
            missing, a table has no row with a target value, the real test rows
            hold one class (or one value) of the target, no feature column is
            left, or a column's values do not fit its type.

    Example:
        ```python
        from prefect_synthobs.quality import tstr

        result = tstr(real_train, synthetic, real_test, "churn", metadata)
        result["ratio"]  # 1: as useful as the real data; <= 0: no better than no skill
        ```
    """
    frames = dict(zip(_TABLES, (real_train, synthetic, real_test), strict=True))
    features, sdtype = _features(frames, target, metadata)
    kept = {}
    for label, df in frames.items():
        df = df[numpy_backed(df[target]).notna().to_numpy()]
        if df.empty:
            raise ValueError(f"{label} has no row with a {target!r} value")
        kept[label] = df.reset_index(drop=True)
    test = kept["real_test"]
    if sdtype in ("numerical", "datetime"):
        task, metric = "regression", "r2"
        ys = {label: _regression_target(kept[label][target], label, metadata["columns"][target]) for label in _TABLES}
        if np.unique(ys["real_test"]).size < 2:
            raise ValueError(f"the real test rows hold one value of {target!r}: R² cannot be computed")
        positive = None
    else:
        task = "classification"
        ys = {label: numpy_backed(kept[label][target]).to_numpy(dtype=object) for label in _TABLES}
        if len(pd.unique(ys["real_test"])) < 2:
            raise ValueError(f"the real test rows hold one class of {target!r}: F1 cannot be computed")
        real_labels = np.concatenate([ys["real_train"], ys["real_test"]])
        binary = len(pd.unique(real_labels)) == 2
        metric = "f1" if binary else "macro_f1"
        positive = _positive_label(real_labels, ys["real_test"], positive_label) if binary else None
        if binary:
            ys = {label: np.asarray([v == positive for v in y], dtype=bool) for label, y in ys.items()}
    kind = "binary" if metric == "f1" else "multiclass" if metric == "macro_f1" else "regression"
    y_test = ys["real_test"]
    scores = {
        label: _score(kind, y_test, _predict(kept[label], ys[label], test, features, kind, estimator))
        for label in ("real_train", "synthetic")
    }
    baseline = _baseline(kind, y_test)
    real_score, syn_score = scores["real_train"], scores["synthetic"]
    note = None
    if real_score > baseline:
        ratio = (syn_score - baseline) / (real_score - baseline)
    else:
        ratio = math.nan
        note = (
            f"the real-data model scores {metric} {real_score:.4f}, no better than the no-skill baseline "
            f"{baseline:.4f} (a constant prediction): this task cannot judge the synthetic data"
        )
    return {
        "ratio": ratio,
        "synthetic_score": syn_score,
        "real_score": real_score,
        "baseline_score": baseline,
        "score_ratio": syn_score / real_score if real_score > 0 else math.nan,
        "task": task,
        "metric": metric,
        "positive_label": positive,
        "note": note,
    }
