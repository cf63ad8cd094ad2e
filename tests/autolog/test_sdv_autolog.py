"""Autolog on the real SDV 2.x and ctgan: what a flow that only says ``observe`` gets recorded.

Runs in the sdv environment (``.venv-sdv``: pandas 2, CPU torch, SDV; ``scripts/test.sh`` runs it after the
main suite). Real libraries, small data, a few epochs; read back from the store on the real test server.
"""

from __future__ import annotations

import json
import logging
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect import flow, task

from conftest import run_python, subprocess_env

sdv = pytest.importorskip("sdv", reason="SDV needs pandas < 3: these run in the sdv environment (scripts/test.sh)")

from sdv.metadata import Metadata  # noqa: E402
from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer  # noqa: E402

import prefect_synthobs as so  # noqa: E402
from prefect_synthobs import catalog as names  # noqa: E402
from prefect_synthobs.config import active as so_settings  # noqa: E402
from prefect_synthobs.instrument.instrumentation import current_runtime  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def people(n: int = 800, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 12_000, n).round(2),
            "segment": rng.choice(["a", "b", "c"], n),
        }
    )


SDV2 = int(sdv.__version__.split(".")[0]) >= 2
"""SDV 2.x takes and returns ``{table: frame}`` in single-table ``fit``/``sample``; 1.x frames."""


def fit(synth: Any, frame: pd.DataFrame, table: str = "people") -> None:
    synth.fit({table: frame} if SDV2 else frame)


def sample(synth: Any, n: int, table: str = "people") -> pd.DataFrame:
    out = synth.sample(num_rows=n)
    return out[table] if SDV2 else out


def read(store: Path, table: str) -> pd.DataFrame:
    return so.HealthStore(str(store)).read(table)


def test_a_flow_with_only_observe_records_both_models_live_epochs_rows_and_quality(store_dir: Path) -> None:
    """The issue's done-when: CTGAN (3 epochs) and GaussianCopula fitted on 800 rows, 500 rows sampled
    twice, no synthobs call but ``observe`` (and check_quality given SDV's own Metadata)."""
    real = people()
    metadata = Metadata.detect_from_dataframes({"people": real})
    models: dict[str, Any] = {}

    @so.observe(kind="generation", table="people")
    @flow
    def pipeline() -> dict[str, float]:
        scores = {}
        ctgan = CTGANSynthesizer(metadata, epochs=3)
        copula = GaussianCopulaSynthesizer(metadata)
        for synth in (ctgan, copula):
            fit(synth, real)
            models[type(synth).__name__] = synth
        first = sample(ctgan, 500)
        second = sample(copula, 500)
        for synth, synthetic in ((ctgan, first), (copula, second)):
            result = so.check_quality(real, synthetic, metadata, model=synth)
            scores[type(synth).__name__] = result.scores["overall"]
        return scores

    scores = pipeline()
    assert set(scores) == {"CTGANSynthesizer", "GaussianCopulaSynthesizer"}
    fitted = read(store_dir, names.MODELS).set_index("synthesizer")
    assert sorted(fitted.index) == ["CTGANSynthesizer", "GaussianCopulaSynthesizer"]
    assert (fitted.fit_rows == 800).all() and (fitted.fit_columns == 3).all()
    assert (fitted.library == "sdv").all() and (fitted.status == "completed").all()
    assert (fitted.table_name == "people").all()
    ctgan_row, copula_row = fitted.loc["CTGANSynthesizer"], fitted.loc["GaussianCopulaSynthesizer"]
    assert ctgan_row.model_id == models["CTGANSynthesizer"]._synthesizer_id
    assert ctgan_row.model_type == "ctgan" and copula_row.model_type == "gaussian_copula"
    assert ctgan_row.epochs == 3 and pd.isna(copula_row.epochs)
    assert ctgan_row.size_bytes > 10_000 and copula_row.size_bytes > 1_000
    assert json.loads(ctgan_row.parameters)["epochs"] == 3
    assert set(json.loads(ctgan_row.final_losses)) == {"generator", "discriminator"}
    assert 0 < ctgan_row.fit_seconds < 600

    epochs = read(store_dir, names.TRAINING_EPOCHS)
    assert set(epochs.model_id) == {ctgan_row.model_id}
    assert sorted(epochs.epoch.unique()) == [0, 1, 2]
    assert (epochs.groupby("epoch").loss_type.nunique() >= 2).all()
    ends = epochs.groupby("epoch").time.first().sort_index()
    assert ends.is_monotonic_increasing and ends.nunique() == 3  # recorded as each epoch ended
    assert (epochs.epoch_seconds > 0).all()
    assert ends.iloc[-1] <= pd.Timestamp(fitted.loc["CTGANSynthesizer", "time"])

    flows = read(store_dir, names.FLOW_RUNS)
    assert flows.rows.tolist() == [1000]

    quality = read(store_dir, names.QUALITY_CHECKS)
    by_model = quality.groupby("model_id").model_type.first().to_dict()
    assert by_model == {ctgan_row.model_id: "ctgan", copula_row.model_id: "gaussian_copula"}


def test_check_quality_without_a_model_takes_the_one_model_sampled(store_dir: Path) -> None:
    real = people(300)
    metadata = Metadata.detect_from_dataframes({"people": real})

    @so.observe(kind="quality", table="people")
    @flow
    def one_model() -> str:
        synth = GaussianCopulaSynthesizer(metadata)
        fit(synth, real)
        synthetic = sample(synth, 200)
        so.check_quality(real, synthetic, metadata)
        return str(synth._synthesizer_id)

    model_id = one_model()
    quality = read(store_dir, names.QUALITY_CHECKS)
    assert set(quality.model_id) == {model_id}
    assert set(quality.model_type) == {"gaussian_copula"}


def test_outside_an_observed_run_autolog_records_nothing_and_says_nothing(
    store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    so.observe(kind="other")(flow(lambda: None))  # installs synthobs (and autolog) in this process
    assert "sdv" in so.autolog.active_libraries()
    real = people(200)
    synth = GaussianCopulaSynthesizer(Metadata.detect_from_dataframes({"people": real}))
    with caplog.at_level(logging.WARNING):
        fit(synth, real)
        assert len(sample(synth, 50)) == 50
    assert not [r for r in caplog.records if "synthobs" in r.getMessage()]
    assert not (store_dir / names.MODELS).exists()


def test_a_hand_made_record_rows_after_a_sample_is_not_counted_twice(
    store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    real = people(300)
    metadata = Metadata.detect_from_dataframes({"people": real})

    @so.observe(kind="generation", table="people")
    @flow
    def upgraded_user() -> None:
        synth = GaussianCopulaSynthesizer(metadata)
        fit(synth, real)
        frame = sample(synth, 120)
        so.record_rows(len(frame))  # the hand-made wiring of before: the same rows
        so.record_rows(30)  # other rows: counted
        frame = sample(synth, 40)

    with caplog.at_level(logging.WARNING):
        upgraded_user()
    assert read(store_dir, names.FLOW_RUNS).rows.tolist() == [120 + 30 + 40]
    assert any("not counted twice" in r.getMessage() for r in caplog.records)


def test_a_task_ending_just_before_the_sample_leaves_the_hand_made_count_a_repeat(store_dir: Path) -> None:
    """A task run's end is a row event when the task ends, not when the task-end batch counts its rows (up to
    ``TASK_BATCH_WAIT_SECONDS`` later): a sample taken right after it, then the batch recording the task's end
    (as its thread does during a slower write), then the hand-made ``record_rows`` of the same rows still count
    them once."""
    real = people(300)
    metadata = Metadata.detect_from_dataframes({"people": real})

    @task
    def prep() -> int:
        so.record_rows(5, table="staging")  # rows of its own: the batch counts them after the sample
        return 1

    @so.observe(kind="generation", table="people")
    @flow
    def pipeline() -> None:
        synth = GaussianCopulaSynthesizer(metadata)
        fit(synth, real)
        prep()
        frame = sample(synth, 120)
        current_runtime().task_ends.flush()  # what the batch thread does during a slow write, made certain
        so.record_rows(len(frame))  # the hand-made wiring of before: the same rows

    pipeline()
    assert read(store_dir, names.FLOW_RUNS).rows.tolist() == [120 + 5]


def test_disable_puts_every_library_method_back_exactly() -> None:
    import ctgan.synthesizers.ctgan as ctgan_module
    import ctgan.synthesizers.tvae as tvae_module
    import sdv.multi_table.base as multi
    import sdv.single_table.base as single

    classes = (
        ctgan_module.CTGAN,
        tvae_module.TVAE,
        single.BaseSynthesizer,
        single.BaseSingleTableSynthesizer,
        multi.BaseMultiTableSynthesizer,
    )

    def snapshot() -> dict[tuple[str, str], Any]:
        return {(c.__name__, k): v for c in classes for k, v in c.__dict__.items()}

    so.autolog.AUTOLOG.release()  # as before synthobs was installed
    pristine = snapshot()
    try:
        so.autolog.enable()
        changed = {key for key, value in snapshot().items() if pristine.get(key) is not value}
        assert {("CTGAN", "fit"), ("CTGAN", "__setattr__"), ("TVAE", "sample"), ("BaseSynthesizer", "fit")} <= changed
        assert ("BaseSingleTableSynthesizer", "sample") in changed and ("BaseMultiTableSynthesizer", "fit") in changed
        so.autolog.disable()
        assert snapshot() == pristine
        assert "__setattr__" not in ctgan_module.CTGAN.__dict__
    finally:
        so.autolog.AUTOLOG.release()
    so.observe(kind="other")(flow(lambda: None))  # the setting applies again
    assert so.autolog.active_libraries() == {"sdv", "ctgan", "synthcity"}


def test_the_autolog_setting_false_records_no_model(store_dir: Path) -> None:
    so_settings.configure(autolog=False)
    real = people(200)
    metadata = Metadata.detect_from_dataframes({"people": real})

    @so.observe(kind="generation", table="people")
    @flow
    def off() -> None:
        synth = GaussianCopulaSynthesizer(metadata)
        fit(synth, real)
        synth.sample(num_rows=10)

    try:
        off()
        assert so.autolog.active_libraries() == frozenset()
        assert not (store_dir / names.MODELS).exists()
        assert read(store_dir, names.FLOW_RUNS).rows.tolist() == [0]
    finally:
        so_settings.configure(autolog=True)


def test_tvae_and_direct_ctgan_classes_record_epochs(store_dir: Path) -> None:
    from ctgan import CTGAN

    real = people(300)
    metadata = Metadata.detect_from_dataframes({"people": real})

    @task
    def direct() -> int:
        model = CTGAN(epochs=2)
        model.fit(real, discrete_columns=["segment"])
        return len(model.sample(77))

    @so.observe(kind="training", table="people")
    @flow
    def both() -> int:
        fit(TVAESynthesizer(metadata, epochs=2), real)
        return direct()

    assert both() == 77
    fitted = read(store_dir, names.MODELS).set_index("synthesizer")
    assert fitted.loc["TVAESynthesizer", "library"] == "sdv" and fitted.loc["CTGAN", "library"] == "ctgan"
    assert fitted.loc["CTGAN", "model_type"] == "ctgan" and fitted.loc["CTGAN", "epochs"] == 2
    assert fitted.loc["CTGAN", "task_run_id"] is not None
    epochs = read(store_dir, names.TRAINING_EPOCHS)
    tvae = epochs[epochs.model_id == fitted.loc["TVAESynthesizer", "model_id"]]
    assert set(tvae.loss_type) == {"loss"} and sorted(tvae.epoch) == [0, 1]
    assert read(store_dir, names.TASK_RUNS).rows.tolist() == [77]


@pytest.mark.parametrize("policy", ["stop", "fail", "warn"])
def test_training_policies(store_dir: Path, policy: str) -> None:
    """A slow-epoch bound no epoch meets trips at epoch 0: stop ends the fit there (the model still
    samples), fail raises TrainingHealthError once the fit is done, warn only warns."""
    so_settings.configure(training_policy=policy, training_max_epoch_seconds=1e-9)
    real = people(300)
    metadata = Metadata.detect_from_dataframes({"people": real})
    synth = CTGANSynthesizer(metadata, epochs=4)

    @so.observe(kind="training", table="people")
    @flow
    def train() -> int:
        try:
            fit(synth, real)
        except so.TrainingHealthError as exc:
            assert "slow_epoch" in str(exc)
            return -1
        return len(sample(synth, 20))

    try:
        result = train()
    finally:
        so_settings.configure(training_policy="warn", training_max_epoch_seconds=None)
    row = read(store_dir, names.MODELS).iloc[0]
    epochs = read(store_dir, names.TRAINING_EPOCHS)
    if policy == "stop":
        assert result == 20 and row.status == "stopped" and row.epochs == 1 and set(epochs.epoch) == {0}
    elif policy == "fail":
        assert result == -1 and row.status == "failed" and row.error_type == "TrainingHealthError" and row.epochs == 4
        assert synth._fitted  # the model is fitted: the run decides what to do with it
    else:
        assert result == 20 and row.status == "completed" and row.epochs == 4


RUNNER_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np, pandas as pd
    from prefect import flow, task
    from prefect.task_runners import ProcessPoolTaskRunner
    import prefect_synthobs as so

    def runner():
        if os.environ["RUNNER"] == "dask":
            from prefect_dask import DaskTaskRunner
            return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "processes": True, "threads_per_worker": 1})
        return ProcessPoolTaskRunner(max_workers=2)

    @task
    def fit_and_sample(name):
        from sdv.metadata import Metadata
        from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer
        rng = np.random.default_rng(0)
        real = pd.DataFrame({"age": rng.integers(18, 90, 800), "segment": rng.choice(["a", "b"], 800)})
        metadata = Metadata.detect_from_dataframes({"people": real})
        synth = CTGANSynthesizer(metadata, epochs=3) if name == "ctgan" else GaussianCopulaSynthesizer(metadata)
        sdv2 = int(__import__("sdv").__version__.split(".")[0]) >= 2
        import joblib
        # CTGAN's data transformer runs joblib's loky processes, which outlive the task by loky's 300 s idle
        # timeout and hold a process-pool worker (and the flow's end) that long: threads here (NOTES.md)
        with joblib.parallel_backend("threading"):
            synth.fit({"people": real} if sdv2 else real)
        synth.sample(num_rows=250)
        synth.sample(num_rows=250)
        return synth._synthesizer_id

    @so.observe(kind="generation", table="people")
    @flow(name=os.environ["FLOW_NAME"], task_runner=runner())
    def pipeline():
        futures = [fit_and_sample.submit(name) for name in ("ctgan", "copula")]
        return [f.result() for f in futures]

    if __name__ == "__main__":
        import time
        started = time.time()
        ids = pipeline()
        print("IDS", ids)
        print("FLOW SECONDS", round(time.time() - started, 1), flush=True)
""")


@pytest.mark.parametrize("runner", ["process", "dask"])
def test_the_same_holds_with_tasks_on_worker_processes(tmp_path: Path, runner: str) -> None:
    pytest.importorskip("prefect_dask") if runner == "dask" else None
    store = tmp_path / "store"
    script = tmp_path / "pipeline.py"
    script.write_text(RUNNER_SCRIPT)
    env = subprocess_env(
        RUNNER=runner,
        FLOW_NAME=f"autolog-{runner}",
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(store),
        PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE="none",
    )
    proc = run_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')", env, timeout=600)
    ids = eval(proc.stdout.split("IDS", 1)[1].strip().splitlines()[0])  # the list the flow returned
    print(proc.stdout[-300:])
    fitted = read(store, names.MODELS)
    assert sorted(fitted.model_id) == sorted(ids)
    assert (fitted.fit_rows == 800).all() and fitted.task_run_id.notna().all()
    epochs = read(store, names.TRAINING_EPOCHS)
    assert sorted(epochs.epoch.unique()) == [0, 1, 2] and epochs.groupby("epoch").time.first().nunique() == 3
    flows = read(store, names.FLOW_RUNS)
    assert flows.rows.tolist() == [1000]


def test_hma_multi_table_fit_is_one_model_and_its_sample_counts_every_table(store_dir: Path) -> None:
    from sdv.multi_table import HMASynthesizer

    rng = np.random.default_rng(1)
    customers = pd.DataFrame({"id": range(60), "age": rng.integers(18, 90, 60)})
    orders = pd.DataFrame(
        {"order_id": range(150), "customer_id": rng.integers(0, 60, 150), "amount": rng.gamma(2, 30, 150)}
    )
    data = {"customers": customers, "orders": orders}
    metadata = Metadata.detect_from_dataframes(data)

    @so.observe(kind="generation")
    @flow
    def relational() -> dict[str, int]:
        synth = HMASynthesizer(metadata)
        synth.fit(data)
        synthetic = synth.sample(num_rows=40, main_table_name="customers") if SDV2 else synth.sample(scale=0.6)
        so.check_quality(data, synthetic, metadata, model=synth)
        # one table of SDV's multi-table Metadata object: the table named
        so.check_quality(data["orders"], synthetic["orders"], metadata, model=synth, table="orders")
        return {name: len(frame) for name, frame in synthetic.items()}

    sizes = relational()
    fitted = read(store_dir, names.MODELS)
    assert len(fitted) == 1  # the per-table synthesizers HMA fits inside are part of its one fit
    row = fitted.iloc[0]
    assert row.model_type == "hma" and row.table_name == "customers,orders"
    assert row.fit_rows == 210 and row.fit_columns == 5
    assert read(store_dir, names.FLOW_RUNS).rows.tolist() == [sum(sizes.values())]
    quality = read(store_dir, names.QUALITY_CHECKS)
    assert set(quality.model_id) == {row.model_id}
    assert {"overall", "column_shapes"} <= set(quality[quality.table_name == "orders"].metric)


_FITTED: dict[str, Any] = {}


def _fitted_copula() -> Any:
    """One GaussianCopula fitted outside any run (autolog records nothing there), reused by examples."""
    if "copula" not in _FITTED:
        real = people(200)
        synth = GaussianCopulaSynthesizer(Metadata.detect_from_dataframes({"people": real}))
        fit(synth, real)
        _FITTED["copula"] = synth
    return _FITTED["copula"]


ACTIONS = st.lists(
    st.tuples(st.sampled_from(["sample", "record", "sample_and_record"]), st.integers(1, 40)), max_size=8
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_no_row_is_lost_or_doubled_for_any_interleaving_of_samples_and_hand_counts(
    store_dir: Path, actions: list[tuple[str, int]]
) -> None:
    """Expected rows, computed apart: every sampled row once, every hand count once, except a hand count
    that repeats the sample just before it (the same rows, counted by autolog already)."""
    synth = _fitted_copula()
    expected, last_sample = 0, None
    for action, n in actions:
        if action in ("sample", "sample_and_record"):
            expected, last_sample = expected + n, n
        if action in ("record", "sample_and_record"):
            if last_sample != n:
                expected += n
            last_sample = None
    name = f"mixed-{uuid.uuid4().hex[:8]}"

    @so.observe(kind="generation", table="people")
    @flow(name=name)
    def mixed() -> None:
        for action, n in actions:
            if action in ("sample", "sample_and_record"):
                frame = sample(synth, n)
                assert len(frame) == n
            if action in ("record", "sample_and_record"):
                so.record_rows(n)

    mixed()
    flows = read(store_dir, names.FLOW_RUNS)
    assert flows[flows.flow_name == name].rows.tolist() == [expected]
