"""Reference values of SDMetrics' LogisticDetection, for ``tests/scores/test_detection.py``.

SDMetrics pins ``pandas<3``, so this runs in a separate environment, once per
SDMetrics version, and writes ``detection_sdmetrics_<major>_<minor>.json``:

    /tmp/sdm032/bin/python tests/reference/ref_detection.py
    /tmp/sdm029/bin/python tests/reference/ref_detection.py

For each reference dataset (``sdmetrics_reference.all_datasets()``, read back
from the CSVs with ``load`` exactly as the tests do) it records:

- ``sdmetrics``: ``LogisticDetection.compute`` over ``RUNS`` runs (its folds
  are shuffled unseeded, so the score varies): the scores, min, max, mean,
  std; or the error it raises (a synthetic category the real table lacks).
- ``union``: the same computation with each categorical column's one-hot
  encoder fitted on the categories of both tables (what
  ``prefect_synthobs`` does), over ``RUNS`` runs.
- ``dropped``: the synthetic rows holding such categories dropped, over
  ``RUNS`` runs (only where SDMetrics raises).
- ``fixed``: the same pipeline with ``StratifiedKFold(3, shuffle=True,
  random_state=s)`` for a few seeds: the fold assignment, each fold's ROC AUC
  and fitted coefficients (sklearn's defaults, as SDMetrics, and the exact
  optimum from ``newton-cholesky`` at ``tol=1e-12``), the resulting score,
  and ``LogisticDetection.compute`` itself run with those folds.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sdmetrics_reference import all_datasets, load  # noqa: E402

RUNS = 20
FIXED_SEEDS = (0, 1, 7)


def _stats(scores: list[float]) -> dict:
    arr = np.asarray(scores, dtype=np.float64)
    return {
        "runs": len(scores),
        "scores": scores,
        "min": float(arr.min()),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)),
    }


def _union_ht(synthetic: pd.DataFrame):  # type: ignore[no-untyped-def]
    """SDMetrics' HyperTransformer, one-hot encoders fitted on both tables' categories."""
    from sdmetrics.utils import HyperTransformer
    from sklearn.preprocessing import OneHotEncoder

    class UnionHyperTransformer(HyperTransformer):
        def fit(self, data):  # type: ignore[no-untyped-def]
            super().fit(data)
            for field in data:
                if self.column_kind[field] == "O":
                    both = pd.concat([data[field], synthetic[field]], ignore_index=True)
                    self.column_transforms[field] = {
                        "one_hot_encoder": OneHotEncoder().fit(pd.DataFrame({"field": both}))
                    }

    return UnionHyperTransformer


def _compute(real, synthetic, metadata, *, union: bool = False, random_state: int | None = None) -> float:  # type: ignore[no-untyped-def]
    """``LogisticDetection.compute``, optionally with union encoders and/or fixed folds."""
    import sdmetrics.single_table.detection.base as base
    from sdmetrics.single_table import LogisticDetection
    from sklearn.model_selection import StratifiedKFold

    saved = base.HyperTransformer, base.StratifiedKFold
    try:
        if union:
            base.HyperTransformer = _union_ht(synthetic)
        if random_state is not None:
            base.StratifiedKFold = functools.partial(StratifiedKFold, random_state=random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(LogisticDetection.compute(real.copy(), synthetic.copy(), metadata))
    finally:
        base.HyperTransformer, base.StratifiedKFold = saved


def _runs(real, synthetic, metadata, *, union: bool = False) -> dict:  # type: ignore[no-untyped-def]
    return _stats([_compute(real, synthetic, metadata, union=union) for _ in range(RUNS)])


def _matrix(real, synthetic, metadata, *, union: bool):  # type: ignore[no-untyped-def]
    """SDMetrics' X, y and feature names (``column`` or ``column=category``), step by step."""
    from sdmetrics.single_table import LogisticDetection
    from sdmetrics.utils import HyperTransformer

    real, synthetic, metadata = LogisticDetection._validate_inputs(real.copy(), synthetic.copy(), metadata)
    real, synthetic = LogisticDetection._drop_non_compute_columns(real, synthetic, metadata)
    ht = _union_ht(synthetic)() if union else HyperTransformer()
    t_real = ht.fit_transform(real)
    t_syn = ht.transform(synthetic)
    names = []
    for column in t_real.columns:
        field, _, i = column.rpartition("_value")
        if field in ht.column_transforms and ht.column_kind.get(field) == "O" and i.isdigit():
            category = ht.column_transforms[field]["one_hot_encoder"].categories_[0][int(i)]
            names.append(f"{field}={'<NA>' if pd.isna(category) else category}")
        else:
            names.append(column)
    x = np.concatenate([t_real.to_numpy(), t_syn.to_numpy()]).astype(np.float64)
    y = np.hstack([np.ones(len(t_real)), np.zeros(len(t_syn))])
    x[np.isinf(x)] = np.nan
    return x, y, names


def _fixed(real, synthetic, metadata, *, union: bool, random_state: int) -> dict:  # type: ignore[no-untyped-def]
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    x, y, names = _matrix(real, synthetic, metadata, union=union)
    kf = StratifiedKFold(n_splits=3, shuffle=True, random_state=random_state)
    test_folds = np.empty(len(y), dtype=int)
    folds, scores, scores_exact = [], [], []
    for k, (train, test) in enumerate(kf.split(x, y)):
        test_folds[test] = k
        fold: dict = {}
        for label, clf in (
            ("", LogisticRegression(solver="lbfgs")),
            ("exact_", LogisticRegression(solver="newton-cholesky", tol=1e-12, max_iter=1000)),
        ):
            model = Pipeline([("imputer", SimpleImputer()), ("scalar", RobustScaler()), ("classifier", clf)])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(x[train], y[train])
            proba = model.predict_proba(x[test])[:, 1]
            auc = float(roc_auc_score(y[test], proba))
            fold[f"{label}auc"] = auc
            fold[f"{label}coef"] = dict(zip(names, model["classifier"].coef_[0].tolist(), strict=True))
            fold[f"{label}intercept"] = float(model["classifier"].intercept_[0])
            fold[f"{label}n_iter"] = int(model["classifier"].n_iter_[0])
            (scores if not label else scores_exact).append(max(0.5, auc) * 2 - 1)
        fold["center"] = model["scalar"].center_.tolist()
        fold["scale"] = model["scalar"].scale_.tolist()
        folds.append(fold)
    return {
        "random_state": random_state,
        "union": union,
        "features": names,
        "test_folds": test_folds.tolist(),
        "folds": folds,
        "score": float(1 - np.mean(scores)),
        "exact_score": float(1 - np.mean(scores_exact)),
        "compute": _compute(real, synthetic, metadata, union=union, random_state=random_state),
    }


def _unseen_dropped(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict) -> pd.DataFrame:
    """The synthetic rows whose categories (missing included) all occur in the real table."""
    keep = pd.Series(True, index=synthetic.index)
    for column, meta in metadata["columns"].items():
        if meta["sdtype"] == "categorical":
            seen = set(real[column].dropna())
            values = synthetic[column]
            ok = values.isin(seen) | (values.isna() & real[column].isna().any())
            keep &= ok
    return synthetic[keep].reset_index(drop=True)


def main() -> None:
    import sdmetrics
    import sklearn

    major, minor = sdmetrics.__version__.split(".")[:2]
    out_path = HERE / f"detection_sdmetrics_{major}_{minor}.json"
    result: dict = {
        "sdmetrics": sdmetrics.__version__,
        "sklearn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "runs": RUNS,
        "datasets": {},
    }
    for name, (_, _, metadata) in all_datasets().items():
        real, synthetic = load(name, metadata)
        entry: dict = {"metadata": metadata}
        try:
            entry["sdmetrics"] = _runs(real, synthetic, metadata)
            raises = False
        except Exception as exc:
            entry["sdmetrics"] = {"error": f"{type(exc).__name__}: {exc}"}
            raises = True
        entry["union"] = _runs(real, synthetic, metadata, union=True)
        if raises:
            kept = _unseen_dropped(real, synthetic, metadata)
            entry["dropped"] = {"rows_dropped": len(synthetic) - len(kept), **_runs(real, kept, metadata)}
        entry["fixed"] = [_fixed(real, synthetic, metadata, union=raises, random_state=s) for s in FIXED_SEEDS]
        result["datasets"][name] = entry
        print(
            name,
            entry["sdmetrics"].get("error") or (entry["sdmetrics"]["min"], entry["sdmetrics"]["max"]),
            (entry["union"]["min"], entry["union"]["max"]),
            [f["score"] for f in entry["fixed"]],
            file=sys.stderr,
        )
    text = json.dumps(result, indent=1, allow_nan=True)
    out_path.write_text(text + "\n")
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
