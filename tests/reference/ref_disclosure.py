"""Reference values from SDMetrics for prefect_synthobs.scores.disclosure's tests.

SDMetrics pins pandas<3, so it runs in a separate environment (one per version):

    /tmp/sdm032/bin/python tests/reference/ref_disclosure.py   # sdmetrics 0.32
    /tmp/sdm029/bin/python tests/reference/ref_disclosure.py   # sdmetrics 0.29

It reads the reference datasets with ``load`` (the CSVs ``sdmetrics_reference.py``
wrote, read exactly as the tests read them) and writes
``disclosure_sdmetrics_<major>_<minor>.json`` with SDMetrics' DisclosureProtection
breakdowns (every computation method, per case), its CAP metrics on the raw tables,
and DisclosureProtectionEstimate breakdowns drawn after ``np.random.seed(seed)``.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sdmetrics_reference import HERE, all_datasets, load

METHODS = ("cap", "zero_cap", "generalized_cap")

# (dataset, known, sensitive, continuous, bins)
CASES = [
    # categorical keys, a boolean with NaN, a sensitive column with NaN and an unseen synthetic category
    ("mixed", ["region", "active"], ["plan"], None, 10),
    # a binned numerical key with NaN, at two bin counts
    ("mixed", ["age", "region"], ["plan"], ["age"], 10),
    ("mixed", ["age", "region"], ["plan"], ["age"], 4),
    # two binned keys, a boolean sensitive column
    ("mixed", ["age", "income"], ["active"], ["age", "income"], 5),
    # numerical key compared by value (few exact matches)
    ("mixed", ["age"], ["plan"], None, 10),
    # datetime key (with NaT) compared by value, then binned (SDMetrics' NaT-as-int64-min binning)
    ("mixed", ["signup"], ["plan"], None, 10),
    ("mixed", ["signup", "region"], ["plan"], ["signup"], 10),
    # two sensitive columns, one binned
    ("mixed", ["plan", "region"], ["active", "income"], ["income"], 3),
    ("strong", ["x", "y", "z"], ["k"], ["x", "y", "z"], 10),
    ("strong", ["x", "y"], ["k"], ["x", "y"], 3),
    ("strong", ["k"], ["w"], None, 10),
    ("strong", ["w", "k"], ["x"], ["x"], 10),
    # integer-valued floats as keys; the synthetic table has unseen values (n=5, c="w")
    ("ties", ["n", "m"], ["c"], None, 10),
    ("ties", ["n"], ["m"], ["n"], 3),
    ("ties", ["c"], ["n", "m"], None, 10),
    ("ties", ["c", "m"], ["n"], ["n", "m"], 1),
    # keyed: object ids, a sensitive column with NaN only in the synthetic table, a binned datetime
    ("keyed", ["flag", "kind"], ["amount"], ["amount"], 10),
    ("keyed", ["amount", "when"], ["kind"], ["amount", "when"], 6),
    ("keyed", ["kind"], ["flag"], None, 10),
    ("keyed", ["id"], ["kind"], None, 10),
    ("keyed", ["when"], ["flag"], None, 10),
]

# SDMetrics' CAP metrics on the raw tables (no binning, no filling), on known columns without
# missing values (SDMetrics compares raw NaNs by object identity, and its generalized CAP's Hamming
# distance counts NaN != NaN); the sensitive columns' missing values are object NaNs.
RAW_CASES = [
    ("mixed", ["region"], ["plan"]),
    ("strong", ["k"], ["w"]),
    ("ties", ["n", "m"], ["c"]),
    ("ties", ["c"], ["n", "m"]),
    ("keyed", ["flag"], ["kind"]),
]

# (dataset, known, sensitive, continuous, bins, method, num_rows_subsample, num_iterations, seed)
ESTIMATE_CASES = [
    ("mixed", ["region", "active"], ["plan"], None, 10, "cap", 100, 5, 0),
    ("mixed", ["age", "region"], ["plan"], ["age"], 10, "zero_cap", 150, 4, 11),
    ("strong", ["x", "y"], ["k"], ["x", "y"], 5, "generalized_cap", 200, 3, 7),
    ("ties", ["n", "m"], ["c"], None, 10, "zero_cap", 30, 4, 3),
    ("keyed", ["kind", "flag"], ["amount"], ["amount"], 10, "cap", 1000, 2, 1),
]


def _jsonable(value: object) -> object:
    return float(value) if isinstance(value, (int, float, np.integer, np.floating)) else value


def main() -> None:
    import sdmetrics
    from sdmetrics.single_table import DisclosureProtection
    from sdmetrics.single_table.privacy.cap import CategoricalCAP, CategoricalGeneralizedCAP, CategoricalZeroCAP

    try:
        from sdmetrics.single_table import DisclosureProtectionEstimate
    except ImportError:  # not in every version
        DisclosureProtectionEstimate = None

    warnings.simplefilter("ignore")
    raw_metrics = {"cap": CategoricalCAP, "zero_cap": CategoricalZeroCAP, "generalized_cap": CategoricalGeneralizedCAP}
    data = {name: load(name, meta) for name, (_, _, meta) in all_datasets().items()}

    cases = []
    for name, known, sensitive, continuous, bins in CASES:
        real, synthetic = data[name]
        for method in METHODS:
            case = {
                "dataset": name,
                "known": known,
                "sensitive": sensitive,
                "continuous": continuous,
                "bins": bins,
                "method": method,
            }
            try:
                out = DisclosureProtection.compute_breakdown(
                    real, synthetic, known, sensitive, method, continuous, bins
                )
                case.update({k: _jsonable(v) for k, v in out.items()})
            except Exception as exc:
                case["error"] = f"{type(exc).__name__}: {exc}"
            cases.append(case)

    raw = []
    for name, known, sensitive in RAW_CASES:
        real, synthetic = data[name]
        for method, metric in raw_metrics.items():
            value = metric.compute(real, synthetic, key_fields=known, sensitive_fields=sensitive)
            raw.append({"dataset": name, "known": known, "sensitive": sensitive, "method": method, "value": value})

    estimates = []
    if DisclosureProtectionEstimate is not None:
        for name, known, sensitive, continuous, bins, method, subsample, iterations, seed in ESTIMATE_CASES:
            real, synthetic = data[name]
            np.random.seed(seed)
            out = DisclosureProtectionEstimate.compute_breakdown(
                real, synthetic, known, sensitive, method, continuous, bins, subsample, iterations, verbose=False
            )
            estimates.append(
                {
                    "dataset": name,
                    "known": known,
                    "sensitive": sensitive,
                    "continuous": continuous,
                    "bins": bins,
                    "method": method,
                    "num_rows_subsample": subsample,
                    "num_iterations": iterations,
                    "seed": seed,
                    **{k: _jsonable(v) for k, v in out.items()},
                }
            )

    major, minor = sdmetrics.__version__.split(".")[:2]
    result = {
        "sdmetrics": sdmetrics.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "disclosure_protection": cases,
        "categorical_cap_raw": raw,
        "disclosure_protection_estimate": estimates,
    }
    path = HERE / f"disclosure_sdmetrics_{major}_{minor}.json"
    path.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    print(f"wrote {Path(path)}", file=sys.stderr)


if __name__ == "__main__":
    main()
