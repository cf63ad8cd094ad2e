"""Reference values of SDMetrics' ML efficacy metrics, for ``tests/scores/test_utility.py``.

SDMetrics pins ``pandas<3``, so this runs in a separate environment, once per
SDMetrics version, and writes ``efficacy_sdmetrics_<major>_<minor>.json``:

    /tmp/sdm032/bin/python tests/reference/ref_efficacy.py --write-datasets
    /tmp/sdm029/bin/python tests/reference/ref_efficacy.py

``--write-datasets`` makes the datasets (seeded) and writes their CSVs under
``datasets/`` (``efficacy_<name>_real.csv`` with a ``part`` column, train or
test; ``efficacy_<name>_synthetic.csv`` with a ``variant`` column); every run
reads them back with ``frames`` (``sdmetrics_reference.load``), exactly as the
tests do.

Datasets:

- ``churn``: a churn-like table, 12 % positives, NaNs in numbers, categories,
  a boolean and a datetime. Targets: ``churn`` (boolean), ``churn_text``
  (``"yes"``/``"no"``), ``tier`` (4 classes), ``spend`` (a number).
  Synthetic variants: ``faithful`` (a fresh draw from the generator),
  ``bootstrap`` (real training rows drawn with replacement), ``shuffled``
  (every column of the real training rows permuted on its own), ``unseen``
  (a fresh draw lacking the ``two-year`` plan the test rows hold), and, made
  from ``bootstrap`` without randomness, ``all_false`` (the binary targets
  all negative) and ``single`` (``tier`` one class).
- ``ties``: small integer features and a 3-class target: a decision tree
  meets many equally good splits, which scikit-learn breaks at random.

For every task (target, metric) and variant it records SDMetrics' ``compute``
on (real test, synthetic) and on (real test, real train), and around it:

- ``BinaryLogisticRegression``: the predictions, the lbfgs iterations (its
  ``max_iter`` is 50) and the score at the exact optimum (``newton-cholesky``,
  ``tol=1e-12``) with its predictions.
- ``MulticlassDecisionTreeClassifier``: ``RUNS`` unseeded ``compute`` runs,
  and the predictions for ``SEEDS`` seeded trees (``random_state``), whether
  they all agree, and the distinct scores.
- ``LinearRegression``: the score and the predictions.
- ``unseen``: the error SDMetrics raises, and the score with its one-hot
  encoders set to ``handle_unknown="ignore"``.
- the boolean target as an object column (SDMetrics then takes the first label
  of the test rows as the positive one).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sdmetrics_reference import DATA, load, write_dataset  # noqa: E402

RUNS = 10
SEEDS = 30
N_TRAIN, N_TEST, N_SYNTHETIC = 600, 400, 600

_NUM, _CAT, _BOOL = {"sdtype": "numerical"}, {"sdtype": "categorical"}, {"sdtype": "boolean"}
CHURN_META: dict[str, Any] = {
    "columns": {
        **{"tenure": _NUM, "monthly": _NUM, "plan": _CAT, "region": _CAT, "autopay": _BOOL},
        "signup": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d %H:%M:%S"},
        **{"calls": _NUM, "churn": _BOOL, "churn_text": _CAT, "tier": _CAT, "spend": _NUM},
    }
}
TIES_META: dict[str, Any] = {"columns": {"a": _NUM, "b": _NUM, "c": _CAT, "label": _CAT}}
CHURN_FEATURES = ["tenure", "monthly", "plan", "region", "autopay", "signup", "calls"]
BINARY_VARIANTS = ["faithful", "bootstrap", "shuffled", "all_false", "unseen"]
TREE = "MulticlassDecisionTreeClassifier"
# (dataset, target, SDMetrics metric, features, synthetic variants, options); options:
# ``first``: move the first test row holding this label to the top (SDMetrics' positive label
# for a text target is the first label of the test rows).
TASKS: list[tuple[str, str, str, list[str], list[str], dict[str, Any]]] = [
    ("churn", "churn", "BinaryLogisticRegression", CHURN_FEATURES, BINARY_VARIANTS, {}),
    ("churn", "churn_text", "BinaryLogisticRegression", CHURN_FEATURES, BINARY_VARIANTS, {}),
    ("churn", "churn_text", "BinaryLogisticRegression", CHURN_FEATURES, BINARY_VARIANTS, {"first": "yes"}),
    ("churn", "tier", TREE, CHURN_FEATURES, ["faithful", "bootstrap", "shuffled", "single", "unseen"], {}),
    # one feature: no ties between features, so scikit-learn's tree is deterministic
    ("churn", "tier", TREE, ["monthly"], ["faithful", "shuffled"], {}),
    ("churn", "tier", TREE, ["tenure"], ["faithful", "bootstrap"], {}),
    ("churn", "spend", "LinearRegression", CHURN_FEATURES, ["faithful", "bootstrap", "shuffled", "unseen"], {}),
    ("ties", "label", TREE, ["a", "b", "c"], ["faithful", "shuffled"], {}),
]
METADATA = {"churn": CHURN_META, "ties": TIES_META}


# -- datasets ------------------------------------------------------------------------


def _churn_rows(
    n: int, rng: np.random.Generator, plans: tuple[str, ...] = ("monthly", "yearly", "two-year")
) -> pd.DataFrame:
    tenure = rng.exponential(24, n).round(2)
    monthly = rng.normal(70, 20, n).round(2)
    p = np.array([0.5, 0.3, 0.2])[: len(plans)]
    plan = rng.choice(list(plans), n, p=p / p.sum()).astype(object)
    region = rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    autopay = rng.random(n) < 0.55
    calls = rng.poisson(1.5, n).astype(float)
    logit = -3.4 - 0.06 * tenure + 0.03 * (monthly - 70) + 1.1 * calls + 1.4 * (plan == "monthly") - 0.8 * autopay
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    signup = (
        pd.Timestamp("2022-01-01")
        + pd.to_timedelta((rng.uniform(0, 900, n) + 3 * tenure).round(), unit="D")
        + pd.to_timedelta(rng.integers(0, 86400, n), unit="s")
    )
    score = 0.03 * tenure + 0.04 * (monthly - 70) + 0.8 * (plan == "two-year") + rng.normal(0, 0.6, n)
    tier = np.array(["bronze", "silver", "gold", "platinum"], dtype=object)[np.digitize(score, [-0.3, 0.6, 1.4])]
    spend = (
        12 * monthly + 4 * tenure - 30 * calls + 80 * (region == "north") + 50 * autopay + rng.normal(0, 60, n)
    ).round(2)
    df = pd.DataFrame(
        {
            "tenure": tenure,
            "monthly": monthly,
            "plan": plan,
            "region": region,
            "autopay": autopay.astype(object),
            "signup": signup,
            "calls": calls,
            "churn": churn.astype(object),
            "churn_text": np.where(churn, "yes", "no").astype(object),
            "tier": tier,
            "spend": spend,
        }
    )
    for column, rate in (("tenure", 0.03), ("plan", 0.03), ("autopay", 0.04), ("signup", 0.03)):
        df.loc[rng.random(n) < rate, column] = None
    out: pd.DataFrame = df
    return out


def _datasets() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    rng = np.random.default_rng(20261205)
    real = _churn_rows(N_TRAIN + N_TEST, rng)
    real.insert(0, "part", ["train"] * N_TRAIN + ["test"] * N_TEST)
    train = real[real.part == "train"].drop(columns="part").reset_index(drop=True)
    faithful = _churn_rows(N_SYNTHETIC, rng)
    bootstrap = train.iloc[rng.integers(0, N_TRAIN, N_SYNTHETIC)].reset_index(drop=True)
    shuffled = pd.DataFrame({c: train[c].to_numpy()[rng.permutation(N_TRAIN)] for c in train.columns})
    unseen = _churn_rows(N_SYNTHETIC, rng, plans=("monthly", "yearly"))
    synthetic = pd.concat(
        [
            df.assign(variant=name)
            for name, df in (
                ("faithful", faithful),
                ("bootstrap", bootstrap),
                ("shuffled", shuffled),
                ("unseen", unseen),
            )
        ],
        ignore_index=True,
    )

    def ties_rows(n: int) -> pd.DataFrame:
        a = rng.integers(0, 4, n)
        b = rng.integers(0, 3, n)
        c = rng.choice(["u", "v", "w"], n)
        label = np.where((a + b + (c == "u")) % 3 == 0, "x", np.where(a > b, "y", "z"))
        flip = rng.random(n) < 0.2
        label[flip] = rng.choice(["x", "y", "z"], flip.sum())
        out: pd.DataFrame = pd.DataFrame(
            {"a": a.astype(float), "b": b.astype(float), "c": c.astype(object), "label": label.astype(object)}
        )
        return out

    ties_real = ties_rows(300)
    ties_real.insert(0, "part", ["train"] * 200 + ["test"] * 100)
    ties_train = ties_real[ties_real.part == "train"].drop(columns="part").reset_index(drop=True)
    ties_shuffled = pd.DataFrame({c: ties_train[c].to_numpy()[rng.permutation(200)] for c in ties_train.columns})
    ties_syn = pd.concat(
        [ties_rows(200).assign(variant="faithful"), ties_shuffled.assign(variant="shuffled")], ignore_index=True
    )
    return {"churn": (real, synthetic), "ties": (ties_real, ties_syn)}


def first_row(test: pd.DataFrame, target: str, label: Any) -> pd.DataFrame:
    """``test`` with its first row holding ``label`` moved to the top."""
    i = int(np.flatnonzero((test[target] == label).to_numpy())[0])
    order = [i, *[j for j in range(len(test)) if j != i]]
    out: pd.DataFrame = test.iloc[order].reset_index(drop=True)
    return out


def frames(name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """``(real_train, real_test, {variant: synthetic})`` of dataset ``name``, typed by its metadata.

    ``all_false`` and ``single`` are made here from ``bootstrap`` (no randomness).
    """
    real, synthetic = load(f"efficacy_{name}", METADATA[name])
    train = real[real.part == "train"].drop(columns="part").reset_index(drop=True)
    test = real[real.part == "test"].drop(columns="part").reset_index(drop=True)
    variants = {
        str(v): df.drop(columns="variant").reset_index(drop=True) for v, df in synthetic.groupby("variant", sort=False)
    }
    if "bootstrap" in variants:
        boot = variants["bootstrap"]
        variants["all_false"] = boot.assign(churn=pd.Series([False] * len(boot), dtype=object), churn_text="no")
        variants["single"] = boot.assign(tier="gold")
    return train, test, variants


def task_frames(frame: pd.DataFrame, target: str, features: list[str], *, bool_dtype: bool = True) -> pd.DataFrame:
    """The columns SDMetrics is given: the features and the target. A boolean
    target without NaNs becomes a ``bool`` column (``load`` gives ``object``)."""
    out: pd.DataFrame = frame[[*features, target]].copy()
    if bool_dtype and out[target].map(lambda v: isinstance(v, bool | np.bool_)).all():
        out[target] = out[target].astype(bool)
    return out


def task_metadata(name: str, target: str, features: list[str]) -> dict[str, Any]:
    columns = METADATA[name]["columns"]
    return {"columns": {c: columns[c] for c in [*features, target]}}


# -- SDMetrics -----------------------------------------------------------------------


def _metric(name: str) -> Any:
    from sdmetrics.single_table import efficacy

    for module in (efficacy.binary, efficacy.multiclass, efficacy.regression):
        if hasattr(module, name):
            return getattr(module, name)
    raise KeyError(name)


@contextlib.contextmanager
def _patched(metric: Any, **model_kwargs: Any) -> Iterator[None]:
    saved = metric.MODEL_KWARGS
    metric.MODEL_KWARGS = {**(saved or {}), **model_kwargs}
    try:
        yield
    finally:
        metric.MODEL_KWARGS = saved


@contextlib.contextmanager
def _ignore_unknown() -> Iterator[None]:
    """SDMetrics' HyperTransformer with one-hot encoders that encode unseen categories as zeros."""
    import sdmetrics.utils as utils
    from sklearn.preprocessing import OneHotEncoder

    saved = utils.OneHotEncoder
    utils.OneHotEncoder = functools.partial(OneHotEncoder, handle_unknown="ignore")
    try:
        yield
    finally:
        utils.OneHotEncoder = saved


def _compute(metric: Any, test: pd.DataFrame, train: pd.DataFrame, metadata: dict[str, Any], target: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(metric.compute(test.copy(), train.copy(), metadata, target=target))


def _predict(metric: Any, test: pd.DataFrame, train: pd.DataFrame, target: str) -> tuple[list[Any], float]:
    """``compute``'s steps, keeping the predictions: (predictions, score)."""
    test, train = test.copy(), train.copy()
    test_target, train_target = test.pop(target), train.pop(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictions = metric._fit_predict(train, train_target, test, test_target)
        score = float(metric._score(None, test_target, predictions))
    return [p.item() if hasattr(p, "item") else p for p in np.asarray(predictions, dtype=object)], score


def _lbfgs_iterations(metric: Any, test: pd.DataFrame, train: pd.DataFrame, target: str) -> int:
    """How many lbfgs iterations SDMetrics' logistic regression ran (``max_iter`` 50)."""
    from sklearn.linear_model import LogisticRegression

    seen: list[int] = []

    class Spy(LogisticRegression):
        def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def]
            out = super().fit(X, y, sample_weight)
            seen.append(int(self.n_iter_[0]))
            return out

    saved = metric.MODEL
    metric.MODEL = Spy
    try:
        _predict(metric, test, train, target)
    finally:
        metric.MODEL = saved
    return seen[0] if seen else 0


def _tree_top(
    metric: Any, test: pd.DataFrame, train: pd.DataFrame, target: str, seed: int, depth: int = 3
) -> dict[str, Any]:
    """The seeded tree's nodes down to ``depth``, by path from the root (``""``,
    ``"L"``, ``"R"``, ``"LL"``, ...): feature name (SDMetrics' HyperTransformer
    columns), threshold, samples and weighted samples."""
    from sdmetrics.utils import HyperTransformer
    from sklearn.tree import DecisionTreeClassifier

    fitted: list[Any] = []

    class Spy(DecisionTreeClassifier):
        def fit(self, X, y, sample_weight=None, check_input=True):  # type: ignore[no-untyped-def]
            out = super().fit(X, y, sample_weight, check_input)
            fitted.append(self)
            return out

    saved = metric.MODEL
    metric.MODEL = Spy
    try:
        with _patched(metric, random_state=seed):
            _predict(metric, test, train, target)
    finally:
        metric.MODEL = saved
    if not fitted:
        return {}
    names = list(HyperTransformer().fit_transform(train.drop(columns=target)).columns)
    tree = fitted[0].tree_
    nodes: dict[str, Any] = {}
    stack = [(0, "")]
    while stack:
        node, path = stack.pop()
        leaf = tree.children_left[node] == -1
        nodes[path] = {
            "feature": None if leaf else names[int(tree.feature[node])],
            "threshold": None if leaf else float(tree.threshold[node]),
            "samples": int(tree.n_node_samples[node]),
            "weighted_samples": float(tree.weighted_n_node_samples[node]),
        }
        if not leaf and len(path) < depth:
            stack += [(int(tree.children_left[node]), path + "L"), (int(tree.children_right[node]), path + "R")]
    return {"nodes": nodes, "node_count": int(tree.node_count), "max_depth": int(tree.max_depth)}


def _one(
    name: str, target: str, metric_name: str, features: list[str], train: pd.DataFrame, test: pd.DataFrame
) -> dict[str, Any]:
    """Everything recorded for one (test, train) pair."""
    metric = _metric(metric_name)
    metadata = task_metadata(name, target, features)
    x_test, x_train = task_frames(test, target, features), task_frames(train, target, features)
    out: dict[str, Any] = {}
    try:
        out["score"] = _compute(metric, x_test, x_train, metadata, target)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        with _ignore_unknown():
            out["score_ignore_unknown"] = _compute(metric, x_test, x_train, metadata, target)
            out["predictions_ignore_unknown"], _ = _predict(metric, x_test, x_train, target)
        return out
    if metric_name == "BinaryLogisticRegression":
        out["predictions"], check = _predict(metric, x_test, x_train, target)
        assert check == out["score"]
        out["lbfgs_iterations"] = _lbfgs_iterations(metric, x_test, x_train, target)
        with _patched(metric, solver="newton-cholesky", tol=1e-12, max_iter=1000):
            out["exact_predictions"], out["exact_score"] = _predict(metric, x_test, x_train, target)
        out["lbfgs_vs_exact_predictions_differ"] = int(
            sum(a != b for a, b in zip(out["predictions"], out["exact_predictions"], strict=True))
        )
        if x_test[target].dtype == bool:  # SDMetrics with the boolean target as an object column
            obj_test, obj_train = x_test.astype({target: object}), x_train.astype({target: object})
            out["object_dtype"] = {
                "first_label": bool(obj_test[target].unique()[0]),
                "score": _compute(metric, obj_test, obj_train, metadata, target),
            }
    elif metric_name == "MulticlassDecisionTreeClassifier":
        runs = [_compute(metric, x_test, x_train, metadata, target) for _ in range(RUNS)]
        out["runs"] = runs
        seeded = []
        for seed in range(SEEDS):
            with _patched(metric, random_state=seed):
                seeded.append(_predict(metric, x_test, x_train, target))
        out["seeded_scores"] = sorted({s for _, s in seeded})
        out["seeded_predictions_agree"] = all(p == seeded[0][0] for p, _ in seeded)
        out["predictions"] = seeded[0][0]
        out["tree"] = _tree_top(metric, x_test, x_train, target, seed=0)
        out["score"] = runs[0]
    else:
        out["predictions"], check = _predict(metric, x_test, x_train, target)
        assert abs(check - out["score"]) <= 1e-12
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write-datasets", action="store_true", help="make and write the dataset CSVs first")
    args = parser.parse_args()
    import sdmetrics
    import sklearn

    if args.write_datasets:
        DATA.mkdir(parents=True, exist_ok=True)
        for name, (real_rows, synthetic_rows) in _datasets().items():
            write_dataset(f"efficacy_{name}", real_rows, synthetic_rows)
    major, minor = sdmetrics.__version__.split(".")[:2]
    out_path = HERE / f"efficacy_sdmetrics_{major}_{minor}.json"
    result: dict[str, Any] = {
        "sdmetrics": sdmetrics.__version__,
        "sklearn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "runs": RUNS,
        "seeds": SEEDS,
        "tasks": [],
    }
    for name, target, metric_name, features, variants, options in TASKS:
        train, test, synthetic = frames(name)
        if "first" in options:
            test = first_row(test, target, options["first"])
        task: dict[str, Any] = {
            "dataset": name,
            "target": target,
            "metric": metric_name,
            "features": features,
            "options": options,
            "real": _one(name, target, metric_name, features, train, test),
            "synthetic": {},
        }
        for variant in variants:
            task["synthetic"][variant] = _one(name, target, metric_name, features, synthetic[variant], test)
        result["tasks"].append(task)
        print(
            name,
            target,
            metric_name,
            task["real"].get("score"),
            {v: e.get("score", e.get("error", "")[:40]) for v, e in task["synthetic"].items()},
            file=sys.stderr,
        )
    text = json.dumps(result, indent=1, allow_nan=True)
    # lists of plain values (predictions, runs) on one line each
    text = re.sub(r"\[\n\s+([^\[\]{}]*?)\n\s*\]", lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]", text)
    out_path.write_text(text + "\n")
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
