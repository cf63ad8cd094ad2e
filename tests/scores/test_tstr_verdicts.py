"""TSTR verdicts after a hostile review: what ``ratio`` promises, and when it refuses to judge.

- The no-skill baseline is the larger of the best constant and chance (the test
  labels in a random order): pure noise does not beat it, whatever the classes.
- A real model that beats the baseline by less than 2 standard errors gives no
  ratio (it would be noise over noise).
- R² is scale-free and never infinite: a target scaled by 1e±290 scores the same;
  a score that is not a finite number is NaN with a note.
- Labels the synthetic table stores as another type are read as the real ones;
  a synthetic target that shares no label with the real one is noted.
- Odd inputs raise ValueError; a positive class picked by row order is noted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_synthobs.quality import tstr
from prefect_synthobs.scores import utility
from prefect_synthobs.scores.efficacy import BOOTSTRAP_RESAMPLES, f1_score, macro_f1_score, no_skill, skill_se

NUMERIC = {"x1": {"sdtype": "numerical"}, "x2": {"sdtype": "numerical"}}
CATEGORICAL = {"columns": {**NUMERIC, "y": {"sdtype": "categorical"}}}
BOOLEAN = {"columns": {**NUMERIC, "y": {"sdtype": "boolean"}}}
REGRESSION = {"columns": {**NUMERIC, "y": {"sdtype": "numerical"}}}


def classes(n: int, rng: np.random.Generator, freqs: np.ndarray, signal: float) -> pd.DataFrame:
    """Labels drawn at ``freqs``; ``x1`` shifted by ``signal`` per class index, ``x2`` noise."""
    y = rng.choice(len(freqs), size=n, p=freqs)
    out: pd.DataFrame = pd.DataFrame(
        {"x1": signal * y + rng.normal(size=n), "x2": rng.normal(size=n), "y": [f"c{v}" for v in y]}
    )
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    k=st.integers(2, 8),
    weights=st.lists(st.integers(1, 20), min_size=8, max_size=8),
    junk_weights=st.lists(st.integers(0, 20), min_size=8, max_size=8).filter(lambda w: sum(w) > 0),
    signal=st.sampled_from([0.0, 0.05, 0.15, 0.4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_pure_noise_never_passes(k: int, weights: list[int], junk_weights: list[int], signal: float, seed: int) -> None:
    """Any K in 2..8 (two classes: F1 of the first test label), any class frequencies, a real task
    from hopeless to weak: a table of noise (features unrelated to labels drawn at any frequencies)
    never reaches a 0.8 ratio; where a ratio is given the real model beat the baseline clearly."""
    rng = np.random.default_rng(seed)
    freqs = np.asarray(weights[:k], dtype=float) / sum(weights[:k])
    train, test = classes(400, rng, freqs, signal), classes(400, rng, freqs, signal)
    junk_freqs = np.asarray(junk_weights[:k], dtype=float)
    if junk_freqs.sum() == 0:
        junk_freqs[0] = 1.0
    junk = classes(400, rng, junk_freqs / junk_freqs.sum(), 0.0)
    out = tstr(train, junk, test, "y", CATEGORICAL)
    assert not out["ratio"] >= 0.8, out
    if math.isfinite(out["ratio"]):
        assert out["real_score"] - out["baseline_score"] >= utility.NOISE_SE * out["skill_se"]
    else:
        assert "cannot judge" in out["note"]


def test_the_reported_multiclass_noise_no_longer_passes() -> None:
    """The review's case: K=3, no signal: real 0.293, junk 0.319 over a best constant of 0.168
    (ratio 1.21). Chance is 1/3: the real model does not beat it, and the ratio is NaN."""
    rng = np.random.default_rng(1)
    freqs = np.full(3, 1 / 3)
    train, test = classes(2000, rng, freqs, 0.0), classes(1000, rng, freqs, 0.0)
    junk = classes(2000, rng, freqs, 0.0)
    out = tstr(train, junk, test, "y", CATEGORICAL)
    counts = test["y"].value_counts().to_numpy()
    assert (
        out["baseline_score"] == pytest.approx(1 / 3) and out["baseline_score"] > max(2 * counts / (1000 + counts)) / 3
    )
    assert math.isnan(out["ratio"]) and "cannot judge" in out["note"]


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=4, max_size=30).filter(lambda v: len(set(v)) > 1))
def test_chance_is_the_mean_of_random_orders(labels: list[int]) -> None:
    """The baseline's chance term is exact: the mean macro-F1 of the test labels in a random order is
    1/K, averaged over all orders (here 300 random ones); a constant never beats 1/K; binary: the
    all-positive constant beats chance (the positive share)."""
    y = np.asarray([f"c{v}" for v in labels], dtype=object)
    k = len(set(labels))
    counts = pd.Series(y).value_counts().to_numpy()
    assert float(no_skill("multiclass", counts)) == pytest.approx(1 / k)
    rng = np.random.default_rng(0)
    assert np.mean([macro_f1_score(y, rng.permutation(y)) for _ in range(300)]) == pytest.approx(1 / k, abs=0.06)
    positive = y == y[0]
    p = positive.mean()
    assert utility._baseline("binary", positive) == pytest.approx(2 * p / (1 + p))
    assert np.mean([f1_score(positive, rng.permutation(positive)) for _ in range(300)]) <= 2 * p / (1 + p) + 0.05


# -- margins within noise ----------------------------------------------------------------------


def weak(n: int, seed: int, signal: float = 0.6, rate: float = 0.4) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    x1, x2 = r.normal(size=n), r.normal(size=n)
    y = r.random(n) < 1 / (1 + np.exp(-(np.log(rate / (1 - rate)) + signal * x1)))
    out: pd.DataFrame = pd.DataFrame({"x1": x1, "x2": x2, "y": y})
    return out


def test_reported_small_margin_is_not_judged() -> None:
    """The review's seed 3: real 0.5507 over a baseline of 0.5455, junk 0.5633: ratio 3.4. Now NaN."""
    train, test = weak(1500, 3), weak(800, 1003)
    r = np.random.default_rng(10)
    junk = pd.DataFrame({"x1": r.normal(size=1500), "x2": r.normal(size=1500), "y": r.random(1500) < 0.95})
    out = tstr(train, junk, test, "y", BOOLEAN)
    assert 0 < out["real_score"] - out["baseline_score"] < utility.NOISE_SE * out["skill_se"]
    assert math.isnan(out["ratio"]) and "standard errors" in out["note"] and "cannot judge" in out["note"]
    assert "positive_label=" in out["note"]
    # a clear task is judged: a constant "True" scores the baseline, so exactly 0
    strong = tstr(weak(1500, 3, signal=3.0), junk.assign(y=True), weak(800, 1003, signal=3.0), "y", BOOLEAN)
    assert strong["ratio"] == 0.0 and strong["note"] is None


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_skill_se_is_a_row_bootstrap(kind: str) -> None:
    """Redrawing the confusion matrix is a row bootstrap: the SE matches resampled rows (±15 %)."""
    rng = np.random.default_rng(5)
    n = 300
    names = np.array(["a", "b", "c", "d"], dtype=object)
    if kind == "binary":
        y = rng.random(n) < 0.3
        pred = np.where(rng.random(n) < 0.7, y, ~y)
    else:
        y = rng.choice(names, n)
        pred = np.where(rng.random(n) < 0.5, y, rng.choice(names, n))

    def margin(t: np.ndarray, p: np.ndarray) -> float:
        score = f1_score(t, p) if kind == "binary" else macro_f1_score(t, p)
        return score - utility._baseline(kind, t)

    rows = [rng.integers(0, n, n) for _ in range(BOOTSTRAP_RESAMPLES)]
    direct = float(np.std([margin(y[i], pred[i]) for i in rows], ddof=1))
    assert skill_se(kind, y, pred) == pytest.approx(direct, rel=0.15)
    assert skill_se(kind, y, pred) == skill_se(kind, y, pred)  # seeded


def test_r2_se_is_the_bootstrap_one() -> None:
    rng = np.random.default_rng(6)
    y = rng.normal(size=400)
    pred = 0.3 * y + rng.normal(size=400)
    rows = [rng.integers(0, 400, 400) for _ in range(1000)]
    from prefect_synthobs.scores.efficacy import r2_score

    direct = float(np.std([r2_score(y[i], pred[i]) for i in rows], ddof=1))
    assert skill_se("regression", y, pred) == pytest.approx(direct, rel=0.15)


# -- overflow ----------------------------------------------------------------------------------


def linear(n: int, seed: int, scale: float = 1.0) -> pd.DataFrame:
    g = np.random.default_rng(seed)
    x1, x2 = g.normal(size=n), g.normal(size=n)
    out: pd.DataFrame = pd.DataFrame({"x1": x1, "x2": x2, "y": (3 * x1 - x2 + g.normal(size=n)) * scale})
    return out


@settings(max_examples=20, deadline=None)
@given(st.integers(-290, 290))
def test_r2_is_scale_free_up_to_the_float_range(exponent: int) -> None:
    plain = tstr(linear(300, 1), linear(300, 2), linear(300, 3), "y", REGRESSION)
    scale = 10.0**exponent
    scaled = tstr(linear(300, 1, scale), linear(300, 2, scale), linear(300, 3, scale), "y", REGRESSION)
    for key in ("ratio", "synthetic_score", "real_score", "skill_se"):
        assert scaled[key] == pytest.approx(plain[key], rel=1e-9, abs=1e-12), key
    assert scaled["note"] is None


def test_a_score_that_is_not_finite_is_nan_with_a_note() -> None:
    """One 1e308 target in the synthetic table: its model predicts ~1e305 for every row, R² ~ -1e609
    (no float): NaN with a note, and so is the ratio (a gate on it counts as missed)."""
    syn = linear(600, 2)
    syn.loc[0, "y"] = 1e308
    out = tstr(linear(600, 1), syn, linear(600, 3), "y", REGRESSION)
    assert math.isnan(out["synthetic_score"]) and math.isnan(out["ratio"])
    assert "not a finite number" in out["note"]
    assert math.isfinite(out["real_score"]) and out["real_score"] > 0.8
    for key in ("ratio", "synthetic_score", "real_score", "baseline_score"):
        assert not math.isinf(out[key])


# -- labels ------------------------------------------------------------------------------------


def labelled(n: int, seed: int) -> pd.DataFrame:
    g = np.random.default_rng(seed)
    x1, x2 = g.normal(size=n), g.normal(size=n)
    out: pd.DataFrame = pd.DataFrame({"x1": x1, "x2": x2, "y": 2 * x1 - x2 + g.normal(size=n) > 0.5})
    return out


@pytest.mark.parametrize(
    ("real_as", "synthetic_as", "meta"),
    [
        (lambda v: v, lambda v: "True" if v else "False", BOOLEAN),
        (lambda v: v, lambda v: "true" if v else "false", BOOLEAN),
        (lambda v: "True" if v else "False", lambda v: v, CATEGORICAL),
        (int, lambda v: str(int(v)), CATEGORICAL),
        (float, lambda v: str(int(v)), CATEGORICAL),
        (lambda v: str(int(v)), int, CATEGORICAL),
    ],
)
def test_labels_spelled_as_another_type_are_read_as_the_real_ones(
    real_as: Any, synthetic_as: Any, meta: dict[str, Any]
) -> None:
    train, syn, test = labelled(800, 1), labelled(800, 2), labelled(600, 3)
    as_real = [df.assign(y=df["y"].map(real_as).astype(object)) for df in (train, syn, test)]
    same = tstr(as_real[0], as_real[1], as_real[2], "y", meta)
    spelled = tstr(as_real[0], syn.assign(y=syn["y"].map(synthetic_as).astype(object)), as_real[2], "y", meta)
    for key in ("ratio", "synthetic_score", "real_score", "baseline_score"):
        assert spelled[key] == same[key], key
    assert same["ratio"] > 0.8
    assert "read as the real labels" in spelled["note"]


@pytest.mark.parametrize(("real", "synthetic"), [(("yes", "no"), ("Y", "N")), (("a", "b"), ("A", "B"))])
def test_a_synthetic_target_sharing_no_label_is_noted(real: tuple[str, str], synthetic: tuple[str, str]) -> None:
    train, syn, test = labelled(800, 1), labelled(800, 2), labelled(600, 3)

    def to(df: pd.DataFrame, names: tuple[str, str]) -> pd.DataFrame:
        out: pd.DataFrame = df.assign(y=np.where(df["y"], names[0], names[1]).astype(object))
        return out

    out = tstr(to(train, real), to(syn, synthetic), to(test, real), "y", CATEGORICAL, positive_label=real[0])
    assert out["synthetic_score"] == 0.0 and out["ratio"] < 0  # scored: it fails any gate
    assert "shares no label" in out["note"] and "read as" not in out["note"]


# -- odd inputs, row order ---------------------------------------------------------------------


def test_odd_inputs_raise_value_errors() -> None:
    train, syn, test = labelled(200, 1), labelled(200, 2), labelled(200, 3)
    with pytest.raises(ValueError, match="more than one column named x1"):
        tstr(train, pd.concat([syn, syn[["x1"]]], axis=1), test, "y", BOOLEAN)
    with pytest.raises(ValueError, match="more than one column named y"):
        tstr(pd.concat([train, train[["y"]]], axis=1), syn, test, "y", BOOLEAN)
    listed = syn.astype({"y": object})
    listed.at[0, "y"] = [1, 2]
    with pytest.raises(ValueError, match="cannot be class labels"):
        tstr(train, listed, test, "y", CATEGORICAL)
    listed_test = test.astype({"y": object})
    listed_test.at[3, "y"] = {"a": 1}
    with pytest.raises(ValueError, match="cannot be class labels"):
        tstr(train, syn, listed_test, "y", CATEGORICAL)
    cat_meta = {"columns": {**CATEGORICAL["columns"], "c": {"sdtype": "categorical"}}}
    feature = syn.assign(c="a").astype({"c": object})
    feature.at[1, "c"] = ["x"]
    with pytest.raises(ValueError, match="column 'c' holds values that cannot be categories"):
        tstr(train.assign(c="a"), feature, test.assign(c="b"), "y", cat_meta)


def test_a_positive_class_picked_by_row_order_is_noted() -> None:
    """SDMetrics' rule stays the default (the first test label); the note says so and names
    ``positive_label=``, which makes the verdict independent of the row order."""
    train, syn, test = labelled(800, 1), labelled(800, 2), labelled(600, 3)
    text = [df.assign(y=np.where(df["y"], "churn", "stay").astype(object)) for df in (train, syn, test)]
    first_churn = text[2].sort_values("y", kind="stable").reset_index(drop=True)
    first_stay = text[2].sort_values("y", ascending=False, kind="stable").reset_index(drop=True)
    a, b = (tstr(text[0], text[1], t, "y", CATEGORICAL) for t in (first_churn, first_stay))
    assert (a["positive_label"], b["positive_label"]) == ("churn", "stay")
    assert "positive_label=" in a["note"] and "first label of the real test rows" in a["note"]
    chosen = [tstr(text[0], text[1], t, "y", CATEGORICAL, positive_label="churn") for t in (first_churn, first_stay)]
    assert chosen[0]["note"] is None and chosen[0]["ratio"] == chosen[1]["ratio"]
    assert tstr(train, syn, test, "y", BOOLEAN)["note"] is None  # booleans: True, whatever the order
