"""A real synthetic-data pipeline, observed: train → generate → quality check.

Where SDV is installed (the ``sdv`` extra; ``scripts/demo.sh`` sets it up with PyTorch's CPU build), the
generators are SDV's ``GaussianCopulaSynthesizer`` (it generates the table) and a few epochs of
``CTGANSynthesizer`` on a sample of the rows (trained, sampled and scored beside it), fitted with SDV's own
``Metadata``. The pipeline then calls no synthobs recording function: autolog records the fits, CTGAN's
epochs as they end and the sampled rows (``sdv_generators.py``).

Without SDV (the project's own environment, pandas 3) the generator is a Gaussian copula written with
numpy and pandas: each column's marginal is its empirical distribution; the dependence between columns is
the correlation matrix of their normal scores. Training runs in epochs over shuffled mini-batches,
refining the correlation estimate, and records the held-out negative log-likelihood of the copula as the
epoch loss by hand (``record_epoch``), as it records its rows (``record_rows``).

Run it:
    python flows/synthetic_pipeline.py            # or: synthobs demo
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
from prefect import flow, task

import prefect_synthobs as so
from prefect_synthobs.instrument.models import model_identity
from prefect_synthobs.quality import ks_complement
from prefect_synthobs.sample_flows import sdv_generators as sdv
from prefect_synthobs.sample_flows.sdv_generators import Generators

SDV_VERSION = sdv.sdv_version()
USES_SDV = SDV_VERSION is not None
"""Whether the pipeline trains SDV's synthesizers (SDV importable) or its own numpy copula."""
GENERATOR = (
    f"SDV {SDV_VERSION}: GaussianCopulaSynthesizer, and CTGANSynthesizer on {sdv.CTGAN_ROWS:,} rows (CPU); "
    "recorded by synthobs autolog"
    if USES_SDV
    else "numpy Gaussian copula (SDV not installed: pip install 'prefect-synthobs[sdv]'); recorded by hand"
)
"""One line saying which generator this pipeline uses, logged by the training flow and printed by the demo."""
MODEL_TYPE = "gaussian_copula"
TABLE = "customers"
METADATA = {
    "columns": {
        "age": {"sdtype": "numerical"},
        "income": {"sdtype": "numerical"},
        "tenure_months": {"sdtype": "numerical"},
        "purchases": {"sdtype": "numerical"},
        "segment": {"sdtype": "categorical"},
        "region": {"sdtype": "categorical"},
        "churned": {"sdtype": "boolean"},
    }
}
# What the demo gates on. A team would save these as a QualityGates block and
# name it: so.check_quality(..., gates="customers-gates").
GATES = so.QualityGates(
    min_overall=0.75,
    max_exact_match_rate=0.01,
    max_membership_inference_auc=0.6,
    # TSTR ratio: the share of the real model's F1 skill over no skill the synthetic table keeps
    # (this copula keeps 0.68 on 1,500 real rows and 1.03 on 5,000; on a churn table, columns
    # shuffled one by one scored -0.63 to 0.54 over 60 seeds)
    min_tstr_ratio=0.6,
    policy="warn",
)
# The bar ``synthobs demo`` gates on: the gates above plus a release bar on Column Pair Trends that a
# Gaussian copula does not reach on this table (it keeps the columns' linear dependence only: income grows
# exponentially with age and the segment is cut from income; it scores about 0.88). The gate fails on
# purpose, with policy "warn" (the run completes): the demo shows the event `synthobs.quality.gate.failed`
# and the Prefect Automation that fires on it (`synthobs automations apply`).
RELEASE_GATES = so.QualityGates(
    min_overall=0.75,
    max_exact_match_rate=0.01,
    max_membership_inference_auc=0.6,
    min_tstr_ratio=0.6,
    min_column_pair_trends=0.95,
    policy="warn",
)
# Epsilon each generation run charges to the customers table's privacy budget
# (illustrative: a DP generator would report its own epsilon).
EPSILON_PER_RUN = 0.1
BUDGET = so.PrivacyBudget(dataset=TABLE, total_epsilon=100.0)

# -- data ---------------------------------------------------------------------


def make_customers(n: int = 5_000, seed: int = 7) -> pd.DataFrame:
    """A realistic customer table with correlated numeric and categorical columns."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(41, 12, n), 18, 90).round()
    income = np.exp(9.8 + 0.012 * (age - 18) + rng.normal(0, 0.45, n)).round(2)
    tenure = np.clip(rng.gamma(2.0, 14 + 0.4 * (age - 18)), 0, 480).round()
    purchases = rng.poisson(2 + income / 25_000 + tenure / 60)
    segment = np.where(income > 60_000, "premium", np.where(income > 25_000, "standard", "basic"))
    region = rng.choice(["north", "south", "east", "west"], size=n, p=[0.35, 0.25, 0.25, 0.15])
    churn_p = 1 / (1 + np.exp(0.04 * tenure + 0.15 * purchases - 1.5))
    churned = rng.random(n) < churn_p
    frame: pd.DataFrame = pd.DataFrame(
        {
            "age": age.astype("int64"),
            "income": income,
            "tenure_months": tenure.astype("int64"),
            "purchases": purchases.astype("int64"),
            "segment": segment,
            "region": region,
            "churned": churned,
        }
    )
    return frame


# -- the generator (pure numpy) -------------------------------------------------

_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def norm_ppf(p: np.ndarray) -> np.ndarray:
    """Inverse standard normal CDF (Acklam's approximation, |error| < 1.2e-9)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    out = np.empty_like(p)
    lo, hi = p < 0.02425, p > 1 - 0.02425
    mid = ~(lo | hi)
    q = p[mid] - 0.5
    r = q * q
    out[mid] = (
        (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5])
        * q
        / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1)
    )
    for mask, sign in ((lo, 1.0), (hi, -1.0)):
        t = np.sqrt(-2 * np.log(p[mask] if sign > 0 else 1 - p[mask]))
        out[mask] = (
            sign
            * (((((_C[0] * t + _C[1]) * t + _C[2]) * t + _C[3]) * t + _C[4]) * t + _C[5])
            / ((((_D[0] * t + _D[1]) * t + _D[2]) * t + _D[3]) * t + 1)
        )
    return out


def norm_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    out: np.ndarray = 0.5 * (1.0 + erf(np.asarray(z, dtype=np.float64) / math.sqrt(2.0)))
    return out


@dataclass
class GaussianCopula:
    """Empirical marginals + a Gaussian copula over the columns' normal scores."""

    columns: list[str] = field(default_factory=list)
    dtypes: dict[str, str] = field(default_factory=dict)
    numeric: dict[str, np.ndarray] = field(default_factory=dict)  # sorted training values
    categories: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # values, cum. probs
    corr: np.ndarray | None = None
    _sum: np.ndarray | None = None
    _count: int = 0

    def fit_marginals(self, df: pd.DataFrame) -> None:
        self.columns = list(df.columns)
        self.dtypes = {c: str(df[c].dtype) for c in df.columns}
        for c in df.columns:
            s = df[c]
            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                self.numeric[c] = np.sort(s.to_numpy(dtype=np.float64))
            else:
                freq = s.astype(str).value_counts(normalize=True, sort=True)
                self.categories[c] = (freq.index.to_numpy(), np.cumsum(freq.to_numpy()))
        k = len(self.columns)
        self._sum, self._count, self.corr = np.zeros((k, k)), 0, np.eye(k)

    def normal_scores(self, df: pd.DataFrame, rng: np.random.Generator | None = None) -> np.ndarray:
        """Map each column to N(0, 1) through its marginal (categories: a random
        point inside the category's probability interval)."""
        rng = rng or np.random.default_rng(0)
        cols = []
        for c in self.columns:
            if c in self.numeric:
                ref = self.numeric[c]
                x = df[c].to_numpy(dtype=np.float64)
                left = np.searchsorted(ref, x, side="left")
                right = np.searchsorted(ref, x, side="right")
                u = (left + right) / 2 / len(ref)
                u = (u * len(ref) + 0.5) / (len(ref) + 1)
            else:
                values, cum = self.categories[c]
                idx = pd.Index(values).get_indexer(df[c].astype(str).to_numpy())
                idx = np.where(idx < 0, 0, idx)
                lower = np.where(idx > 0, cum[idx - 1], 0.0)
                u = lower + rng.random(len(df)) * (cum[idx] - lower)
            cols.append(norm_ppf(u))
        return np.column_stack(cols)

    def partial_fit(self, z: np.ndarray) -> None:
        """Accumulate one mini-batch of normal scores into the correlation estimate."""
        assert self._sum is not None
        self._sum += z.T @ z
        self._count += len(z)
        cov = self._sum / self._count
        d = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
        corr = cov / np.outer(d, d)
        np.fill_diagonal(corr, 1.0)
        self.corr = corr

    def negative_log_likelihood(self, z: np.ndarray) -> float:
        """Mean negative log copula density of held-out normal scores."""
        assert self.corr is not None
        corr = self.corr + 1e-6 * np.eye(len(self.corr))
        _sign, logdet = np.linalg.slogdet(corr)
        inv = np.linalg.inv(corr) - np.eye(len(corr))
        quad = np.einsum("ij,jk,ik->i", z, inv, z)
        return float(np.mean(0.5 * logdet + 0.5 * quad))

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        assert self.corr is not None
        rng = np.random.default_rng(seed)
        z = rng.multivariate_normal(np.zeros(len(self.columns)), self.corr, size=n, method="cholesky")
        u = norm_cdf(z)
        data = {}
        for i, c in enumerate(self.columns):
            if c in self.numeric:
                values = np.quantile(self.numeric[c], u[:, i])
                data[c] = values.round().astype("int64") if self.dtypes[c].startswith("int") else values
            else:
                values, cum = self.categories[c]
                idx = np.minimum(np.searchsorted(cum, u[:, i], side="right"), len(values) - 1)
                col = values[idx]
                data[c] = (col == "True") if self.dtypes[c] == "bool" else col
        frame: pd.DataFrame = pd.DataFrame(data, columns=self.columns)
        return frame


# -- tasks --------------------------------------------------------------------


@task
def load_customers(n: int, seed: int) -> pd.DataFrame:
    return make_customers(n, seed)


@task
def split(df: pd.DataFrame, holdout: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cut = int(len(df) * (1 - holdout))
    return shuffled.iloc[:cut], shuffled.iloc[cut:]


@task
def fit_marginals(train_df: pd.DataFrame) -> GaussianCopula:
    model = GaussianCopula()
    model.fit_marginals(train_df)
    return model


@task
def train_epoch(model: GaussianCopula, train_df: pd.DataFrame, valid_z: np.ndarray, epoch: int, batches: int) -> float:
    with so.span("training.epoch", epoch=epoch, model_type=MODEL_TYPE):
        rng = np.random.default_rng(epoch)
        order = rng.permutation(len(train_df))
        # each epoch adds one shuffled slice of mini-batches to the estimate
        for chunk in np.array_split(order, batches):
            model.partial_fit(model.normal_scores(train_df.iloc[chunk], rng))
        loss = model.negative_log_likelihood(valid_z)
    so.record_epoch(epoch, loss=loss)
    return loss


@task
def fit_gaussian_copula(train_df: pd.DataFrame, metadata: Any) -> Any:
    """SDV's GaussianCopulaSynthesizer on every training row (autolog records the fit)."""
    return sdv.fit(sdv.gaussian_copula(metadata), TABLE, train_df)


@task
def fit_ctgan(train_df: pd.DataFrame, metadata: Any, epochs: int, seed: int) -> Any:
    """SDV's CTGANSynthesizer, ``epochs`` epochs on a sample of the training rows (autolog records the fit
    and each epoch as it ends)."""
    rows = train_df.sample(min(len(train_df), sdv.CTGAN_ROWS), random_state=seed)
    return sdv.fit(sdv.ctgan(metadata, epochs), TABLE, rows)


@task
def sample_batch(model: Any, n: int, seed: int) -> pd.DataFrame:
    if not isinstance(model, GaussianCopula):  # an SDV synthesizer: autolog counts its rows and spans them
        sampled: pd.DataFrame = sdv.sample(model, TABLE, n)
        return sampled
    with so.span("generation.batch", batch_size=n, seed=seed):
        df = model.sample(n, seed)
    so.record_rows(len(df))
    return df


@task
def column_ks(real: pd.Series, synthetic: pd.Series) -> float:
    return ks_complement(real, synthetic)


# -- flows --------------------------------------------------------------------


@so.observe(kind="training", model_type=MODEL_TYPE, table=TABLE)
@flow(name="train-generator", log_prints=True)
def train_generator(n_rows: int = 5_000, epochs: int = 5, seed: int = 7) -> Generators:
    """Fit the generators on the customers table: SDV's GaussianCopula and ``epochs`` epochs of CTGAN, or
    (without SDV) the numpy copula over ``epochs`` epochs."""
    print(f"generator: {GENERATOR}")
    df = load_customers(n_rows, seed)
    train_df, valid_df = split(df, 0.2, seed)
    if USES_SDV:
        metadata = sdv.detect_metadata(TABLE, train_df)
        copula = fit_gaussian_copula(train_df, metadata)
        challenger = fit_ctgan(train_df, metadata, epochs, seed)
        return Generators({"gaussian_copula": copula, "ctgan": challenger}, metadata)
    model = fit_marginals(train_df)
    valid_z = model.normal_scores(valid_df)
    for epoch in range(epochs):
        loss = train_epoch(model, train_df, valid_z, epoch, batches=4)
        print(f"epoch {epoch + 1}/{epochs}: held-out NLL {loss:.4f}")
    return Generators({MODEL_TYPE: model}, METADATA)


@so.observe(kind="generation", model_type=MODEL_TYPE, table=TABLE)
@flow(name="generate-synthetic", log_prints=True)
def generate_synthetic(
    generators: Generators, n_rows: int = 20_000, batch_size: int = 5_000, challenger_rows: int = 2_000
) -> dict[str, pd.DataFrame]:
    """Sample ``n_rows`` rows from the main generator in batches (the numpy copula's run concurrently; an SDV
    synthesizer samples from one random state, so its batches run one after the other), and
    ``challenger_rows`` from each challenger. Returns the tables by model name, the main one first."""
    sizes = [batch_size] * (n_rows // batch_size) + ([n_rows % batch_size] if n_rows % batch_size else [])
    name, model = generators.main
    if isinstance(model, GaussianCopula):
        futures = [sample_batch.submit(model, size, seed) for seed, size in enumerate(sizes)]
        frames = [f.result() for f in futures]
    else:
        frames = [sample_batch(model, size, seed) for seed, size in enumerate(sizes)]
    print(f"generated {sum(len(f) for f in frames):,} rows in {len(frames)} batches with {name}")
    out = {name: pd.concat(frames, ignore_index=True)}
    for other, challenger in generators.challengers.items():
        out[other] = sample_batch(challenger, min(n_rows, challenger_rows), 0)
        print(f"generated {len(out[other]):,} rows with {other} (challenger)")
    return out


@so.observe(kind="quality", model_type=MODEL_TYPE, table=TABLE)
@flow(name="check-quality", log_prints=True)
def check_quality(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame | None = None,
    threshold: float = 0.8,
    model: Any = None,
    metadata: Any = None,
    challengers: dict[str, tuple[Any, pd.DataFrame]] | None = None,
    gates: so.QualityGates | None = None,
) -> dict[str, float]:
    """KS complement per numeric column, then the quality report, privacy and utility scores of
    ``synthetic`` checked against the demo's gates; each challenger (name: its model and its table) is
    scored the same way without gates, so the reports' leaderboard compares the models.

    ``model``: the model object or its id (reports compare models by it, never average them);
    ``metadata``: SDV's ``Metadata`` object or an SDV metadata dict (default: the demo's dict);
    ``gates``: the gates (default: ``GATES``; ``synthobs demo`` gives ``RELEASE_GATES``)."""
    metadata = METADATA if metadata is None else metadata
    numeric = [
        c for c in real.columns if pd.api.types.is_numeric_dtype(real[c]) and not pd.api.types.is_bool_dtype(real[c])
    ]
    futures = {c: column_ks.submit(real[c], synthetic[c]) for c in numeric}
    scores = {f"ks_complement:{c}": f.result() for c, f in futures.items()}
    for metric, score in scores.items():
        so.record_quality(metric, score, threshold=threshold, model=model)
        print(f"{metric:<28} {score:.3f}")
    common: dict[str, Any] = {"holdout": holdout, "target": "churned", "privacy_sample": 2_000, "seed": 7}
    check = so.check_quality(real, synthetic, metadata, model=model, gates=gates or GATES, **common)
    for result in check.results:
        print(f"gate {result.gate:<30} {'pass' if result.passed else 'FAIL'}  ({result.describe()})")
    scores.update(check.scores)
    for name, (other, table) in (challengers or {}).items():
        other_scores = so.check_quality(real, table, metadata, model=other, **common).scores
        print(f"{name} (challenger, not gated): overall {other_scores.get('overall', float('nan')):.3f}")
    return scores


@so.observe(kind="other", model_type=MODEL_TYPE, table=TABLE)
@flow(name="synthetic-pipeline", log_prints=True)
def synthetic_pipeline(
    n_real: int = 5_000,
    n_synthetic: int = 20_000,
    epochs: int = 5,
    seed: int = 7,
    gates: so.QualityGates | None = None,
) -> dict[str, float]:
    """Train a generator, spend privacy budget, sample a synthetic table, check it (against ``gates``,
    default ``GATES``)."""
    # (cast: mypy reads a Prefect flow call as returning None)
    generators = cast(Generators, train_generator(n_real, epochs, seed))
    try:
        spend = so.record_privacy_spend(EPSILON_PER_RUN, dataset=TABLE, budget=BUDGET)
        print(f"privacy budget of {TABLE!r}: spent {spend.spent:g} of {spend.budget:g} epsilon")
    except so.PrivacyBudgetExceeded as exc:
        print(f"{exc}; reset it with: prefect variable delete synthobs_privacy_spent__{TABLE}")
        raise
    tables = cast("dict[str, pd.DataFrame]", generate_synthetic(generators, n_synthetic))
    train_df, holdout_df = split.fn(make_customers(n_real, seed), 0.2, seed)
    name, model = generators.main
    challengers = {other: (generators.models[other], tables[other]) for other in generators.challengers}
    if isinstance(model, GaussianCopula):
        model = model_identity(model)[0]  # a model object has an id synthobs keeps on it
    scores = check_quality(
        train_df,
        tables[name],
        holdout_df,
        model=model,
        metadata=generators.metadata,
        challengers=challengers,
        gates=gates,
    )
    return cast("dict[str, float]", scores)


if __name__ == "__main__":
    print(synthetic_pipeline())
