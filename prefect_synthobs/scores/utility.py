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
- ``baseline_score``: the best score that predictions made without the
  features reach on the real test rows, in expectation: the larger of the best
  constant prediction and chance, the test labels themselves in a random order
  (a guess that knows the class frequencies of the test rows exactly and
  nothing about which row is which). F1: ``max(2P/(n+P), P/n) = 2P/(n+P)``
  (every row predicted positive, P positives in n rows); macro-F1:
  ``max(max_c 2P_c/(n+P_c) / K, 1/K) = 1/K`` (K classes in the test rows: chance
  scores each class's F1 at its frequency, the constant at most one class's);
  R² ``0`` (the test mean; any other constant scores less). Guessing at any
  other frequencies scores less than these in expectation, so no feature-blind
  prediction beats the baseline but by noise.
- ``ratio``: the share of the real model's skill over that baseline that the
  synthetic model keeps, ``(synthetic − baseline) / (real − baseline)``: 1 as
  useful as the real data, 0 or less no better than no skill (so any
  ``min_tstr_ratio`` gate above 0 fails it). NaN, with a ``note``, when the task
  cannot judge: the real model does not beat the baseline, or beats it by less
  than ``NOISE_SE`` (2) standard errors ``skill_se`` of that margin (then the
  ratio divides noise by noise), or a score is not a finite number (R² of
  predictions that overflow). ``skill_se``: for F1 and macro-F1 the standard
  deviation of ``real − baseline`` over ``BOOTSTRAP_RESAMPLES`` (1,000) seeded
  bootstrap resamples of the test rows (the real model's predictions kept:
  each resample redraws the confusion matrix, which is the same as redrawing
  rows); for R² its normal approximation (the delta method), what a row
  bootstrap converges to. ``score_ratio`` is the plain ``synthetic / real``.
- ``note``: why ``ratio`` is NaN, and cautions that do not change it: the
  positive class of a text target was picked by the order of the test rows
  (pass ``positive_label=``), synthetic labels read as real ones, or a
  synthetic target that shares no label with the real one.

Labels stored as another type in the synthetic table are read as the real
label they spell: ``'True'``/``'true'`` as ``True`` (and back), ``'1'`` as ``1``
or ``1.0`` (numbers and numeric text compared as numbers), only where a label
equals no real label as it is and spells exactly one.

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
    BOOTSTRAP_RESAMPLES,
    encode,
    f1_score,
    linear_predict,
    logistic_predict,
    macro_f1_score,
    no_skill,
    numpy_backed,
    r2_score,
    skill_se,
    sorted_values,
    tree_predict,
)
from prefect_synthobs.scores.metadata import accepts_sdv_metadata
from prefect_synthobs.scores.stats import numeric_values

__all__ = ["tstr"]

_FEATURE_SDTYPES = ("numerical", "datetime", "categorical", "boolean")
_TABLES = ("real_train", "synthetic", "real_test")
NOISE_SE = 2.0  # the real model must beat the baseline by this many standard errors for a ratio


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
        twice = sorted({str(c) for c in df.columns[df.columns.duplicated()] if c == target or c in columns})
        if twice:
            raise ValueError(f"{label} has more than one column named {', '.join(twice)}")
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


def _score(kind: str, y_test: np.ndarray, pred: np.ndarray) -> float:
    """The task's metric: F1 of the positive class, macro-F1 or R²."""
    if kind == "binary":
        return f1_score(y_test, pred.astype(bool))
    if kind == "multiclass":
        return macro_f1_score(y_test, pred)
    return r2_score(y_test, pred.astype(np.float64))


def _baseline(kind: str, y_test: np.ndarray) -> float:
    """The no-skill score on ``y_test`` (module docstring)."""
    if kind == "regression":
        return 0.0
    counts = np.bincount(y_test.astype(np.int64), minlength=2) if kind == "binary" else pd.Series(y_test).value_counts()
    return float(no_skill(kind, np.asarray(counts)))


def _label_text(value: Any) -> str | None:
    """How a label reads across types: ``True``/``'True'``/``'true'`` alike, numbers and
    numeric text by value (``1``, ``1.0``, ``'1'``); None for other labels."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("true", "false"):
            return text.lower()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating) and math.isfinite(value):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return None


def _align_labels(synthetic: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The synthetic labels with each one that equals no real label, but spells exactly one
    (``_label_text``), replaced by it; notes on what was read so or shared nothing."""
    real_labels = list(pd.unique(real))
    spelled: dict[str, list[Any]] = {}
    for r in real_labels:
        text = _label_text(r)
        if text is not None:
            spelled.setdefault(text, []).append(r)
    known = set(real_labels)
    mapping = {}
    for v in pd.unique(synthetic):
        matches = spelled.get(_label_text(v) or "", [])
        if v not in known and len(matches) == 1:
            mapping[v] = matches[0]
    notes = []
    if mapping:
        synthetic = np.asarray([mapping.get(v, v) for v in synthetic], dtype=object)
        shown = ", ".join(f"{k!r} as {v!r}" for k, v in list(mapping.items())[:5])
        notes.append(f"synthetic target labels read as the real labels they spell: {shown}")
    if not known.intersection(pd.unique(synthetic)):
        notes.append(
            f"the synthetic target shares no label with the real one (synthetic {_few(pd.unique(synthetic))}, "
            f"real {_few(real_labels)}): its model cannot predict a real class"
        )
    return synthetic, notes


def _few(values: Any) -> str:
    """Up to five values, for a note."""
    values = list(values)
    return repr(values[:5])[:-1] + (", ...]" if len(values) > 5 else "]")


def _labels(y: np.ndarray, label: str) -> np.ndarray:
    """``y``'s distinct labels; a ValueError for a value that cannot be a label."""
    try:
        return np.asarray(pd.unique(y), dtype=object)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in y if not isinstance(v, str | int | float | bool | np.generic)})
        names = ", ".join(kinds)
        raise ValueError(f"the target of {label} holds values that cannot be class labels ({names})") from None


def _positive_label(real: np.ndarray, test: np.ndarray, chosen: Any) -> tuple[Any, bool]:
    """The positive class of a binary target (module docstring), and whether the
    order of the test rows picked it."""
    labels = list(pd.unique(real))
    if chosen is not None:
        if not any(chosen == v for v in labels):
            raise ValueError(f"positive_label {chosen!r} is not a label of the real target ({labels!r})")
        return chosen, False
    if all(isinstance(v, bool | np.bool_) for v in labels):
        return True, False
    numbers = all(isinstance(v, int | float | np.integer | np.floating) for v in labels)
    if numbers and any(v == 1 for v in labels):
        return 1, False
    first = test[0]
    return (first.item() if isinstance(first, np.generic) else first), True


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


@accepts_sdv_metadata
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
        ``macro_f1`` or ``r2``), ``positive_label`` (binary tasks, else None),
        ``skill_se`` (the standard error of real − baseline; NaN unless real
        > baseline) and ``note`` (why ``ratio`` is NaN, and cautions; else None).

    Raises:
        ValueError: A table is not a DataFrame, the target or a feature column is
            missing or named twice, a table has no row with a target value, the
            real test rows hold one class (or one value) of the target, no
            feature column is left, a label is not hashable, or a column's
            values do not fit its type.

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
    notes: list[str] = []
    by_order = False
    if sdtype in ("numerical", "datetime"):
        task, metric = "regression", "r2"
        ys = {label: _regression_target(kept[label][target], label, metadata["columns"][target]) for label in _TABLES}
        if np.unique(ys["real_test"]).size < 2:
            raise ValueError(f"the real test rows hold one value of {target!r}: R² cannot be computed")
        positive = None
    else:
        task = "classification"
        ys = {label: numpy_backed(kept[label][target]).to_numpy(dtype=object) for label in _TABLES}
        if len(_labels(ys["real_test"], "real_test")) < 2:
            raise ValueError(f"the real test rows hold one class of {target!r}: F1 cannot be computed")
        real_labels = np.concatenate([ys["real_train"], ys["real_test"]])
        binary = len(_labels(real_labels, "real_train")) == 2
        _labels(ys["synthetic"], "synthetic")
        ys["synthetic"], notes = _align_labels(ys["synthetic"], real_labels)
        metric = "f1" if binary else "macro_f1"
        positive = None
        if binary:
            positive, by_order = _positive_label(real_labels, ys["real_test"], positive_label)
            ys = {label: np.asarray([v == positive for v in y], dtype=bool) for label, y in ys.items()}
        if by_order:
            notes.append(
                f"the positive class {positive!r} is the first label of the real test rows (SDMetrics' rule): "
                "F1 and the ratio depend on it, so pass positive_label= to choose it"
            )
    kind = "binary" if metric == "f1" else "multiclass" if metric == "macro_f1" else "regression"
    y_test = ys["real_test"]
    predictions = {
        label: _predict(kept[label], ys[label], test, features, kind, estimator)
        for label in ("real_train", "synthetic")
    }
    scores = {label: _score(kind, y_test, pred) for label, pred in predictions.items()}
    for label, who in (("real_train", "real-data"), ("synthetic", "synthetic-data")):
        if not math.isfinite(scores[label]):
            notes.append(
                f"the {who} model's {metric} is not a finite number ({scores[label]}: its predictions overflow "
                "or lie far beyond the range of the test values), so it is NaN"
            )
            scores[label] = math.nan
    baseline = _baseline(kind, y_test)
    real_score, syn_score = scores["real_train"], scores["synthetic"]
    se = skill_se(kind, y_test, predictions["real_train"]) if real_score > baseline else math.nan
    why = _cannot_judge(metric, real_score, syn_score, baseline, se, kind == "binary")
    ratio = (syn_score - baseline) / (real_score - baseline) if why is None else math.nan
    return {
        "ratio": ratio,
        "synthetic_score": syn_score,
        "real_score": real_score,
        "baseline_score": baseline,
        "skill_se": se,
        "score_ratio": syn_score / real_score if real_score > 0 else math.nan,
        "task": task,
        "metric": metric,
        "positive_label": positive,
        "note": "; ".join([why, *notes] if why else notes) or None,
    }


def _cannot_judge(metric: str, real: float, synthetic: float, baseline: float, se: float, binary: bool) -> str | None:
    """Why the ratio is NaN (module docstring), or None when the task can judge."""
    advice = " (for a two-class target, pass positive_label= to score the class that matters)" if binary else ""
    method = "the delta method" if metric == "r2" else f"{BOOTSTRAP_RESAMPLES} bootstrap resamples of the test rows"
    if math.isnan(real):
        return "the real-data model's score is not a number: this task cannot judge the synthetic data"
    if real <= baseline:
        return (
            f"the real-data model scores {metric} {real:.4f}, no better than the no-skill baseline {baseline:.4f} "
            f"(the best of a constant prediction and chance): this task cannot judge the synthetic data{advice}"
        )
    if real - baseline < NOISE_SE * se:
        return (
            f"the real-data model beats the no-skill baseline {baseline:.4f} by {real - baseline:.4f}, less than "
            f"{NOISE_SE:g} standard errors ({NOISE_SE * se:.4f}, {method}): the ratio would be noise, so this "
            f"task cannot judge the synthetic data{advice}"
        )
    if math.isnan(synthetic):
        return "the synthetic-data model's score is not a number, so the ratio is not either"
    return None
