"""Utility: train on synthetic, test on real (TSTR), with a small numpy default model.

``tstr`` fits a model on the synthetic table and on the real training table,
scores both on the same real test table, and reports the ratio. A ratio near
1 means the synthetic data is as useful as the real data for that task.

The default models are deliberately small and deterministic: logistic
regression (one-vs-rest for more than two classes, Newton steps with an L2
penalty) for a categorical or boolean target, scored by accuracy; ridge
regression for a numerical target, scored by R². Any object with
``fit(X, y)`` and ``predict(X)`` (a scikit-learn estimator, say) can replace
them; it gets numeric matrices (numbers standardised, categories one-hot).

Re-exported by ``prefect_synthobs.scores.fidelity``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from prefect_synthobs.scores.stats import numeric_values

__all__ = ["tstr"]


class Estimator(Protocol):
    def fit(self, x: np.ndarray, y: np.ndarray) -> Any: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


class RidgeRegression:
    """Least squares with an L2 penalty (intercept not penalised)."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, x: np.ndarray, y: np.ndarray) -> RidgeRegression:
        xb = np.hstack([x, np.ones((len(x), 1))])
        penalty = self.alpha * np.eye(xb.shape[1])
        penalty[-1, -1] = 0.0
        self.coef_ = np.linalg.solve(xb.T @ xb + penalty, xb.T @ np.asarray(y, dtype=np.float64))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.hstack([x, np.ones((len(x), 1))]) @ self.coef_


class LogisticRegression:
    """L2-penalised logistic regression by Newton's method; one-vs-rest for many classes."""

    def __init__(self, alpha: float = 1.0, iterations: int = 25) -> None:
        self.alpha, self.iterations = alpha, iterations

    def _fit_binary(self, xb: np.ndarray, y: np.ndarray) -> np.ndarray:
        w = np.zeros(xb.shape[1])
        penalty = self.alpha * np.eye(xb.shape[1])
        penalty[-1, -1] = 0.0
        for _ in range(self.iterations):
            p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
            grad = xb.T @ (p - y) + penalty @ w
            hess = (xb * (p * (1 - p))[:, None]).T @ xb + penalty
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.max(np.abs(step)) < 1e-8:
                break
        return w

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
        xb = np.hstack([x, np.ones((len(x), 1))])
        self.classes_ = np.unique(y)
        if len(self.classes_) == 1:
            self.weights_ = None
            return self
        targets = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        self.weights_ = np.column_stack([self._fit_binary(xb, (y == c).astype(np.float64)) for c in targets])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.weights_ is None:
            return np.full(len(x), self.classes_[0], dtype=object)
        scores = np.hstack([x, np.ones((len(x), 1))]) @ self.weights_
        if len(self.classes_) == 2:
            return np.asarray(np.where(scores[:, 0] > 0, self.classes_[1], self.classes_[0]))
        return np.asarray(self.classes_[np.argmax(scores, axis=1)])


@dataclass
class _Features:
    """Feature encoding fitted on one table, applied to any."""

    numeric: list[str]
    categories: dict[str, list[Any]]
    means: dict[str, float]
    stds: dict[str, float]

    @classmethod
    def fit(cls, df: pd.DataFrame, sdtypes: Mapping[str, str]) -> _Features:
        numeric = [c for c, t in sdtypes.items() if t in ("numerical", "datetime")]
        categories = {
            c: sorted(map(str, df[c].dropna().unique())) for c, t in sdtypes.items() if t in ("categorical", "boolean")
        }
        values = {c: _numbers(df[c]) for c in numeric}
        means = {c: float(np.nanmean(v)) if np.isfinite(v).any() else 0.0 for c, v in values.items()}
        stds = {c: float(np.nanstd(v)) or 1.0 if np.isfinite(v).any() else 1.0 for c, v in values.items()}
        return cls(numeric, categories, means, stds)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        parts = []
        for c in self.numeric:
            v = (_numbers(df[c]) - self.means[c]) / self.stds[c]
            parts.append(np.where(np.isnan(v), 0.0, v)[:, None])
            parts.append(np.isnan(v).astype(np.float64)[:, None])
        for c, cats in self.categories.items():
            s = df[c].astype(object).map(lambda v: None if pd.isna(v) else str(v))
            parts.append(
                np.column_stack([(s == k).to_numpy(dtype=np.float64) for k in cats]) if cats else np.zeros((len(df), 0))
            )
        return np.hstack(parts) if parts else np.zeros((len(df), 0))


def _numbers(series: pd.Series) -> np.ndarray:
    return numeric_values(series, datetime_unit=1e9)  # datetimes in seconds


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return math.nan if ss_tot == 0 else 1.0 - float(((y - pred) ** 2).sum()) / ss_tot


def tstr(
    real_train: pd.DataFrame,
    synthetic: pd.DataFrame,
    real_test: pd.DataFrame,
    target: str,
    metadata: Mapping[str, Any],
    *,
    estimator: Any = None,
) -> dict[str, Any]:
    """Train on synthetic, test on real, against train on real, test on real.

    Args:
        real_train: Real rows the real-data model learns from.
        synthetic: Synthetic rows the synthetic-data model learns from.
        real_test: Real rows both models are scored on (held out from both).
        target: The column to predict.
        metadata: ``{"columns": {name: {"sdtype": ...}}}``; the target's sdtype
            picks the task (numerical: regression, else classification).
        estimator: A factory (class or callable) returning objects with
            ``fit``/``predict``; default: ``LogisticRegression`` or ``RidgeRegression``.

    Returns:
        ``{"ratio", "synthetic_score", "real_score", "task", "metric"}``;
        ``ratio`` is synthetic_score / real_score (NaN when the real score is
        not positive).

    Raises:
        ValueError: The target is missing, or a table has no usable rows.
    """
    columns = metadata.get("columns") if isinstance(metadata, Mapping) else None
    if not isinstance(columns, Mapping) or target not in columns:
        raise ValueError(f"metadata must describe the target column {target!r}")
    for label, df in (("real_train", real_train), ("synthetic", synthetic), ("real_test", real_test)):
        if target not in df.columns:
            raise ValueError(f"target column {target!r} is missing from {label}")
        if df[target].notna().sum() == 0:
            raise ValueError(f"{label} has no row with a {target!r} value")
    sdtypes = {
        str(c): str(m.get("sdtype"))
        for c, m in columns.items()
        if c != target
        and all(c in df.columns for df in (real_train, synthetic, real_test))
        and isinstance(m, Mapping)
        and m.get("sdtype") in ("numerical", "datetime", "categorical", "boolean")
    }
    task = "regression" if columns[target].get("sdtype") in ("numerical", "datetime") else "classification"
    features = _Features.fit(real_train, sdtypes)
    test = real_test[real_test[target].notna()]
    x_test = features.transform(test)
    y_test = _numbers(test[target]) if task == "regression" else test[target].astype(str).to_numpy(dtype=object)
    scores = {}
    for name, train in (("real", real_train), ("synthetic", synthetic)):
        train = train[train[target].notna()]
        y = _numbers(train[target]) if task == "regression" else train[target].astype(str).to_numpy(dtype=object)
        factory = estimator or (RidgeRegression if task == "regression" else LogisticRegression)
        model = factory()
        model.fit(features.transform(train), y)
        pred = np.asarray(model.predict(x_test))
        scores[name] = (
            _r2(y_test, pred.astype(np.float64))
            if task == "regression"
            else float(np.mean(pred.astype(str) == y_test.astype(str)))
        )
    real_score, syn_score = scores["real"], scores["synthetic"]
    ratio = syn_score / real_score if real_score > 0 and not math.isnan(syn_score) else math.nan
    return {
        "ratio": ratio,
        "synthetic_score": syn_score,
        "real_score": real_score,
        "task": task,
        "metric": "r2" if task == "regression" else "accuracy",
    }
