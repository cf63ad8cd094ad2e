"""Verdicts a team can ship on: TSTR that junk cannot pass, per-model rows, relational data.

Everything goes through ``check_quality`` in an observed flow on the real test server, and
is read back from the store (the channel the report reads).
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect import flow

import prefect_synthobs as so
from prefect_synthobs import catalog as names
from prefect_synthobs import quality
from prefect_synthobs.instrument.gates import QualityCheck
from prefect_synthobs.instrument.scoring import score_tables

pytestmark = pytest.mark.usefixtures("prefect_server")

CHURN_META = {
    "columns": {
        "tenure": {"sdtype": "numerical"},
        "monthly": {"sdtype": "numerical"},
        "contract": {"sdtype": "categorical"},
        "calls": {"sdtype": "numerical"},
        "churn": {"sdtype": "boolean"},
    }
}


def churn(n: int, seed: int) -> pd.DataFrame:
    """A churn table with about 12 % positives that the features predict well."""
    rng = np.random.default_rng(seed)
    tenure = rng.exponential(24, n)
    monthly = rng.normal(70, 20, n)
    contract = rng.choice(["monthly", "yearly", "two-year"], n, p=[0.5, 0.3, 0.2])
    calls = rng.poisson(1.5, n).astype(float)
    logit = -4.3 - 0.06 * tenure + 0.03 * (monthly - 70) + 1.2 * calls + 1.5 * (contract == "monthly")
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {"tenure": tenure, "monthly": monthly, "contract": contract.astype(object), "calls": calls, "churn": churned}
    )


def shuffled(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every column permuted on its own: perfect marginals, no relationship to the target left."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: df[c].to_numpy()[rng.permutation(len(df))] for c in df.columns})


def quality_rows(store_dir: Path, table: str) -> pd.DataFrame:
    rows = so.HealthStore(str(store_dir)).read(names.QUALITY_CHECKS)
    return rows[rows.table_name.astype(str).str.startswith(table)]


def test_churn_fixture_is_imbalanced_and_learnable() -> None:
    real = churn(3000, 1)
    assert 0.08 < real.churn.mean() < 0.16
    accuracy_of_majority = 1 - real.churn.mean()
    assert accuracy_of_majority > 0.84  # why accuracy let junk pass


@pytest.mark.parametrize("kind", ["shuffled", "bootstrap", "all_false"])
def test_tstr_gate_fails_junk_and_passes_a_bootstrap(store_dir: Path, kind: str) -> None:
    real, holdout = churn(2000, 1), churn(2000, 2)
    if kind == "shuffled":
        synthetic = shuffled(real, 3)
    elif kind == "bootstrap":
        synthetic = real.sample(n=len(real), replace=True, random_state=4).reset_index(drop=True)
    else:
        synthetic = real.assign(churn=False)
    direct = quality.tstr(real, synthetic, holdout, "churn", CHURN_META)
    assert direct["metric"] == "f1" and direct["task"] == "classification"
    assert direct["real_score"] > direct["baseline_score"] + 0.1  # the task can judge
    table = f"churn-{kind}-{uuid.uuid4().hex[:6]}"
    gates = so.QualityGates(min_overall=None, min_tstr_ratio=0.8, policy="warn")

    @so.observe(kind="quality", table=table)
    @flow(name=f"tstr-{table}")
    def check() -> QualityCheck:
        return so.check_quality(real, synthetic, CHURN_META, holdout=holdout, target="churn", gates=gates)

    result = check()
    tstr_gate = next(r for r in result.results if r.gate == "min_tstr_ratio")
    assert result.scores["tstr_ratio"] == pytest.approx(direct["ratio"])
    assert result.tstr is not None and result.tstr["metric"] == "f1"
    if kind == "bootstrap":
        assert tstr_gate.passed, result.scores
    else:
        assert not tstr_gate.passed, result.scores
    if kind == "all_false":  # a constant model: no better than no skill
        assert result.scores["tstr_synthetic_score"] <= result.scores["tstr_baseline_score"]
        assert result.scores["tstr_ratio"] <= 0
    rows = quality_rows(store_dir, table).set_index("metric")
    assert bool(rows.loc["tstr_ratio", "passed"]) is (kind == "bootstrap")
    assert {"tstr_synthetic_score", "tstr_real_score", "tstr_baseline_score"} <= set(rows.index)


class FakeCTGAN:  # a generator object the way CTGAN is one: no SDV id
    pass


def test_models_are_recorded_apart(store_dir: Path) -> None:
    real = churn(600, 1)
    table = f"models-{uuid.uuid4().hex[:6]}"
    first, second = FakeCTGAN(), FakeCTGAN()

    @so.observe(kind="quality", table=table)
    @flow(name=f"models-{table}")
    def check() -> None:
        so.check_quality(real, real.sample(frac=1.0, random_state=1), CHURN_META, model=first)
        so.check_quality(real, shuffled(real, 2), CHURN_META, model=second)
        so.check_quality(real, shuffled(real, 3), CHURN_META, model="copula-v7")
        so.check_quality(real, shuffled(real, 3), CHURN_META)

    check()
    rows = quality_rows(store_dir, table)
    overall = rows[rows.metric == "overall"]
    assert len(overall) == 4
    ids = overall.model_id.tolist()
    assert len({i for i in ids if isinstance(i, str)}) == 3 and "copula-v7" in ids
    assert sum(1 for i in ids if not isinstance(i, str)) == 1  # no model: null, never a made-up id
    assert set(overall.model_type.dropna()) == {"FakeCTGAN"}
    # the same object keeps its id: every row of the first check has one id
    first_ids = set(rows[rows.model_type == "FakeCTGAN"].model_id)
    assert len(first_ids) == 2


def relational(n_parents: int, seed: int, orphans: float = 0.0) -> tuple[dict[str, pd.DataFrame], dict]:
    rng = np.random.default_rng(seed)
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(n_parents),
            "age": rng.integers(18, 90, n_parents).astype(float),
            "segment": rng.choice(["a", "b", "c"], n_parents).astype(object),
        }
    )
    per = rng.poisson(3, n_parents)
    parent = np.repeat(customers.customer_id.to_numpy(), per)
    orders = pd.DataFrame(
        {
            "order_id": np.arange(len(parent)),
            "customer_id": parent,
            "amount": rng.gamma(2.0, 30.0, len(parent)) + customers.age.to_numpy()[parent],
        }
    )
    if orphans:
        cut = rng.random(len(orders)) < orphans
        orders.loc[cut, "customer_id"] = orders.loc[cut, "customer_id"] + 10**6
    metadata = {
        "tables": {
            "customers": {
                "primary_key": "customer_id",
                "columns": {
                    "customer_id": {"sdtype": "id"},
                    "age": {"sdtype": "numerical"},
                    "segment": {"sdtype": "categorical"},
                },
            },
            "orders": {
                "primary_key": "order_id",
                "columns": {
                    "order_id": {"sdtype": "id"},
                    "customer_id": {"sdtype": "id"},
                    "amount": {"sdtype": "numerical"},
                },
            },
        },
        "relationships": [
            {
                "parent_table_name": "customers",
                "parent_primary_key": "customer_id",
                "child_table_name": "orders",
                "child_foreign_key": "customer_id",
            }
        ],
    }
    return {"customers": customers, "orders": orders}, metadata


def test_relational_data_is_scored_per_table_and_gated(store_dir: Path) -> None:
    real, metadata = relational(300, 1)
    synthetic, _ = relational(300, 2, orphans=0.3)
    holdout, _ = relational(300, 3)
    dataset = f"shop-{uuid.uuid4().hex[:6]}"
    gates = so.QualityGates(min_overall=0.5, min_relationship_validity=0.99, min_cardinality=0.5, policy="warn")

    @so.observe(kind="quality", table=dataset)
    @flow(name=f"relational-{dataset}")
    def check() -> QualityCheck:
        return so.check_quality(real, synthetic, metadata, holdout=holdout, gates=gates, model="hma-1")

    result = check()
    expected = quality.multi_table_quality_report(real, synthetic, metadata)
    diagnostic = quality.multi_table_diagnostic_report(real, synthetic, metadata)
    assert result.scores["overall"] == pytest.approx(expected.overall, abs=1e-12)
    assert result.scores["cardinality"] == pytest.approx(expected.properties["Cardinality"], abs=1e-12)
    assert result.scores["relationship_validity"] == pytest.approx(
        diagnostic.properties["Relationship Validity"], abs=1e-12
    )
    failed = {r.gate for r in result.failed}
    assert "min_relationship_validity" in failed  # 30 % orphan orders
    assert set(result.per_table) == {"customers", "orders"}
    rows = quality_rows(store_dir, dataset)
    assert set(rows.table_name) == {dataset, f"{dataset}.customers", f"{dataset}.orders"}
    assert set(rows.model_id) == {"hma-1"}
    per_table = rows[rows.table_name == f"{dataset}.orders"].set_index("metric")
    one = quality.quality_report(real["orders"], synthetic["orders"], metadata["tables"]["orders"])
    assert per_table.loc["overall", "score"] == pytest.approx(one.overall, abs=1e-12)
    assert {"exact_match_rate", "dcr_overfitting_protection", "membership_inference_auc"} <= set(per_table.index)
    dataset_rows = rows[rows.table_name == dataset].set_index("metric")
    assert dataset_rows.loc["exact_match_rate", "score"] == max(
        result.per_table[t]["exact_match_rate"] for t in result.per_table
    )


def test_relational_input_errors_are_clear() -> None:
    real, metadata = relational(50, 1)
    with pytest.raises(ValueError, match="dict of table name"):
        so.check_quality(real, real["orders"], metadata)
    with pytest.raises(ValueError, match="takes no target"):
        so.check_quality(real, real, metadata, target="amount")


def test_a_multi_table_gate_on_one_table_is_missed_not_skipped() -> None:
    real = churn(300, 1)
    result = so.check_quality(
        real, real, CHURN_META, gates=so.QualityGates(min_overall=None, min_cardinality=0.5, policy="warn")
    )
    (gate,) = result.results
    assert gate.gate == "min_cardinality" and not gate.passed and math.isnan(gate.value or math.nan)


def with_link_table(data: dict[str, pd.DataFrame], metadata: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    """A many-to-many link table (only key columns), as relational schemas have."""
    rng = np.random.default_rng(5)
    n = len(data["customers"])
    links = pd.DataFrame({"customer_id": rng.integers(0, n, 2 * n), "other_id": rng.integers(0, n, 2 * n)})
    meta = {
        "tables": {
            **metadata["tables"],
            "links": {"columns": {"customer_id": {"sdtype": "id"}, "other_id": {"sdtype": "id"}}},
        },
        "relationships": [
            *metadata["relationships"],
            {
                "parent_table_name": "customers",
                "parent_primary_key": "customer_id",
                "child_table_name": "links",
                "child_foreign_key": "customer_id",
            },
        ],
    }
    return {**data, "links": links}, meta


def test_link_tables_empty_tables_and_holdout_names() -> None:
    real, metadata = with_link_table(*relational(120, 1))
    synthetic, _ = with_link_table(*relational(120, 2))
    holdout, _ = with_link_table(*relational(120, 3))
    scored = score_tables(real, synthetic, metadata, holdout=holdout)
    assert set(scored.per_table) == {"customers", "orders"}  # the link table has no scores of its own
    assert any("'links' holds only key columns" in note for note in scored.notes)
    assert math.isfinite(scored.scores["overall"]) and math.isfinite(scored.scores["exact_match_rate"])
    empty = {**synthetic, "orders": synthetic["orders"].iloc[:0]}
    scored = score_tables(real, empty, metadata)
    assert "orders" not in scored.per_table
    assert any("'orders' has no rows in the synthetic data" in note for note in scored.notes)
    with pytest.raises(ValueError, match=r"holdout names table\(s\) \['ordres'\]"):
        score_tables(real, synthetic, metadata, holdout={"ordres": holdout["orders"]})
    partial = score_tables(real, synthetic, metadata, holdout={"orders": holdout["orders"]})
    assert any("no holdout for table(s) ['customers', 'links']" in note for note in partial.notes)
