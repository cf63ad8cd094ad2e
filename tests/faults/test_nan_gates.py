"""A quality gate never passes on empty synthetic columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import prefect_synthobs as so

META = {"columns": {"x": {"sdtype": "numerical"}, "y": {"sdtype": "numerical"}, "c": {"sdtype": "categorical"}}}


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    return pd.DataFrame(
        {"x": x, "y": 2 * x + rng.normal(0, 0.5, n), "c": rng.choice(["a", "b", "c"], n).astype(object)}
    )


def test_empty_synthetic_columns_count_as_zero_in_the_gates(store_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """All-NaN synthetic columns are left out of SDMetrics' averages (the report
    says 1.0 here); the gate counts them as 0, fails, and says why."""
    real = frame(300, 1)
    synthetic = real.copy()
    numeric = [c for c, spec in META["columns"].items() if spec["sdtype"] == "numerical"][:2]
    synthetic[numeric] = np.nan
    with caplog.at_level("WARNING", logger="prefect.synthobs"):
        check = so.check_quality(
            real, synthetic, META, gates=so.QualityGates(min_overall=0.95, policy="warn"), table="empty-cols"
        )
    assert check.report.overall > 0.95  # SDMetrics' own number keeps its definition
    assert check.scores["overall"] < 0.95 and not check.passed
    assert check.failed[0].gate == "min_overall"
    assert check.notes and all(c in check.notes[0] for c in numeric)
    assert "count as 0" in caplog.text
    # a complete synthetic table gets exactly the report's numbers
    full = so.check_quality(real, real.copy(), META, table="full-cols")
    assert full.scores["overall"] == full.report.overall and not full.notes
