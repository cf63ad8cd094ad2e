"""The figures the README gives for TSTR verdicts, reproduced (not a test: it takes minutes).

    .venv/bin/python tests/reference/measure_tstr_verdicts.py churn          # 60 seeds
    .venv/bin/python tests/reference/measure_tstr_verdicts.py noise --runs 400

- ``churn``: the 12 %-positive churn table of ``tests/scores/test_utility.py`` (2,000 rows, 60 seeds):
  the ratio of a table whose columns were shuffled one by one, and of a bootstrap of the real rows.
- ``noise``: random class counts (2-8), frequencies and signal; a "synthetic" table of pure noise
  (labels unrelated to features): how many judged ratios reach 0.8 and the highest one.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "scores"), str(ROOT / "tests" / "reference")]

from test_tstr_verdicts import CATEGORICAL, classes  # noqa: E402
from test_utility import CHURN_META, churn  # noqa: E402

from prefect_synthobs.quality import tstr  # noqa: E402


def churn_seeds(seeds: int) -> None:
    shuffled_ratios, bootstrap_ratios, nan = [], [], 0
    for seed in range(seeds):
        real, holdout = churn(2000, 100 + seed), churn(2000, 200 + seed)
        rng = np.random.default_rng(seed)
        shuffled = pd.DataFrame({c: real[c].to_numpy()[rng.permutation(len(real))] for c in real.columns})
        bootstrap = real.sample(n=len(real), replace=True, random_state=seed).reset_index(drop=True)
        a = tstr(real, shuffled, holdout, "churn", CHURN_META)
        b = tstr(real, bootstrap, holdout, "churn", CHURN_META)
        nan += math.isnan(a["ratio"])
        shuffled_ratios.append(a["ratio"])
        bootstrap_ratios.append(b["ratio"])
    print(
        f"{seeds} seeds: shuffled NaN {nan}, {np.nanmin(shuffled_ratios):.2f}..{np.nanmax(shuffled_ratios):.2f}; "
        f"bootstrap {np.nanmin(bootstrap_ratios):.2f}..{np.nanmax(bootstrap_ratios):.2f}"
    )


def noise(runs: int) -> None:
    master = np.random.default_rng(123)
    ratios = []
    for _ in range(runs):
        k = int(master.integers(2, 9))
        weights, junk_weights = master.integers(1, 21, k), master.integers(0, 21, k)
        junk_weights[0] += junk_weights.sum() == 0
        signal = float(master.choice([0.0, 0.05, 0.15, 0.4]))
        rng = np.random.default_rng(int(master.integers(2**32)))
        freqs = weights / weights.sum()
        train, test = classes(400, rng, freqs, signal), classes(400, rng, freqs, signal)
        junk = classes(400, rng, junk_weights / junk_weights.sum(), 0.0)
        ratio = tstr(train, junk, test, "y", CATEGORICAL)["ratio"]
        if math.isfinite(ratio):
            ratios.append(ratio)
    judged = np.array(ratios)
    top = f"{judged.max():.3f}" if judged.size else "none"
    print(f"{runs} noise tables: {judged.size} judged, highest ratio {top}, at or above 0.8: {(judged >= 0.8).sum()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["churn", "noise"])
    parser.add_argument("--runs", type=int, default=400, help="noise tables (noise)")
    parser.add_argument("--seeds", type=int, default=60, help="seeds (churn)")
    args = parser.parse_args()
    churn_seeds(args.seeds) if args.what == "churn" else noise(args.runs)


if __name__ == "__main__":
    main()
