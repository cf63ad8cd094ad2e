"""TSTR: a faithful synthetic table is about as useful as the real one, a broken one is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prefect_synthobs.quality import tstr
from prefect_synthobs.scores.utility import LogisticRegression, RidgeRegression

META = {
    "columns": {
        "x1": {"sdtype": "numerical"},
        "x2": {"sdtype": "numerical"},
        "c": {"sdtype": "categorical"},
        "label": {"sdtype": "boolean"},
        "amount": {"sdtype": "numerical"},
    }
}


def table(n: int, seed: int, broken: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], n)
    logit = 2 * x1 - x2 + (c == "a") * 1.5
    label = rng.random(n) < 1 / (1 + np.exp(-logit))
    amount = 3 * x1 + 2 * x2 + (c == "b") * 4 + rng.normal(0, 0.5, n)
    if broken:  # same marginals, relationships destroyed
        label, amount = rng.permutation(label), rng.permutation(amount)
    df = pd.DataFrame({"x1": x1, "x2": x2, "c": c.astype(object), "label": label.astype(object), "amount": amount})
    df.loc[rng.random(n) < 0.02, "x2"] = np.nan
    return df


def test_faithful_synthetic_data_is_nearly_as_useful() -> None:
    train, test = table(1500, 1), table(800, 2)
    good = tstr(
        train.drop(columns="amount"), table(1500, 3).drop(columns="amount"), test.drop(columns="amount"), "label", META
    )
    assert good["task"] == "classification" and good["metric"] == "accuracy"
    assert good["real_score"] > 0.75 and good["ratio"] > 0.93
    reg = tstr(train, table(1500, 4), test, "amount", META)
    assert reg["task"] == "regression" and reg["real_score"] > 0.9 and reg["ratio"] > 0.95


def test_broken_synthetic_data_scores_low() -> None:
    train, test = table(1500, 1), table(800, 2)
    bad = tstr(train, table(1500, 5, broken=True), test, "amount", META)
    assert bad["ratio"] < 0.2


def test_pluggable_estimator_and_errors() -> None:
    calls = []

    class Majority:
        def fit(self, x: np.ndarray, y: np.ndarray) -> None:
            calls.append(x.shape)
            values, counts = np.unique(y, return_counts=True)
            self.value = values[np.argmax(counts)]

        def predict(self, x: np.ndarray) -> np.ndarray:
            return np.full(len(x), self.value)

    train, test = table(300, 1), table(200, 2)
    out = tstr(train, table(300, 3), test, "label", META, estimator=Majority)
    assert len(calls) == 2 and calls[0][1] == calls[1][1]  # same features for both models
    assert 0.3 < out["real_score"] < 0.8
    with pytest.raises(ValueError, match=r"describe the target"):
        tstr(train, train, test, "nope", META)
    with pytest.raises(ValueError, match="no row"):
        tstr(train.assign(label=None), train, test, "label", META)


def test_default_models_recover_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 3.0
    model = RidgeRegression(alpha=1e-9).fit(x, y)
    np.testing.assert_allclose(model.coef_, [1.0, -2.0, 0.5, 3.0], atol=1e-6)
    labels = np.where(x[:, 0] > 0, "yes", "no")
    assert (LogisticRegression().fit(x, labels).predict(x) == labels).mean() > 0.97
    three = np.array(["a", "b", "c"])[np.argmax(x, axis=1)]
    assert (LogisticRegression().fit(x, three).predict(x) == three).mean() > 0.9
