"""Privacy scores: SDMetrics 0.29's DCR, overfitting protection and new-row synthesis, plus properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sdmetrics_reference import reference, reference_data

from prefect_synthobs.quality import (
    dcr,
    dcr_baseline_protection,
    dcr_overfitting_protection,
    exact_match_rate,
    membership_inference_auc,
    new_row_synthesis,
)

REFERENCE = reference()
DATASETS = sorted(REFERENCE["datasets"])


def data(name: str):  # type: ignore[no-untyped-def]
    return reference_data(name, REFERENCE)


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("chunk_size", [1000, 37])  # chunking never changes the answer
def test_dcr_equals_sdmetrics(name: str, chunk_size: int) -> None:
    real, synthetic, ref = data(name)
    ours = dcr(synthetic, real, ref["metadata"], chunk_size=chunk_size).to_numpy()
    np.testing.assert_allclose(ours, np.array(ref["dcr_synthetic_to_real"]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", DATASETS)
def test_overfitting_protection_and_new_rows_equal_sdmetrics(name: str) -> None:
    real, synthetic, ref = data(name)
    half = len(real) // 2
    out = dcr_overfitting_protection(real.iloc[:half], synthetic, real.iloc[half : 2 * half], ref["metadata"])
    expected = ref["dcr_overfitting_protection"]["breakdown"]
    assert out["score"] == pytest.approx(expected["score"], abs=1e-9)
    assert out["closer_to_training"] == pytest.approx(
        expected["synthetic_data_percentages"]["closer_to_training"], abs=1e-9
    )
    assert new_row_synthesis(real, synthetic, ref["metadata"]) == pytest.approx(ref["new_row_synthesis"], abs=1e-9)
    assert new_row_synthesis(real, synthetic, ref["metadata"], numerical_match_tolerance=0.05) == pytest.approx(
        ref["new_row_synthesis_005"], abs=1e-9
    )


META = {"columns": {"x": {"sdtype": "numerical"}, "c": {"sdtype": "categorical"}}}


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(["a", "b", "c"], n).astype(object)})


def test_copies_are_caught() -> None:
    real = _frame(400, 1)
    train, holdout = real.iloc[:200], real.iloc[200:]
    leaked = train.copy()  # a "generator" that memorised its training data
    assert exact_match_rate(real, leaked) == 1.0
    assert new_row_synthesis(real, leaked, META) == 0.0
    assert (dcr(leaked, real, META) == 0).all()
    assert dcr_overfitting_protection(train, leaked, holdout, META)["score"] == 0.0
    assert membership_inference_auc(train, holdout, leaked, META) == 1.0
    assert dcr_baseline_protection(real, leaked, META)["score"] == 0.0


def test_independent_samples_look_safe() -> None:
    train, holdout, synthetic = _frame(300, 1), _frame(300, 2), _frame(300, 3)
    real = pd.concat([train, holdout], ignore_index=True)
    assert exact_match_rate(real, synthetic) == 0.0
    # with SDMetrics' 1 % tolerance many rows of a 2-column table "match" by chance; exact matches: none
    assert new_row_synthesis(real, synthetic, META, numerical_match_tolerance=1e-9) == 1.0
    assert dcr_overfitting_protection(train, synthetic, holdout, META)["score"] > 0.8
    assert 0.4 < membership_inference_auc(train, holdout, synthetic, META) < 0.6
    assert dcr_baseline_protection(real, synthetic, META, seed=7)["score"] > 0.05
    # seeded: the same call gives the same number
    assert dcr_baseline_protection(real, synthetic, META, seed=7) == dcr_baseline_protection(
        real, synthetic, META, seed=7
    )


def test_unequal_train_and_holdout_are_compared_at_equal_size() -> None:
    """With 4x more training rows, raw DCR comparison would call most rows 'closer to
    training' by chance; subsampling to equal size keeps an honest generator near 0.5."""
    train, holdout, synthetic = _frame(800, 11), _frame(200, 12), _frame(300, 13)
    raw = np.mean(dcr(synthetic, train, META).to_numpy() < dcr(synthetic, holdout, META).to_numpy())
    assert raw > 0.6  # the bias this guards against
    out = dcr_overfitting_protection(train, synthetic, holdout, META, iterations=5, seed=1)
    assert 0.35 < out["closer_to_training"] < 0.65 and out["score"] > 0.7


def test_missing_values_and_errors() -> None:
    real = pd.DataFrame({"x": [1.0, np.nan, 3.0], "c": ["a", None, "b"]})
    synthetic = pd.DataFrame({"x": [np.nan, 1.0], "c": [None, "a"]})
    assert list(dcr(synthetic, real, META)) == [0.0, 0.0]  # missing matches missing
    assert exact_match_rate(real, synthetic) == 1.0
    with pytest.raises(ValueError, match="no numerical"):
        dcr(synthetic, real, {"columns": {"zz": {"sdtype": "numerical"}}})
    with pytest.raises(ValueError, match="non-empty"):
        dcr(synthetic.iloc[:0], real, META)
    with pytest.raises(ValueError, match="chunk_size"):
        dcr(synthetic, real, META, chunk_size=0)
