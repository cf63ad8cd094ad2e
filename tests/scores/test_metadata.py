"""SDV metadata in any of its shapes -> the dicts the scores read, or a clear error."""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import pytest

from prefect_synthobs.quality import multi_table_metadata, single_table_metadata
from prefect_synthobs.scores.metadata import key_columns

TABLE: dict[str, Any] = {"columns": {"id": {"sdtype": "id"}, "age": {"sdtype": "numerical"}}, "primary_key": "id"}
MULTI: dict[str, Any] = {
    "tables": {
        "users": TABLE,
        "orders": {"columns": {"oid": {"sdtype": "id"}, "uid": {"sdtype": "id"}, "n": {"sdtype": "numerical"}}},
    },
    "relationships": [
        {
            "parent_table_name": "users",
            "parent_primary_key": "id",
            "child_table_name": "orders",
            "child_foreign_key": "uid",
        }
    ],
}


class Obj:
    """An SDV metadata object: all the normalisers use is ``to_dict()``."""

    def __init__(self, data: dict[str, Any], version: str) -> None:
        self.data, self.version = data, version

    def to_dict(self) -> dict[str, Any]:
        return {**copy.deepcopy(self.data), "METADATA_SPEC_VERSION": self.version}


def test_single_table_metadata_from_every_shape() -> None:
    assert single_table_metadata(TABLE) == TABLE
    assert single_table_metadata(Obj(TABLE, "SINGLE_TABLE_V1")) == TABLE  # SDV 1.x SingleTableMetadata
    one = {"tables": {"users": TABLE}, "relationships": []}
    assert single_table_metadata(Obj(one, "V2")) == TABLE  # SDV 2.0 Metadata with one table
    assert single_table_metadata(one) == TABLE
    out = single_table_metadata(TABLE)
    out["columns"]["age"] = {"sdtype": "categorical"}
    assert TABLE["columns"]["age"] == {"sdtype": "numerical"}  # the caller's dict is not changed


def test_one_table_of_multi_table_metadata_by_name_preference_or_columns() -> None:
    orders = MULTI["tables"]["orders"]
    assert single_table_metadata(Obj(MULTI, "V1"), table="orders") == orders
    assert single_table_metadata(MULTI, prefer="orders") == orders
    assert single_table_metadata(MULTI, prefer="not-a-table", columns=["oid", "uid", "n"]) == orders
    assert single_table_metadata(MULTI, columns=pd.Index(["id", "age"])) == TABLE
    assert single_table_metadata(MULTI, table="users", columns=["oid", "uid", "n"]) == TABLE  # the name wins


def test_a_score_handed_whole_multi_table_metadata_scores_the_table_that_matches() -> None:
    from prefect_synthobs.quality import quality_report

    orders = pd.DataFrame({"oid": range(20), "uid": [i % 5 for i in range(20)], "n": [float(i) for i in range(20)]})
    assert quality_report(orders, orders, Obj(MULTI, "V1")).overall == 1.0
    assert quality_report(orders, orders, MULTI).overall == 1.0


def test_single_table_metadata_refuses_clearly() -> None:
    with pytest.raises(ValueError, match=r"describes 2 tables \('users', 'orders'\) and none is named"):
        single_table_metadata(MULTI)
    with pytest.raises(ValueError, match="describes no table"):
        single_table_metadata({"tables": {}})
    with pytest.raises(ValueError, match="has no table 'items'; it has 'users', 'orders'"):
        single_table_metadata(MULTI, table="items")
    with pytest.raises(ValueError, match="none is named or has exactly the real table's columns"):
        single_table_metadata(MULTI, columns=["id"])
    with pytest.raises(ValueError, match="metadata is a pandas DataFrame"):
        single_table_metadata(pd.DataFrame({"a": [1]}))
    with pytest.raises(ValueError, match="must be a dict like"):
        single_table_metadata(["columns"])
    with pytest.raises(ValueError, match="no 'columns' mapping"):
        single_table_metadata({"primary_key": "id"})
    with pytest.raises(ValueError, match="column 'age' has no sdtype"):
        single_table_metadata({"columns": {"age": {"type": "numerical"}}})
    with pytest.raises(ValueError, match=r"SDV 0\.x metadata"):
        single_table_metadata({"fields": {"age": {"type": "numerical"}}})

    class Broken:
        def to_dict(self) -> str:
            return "nope"

    with pytest.raises(ValueError, match="got Broken"):
        single_table_metadata(Broken())


def test_multi_table_metadata_from_every_shape() -> None:
    expected = {"tables": MULTI["tables"], "relationships": MULTI["relationships"]}
    assert multi_table_metadata(MULTI) == expected
    assert multi_table_metadata(Obj(MULTI, "MULTI_TABLE_V1")) == expected  # SDV 1.x MultiTableMetadata
    assert multi_table_metadata(Obj(MULTI, "V2")) == expected  # SDV 2.0 Metadata: spec version dropped
    no_relationships = multi_table_metadata({"tables": {"users": TABLE}})
    assert no_relationships["relationships"] == []
    composite = copy.deepcopy(MULTI)
    composite["tables"]["users"]["columns"]["region"] = {"sdtype": "id"}
    composite["tables"]["orders"]["columns"]["r"] = {"sdtype": "id"}
    composite["relationships"][0] |= {"parent_primary_key": ("id", "region"), "child_foreign_key": ("uid", "r")}
    rel = multi_table_metadata(composite)["relationships"][0]
    assert rel["parent_primary_key"] == ["id", "region"] and rel["child_foreign_key"] == ["uid", "r"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["relationships"][0].update(child_foreign_key="user"), r"\['user'\], unknown in table 'orders'"),
        (lambda m: m["relationships"][0].update(child_table_name="items"), "child table 'items'"),
        (lambda m: m["relationships"][0].pop("parent_primary_key"), "lacks parent_primary_key"),
        (lambda m: m["relationships"][0].update(child_foreign_key=["uid", "n"]), "differ in length"),
        (lambda m: m["relationships"][0].update(child_table_name="users"), "cannot be its own parent"),
        (lambda m: m["relationships"][0].update(parent_primary_key=3), "a key must be a column name"),
        (lambda m: m.update(relationships="users->orders"), "'relationships' must be a list"),
        (lambda m: m["relationships"].append("users->orders"), "relationship 1 must be a dict"),
        (lambda m: m.update(tables={}), "name at least one"),
        (lambda m: m["tables"]["orders"].pop("columns"), "table 'orders' has no 'columns'"),
    ],
)
def test_multi_table_metadata_refuses_clearly(change: Any, message: str) -> None:
    bad = copy.deepcopy(MULTI)
    change(bad)
    with pytest.raises(ValueError, match=message):
        multi_table_metadata(bad)


def test_multi_table_metadata_refuses_other_things() -> None:
    with pytest.raises(ValueError, match="single-table metadata"):
        multi_table_metadata(TABLE)
    with pytest.raises(ValueError, match="must look like"):
        multi_table_metadata({"relationships": []})
    with pytest.raises(ValueError, match="pandas DataFrame"):
        multi_table_metadata(pd.DataFrame())
    with pytest.raises(ValueError, match="got int"):
        multi_table_metadata(3)


def test_key_columns() -> None:
    assert key_columns("id") == ["id"]
    assert key_columns(("a", "b")) == ["a", "b"]
    for bad in ([], [1], None):
        with pytest.raises(ValueError, match="a key must be"):
            key_columns(bad)


class _SdvLikeMetadata:
    """What SDV 2.0's ``Metadata`` gives the scores: only ``to_dict()`` is read (its shape:
    ``{"tables": {name: {...}}, "relationships": [], "METADATA_SPEC_VERSION": "V1"}``)."""

    def __init__(self, table: dict[str, Any]) -> None:
        self._table = table

    def to_dict(self) -> dict[str, Any]:
        return {"tables": {"customers": self._table}, "relationships": [], "METADATA_SPEC_VERSION": "V1"}


def test_every_single_table_score_takes_sdv_metadata_objects() -> None:
    import numpy as np

    from prefect_synthobs import quality

    rng = np.random.default_rng(0)
    n = 200
    real = pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(["a", "b"], n).astype(object)})
    real["y"] = real.x * 2 + rng.normal(size=n)
    synthetic = real.sample(frac=1.0, random_state=1).reset_index(drop=True)
    holdout = real.iloc[:50].copy()
    table = {"columns": {"x": {"sdtype": "numerical"}, "y": {"sdtype": "numerical"}, "c": {"sdtype": "categorical"}}}
    calls = {
        "quality_report": lambda m: quality.quality_report(real, synthetic, m).overall,
        "diagnostic_report": lambda m: quality.diagnostic_report(real, synthetic, metadata=m).overall,
        "logistic_detection": lambda m: quality.logistic_detection(real, synthetic, m, seed=0),
        "exact_match_rate": lambda m: quality.exact_match_rate(real, synthetic, m),
        "dcr": lambda m: float(quality.dcr(synthetic, real, m).median()),
        "dcr_overfitting_protection": lambda m: quality.dcr_overfitting_protection(real, synthetic, holdout, m)[
            "score"
        ],
        "membership_inference_auc": lambda m: quality.membership_inference_auc(real, holdout, synthetic, m),
        "tstr": lambda m: quality.tstr(real, synthetic, holdout, "y", m)["synthetic_score"],
    }
    for name, call in calls.items():
        assert call(_SdvLikeMetadata(table)) == call(table), name
    with pytest.raises(ValueError, match="2 tables"):
        two = _SdvLikeMetadata(table)
        two.to_dict = lambda: {"tables": {"a": table, "b": table}, "relationships": []}  # type: ignore[method-assign]
        quality.quality_report(real, synthetic, two)
