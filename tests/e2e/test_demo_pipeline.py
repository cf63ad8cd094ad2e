"""The sample pipeline and ``synthobs demo``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import prefect_synthobs as so
from conftest import REPO, subprocess_env
from prefect_synthobs.quality import ks_complement
from prefect_synthobs.sample_flows import synthetic_pipeline as demo


def test_gaussian_copula_learns_marginals_and_dependence() -> None:
    real = demo.make_customers(4000, seed=1)
    model = demo.GaussianCopula()
    model.fit_marginals(real)
    z = model.normal_scores(real)
    assert np.allclose(z.mean(axis=0), 0, atol=0.1)
    model.partial_fit(z)
    synthetic = model.sample(4000, seed=2)
    assert list(synthetic.columns) == list(real.columns)
    assert synthetic.dtypes.to_dict() == real.dtypes.to_dict()
    for column in ("age", "income", "tenure_months", "purchases"):
        assert ks_complement(real[column], synthetic[column]) > 0.9, column
    real_corr = real[["age", "income"]].corr(method="spearman").iloc[0, 1]
    syn_corr = synthetic[["age", "income"]].corr(method="spearman").iloc[0, 1]
    assert abs(real_corr - syn_corr) < 0.1
    assert set(synthetic.segment) <= set(real.segment)
    # an untrained copula (identity correlation) explains held-out data worse
    untrained = demo.GaussianCopula()
    untrained.fit_marginals(real)
    assert model.negative_log_likelihood(z) < untrained.negative_log_likelihood(z)


def test_norm_ppf_inverts_norm_cdf() -> None:
    p = np.array([1e-6, 0.01, 0.3, 0.5, 0.9, 0.999])
    assert np.allclose(demo.norm_cdf(demo.norm_ppf(p)), p, rtol=1e-7)


@pytest.mark.slow
def test_pipeline_records_every_stage(store_dir: Path) -> None:
    scores = demo.synthetic_pipeline(n_real=1500, n_synthetic=3000, epochs=3)
    assert {f"ks_complement:{c}" for c in ("age", "income", "tenure_months", "purchases")} <= set(scores)
    # the gates the demo sets: a copula with empirical marginals passes them
    assert scores["overall"] > 0.75 and scores["exact_match_rate"] <= 0.01
    assert scores["membership_inference_auc"] < 0.6 and scores["tstr_ratio"] > 0.6
    store = so.HealthStore(str(store_dir))
    flows = store.read("flow_runs").set_index("flow_name")
    assert set(flows.index) == {"synthetic-pipeline", "train-generator", "generate-synthetic", "check-quality"}
    assert (flows.state_type == "COMPLETED").all()
    assert flows.loc["generate-synthetic", "rows"] == 3000
    assert flows.loc["generate-synthetic", "rows_per_s"] > 0
    assert flows.loc["train-generator", "kind"] == "training"
    epochs = store.read("training_epochs")
    assert sorted(epochs.epoch) == [0, 1, 2] and epochs.loss.notna().all()
    quality = store.read("quality_checks").set_index("metric")
    gated = quality[quality.threshold.notna()]
    assert len(gated) == 4 + 4 and gated.passed.astype(bool).all()  # 4 KS thresholds + 4 gates
    assert {"overall", "column_pair_trends", "dcr_overfitting_protection"} <= set(quality.index)
    ledger = store.read("privacy_ledger")
    assert list(ledger.dataset) == ["customers"] and list(ledger.epsilon) == [demo.EPSILON_PER_RUN]
    tasks = store.read("task_runs")
    assert (tasks.task_name == "sample_batch").sum() == 1 and (tasks.task_name == "train_epoch").sum() == 3

    # the notebook-style example answers its questions from this store
    example = REPO / "examples" / "read_store.py"
    proc = subprocess.run(
        [sys.executable, str(example), str(store_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "generate-synthetic" in proc.stdout and "slowest tasks" in proc.stdout


@pytest.mark.slow
def test_synthobs_demo_cli_prints_a_summary(tmp_path: Path) -> None:
    env = subprocess_env()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect_synthobs.cli",
            "demo",
            "--rows",
            "2000",
            "--real-rows",
            "1000",
            "--epochs",
            "2",
            "--store",
            str(tmp_path / "store"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "synthobs demo summary" in out and str(tmp_path / "store") in out
    stages = ["1/3 train (train-generator)", "2/3 generate (generate-synthetic)", "3/3 quality check (check-quality)"]
    assert all(out.count(s) == 1 for s in stages)
    assert [out.index(s) for s in stages] == sorted(out.index(s) for s in stages)
    assert out.index(stages[-1]) < out.index("pipeline completed in ") < out.index("synthobs demo summary")
    assert "generate-synthetic" in out and "2,000 rows" in out
    assert 'synthobs_flow_runs_total{flow="synthetic-pipeline"' in out
    # where to look next, for the store this demo wrote to
    # with paths that run from the user's shell even when the venv is not activated
    store = re.escape(str(tmp_path / "store"))
    synthobs = re.search(rf"dashboards: (\S+) report --store {store} ", out)
    python = re.search(rf"(\S+) -m prefect_synthobs.sample_flows.health_report --once --store {store} ", out)
    assert synthobs and python, out[-800:]
    assert Path(synthobs.group(1)).exists() and Path(python.group(1)).samefile(sys.executable)
    runs = so.HealthStore(str(tmp_path / "store")).read("flow_runs")
    assert len(runs) == 4


@pytest.mark.slow
def test_cli_rejects_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "prefect_synthobs.cli", "demo", "--rows", "0"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--rows must be at least 1" in proc.stderr


@pytest.mark.slow
def test_compact_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import datetime, timezone

    from prefect_synthobs.cli import main
    from prefect_synthobs.health.rows import task_row

    store = so.HealthStore(str(tmp_path))
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    rows = [
        task_row(
            task_run_id=f"t{i}",
            flow_run_id="f",
            flow_name="f",
            task_name="t",
            state_type="COMPLETED",
            state_name="Completed",
            start_time=start,
            end_time=start,
            run_count=1,
        )
        for i in range(3)
    ]
    for row in rows:
        store.write("task_runs", [row])
    assert main(["compact", "--store", str(tmp_path), "--table", "task_runs"]) == 0
    assert "3 → 1 files, 3 rows" in capsys.readouterr().out
    assert len(list((tmp_path / "task_runs").rglob("*.parquet"))) == 1
    pd.testing.assert_series_equal(
        store.read("task_runs").task_run_id.sort_values(ignore_index=True),
        pd.Series(["t0", "t1", "t2"], name="task_run_id"),
        check_dtype=False,
    )
