"""Detection: SDMetrics' LogisticDetection (0.29 and 0.32), seeded, with unseen categories scored.

The reference values come from ``tests/reference/ref_detection.py``, run in
SDMetrics' own environments. SDMetrics shuffles its folds unseeded, so its
score is compared as a range (its spread over 20 runs, ± 0.01); with the folds
fixed (``StratifiedKFold(random_state=s)``, which ``seed=s`` reproduces
exactly) the fold assignment, each fold's AUC and the fitted coefficients are
compared tightly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sdmetrics_reference import load

from prefect_synthobs.scores import detection
from prefect_synthobs.scores.detection import logistic_detection

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
VERSIONS = {
    path.stem.removeprefix("detection_sdmetrics_"): json.loads(path.read_text())
    for path in sorted(REFERENCE_DIR.glob("detection_sdmetrics_*.json"))
}
CASES = [(version, name) for version, ref in VERSIONS.items() for name in sorted(ref["datasets"])]
_DATA: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}


def data(version: str, name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    entry = VERSIONS[version]["datasets"][name]
    if name not in _DATA:
        _DATA[name] = load(name, entry["metadata"])
    real, synthetic = _DATA[name]
    return real.copy(), synthetic.copy(), entry


def test_both_sdmetrics_versions_are_recorded() -> None:
    assert set(VERSIONS) == {"0_29", "0_32"}
    for ref in VERSIONS.values():
        assert set(ref["datasets"]) == {"mixed", "strong", "ties", "keyed"}


@pytest.mark.parametrize(("version", "name"), CASES)
def test_within_sdmetrics_run_to_run_spread(version: str, name: str) -> None:
    real, synthetic, entry = data(version, name)
    if "error" in entry["sdmetrics"]:  # SDMetrics raises on unseen categories: its score with encoders over both
        assert "Found unknown categories" in entry["sdmetrics"]["error"]
        spread = entry["union"]
    else:
        spread = entry["sdmetrics"]
    assert spread["runs"] >= 20
    for seed in range(5):
        score = logistic_detection(real, synthetic, entry["metadata"], seed=seed)
        assert spread["min"] - 0.01 <= score <= spread["max"] + 0.01, (seed, score, spread["min"], spread["max"])


@pytest.mark.parametrize(("version", "name"), CASES)
def test_fixed_folds_equal_sklearn(version: str, name: str) -> None:
    """With SDMetrics' folds fixed: the same folds, the same model at its optimum, the same AUCs."""
    real, synthetic, entry = data(version, name)
    table = detection._encode(real, synthetic, entry["metadata"])
    for fixed in entry["fixed"]:
        folds = detection._test_folds(len(real), len(synthetic), fixed["random_state"])
        assert folds.tolist() == fixed["test_folds"]  # StratifiedKFold(3, shuffle=True, random_state=s)
        fits = detection._fold_fits(table, folds)
        for (auc, fit), expected in zip(fits, fixed["folds"], strict=True):
            assert list(fit.coef) == fixed["features"]  # same columns, same order
            # the exact optimum (newton-cholesky, tol 1e-12): coefficients and AUC to rounding
            np.testing.assert_allclose(
                [fit.coef[f] for f in fixed["features"]],
                [expected["exact_coef"][f] for f in fixed["features"]],
                rtol=0,
                atol=1e-8,
            )
            assert fit.intercept == pytest.approx(expected["exact_intercept"], abs=1e-8)
            assert auc == pytest.approx(expected["exact_auc"], abs=1e-9)
            # SDMetrics' own lbfgs stops at a gradient of 1e-4: its AUCs differ by a few 1e-4 at most
            assert auc == pytest.approx(expected["auc"], abs=1e-3)
        score = logistic_detection(real, synthetic, entry["metadata"], seed=fixed["random_state"])
        assert score == pytest.approx(fixed["exact_score"], abs=1e-9)
        # LogisticDetection.compute itself with these folds (with encoders over both tables where it raises)
        assert score == pytest.approx(fixed["compute"], abs=1e-3)
        assert fixed["compute"] == pytest.approx(fixed["score"], abs=1e-12)


def test_versions_agree_with_fixed_folds() -> None:
    """0.29 and 0.32 share the detection code: with fixed folds they give the same scores."""
    a, b = VERSIONS["0_29"]["datasets"], VERSIONS["0_32"]["datasets"]
    for name in a:
        assert [f["compute"] for f in a[name]["fixed"]] == [f["compute"] for f in b[name]["fixed"]]


@pytest.mark.parametrize("name", ["mixed", "strong", "ties", "keyed"])
def test_conjugate_gradients_give_the_dense_answer(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real, synthetic, entry = data("0_32", name)
    dense = [logistic_detection(real, synthetic, entry["metadata"], seed=s) for s in (0, 1)]
    monkeypatch.setattr(detection, "_DENSE_MAX_PARAMETERS", 0)
    coded = [logistic_detection(real, synthetic, entry["metadata"], seed=s) for s in (0, 1)]
    np.testing.assert_allclose(coded, dense, rtol=0, atol=1e-9)


META = {
    "columns": {
        "x": {"sdtype": "numerical"},
        "y": {"sdtype": "numerical"},
        "c": {"sdtype": "categorical"},
        "when": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d %H:%M:%S"},
    }
}


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, n)
    return pd.DataFrame(
        {
            "x": x,
            "y": 0.5 * x + rng.normal(0, 1, n),
            "c": rng.choice(["a", "b", "c"], n).astype(object),
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s"),
        }
    )


def test_identical_tables_score_about_one() -> None:
    real = frame(600, 1)
    scores = [logistic_detection(real, real.copy(), META, seed=s) for s in range(3)]
    assert all(0.9 <= s <= 1.0 for s in scores), scores


def test_same_distribution_scores_high_and_different_scores_near_zero() -> None:
    real = frame(600, 1)
    assert logistic_detection(real, frame(600, 2), META) >= 0.85
    far = frame(600, 3, shift=12.0)
    assert logistic_detection(real, far, META) <= 0.02


def test_seeded_and_deterministic() -> None:
    real, synthetic = frame(400, 1), frame(300, 2, shift=0.3)
    a = logistic_detection(real, synthetic, META, seed=3)
    assert logistic_detection(real, synthetic, META, seed=3) == a
    assert logistic_detection(real, synthetic, META, 3) == a
    assert len({logistic_detection(real, synthetic, META, seed=s) for s in range(4)}) > 1
    assert 0.0 <= a <= 1.0


def test_unseen_categories_and_missing_values_give_a_score() -> None:
    real, synthetic = frame(300, 1), frame(200, 2)
    synthetic.loc[::7, "c"] = "never-in-real"
    synthetic.loc[::11, "c"] = None  # a missing category, absent from the real table
    synthetic.loc[::13, "x"] = np.nan
    synthetic.loc[::5, "y"] = np.inf  # infinities become missing, then mean-imputed per fold
    score = logistic_detection(real, synthetic, META)
    assert 0.0 <= score <= 1.0
    for name in ("mixed", "keyed", "ties"):  # SDMetrics raises on these
        r, s, entry = data("0_32", name)
        assert 0.0 <= logistic_detection(r, s, entry["metadata"]) <= 1.0


def test_keys_booleans_and_ids_are_not_used() -> None:
    real, synthetic, entry = data("0_32", "keyed")  # primary key "id", boolean "flag"
    base = logistic_detection(real, synthetic, entry["metadata"])
    synthetic["id"] = np.arange(len(synthetic)) + 10**6  # keys far from the real ones
    synthetic["flag"] = True  # a boolean column: SDMetrics drops it
    assert logistic_detection(real, synthetic, entry["metadata"]) == base
    meta = {
        **entry["metadata"],
        "columns": {**entry["metadata"]["columns"], "amount": {"sdtype": "numerical", "pii": True}},
    }
    assert logistic_detection(real, synthetic, meta) != base  # a pii column is dropped


def test_representations_do_not_change_the_score() -> None:
    real, synthetic = frame(300, 1), frame(250, 2, shift=0.2)
    base = logistic_detection(real, synthetic, META)
    # column order, a categorical dtype, datetimes as formatted strings, another index
    r2, s2 = real.copy(), synthetic[list(reversed(synthetic.columns))].copy()
    r2["c"], s2["c"] = r2["c"].astype("category"), s2["c"].astype("category")
    r2["when"] = r2["when"].dt.strftime("%Y-%m-%d %H:%M:%S")
    s2.index = s2.index + 1000
    assert logistic_detection(r2, s2, META) == pytest.approx(base, abs=1e-12)


def test_high_cardinality_categories(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    cities = np.array([f"city{i}" for i in range(700)], dtype=object)

    def tab(n: int, shift: float) -> pd.DataFrame:
        return pd.DataFrame({"x": rng.normal(shift, 1, n), "city": rng.choice(cities, n)})

    meta = {"columns": {"x": {"sdtype": "numerical"}, "city": {"sdtype": "categorical"}}}
    real, synthetic = tab(3000, 0.0), tab(3000, 0.2)
    coded = logistic_detection(real, synthetic, meta)  # > 512 parameters: conjugate gradients
    monkeypatch.setattr(detection, "_DENSE_MAX_PARAMETERS", 10**6)
    dense = logistic_detection(real, synthetic, meta)
    assert coded == pytest.approx(dense, abs=1e-9)
    assert 0.0 <= coded <= 1.0


@pytest.mark.parametrize(
    ("real", "synthetic", "metadata", "match"),
    [
        (frame(0, 1), frame(10, 2), META, "at least 3 rows"),
        (frame(10, 1), frame(2, 2), META, "at least 3 rows"),
        (frame(10, 1).to_numpy(), frame(10, 2), META, "must be a pandas DataFrame"),
        (frame(10, 1), frame(10, 2).drop(columns="y"), META, "same columns"),
        (frame(10, 1).assign(z=1.0), frame(10, 2).assign(z=1.0), META, "not in the metadata"),
        (
            frame(10, 1).drop(columns="y"),
            frame(10, 2).drop(columns="y"),
            META,
            "missing from the data",
        ),
        (frame(10, 1), frame(10, 2), {"x": "numerical"}, "metadata must look like"),
        (
            frame(10, 1)[["x"]],
            frame(10, 2)[["x"]],
            {"columns": {"x": {"sdtype": "id"}}, "primary_key": "x"},
            "no column to learn from",
        ),
        (
            frame(10, 1).assign(when="2024-01-01"),
            frame(10, 2).assign(when="2024-01-01"),
            {"columns": {**META["columns"], "when": {"sdtype": "datetime"}}},
            "datetime_format",
        ),
        (frame(10, 1), frame(10, 2).assign(x="text"), META, "not all numbers"),
    ],
)
def test_bad_input_raises(real: Any, synthetic: Any, metadata: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        logistic_detection(real, synthetic, metadata)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "0", True])
def test_bad_seed_raises(seed: Any) -> None:
    with pytest.raises(ValueError, match="seed"):
        logistic_detection(frame(10, 1), frame(10, 2), META, seed=seed)
