"""Reference values from SDMetrics 0.29, for prefect_synthobs.quality's tests.

SDMetrics pins pandas<3, so it cannot share this project's environment. This
script runs in a separate one and writes what the tests compare against:

    python -m venv /tmp/sdm && /tmp/sdm/bin/pip install "sdmetrics==0.29.*"
    /tmp/sdm/bin/python tests/reference/sdmetrics_reference.py

It makes the datasets (seeded), writes them as CSV (floats with 17 significant
digits, so they read back bit for bit), reads them back with ``load`` (the
same function the tests use) and records SDMetrics' scores on what it read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / "datasets"


def load(name: str, metadata: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (real, synthetic) frames of dataset ``name``, typed from ``metadata``."""
    out = []
    for part in ("real", "synthetic"):
        df = pd.read_csv(DATA / f"{name}_{part}.csv", keep_default_na=False, na_values=[""], dtype=str)
        for column, meta in metadata["columns"].items():
            values = df[column]
            sdtype = meta["sdtype"]
            if sdtype == "numerical":
                df[column] = pd.to_numeric(values).astype("float64")
            elif sdtype == "id":
                df[column] = pd.to_numeric(values).astype("Int64").astype(object)
            elif sdtype == "datetime":
                df[column] = pd.to_datetime(values, format="%Y-%m-%d %H:%M:%S")
            elif sdtype == "boolean":
                df[column] = values.map({"True": True, "False": False}).astype(object)
            else:
                df[column] = values.astype(object)
        out.append(df)
    return out[0], out[1]


def reference() -> dict:
    """The recorded SDMetrics values (``sdmetrics_0_29.json``)."""
    return json.loads((HERE / "sdmetrics_0_29.json").read_text())


def reference_data(name: str, recorded: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``(real, synthetic, recorded values)`` of dataset ``name``, as the tests use them."""
    ref = (recorded or reference())["datasets"][name]
    real, synthetic = load(name, ref["metadata"])
    return real, synthetic, ref


def _datasets() -> dict[str, tuple[pd.DataFrame, pd.DataFrame, dict]]:
    rng = np.random.default_rng(20261122)

    def mixed(n: int, shift: float, new_category: bool) -> pd.DataFrame:
        age = rng.normal(40 + shift, 12, n).round(1)
        income = np.exp(9 + 0.02 * age + rng.normal(0, 0.4 + shift / 20, n)).round(2)
        plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2]).astype(object)
        if new_category:
            plan[rng.random(n) < 0.05] = "enterprise"  # seen only in the synthetic table
        region = np.where(
            rng.random(n) < 0.7, np.where(plan == "basic", "north", "south"), rng.choice(["north", "south", "east"], n)
        ).astype(object)
        active = (rng.random(n) < 0.6 + 0.1 * (plan != "basic")).astype(object)
        signup = (
            pd.Timestamp("2024-01-01")
            + pd.to_timedelta((rng.exponential(200 + shift * 5, n) + age * 3).round(), unit="D")
            + pd.to_timedelta(rng.integers(0, 86400, n), unit="s")
        )
        df = pd.DataFrame(
            {"age": age, "income": income, "plan": plan, "region": region, "active": active, "signup": signup}
        )
        for column, rate in (("age", 0.03), ("income", 0.02), ("active", 0.04), ("signup", 0.03), ("plan", 0.02)):
            df.loc[rng.random(n) < rate, column] = None
        return df

    mixed_meta = {
        "columns": {
            "age": {"sdtype": "numerical"},
            "income": {"sdtype": "numerical"},
            "plan": {"sdtype": "categorical"},
            "region": {"sdtype": "categorical"},
            "active": {"sdtype": "boolean"},
            "signup": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d %H:%M:%S"},
        }
    }

    n = 600
    x = rng.normal(0, 1, n)
    strong = pd.DataFrame(
        {
            "x": x.round(6),
            "y": (2 * x + rng.normal(0, 0.3, n)).round(6),
            "z": (-x + rng.normal(0, 2, n)).round(6),
            "k": np.where(x > 0, "high", "low").astype(object),
            "w": rng.choice(["a", "b", "c", "d"], n).astype(object),
        }
    )
    xs = rng.normal(0.2, 1.1, 450)
    strong_syn = pd.DataFrame(
        {
            "x": xs.round(6),
            "y": (1.5 * xs + rng.normal(0, 0.8, 450)).round(6),
            "z": rng.normal(0, 2, 450).round(6),
            "k": np.where(rng.random(450) < 0.8, np.where(xs > 0, "high", "low"), "low").astype(object),
            "w": rng.choice(["a", "b", "c", "d"], 450, p=[0.4, 0.3, 0.2, 0.1]).astype(object),
        }
    )
    strong_meta = {
        "columns": {
            "x": {"sdtype": "numerical"},
            "y": {"sdtype": "numerical"},
            "z": {"sdtype": "numerical"},
            "k": {"sdtype": "categorical"},
            "w": {"sdtype": "categorical"},
        }
    }

    ties = pd.DataFrame(
        {
            "n": rng.integers(0, 5, 80).astype(float),
            "m": rng.integers(0, 3, 80).astype(float),
            "c": rng.choice(["u", "v"], 80).astype(object),
        }
    )
    ties_syn = pd.DataFrame(
        {
            "n": rng.integers(0, 6, 50).astype(float),
            "m": rng.integers(0, 3, 50).astype(float),
            "c": rng.choice(["u", "v", "w"], 50).astype(object),
        }
    )
    ties_meta = {
        "columns": {"n": {"sdtype": "numerical"}, "m": {"sdtype": "numerical"}, "c": {"sdtype": "categorical"}}
    }
    return {
        "mixed": (mixed(500, 0.0, False), mixed(350, 3.0, True), mixed_meta),
        "strong": (strong, strong_syn, strong_meta),
        "ties": (ties, ties_syn, ties_meta),
    }


def keyed_dataset() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """A table with a primary key (duplicated in the synthetic one), values out of the real range,
    an unseen category, NaNs, a boolean and a datetime: for the diagnostic and validity scores."""
    rng = np.random.default_rng(20261124)

    def keyed(n: int, start: int, shift: float, drift: bool) -> pd.DataFrame:
        ids = np.arange(start, start + n).astype(object)
        if drift:
            ids[rng.random(n) < 0.1] = start  # duplicated keys
        amount = rng.gamma(2.0, 50 + shift, n).round(2)
        kind = rng.choice(["card", "cash", "wire"], n, p=[0.6, 0.3, 0.1]).astype(object)
        flag = (rng.random(n) < 0.3).astype(object)
        when = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86400, n), unit="s")
        if drift:  # values out of the real range, an unseen category, later dates
            amount[rng.random(n) < 0.05] = -10.0
            kind[rng.random(n) < 0.05] = "crypto"
            when = when + pd.to_timedelta(30, unit="D")
        df = pd.DataFrame({"id": ids, "amount": amount, "kind": kind, "flag": flag, "when": when})
        for column, rate in (("amount", 0.05), ("kind", 0.03 if drift else 0.0), ("when", 0.02)):
            df.loc[rng.random(n) < rate, column] = None
        return df

    keyed_meta = {
        "primary_key": "id",
        "columns": {
            "id": {"sdtype": "id"},
            "amount": {"sdtype": "numerical"},
            "kind": {"sdtype": "categorical"},
            "flag": {"sdtype": "boolean"},
            "when": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d %H:%M:%S"},
        },
    }
    return keyed(400, 1000, 0.0, False), keyed(300, 1000, 15.0, True), keyed_meta


def all_datasets() -> dict[str, tuple[pd.DataFrame, pd.DataFrame, dict]]:
    """Every reference dataset: the fidelity ones and the keyed one."""
    return {**_datasets(), "keyed": keyed_dataset()}


def write_dataset(name: str, real: pd.DataFrame, synthetic: pd.DataFrame) -> None:
    """Write a dataset's CSVs (what ``load`` reads back)."""
    _write(name, real, synthetic)


def _write(name: str, real: pd.DataFrame, synthetic: pd.DataFrame) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for part, df in (("real", real), ("synthetic", synthetic)):
        out = df.copy()
        for column in out.columns:
            if pd.api.types.is_datetime64_any_dtype(out[column]):
                out[column] = out[column].dt.strftime("%Y-%m-%d %H:%M:%S")
        out.to_csv(DATA / f"{name}_{part}.csv", index=False, float_format="%.17g")


def _scores(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict) -> dict:
    from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
    from sdmetrics.reports.single_table import QualityReport
    from sdmetrics.single_column import KSComplement, TVComplement

    cols = metadata["columns"]
    out: dict = {"ks": {}, "tv": {}, "pearson": {}, "spearman": {}, "contingency": {}}
    for column, meta in cols.items():
        if meta["sdtype"] in ("numerical", "datetime"):
            out["ks"][column] = KSComplement.compute(real[column], synthetic[column])
        else:
            out["tv"][column] = TVComplement.compute(real[column], synthetic[column])
    names = list(cols)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            key = f"{a}|{b}"
            shapes = {cols[a]["sdtype"] in ("numerical", "datetime"), cols[b]["sdtype"] in ("numerical", "datetime")}
            if shapes == {True}:
                for coef in ("Pearson", "Spearman"):
                    try:
                        out[coef.lower()][key] = CorrelationSimilarity.compute(
                            real[[a, b]], synthetic[[a, b]], coefficient=coef
                        )
                    except Exception as exc:
                        out[coef.lower()][key] = f"error: {type(exc).__name__}"
            elif shapes == {False}:
                out["contingency"][key] = ContingencySimilarity.compute(real[[a, b]], synthetic[[a, b]])
    reports = {}
    for label, thresholds in (("default", None), ("zero", (0.0, 0.0)), ("custom", (0.2, 0.1))):
        report = QualityReport()
        if thresholds is not None:
            report.real_correlation_threshold, report.real_association_threshold = thresholds
        report.generate(real, synthetic, metadata, verbose=False)
        props = report.get_properties()
        shapes = report.get_details("Column Shapes")
        trends = report.get_details("Column Pair Trends")
        reports[label] = {
            "thresholds": [report.real_correlation_threshold, report.real_association_threshold],
            "overall": report.get_score(),
            "properties": dict(zip(props["Property"], props["Score"], strict=True)),
            "column_shapes": shapes[["Column", "Metric", "Score"]].to_dict("records"),
            "column_pair_trends": trends.drop(columns=[c for c in trends.columns if c == "Error"]).to_dict("records"),
        }
    out["reports"] = reports

    from sdmetrics.single_table import DCROverfittingProtection, NewRowSynthesis
    from sdmetrics.single_table.privacy.dcr_utils import calculate_dcr

    out["dcr_synthetic_to_real"] = calculate_dcr(synthetic, real, metadata).tolist()
    half = len(real) // 2
    train, holdout = real.iloc[:half], real.iloc[half : 2 * half]
    breakdown = DCROverfittingProtection.compute_breakdown(train, synthetic, holdout, metadata, None)
    out["dcr_overfitting_protection"] = {"score": breakdown["score"], "breakdown": breakdown}
    out["new_row_synthesis"] = NewRowSynthesis.compute(real, synthetic, metadata)
    out["new_row_synthesis_005"] = NewRowSynthesis.compute(real, synthetic, metadata, numerical_match_tolerance=0.05)
    return out


def main() -> None:
    import sdmetrics

    result: dict = {"sdmetrics": sdmetrics.__version__, "pandas": pd.__version__, "datasets": {}}
    for name, (real, synthetic, metadata) in _datasets().items():
        _write(name, real, synthetic)
        real, synthetic = load(name, metadata)
        result["datasets"][name] = {"metadata": metadata, **_scores(real, synthetic, metadata)}
    (HERE / "sdmetrics_0_29.json").write_text(json.dumps(result, indent=1, default=float, allow_nan=True))
    print(f"wrote {HERE / 'sdmetrics_0_29.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
