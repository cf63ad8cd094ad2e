"""Reference values for the single-column scores and the Diagnostic report, from SDMetrics.

Runs in a venv with SDMetrics (it pins pandas<3):

    /tmp/sdm032/bin/python tests/reference/ref_columns.py   # sdmetrics 0.32
    /tmp/sdm029/bin/python tests/reference/ref_columns.py   # sdmetrics 0.29

and writes ``columns_sdmetrics_<major>_<minor>.json`` next to this file, computed on
the reference datasets as ``sdmetrics_reference.load`` reads them (what the tests
use), plus ``keyed_text``: the keyed dataset with its datetimes as text and some
synthetic dates in another format (the Diagnostic report's format check).
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sdmetrics_reference import all_datasets, load  # noqa: E402


def text_dates(real: pd.DataFrame, synthetic: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``keyed_text``: the datetimes as text, every 7th synthetic one written day-first."""
    real, synthetic = real.copy(), synthetic.copy()
    real["when"] = real["when"].dt.strftime("%Y-%m-%d %H:%M:%S").astype(object).where(real["when"].notna(), None)
    other = synthetic["when"].dt.strftime("%d/%m/%Y")
    text = synthetic["when"].dt.strftime("%Y-%m-%d %H:%M:%S")
    every_7th = np.arange(len(synthetic)) % 7 == 0
    synthetic["when"] = text.where(~every_7th, other).astype(object).where(synthetic["when"].notna(), None)
    return real, synthetic


def _number(value: object) -> float | None:
    value = float(value)  # type: ignore[arg-type]
    return None if math.isnan(value) else value


def scores(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict) -> dict:
    from sdmetrics.reports.single_table import DiagnosticReport
    from sdmetrics.single_column import (
        BoundaryAdherence,
        CategoryAdherence,
        CategoryCoverage,
        KeyUniqueness,
        MissingValueSimilarity,
        RangeCoverage,
        StatisticSimilarity,
    )

    out: dict = {"columns": {}}
    for column, meta in metadata["columns"].items():
        r, s = real[column], synthetic[column]
        entry: dict = {"missing_value_similarity": MissingValueSimilarity.compute(r, s)}
        if meta["sdtype"] in ("numerical", "datetime") and pd.api.types.is_datetime64_any_dtype(r) == (
            meta["sdtype"] == "datetime"
        ):
            entry["range_coverage"] = _number(RangeCoverage.compute(r, s))
            entry["boundary_adherence"] = _number(BoundaryAdherence.compute(r, s))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for statistic in ("mean", "median", "std"):
                    entry[f"statistic_similarity_{statistic}"] = _number(
                        StatisticSimilarity.compute(r, s, statistic=statistic)
                    )
        elif meta["sdtype"] in ("categorical", "boolean"):
            entry["category_coverage"] = CategoryCoverage.compute(r, s)
            entry["category_adherence"] = CategoryAdherence.compute(r, s)
        elif meta["sdtype"] == "id":
            entry["key_uniqueness"] = KeyUniqueness.compute(r, s)
        out["columns"][column] = entry
    report = DiagnosticReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real, synthetic, metadata, verbose=False)
    props = report.get_properties()
    details = report.get_details("Data Validity")
    out["diagnostic"] = {
        "overall": report.get_score(),
        "properties": dict(zip(props["Property"], props["Score"], strict=True)),
        "details": [
            {"Column": row["Column"], "Metric": row["Metric"], "Score": _number(row["Score"])}
            for row in details.to_dict("records")
        ],
    }
    return out


def main() -> None:
    import sdmetrics

    version = ".".join(sdmetrics.__version__.split(".")[:2])
    result: dict = {"sdmetrics": sdmetrics.__version__, "pandas": pd.__version__, "datasets": {}}
    for name, (_, _, metadata) in all_datasets().items():
        real, synthetic = load(name, metadata)
        result["datasets"][name] = {"metadata": metadata, **scores(real, synthetic, metadata)}
        if name == "keyed":
            real, synthetic = text_dates(real, synthetic)
            result["datasets"]["keyed_text"] = {"metadata": metadata, **scores(real, synthetic, metadata)}
    path = HERE / f"columns_sdmetrics_{version.replace('.', '_')}.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
