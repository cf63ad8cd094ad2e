"""The sample pipeline and ``synthobs demo``."""

from __future__ import annotations

import json
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


def test_trained_models_lines_say_what_autolog_recorded() -> None:
    from prefect_synthobs.sample_flows.sdv_generators import trained_models_lines

    t0 = pd.Timestamp("2026-12-01 10:00", tz="UTC")
    models = pd.DataFrame(
        {
            "time": [t0 + pd.Timedelta(seconds=9), t0],
            "model_id": ["m-ctgan", "m-gc"],
            "synthesizer": ["CTGANSynthesizer", "GaussianCopulaSynthesizer"],
            "status": ["completed", "completed"],
            "fit_rows": [1000, 4000],
            "fit_columns": [7, 7],
            "fit_seconds": [4.5, 0.25],
            "epochs": [2, None],
            "final_losses": ['{"generator": 0.5, "discriminator": -0.25}', "not json"],
        }
    )
    epochs = pd.DataFrame(
        {
            "model_id": ["m-ctgan"] * 4 + ["other"],
            "time": [t0, t0, t0 + pd.Timedelta(seconds=1), t0 + pd.Timedelta(seconds=1), t0],
        }
    )
    gc, ctgan = trained_models_lines(models, epochs)  # in the order the fits ended
    assert gc.split()[:2] == ["GaussianCopulaSynthesizer", "completed"] and "4,000 rows × 7 columns" in gc
    assert "no epochs" in gc and "loss" not in gc  # unreadable final losses are left out, not an error
    assert "1,000 rows × 7 columns" in ctgan and "fit   4.50 s" in ctgan
    assert "2 epochs (4 loss rows, 2 epoch ends); final losses: generator 0.500, discriminator -0.250" in ctgan


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
def test_pipeline_records_every_stage(store_dir: Path) -> None:
    scores = demo.synthetic_pipeline(n_real=1500, n_synthetic=3000, epochs=3)
    assert {f"ks_complement:{c}" for c in ("age", "income", "tenure_months", "purchases")} <= set(scores)
    # the gates the demo sets: its generator passes them (the numpy copula's empirical marginals; SDV's copula)
    assert scores["overall"] > 0.75 and scores["exact_match_rate"] <= 0.01
    assert scores["membership_inference_auc"] < 0.6 and scores["tstr_ratio"] > 0.6
    store = so.HealthStore(str(store_dir))
    flows = store.read("flow_runs").set_index("flow_name")
    assert set(flows.index) == {"synthetic-pipeline", "train-generator", "generate-synthetic", "check-quality"}
    assert (flows.state_type == "COMPLETED").all()
    challenger_rows = 2000 if demo.USES_SDV else 0  # SDV: CTGAN samples min(3000, 2000) rows beside the copula
    assert flows.loc["generate-synthetic", "rows"] == 3000 + challenger_rows
    assert flows.loc["generate-synthetic", "rows_per_s"] > 0
    assert flows.loc["train-generator", "kind"] == "training"
    quality = store.read("quality_checks").set_index("metric")
    gated = quality[quality.threshold.notna()]
    assert len(gated) == 4 + 4 and gated.passed.astype(bool).all()  # 4 KS thresholds + 4 gates
    assert {"overall", "column_pair_trends", "dcr_overfitting_protection"} <= set(quality.index)
    ledger = store.read("privacy_ledger")
    assert list(ledger.dataset) == ["customers"] and list(ledger.epsilon) == [demo.EPSILON_PER_RUN]
    tasks = store.read("task_runs")
    epochs = store.read("training_epochs")
    if demo.USES_SDV:
        _check_sdv_records(store, flows, quality, tasks, epochs)
    else:
        assert sorted(epochs.epoch) == [0, 1, 2] and epochs.loss.notna().all()
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


def _check_sdv_records(
    store: so.HealthStore, flows: pd.DataFrame, quality: pd.DataFrame, tasks: pd.DataFrame, epochs: pd.DataFrame
) -> None:
    """What autolog recorded of SDV's fits and samples: the pipeline itself records no epoch and no row."""
    models = store.read("models").set_index("model_type")
    assert sorted(models.index) == ["ctgan", "gaussian_copula"]
    assert set(models.synthesizer) == {"GaussianCopulaSynthesizer", "CTGANSynthesizer"}
    assert (models.library == "sdv").all() and (models.status == "completed").all()
    assert (models.flow_run_id == flows.loc["train-generator", "flow_run_id"]).all()
    assert models.loc["gaussian_copula", "fit_rows"] == 1200  # 80 % of 1,500 real rows
    assert models.loc["ctgan", "fit_rows"] == 1000  # the CTGAN sample (sdv_generators.CTGAN_ROWS)
    assert (models.fit_columns == 7).all() and (models.fit_seconds > 0).all() and (models.size_bytes > 0).all()
    assert pd.isna(models.loc["gaussian_copula", "epochs"]) and models.loc["ctgan", "epochs"] == 3
    assert json.loads(models.loc["ctgan", "parameters"])["epochs"] == 3
    # CTGAN's epochs, recorded live: one time per epoch end, both losses, the model's id on each row
    ctgan_id = models.loc["ctgan", "model_id"]
    assert (epochs.model_id == ctgan_id).all() and (epochs.model_type == "ctgan").all()
    assert sorted(epochs.epoch.unique()) == [0, 1, 2]
    assert set(epochs.loss_type) == {"generator", "discriminator"} and len(epochs) == 6
    assert epochs.groupby("epoch").time.nunique().eq(1).all() and epochs.time.nunique() == 3
    assert (epochs.epoch_seconds > 0).all()
    assert set(json.loads(models.loc["ctgan", "final_losses"])) == {"generator", "discriminator"}
    # the gated quality rows carry the copula's id (check_quality(model=synth) given SDV's own Metadata),
    # the challenger's rows CTGAN's
    gated = quality[quality.threshold.notna()]
    assert (gated.model_id == models.loc["gaussian_copula", "model_id"]).all()
    assert sorted(quality.loc[["overall"]].model_id) == sorted(models.model_id)
    # the rows of each sampling task, counted by autolog
    sampled = tasks[tasks.task_name == "sample_batch"].sort_values("rows")
    assert sampled.rows.tolist() == [2000, 3000]
    assert {"fit_gaussian_copula", "fit_ctgan"} <= set(tasks.task_name) and "train_epoch" not in set(tasks.task_name)


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
def test_synthobs_demo_cli_prints_a_summary(tmp_path: Path) -> None:
    env = subprocess_env(PREFECT_LOGGING_LEVEL="INFO")  # as a user sees it (the tests' default is WARNING)
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
    assert f"generator: {demo.GENERATOR}" in out  # one line says which generator runs
    stages = ["1/3 train (train-generator)", "2/3 generate (generate-synthetic)", "3/3 quality check (check-quality)"]
    assert all(out.count(s) == 1 for s in stages)
    assert [out.index(s) for s in stages] == sorted(out.index(s) for s in stages)
    assert out.index(stages[-1]) < out.index("pipeline completed in ") < out.index("synthobs demo summary")
    # the stage lines stand out: Prefect's lines around synthobs' hooks are DEBUG records, not shown
    assert "Finished in state Completed()" in proc.stderr  # Prefect's INFO lines are there
    assert "Running hook 'synthobs_" not in proc.stderr and "Hook 'synthobs_" not in proc.stderr
    # each duration says what it is: the command's wall time, each flow run's run time
    assert re.search(r"^pipeline completed in \d+\.\d s of wall time \(", out, re.MULTILINE)
    assert "flow runs in this demo (run time: from each run's start to its end):" in out
    generated = [line for line in out.splitlines() if line.lstrip().startswith("generate-synthetic")]
    # SDV: the copula's 2,000 rows and 2,000 of CTGAN, the challenger, counted by autolog; rows/s as people read it
    rows = f"{4000 if demo.USES_SDV else 2000:,} rows"
    assert len(generated) == 1 and re.search(rf" {rows}, [\d,.]+ rows/s$", generated[0]), generated
    assert ".00 rows/s" not in out and "20000.0" not in out
    if demo.USES_SDV:  # what autolog recorded: the two models, CTGAN's two epochs with two losses each
        models = out[out.index("models trained (recorded by autolog):") : out.index("metrics (in-process")]
        assert re.search(r"GaussianCopulaSynthesizer +completed +800 rows × 7 columns .* no epochs", models)
        assert re.search(r"CTGANSynthesizer +completed +800 rows × 7 columns .* 2 epochs \(4 loss rows", models)
    else:
        assert "models trained" not in out
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
