"""Multi-table Quality and Diagnostic reports against SDMetrics 0.29 and 0.32 (to 1e-9), plus properties.

The reference values are recorded by ``tests/reference/ref_multi_table.py`` (SDMetrics'
``sdmetrics.reports.multi_table`` reports, and from 0.32 the unified ones, which agree).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ref_multi_table import frames, reference

from prefect_synthobs.quality import (
    MultiTableReport,
    cardinality_boundary_adherence,
    cardinality_shape_similarity,
    multi_table_diagnostic_report,
    multi_table_quality_report,
    quality_report,
    referential_integrity,
)
from prefect_synthobs.scores.fidelity import _pearson
from prefect_synthobs.scores.multi_table import _report
from prefect_synthobs.scores.multi_table_pairs import Pearson
from prefect_synthobs.scores.relationships import children_per_parent

VERSIONS = {v: reference(v) for v in ("0_29", "0_32")}
CASES = [
    (version, name, label)
    for version, ref in VERSIONS.items()
    for name in sorted(ref["datasets"])
    for label in ("quality", "diagnostic")
]
REPORTS = {"quality": multi_table_quality_report, "diagnostic": multi_table_diagnostic_report}


def same(ours: Any, theirs: Any) -> bool:
    """Equal as SDMetrics recorded it: numbers to 1e-9, NaN / NA as None."""
    if theirs is None:
        return ours is None or ours is pd.NA or (isinstance(ours, float) and math.isnan(ours))
    if isinstance(theirs, bool) or not isinstance(theirs, (int, float)):
        return bool(ours == theirs)
    return isinstance(ours, (int, float, np.number)) and abs(float(ours) - theirs) <= 1e-9


def as_029(report: MultiTableReport) -> MultiTableReport:
    """The report without the datetime-format check of Data Validity (SDMetrics 0.29 has none)."""
    details = dict(report.details)
    if "Data Validity" in details:
        rows = details["Data Validity"]
        details["Data Validity"] = rows[rows["Metric"] != "DatetimeFormatAdherence"].reset_index(drop=True)
    return _report(details, list(report.tables))


def shop() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict[str, Any]]:
    ref = VERSIONS["0_32"]["datasets"]["shop"]
    real, synthetic = frames("shop", ref["metadata"])
    return real, synthetic, copy.deepcopy(ref["metadata"])


def test_reference_versions_are_there() -> None:
    assert set(VERSIONS) == {"0_29", "0_32"}  # and 0.32's unified reports gave the same numbers as its multi_table ones
    names = {"shop", "shop_text", "shop_constant", "shop_tz", "chain", "composite", "composite_nan"}
    assert all(names <= set(ref["datasets"]) for ref in VERSIONS.values())
    assert all(d["unified_reports_equal"] for d in VERSIONS["0_32"]["datasets"].values())


@pytest.mark.parametrize(("version", "name", "label"), CASES)
def test_reports_equal_sdmetrics(version: str, name: str, label: str) -> None:
    ref = VERSIONS[version]["datasets"][name]
    real, synthetic = frames(name, ref["metadata"])
    report = REPORTS[label](real, synthetic, ref["metadata"])
    if version == "0_29":
        report = as_029(report)
    expected = ref[label]
    checked = 0
    for prop, rows in expected["details"].items():
        ours = report.details[prop]
        assert len(ours) == len(rows), prop
        if rows:
            assert list(ours.columns) == list(rows[0]), prop  # the same columns, in SDMetrics' order
        for mine, theirs in zip(ours.to_dict("records"), rows, strict=True):
            for key, value in theirs.items():
                if key == "Error":  # an error where SDMetrics has one (the wording may differ)
                    assert (mine[key] is None) == (value is None), (prop, mine, theirs)
                else:
                    assert same(mine[key], value), (prop, key, mine, theirs)
                checked += 1
    assert checked > 20
    assert set(report.properties) == set(expected["properties"])
    for prop, value in expected["properties"].items():
        assert same(report.properties[prop], value), (prop, report.properties[prop], value)
    assert same(report.overall, expected["overall"])
    assert set(report.tables) == set(expected["tables"])
    for table, props in expected["tables"].items():
        for prop, value in props.items():
            assert same(report.tables[table][prop], value), (table, prop, report.tables[table][prop], value)


def test_the_datetime_format_check_is_0_32s() -> None:
    ref = VERSIONS["0_32"]["datasets"]["shop_text"]
    real, synthetic = frames("shop_text", ref["metadata"])
    report = multi_table_diagnostic_report(real, synthetic, ref["metadata"])
    checks = report.details["Data Validity"]
    text = checks[checks["Metric"] == "DatetimeFormatAdherence"].dropna(subset=["Score"])
    assert sorted(zip(text["Table"], text["Column"], strict=True)) == [
        ("customers", "signup"),
        ("orders", "ordered_at"),
    ]
    assert (text["Score"] == 1.0).all()


def test_a_property_with_nothing_left_is_nan_and_left_out_of_the_overall() -> None:
    ref = VERSIONS["0_32"]["datasets"]["chain"]
    real, synthetic = frames("chain", ref["metadata"])
    report = multi_table_quality_report(real, synthetic, ref["metadata"])
    props = report.properties
    assert math.isnan(props["Column Pair Trends"]) and math.isnan(props["Intertable Trends"])
    assert not report.details["Intertable Trends"]["Meets Threshold?"].any()
    assert report.overall == pytest.approx((props["Column Shapes"] + props["Cardinality"]) / 2, abs=1e-15)
    # thresholds of 0 count every pair (SDMetrics < 0.27)
    every = multi_table_quality_report(
        real, synthetic, ref["metadata"], real_correlation_threshold=0, real_association_threshold=0
    )
    assert every.details["Intertable Trends"]["Meets Threshold?"].all()
    assert not math.isnan(every.properties["Intertable Trends"])
    assert every.properties["Intertable Trends"] == pytest.approx(every.details["Intertable Trends"]["Score"].mean())
    with pytest.raises(ValueError, match="between 0 and 1"):
        multi_table_quality_report(real, synthetic, ref["metadata"], real_correlation_threshold=1.5)


def test_per_table_scores_are_what_a_caller_records() -> None:
    real, synthetic, meta = shop()
    report = multi_table_quality_report(real, synthetic, meta)
    assert set(report.tables) == {"customers", "orders", "tickets", "stores"}
    cardinality = report.details["Cardinality"].set_index("Child Table")["Score"]
    assert report.tables["orders"]["Cardinality"] == cardinality["orders"]
    assert report.tables["customers"]["Cardinality"] == pytest.approx(cardinality.mean())  # parent of both
    assert math.isnan(report.tables["stores"]["Cardinality"])  # in no relationship
    assert math.isnan(report.tables["stores"]["Intertable Trends"])
    shapes = report.details["Column Shapes"]
    assert report.tables["stores"]["Column Shapes"] == pytest.approx(
        shapes[shapes["Table"] == "stores"]["Score"].mean()
    )
    assert list(report.table_details("Cardinality", "tickets")["Child Table"]) == ["tickets"]
    assert len(report.table_details("Cardinality", "customers")) == 2
    with pytest.raises(ValueError, match="unknown table"):
        report.table_details("Cardinality", "nope")
    with pytest.raises(ValueError, match="unknown property"):
        report.table_details("Data Validity", "orders")


class FakeSDVMetadata:
    """What SDV 2.0's ``Metadata`` gives: ``to_dict()`` with a spec version."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def to_dict(self) -> dict[str, Any]:
        return {**copy.deepcopy(self._data), "METADATA_SPEC_VERSION": "V2"}


def test_sdv_metadata_objects_give_the_same_reports() -> None:
    real, synthetic, meta = shop()
    for fn in REPORTS.values():
        plain, sdv = fn(real, synthetic, meta), fn(real, synthetic, FakeSDVMetadata(meta))
        assert plain.overall == sdv.overall and plain.properties == sdv.properties
    assert meta == shop()[2]  # the caller's metadata is not changed


def test_row_order_and_index_do_not_matter() -> None:
    real, synthetic, meta = shop()
    shuffled = {name: df.sample(frac=1.0, random_state=3).set_index(df.index + 1000) for name, df in synthetic.items()}
    for fn in REPORTS.values():
        plain, moved = fn(real, synthetic, meta), fn(real, shuffled, meta)
        assert moved.overall == pytest.approx(plain.overall, abs=1e-12)
        for prop, value in plain.properties.items():
            assert moved.properties[prop] == pytest.approx(value, abs=1e-12, nan_ok=True), prop


def test_orphans_missing_and_empty_tables_never_raise() -> None:
    real, synthetic, meta = shop()
    orphans = dict(synthetic, orders=synthetic["orders"].assign(customer_id=99_999))
    report = multi_table_quality_report(real, orphans, meta)
    trends = report.details["Intertable Trends"]
    mine = trends[trends["Child Table"] == "orders"]
    assert mine["Score"].isna().all() and mine["Error"].str.contains("no synthetic 'orders' row").all()
    diagnostic = multi_table_diagnostic_report(real, orphans, meta)
    integrity = diagnostic.details["Relationship Validity"].set_index(["Child Table", "Metric"])["Score"]
    assert integrity["orders", "ReferentialIntegrity"] == 0.0

    empty = dict(synthetic, orders=synthetic["orders"].iloc[:0])
    report = multi_table_quality_report(real, empty, meta)
    shapes = report.details["Column Shapes"]
    assert shapes[shapes["Table"] == "orders"]["Score"].isna().all()
    assert math.isnan(report.tables["orders"]["Column Shapes"])
    assert 0 <= report.overall <= 1
    cardinality = report.details["Cardinality"].set_index("Child Table")["Score"]
    assert cardinality["orders"] < 0.5  # every synthetic customer has no order

    no_parents = dict(synthetic, customers=synthetic["customers"].iloc[:0])
    for fn in REPORTS.values():
        result = fn(real, no_parents, meta)
        assert 0 <= result.overall <= 1
    relationship = multi_table_diagnostic_report(real, no_parents, meta).details["Relationship Validity"]
    bounds = relationship[relationship["Metric"] == "CardinalityBoundaryAdherence"]
    assert bounds["Score"].isna().all() and bounds["Error"].notna().all()


def test_bad_input_is_refused_clearly() -> None:
    real, synthetic, meta = shop()
    fn = multi_table_quality_report
    with pytest.raises(ValueError, match=r"\['tickets'\] are in the metadata but missing from the synthetic data"):
        fn(real, {k: v for k, v in synthetic.items() if k != "tickets"}, meta)
    with pytest.raises(ValueError, match="not in the metadata"):
        fn({**real, "extra": real["stores"]}, synthetic, meta)
    bad = copy.deepcopy(meta)
    bad["relationships"][0]["child_foreign_key"] = "cust_id"
    with pytest.raises(ValueError, match=r"names column\(s\) \['cust_id'\], unknown in table 'orders'"):
        fn(real, synthetic, bad)
    bad = copy.deepcopy(meta)
    bad["relationships"][0]["parent_table_name"] = "clients"
    with pytest.raises(ValueError, match="parent table 'clients'"):
        fn(real, synthetic, bad)
    with pytest.raises(ValueError, match=r"one DataFrame .* use quality_report"):
        fn(real["orders"], synthetic["orders"], meta)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"one DataFrame .* use diagnostic_report"):
        multi_table_diagnostic_report(real, synthetic["orders"], meta)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'orders' is a ndarray, not a DataFrame"):
        fn(real, {**synthetic, "orders": synthetic["orders"].to_numpy()}, meta)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="metadata is a pandas DataFrame"):
        fn(real, synthetic, real["orders"])
    with pytest.raises(ValueError, match="single-table metadata"):
        fn(real, synthetic, meta["tables"]["orders"])
    with pytest.raises(ValueError, match=r"column\(s\) \['amount'\] of table 'orders', missing from the real data"):
        fn({**real, "orders": real["orders"].drop(columns="amount")}, synthetic, meta)
    text_keys = {**synthetic, "orders": synthetic["orders"].assign(customer_id=lambda d: d["customer_id"].astype(str))}
    with pytest.raises(
        ValueError, match=r"synthetic 'customers'\.customer_id and 'orders'\.customer_id cannot be joined"
    ):
        fn(real, text_keys, meta)
    wrong = {**synthetic, "orders": synthetic["orders"].assign(amount="many")}
    with pytest.raises(ValueError, match="column 'amount' of table 'orders' is declared 'numerical'"):
        fn(real, wrong, meta)


def test_relationship_scores_by_hand() -> None:
    pk = pd.Series([1, 2, 3, 4])
    fk = pd.Series([1, 1, 2, 2, 3, None])
    syn_pk = pd.Series([1, 2, 3])
    syn_fk = pd.Series([1, 1, 1, 2, 9, None])
    # the real foreign key has a missing value: missing synthetic ones are left out; 9 is an orphan
    assert referential_integrity((pk, fk), (syn_pk, syn_fk)) == pytest.approx(4 / 5)
    assert referential_integrity((pk, fk.dropna()), (syn_pk, syn_fk)) == pytest.approx(4 / 6)
    # real children per parent: 2, 2, 1, 0 (range 0..2); synthetic: 3, 1, 0
    assert cardinality_boundary_adherence((pk, fk), (syn_pk, syn_fk)) == pytest.approx(2 / 3)
    # KS between {0, 1, 2, 2} and {0, 1, 3}: the largest CDF gap is at 2, |1 - 2/3| = 1/3
    assert cardinality_shape_similarity((pk, fk), (syn_pk, syn_fk)) == pytest.approx(2 / 3)
    composite = pd.DataFrame({"a": [1, 1, 2], "b": ["x", "y", "x"]})
    children = pd.DataFrame({"a": [1, 1, 2, 5], "b": ["x", "x", "x", "x"]})
    assert referential_integrity((composite, children), (composite, children)) == pytest.approx(3 / 4)
    assert cardinality_boundary_adherence((composite, children), (composite, children)) == 1.0
    with pytest.raises(ValueError, match="parent table has no rows"):
        cardinality_shape_similarity((pk, fk), (syn_pk.iloc[:0], syn_fk))
    for fn in (referential_integrity, cardinality_boundary_adherence, cardinality_shape_similarity):
        with pytest.raises(ValueError, match="tuple"):
            fn(pk, (syn_pk, syn_fk))  # type: ignore[arg-type]


def _brute_children(parents: list[tuple[Any, ...]], children: list[tuple[Any, ...]]) -> list[int]:
    def equal(a: Any, b: Any) -> bool:
        return bool(pd.isna(a) and pd.isna(b)) or (not pd.isna(a) and not pd.isna(b) and a == b)

    return [sum(all(map(equal, p, c)) for c in children) for p in parents]


_KEY_VALUE = st.one_of(st.none(), st.integers(0, 3))
_KEY_DTYPES = ("float", "object int", "text")


@settings(max_examples=60, deadline=None)
@given(
    parents=st.lists(st.tuples(_KEY_VALUE, _KEY_VALUE), max_size=12),
    children=st.lists(st.tuples(_KEY_VALUE, _KEY_VALUE), max_size=40),
    dtype=st.sampled_from(_KEY_DTYPES),
)
def test_composite_keys_with_missing_values_count_every_child(
    parents: list[tuple[Any, Any]], children: list[tuple[Any, Any]], dtype: str
) -> None:
    """pandas 3's MultiIndex join (SDMetrics' steps) lost children once a key column had a
    missing value (Cardinality off by up to 0.55); the merge counts each one, missing = missing."""

    def cast(v: Any) -> Any:
        if dtype == "float":
            return np.nan if v is None else float(v)
        return f"k{v}" if dtype == "text" and v is not None else v

    def frame(rows: list[tuple[Any, Any]]) -> pd.DataFrame:
        kind = np.float64 if dtype == "float" else object
        columns = {name: pd.Series([cast(row[i]) for row in rows], dtype=kind) for i, name in enumerate("ab")}
        df: pd.DataFrame = pd.DataFrame(columns)
        return df

    p, c = frame(parents), frame(children)
    counts = children_per_parent(p.set_axis(p.index + 5), c)
    assert counts.tolist() == _brute_children(list(p.itertuples(index=False)), list(c.itertuples(index=False)))
    assert list(counts.index) == list(p.index + 5)


def test_composite_key_artefacts_of_sdmetrics_score_the_truth() -> None:
    # object integers with None: SDMetrics' join (pandas 2) miscounts such keys on larger tables (a
    # Cardinality of 0.30 where the truth is 0.90 in a 40-parent case); here every child counts
    parents = pd.DataFrame({"a": [1, 1, 2, 2], "b": [0, 1, 0, 1]}, dtype=object)
    children = pd.DataFrame({"a": [1, 1, 2, 2, 2, None, 1], "b": [0, 0, 0, 1, None, 1, 1]}, dtype=object)
    assert children_per_parent(parents, children).tolist() == [2, 1, 1, 1]
    assert cardinality_shape_similarity((parents, children), (parents, children)) == 1.0
    # numeric composite keys: SDMetrics' CardinalityBoundaryAdherence raises "Index data must be 1-dimensional"
    floats = (parents.astype(float), children.astype(float))
    # real counts 2, 1, 1, 1 (bounds 1..2); synthetic children (1, 0) twice: counts 2, 0, 0, 0
    assert cardinality_boundary_adherence(floats, (floats[0], floats[1].iloc[:2])) == pytest.approx(1 / 4)


def test_key_columns_of_mixed_types_are_refused() -> None:
    real, synthetic, meta = shop()
    mixed = synthetic["orders"]["customer_id"].copy()
    mixed.iloc[::3] = mixed.iloc[::3].astype(str)  # 3 and "3" in one object column (SDMetrics refuses it too)
    for fn in REPORTS.values():
        with pytest.raises(ValueError, match=r"synthetic key column 'orders'\.customer_id mixes types"):
            fn(real, {**synthetic, "orders": synthetic["orders"].assign(customer_id=mixed)}, meta)


# -- generated data -----------------------------------------------------------------------


def _generated(seed: int, sizes: tuple[int, int, int, int], rates: tuple[float, float, float]) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(seed)
    orphan_rate, nan_rate, grandchild_orphans = rates

    def tables(n_parent: int, n_child: int, synthetic: bool) -> dict[str, pd.DataFrame]:
        keys = np.arange(n_parent)
        x = rng.normal(size=n_parent) if rng.random() < 0.8 else np.full(n_parent, 1.0)  # sometimes constant
        parent = pd.DataFrame(
            {
                "pid": keys,
                "x": x,
                "kind": rng.choice(["a", "b", "c"], n_parent).astype(object),
                "flag": (rng.random(n_parent) < 0.5).astype(object),
                "when": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n_parent), unit="s"),
            }
        )
        picks = rng.integers(0, max(n_parent, 1), n_child)
        fk = np.where(rng.random(n_child) < (orphan_rate if synthetic else 0.0), n_parent + 7, picks).astype(float)
        if n_parent == 0:
            fk[:] = 7.0
        fk[rng.random(n_child) < nan_rate] = np.nan
        y = x[picks] * 2 + rng.normal(size=n_child) if n_parent else rng.normal(size=n_child)
        child = pd.DataFrame(
            {
                "cid": np.arange(n_child),
                "pid": fk,
                "y": y,
                "label": rng.choice(["u", "v"], n_child).astype(object),
            }
        )
        n_grand = int(rng.integers(0, 3 * n_child + 1))
        gfk = rng.integers(0, max(n_child, 1), n_grand).astype(float)
        gfk[rng.random(n_grand) < (grandchild_orphans if synthetic else 0.0)] = -1
        grandchild = pd.DataFrame({"gid": np.arange(n_grand), "cid": gfk, "z": rng.exponential(size=n_grand)})
        for df in (parent, child, grandchild):
            for column in df.columns[1:]:
                if column not in ("pid", "cid"):
                    df.loc[rng.random(len(df)) < nan_rate, column] = None
        return {"parent": parent, "child": child, "grandchild": grandchild}

    metadata = {
        "tables": {
            "parent": {
                "primary_key": "pid",
                "columns": {
                    "pid": {"sdtype": "id"},
                    "x": {"sdtype": "numerical"},
                    "kind": {"sdtype": "categorical"},
                    "flag": {"sdtype": "boolean"},
                    "when": {"sdtype": "datetime"},
                },
            },
            "child": {
                "primary_key": "cid",
                "columns": {
                    "cid": {"sdtype": "id"},
                    "pid": {"sdtype": "id"},
                    "y": {"sdtype": "numerical"},
                    "label": {"sdtype": "categorical"},
                },
            },
            "grandchild": {
                "primary_key": "gid",
                "columns": {"gid": {"sdtype": "id"}, "cid": {"sdtype": "id"}, "z": {"sdtype": "numerical"}},
            },
        },
        "relationships": [
            {
                "parent_table_name": "parent",
                "parent_primary_key": "pid",
                "child_table_name": "child",
                "child_foreign_key": "pid",
            },
            {
                "parent_table_name": "child",
                "parent_primary_key": "cid",
                "child_table_name": "grandchild",
                "child_foreign_key": "cid",
            },
        ],
    }
    return tables(sizes[0], sizes[1], False), tables(sizes[2], sizes[3], True), metadata


def _in_unit_interval(values: pd.Series) -> bool:
    present = values.dropna().to_numpy(dtype=np.float64)
    return bool(((present >= -1e-12) & (present <= 1 + 1e-12)).all())


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.tuples(st.integers(0, 30), st.integers(0, 60), st.integers(0, 30), st.integers(0, 60)),
    rates=st.tuples(st.sampled_from([0.0, 0.05, 0.5, 1.0]), st.sampled_from([0.0, 0.1, 0.9, 1.0]), st.floats(0, 1)),
)
def test_generated_tables_give_scores_in_range_or_nan(
    seed: int, sizes: tuple[int, int, int, int], rates: tuple[float, float, float]
) -> None:
    real, synthetic, metadata = _generated(seed, sizes, rates)
    for fn in REPORTS.values():
        report = fn(real, synthetic, metadata)
        for prop, rows in report.details.items():
            if "Score" in rows.columns:
                assert _in_unit_interval(rows["Score"]), (prop, rows)
            if "Error" in rows.columns:  # a row with an error has no score
                assert rows.loc[rows["Error"].notna(), "Score"].isna().all(), prop
            # SDMetrics' rule: the mean of the scores that count (the pairs that meet the threshold), NaN if none
            counted = rows
            if "Meets Threshold?" in rows.columns:
                counted = rows[rows["Meets Threshold?"].fillna(False).to_numpy(dtype=bool)]
            scores = counted["Score"].dropna() if "Score" in counted.columns else pd.Series(dtype=float)
            if scores.empty:
                assert math.isnan(report.properties[prop]), prop
            else:
                assert report.properties[prop] == pytest.approx(scores.mean(), abs=1e-12), prop
        finite = [v for v in report.properties.values() if not math.isnan(v)]
        if finite:
            assert report.overall == pytest.approx(np.mean(finite), abs=1e-12)
        else:
            assert math.isnan(report.overall)
        for table, props in report.tables.items():
            assert set(props) == set(report.properties), table
            assert _in_unit_interval(pd.Series(list(props.values()), dtype=float)), (table, props)
    _same_as_single_table_reports(multi_table_quality_report(real, synthetic, metadata), real, synthetic, metadata)


def _same_as_single_table_reports(report: MultiTableReport, real: Any, synthetic: Any, metadata: Any) -> None:
    """Each table's Column Shapes / Column Pair Trends rows are its single-table ``quality_report``'s."""
    for table, meta in metadata["tables"].items():
        columns = {n: m for n, m in meta["columns"].items() if m["sdtype"] != "id"}
        try:
            single = quality_report(real[table], synthetic[table], {"columns": columns})
        except ValueError:  # no rows; or a constant datetime, which quality_report cannot bin (ours reports per pair)
            continue
        for prop, theirs in (
            ("Column Shapes", single.column_shapes),
            ("Column Pair Trends", single.column_pair_trends),
        ):
            rows = report.details[prop]
            ours = rows[rows["Table"] == table].reset_index(drop=True)
            assert len(ours) == len(theirs), (table, prop)
            for column in ("Score", "Real Correlation", "Real Association"):
                if column in theirs.columns:
                    a, b = ours[column].to_numpy(dtype=float), theirs[column].to_numpy(dtype=float)
                    assert np.allclose(a, b, rtol=0, atol=1e-12, equal_nan=True), (table, prop, column)
            if "Meets Threshold?" in theirs.columns:
                assert (
                    ours["Meets Threshold?"].fillna(False).tolist() == theirs["Meets Threshold?"].fillna(False).tolist()
                )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    scale=st.sampled_from([1e-6, 1.0, 1e9, 1.7e18]),
    missing=st.sampled_from([0.0, 0.05, 0.5]),
)
def test_the_pearson_cache_gives_fidelitys_numbers_bit_for_bit(seed: int, n: int, scale: float, missing: float) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) * scale + scale
    y = rng.normal() * x + rng.normal(size=n) * scale
    x[rng.random(n) < missing] = np.nan
    if rng.random() < 0.2:
        y[:] = 3.0  # constant
    before = (x.copy(), y.copy())
    pearson = Pearson()
    for a, b in ((x, y), (y, x), (x, y)):  # the second time from the cache
        keep = ~(np.isnan(a) | np.isnan(b))
        expected, ours = _pearson(a[keep], b[keep]), pearson(a, b)
        assert ours == expected or (math.isnan(ours) and math.isnan(expected))
    np.testing.assert_array_equal(x, before[0])  # the inputs are not changed
    np.testing.assert_array_equal(y, before[1])
