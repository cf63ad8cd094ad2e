"""The Training section of the health report, over stores written with the real store and real runs.

A store holds two models of one table (a CTGAN with generator and discriminator losses, one of them
NaN at an epoch, and a GaussianCopula without epochs), a failed TVAE fit of another table, epochs
recorded by hand (no model id) and quality checks of the two models. The report's Training rows, the
leaderboard's fit seconds, ``synthobs report`` (terminal and ``--json``) and the health-report flow's
artifacts must show each fit with the numbers written; an old store (no ``models`` table, epochs
without the new columns) must still report.
"""

from __future__ import annotations

import io
import json
import math
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from rich.console import Console

import prefect_synthobs as so
from conftest import REPO
from prefect_synthobs import catalog as names
from prefect_synthobs.cli import main as cli_main
from prefect_synthobs.health import tables
from prefect_synthobs.health.rows import epoch_rows, flow_row, model_row, quality_row
from prefect_synthobs.instrument.instrumentation import get_runtime
from prefect_synthobs.reports import health as hr
from prefect_synthobs.reports.training import NO_MODEL_ID

sys.path.insert(0, str(REPO / "flows"))
import health_report as report_flow

CTGAN = "CTGANSynthesizer_2.0.0_" + "a" * 26
COPULA = "GaussianCopulaSynthesizer_2.0.0_" + "b" * 26
TVAE = "TVAE-0123456789ab"


def _fit(base: datetime, seconds: float, model_id: str, **values: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "flow_run_id": "run-train",
        "flow_name": "train-customers",
        "task_run_id": None,
        "library": "sdv",
        "parameters": "{}",
        "fit_columns": 5,
        "size_bytes": 1000,
        "status": "completed",
        "fit_rows": 800,
        "fit_seconds": 1.0,
        **values,
    }
    return model_row(time=base + timedelta(seconds=seconds), model_id=model_id, **fields)


def seed(root: Path, base: datetime) -> None:
    """The store described in the module docstring; every row at ``base`` plus seconds."""
    store = so.HealthStore(str(root))
    epochs: list[dict[str, Any]] = []
    for e in range(8):  # CTGAN: the discriminator's loss is NaN at epoch 3
        epochs += epoch_rows(
            epoch=e,
            losses={"generator": 1.0 - 0.1 * e, "discriminator": math.nan if e == 3 else 0.5 + 0.05 * e},
            time=base + timedelta(seconds=10 + e),
            flow_run_id="run-train",
            flow_name="train-customers",
            model_type="ctgan",
            model_id=CTGAN,
            epoch_seconds=0.5 + 0.1 * e,
        )
    for e, loss in enumerate((3.0, 2.5)):  # TVAE on orders: two epochs, then the fit failed
        epochs += epoch_rows(
            epoch=e,
            losses={"loss": loss},
            time=base + timedelta(seconds=30 + e),
            flow_run_id="run-train",
            flow_name="train-customers",
            model_type="tvae",
            model_id=TVAE,
            epoch_seconds=1.0,
        )
    for e in range(3):  # by hand: record_epoch, no model id
        epochs += epoch_rows(
            epoch=e,
            losses={"loss": 2.0 - 0.5 * e},
            time=base + timedelta(seconds=40 + e),
            flow_run_id="run-hand",
            flow_name="hand-made",
            model_type="copula",
        )
    store.write(names.TRAINING_EPOCHS, epochs)
    store.write(
        names.MODELS,
        [
            _fit(
                base,
                18.5,
                CTGAN,
                synthesizer="CTGANSynthesizer",
                model_type="ctgan",
                table_name="customers",
                fit_rows=800,
                fit_seconds=4.25,
                epochs=8,
                final_losses=json.dumps({"generator": 0.3, "discriminator": 0.85}),
            ),
            _fit(
                base,
                20,
                COPULA,
                synthesizer="GaussianCopulaSynthesizer",
                model_type="gaussian_copula",
                table_name="customers",
                fit_rows=800,
                fit_seconds=0.31,
                epochs=None,
            ),
            _fit(
                base,
                33,
                TVAE,
                library="ctgan",
                synthesizer="TVAE",
                model_type="tvae",
                table_name="orders",
                fit_rows=100,
                fit_seconds=2.0,
                epochs=2,
                status="failed",
                error_type="RuntimeError",
            ),
        ],
    )
    store.write(
        names.FLOW_RUNS,
        [
            flow_row(
                flow_run_id="run-train",
                flow_name="train-customers",
                state_type="COMPLETED",
                state_name="Completed",
                start_time=base,
                end_time=base + timedelta(seconds=50),
                kind="training",
                table_name="customers",
                rows=1000,
            ),
            flow_row(
                flow_run_id="run-hand",
                flow_name="hand-made",
                state_type="COMPLETED",
                state_name="Completed",
                start_time=base + timedelta(seconds=39),
                end_time=base + timedelta(seconds=45),
                kind="training",
                table_name="patients",
            ),
        ],
    )
    store.write(
        names.QUALITY_CHECKS,
        [
            quality_row(
                metric="overall",
                score=score,
                threshold=None,
                time=base + timedelta(seconds=60),
                table_name="customers",
                flow_run_id="run-train",
                flow_name="train-customers",
                model_id=model_id,
                model_type=model_type,
            )
            for model_id, model_type, score in ((CTGAN, "ctgan", 0.74), (COPULA, "gaussian_copula", 0.91))
        ],
    )


BASE = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
SINCE, UNTIL = BASE - timedelta(hours=1), BASE + timedelta(hours=1)


def by_model(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {r["model_id"] or r["model"]: r for r in rows}


def test_each_fit_shows_what_was_written(tmp_path: Path) -> None:
    seed(tmp_path / "store", BASE)
    report = hr.report_for(so.HealthStore(str(tmp_path / "store")), SINCE, UNTIL, days=None, redact_pii=False)
    fits = by_model(report.training)
    assert len(report.training) == 4  # three fits and the hand-recorded epochs, nothing else

    ctgan = fits[CTGAN]
    assert (ctgan["table"], ctgan["model"], ctgan["status"], ctgan["synthesizer"]) == (
        "customers",
        "ctgan",
        "completed",
        "CTGANSynthesizer",
    )
    assert (ctgan["epochs"], ctgan["fit_rows"], ctgan["fit_columns"], ctgan["fit_seconds"]) == (8, 800, 5, 4.25)
    assert ctgan["epoch_seconds_mean"] == pytest.approx(sum(0.5 + 0.1 * e for e in range(8)) / 8)
    assert ctgan["nonfinite_losses"] == 1  # the NaN discriminator loss is counted, not hidden
    assert ctgan["final_losses"] == "discriminator 0.85 ↑; generator 0.3 ↓"
    assert ctgan["loss_by_epoch"] == "discriminator ▁▂▃·▅▆▇█ generator █▇▆▅▄▃▂▁"
    # the fit's flow run: 1,000 rows in 50 s
    assert (ctgan["run_rows"], ctgan["run_rows_per_s"], ctgan["flow_run_id"]) == (1000, 20.0, "run-train")

    copula = fits[COPULA]
    assert (copula["epochs"], copula["fit_seconds"], copula["final_losses"], copula["epoch_seconds_mean"]) == (
        None,
        0.31,
        None,
        None,
    )
    tvae = fits[TVAE]
    assert (tvae["table"], tvae["status"], tvae["error_type"], tvae["epochs"]) == (
        "orders",
        "failed",
        "RuntimeError",
        2,
    )
    assert tvae["final_losses"] == "loss 2.5 ↓" and tvae["epoch_seconds_mean"] == 1.0

    (hand,) = [r for r in report.training if r["model_id"] is None]
    assert hand["model"] == f"{NO_MODEL_ID} run-hand" and hand["status"] is None
    assert (hand["table"], hand["flow"], hand["epochs"], hand["model_type"]) == ("patients", "hand-made", 3, "copula")
    assert hand["final_losses"] == "loss 1 ↓"

    losses = {(r["model_id"] or r["model"], r["loss"]): r for r in report.training_losses}
    assert set(losses) == {(CTGAN, "generator"), (CTGAN, "discriminator"), (TVAE, "loss"), (hand["model"], "loss")}
    generator = losses[(CTGAN, "generator")]
    assert (generator["final"], generator["vs_epoch"], generator["arrow"], generator["epochs"]) == (0.3, 2, "↓", 8)
    assert generator["change"] == pytest.approx(-0.5)
    discriminator = losses[(CTGAN, "discriminator")]
    assert (discriminator["epochs"], discriminator["nonfinite"], discriminator["vs_epoch"]) == (7, 1, 2)
    assert discriminator["change"] == pytest.approx(0.25) and discriminator["arrow"] == "↑"
    assert losses[(TVAE, "loss")]["vs_epoch"] == 0  # fewer than 5 epochs: against the first

    per_table = {r["table"]: r for r in report.training_tables}
    assert per_table["customers"] == {
        "table": "customers",
        "fits": 2,
        "completed": 2,
        "failed": 0,
        "stopped": 0,
        "other": 0,
        "no_fit_row": 0,
        "epochs": 8,
        "fit_seconds": 4.56,
        "types": "ctgan, gaussian_copula",
        "time": (BASE + timedelta(seconds=20)).isoformat(),
    }
    assert (per_table["orders"]["fits"], per_table["orders"]["failed"]) == (1, 1)
    assert (per_table["patients"]["fits"], per_table["patients"]["no_fit_row"]) == (1, 1)
    assert sum(r["fits"] for r in report.training_tables) == len(report.training)

    # the leaderboard's fit seconds come from the models table
    board = {r["model_id"]: r for r in report.models}
    assert (board[CTGAN]["fit_seconds"], board[COPULA]["fit_seconds"]) == (4.25, 0.31)

    # one flow's report shows that flow's fits only; a window before the fits shows none
    mine = hr.report_for(so.HealthStore(str(tmp_path / "store")), SINCE, UNTIL, "hand-made", days=None)
    assert [r["model_id"] for r in mine.training] == [None]
    before = hr.report_for(so.HealthStore(str(tmp_path / "store")), SINCE - timedelta(hours=5), SINCE, days=None)
    assert before.training == [] and before.training_tables == [] and before.empty


def test_terminal_json_and_overview_show_the_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(tmp_path / "store", BASE)
    since = SINCE.isoformat()
    assert (
        cli_main(["report", "--store", str(tmp_path / "store"), "--since", since, "--json", "--trend-days", "0"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert {r["model_id"] for r in data["training"]} == {CTGAN, COPULA, TVAE, None}
    assert len(data["training_losses"]) == 4 and len(data["training_tables"]) == 3

    assert cli_main(["report", "--store", str(tmp_path / "store"), "--since", since, "--trend-days", "0"]) == 0
    text = capsys.readouterr().out
    for title in ("Training", "Training losses", "Training per table"):
        assert f"\n{title}" in text
    assert "gaussian_copula" in text and "(no model id)" in text and "█▇▆▅▄▃▂▁" in text
    assert "↓ -0.5" in text and "↑ +0.25" in text  # the trend carries its arrow

    report = hr.report_for(so.HealthStore(str(tmp_path / "store")), SINCE, UNTIL, days=None)
    console = Console(file=io.StringIO(), width=100, color_system=None)
    hr.render_text(report, console=console)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    for line in shown.splitlines():  # every table fits 100 columns
        assert len(line) <= 100, line
    titles = [k for k, line in enumerate(shown.splitlines()) if line.strip() in ("Training", "Training losses")]
    training = "\n".join(shown.splitlines()[titles[0] : titles[1]])
    assert "NaN" in training and "4.25" in training
    assert training.count("│     20 │") == 3 and "20.00" not in training  # rows/s as people read them: 20, not 20.00

    markdown = hr.overview_markdown(report)
    part = markdown[markdown.index("## Training") :]
    assert "4 fit(s) in this window: 2 completed, 1 failed, 1 with epochs but no fit row" in part
    assert "13 epochs" in part  # 8 + 2 + 3 (the GaussianCopula has none)
    # the per-table table leaves out the statuses no table has (stopped, other)
    assert "| table | fits | completed | failed | no fit row | epochs | fit s | types | time |" in part
    assert "| customers | 2 | 2 | 0 | 0 | 8 | 4.56 | ctgan, gaussian\\_copula |" in part


def artifacts_of(flow_run_id: Any) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def table_of(artifact: Any) -> list[dict[str, Any]]:
    return json.loads(artifact.data) if isinstance(artifact.data, str) else list(artifact.data)


@pytest.mark.usefixtures("prefect_server")
def test_health_report_flow_publishes_the_training_artifact(store_dir: Path) -> None:
    seed(store_dir, datetime.now(timezone.utc) - timedelta(minutes=30))
    state = report_flow.health_report(store_url=str(store_dir), window_hours=1, trend_days=1, return_state=True)
    assert state.is_completed()
    artifacts = artifacts_of(state.state_details.flow_run_id)
    rows = table_of(artifacts["synthobs-training"])
    assert len(rows) == 4
    ctgan = next(r for r in rows if r["model"] == "ctgan")
    assert (ctgan["epochs"], ctgan["fit s"], ctgan["status"], ctgan["NaN"]) == (8, "4.25", "completed", 1)
    curves = {r["loss"]: r for r in table_of(artifacts["synthobs-training-curves"]) if r["model"] == "ctgan"}
    assert (curves["discriminator"]["final"], curves["generator"]["final"]) == ("0.85 ↑", "0.3 ↓")
    assert curves["generator"]["by epoch"] == "█▇▆▅▄▃▂▁"
    details = table_of(artifacts["synthobs-training-details"])
    ids = [r["value"] for r in details if r["detail"] == "model id"]
    assert hr.escape(CTGAN) in ids and len(ids) == 3  # text cells are escaped markdown; the hand line has none
    assert "\\(no model id\\) run-hand" in {r["model"] for r in rows}  # escaped like every name in a table artifact
    overview = artifacts["synthobs-overview"].data
    assert "## Training" in overview and "ctgan, gaussian\\_copula" in overview
    models = {r["model"]: r for r in table_of(artifacts["synthobs-models"])}
    assert models["ctgan"]["fit s"] == "4.25"


def test_frames_without_training_tables_give_an_empty_section() -> None:
    # frames as an older caller builds them: no models or training_epochs frame at all
    report = hr.build_report({t: pd.DataFrame(columns=c) for t, c in hr.COLUMNS.items()}, SINCE, UNTIL)
    assert report.training == [] and report.training_losses == [] and report.training_tables == []
    assert "## Training" not in hr.overview_markdown(report)
    assert hr.EMPTY_TABLES["synthobs-training"].startswith("No model fit")


@pytest.mark.usefixtures("prefect_server")
def test_an_observed_flow_with_record_epoch_shows_one_line_per_run(store_dir: Path) -> None:
    """Epochs recorded by hand (``record_epoch``: no model id), NaN included, are never dropped."""

    @so.observe(kind="training", model_type="copula", table="customers")
    @flow(name="hand-epochs")
    def train(n: int) -> None:
        for epoch in range(n):
            so.record_epoch(epoch, loss={"nll": math.nan if epoch == 1 else 1.0 / (epoch + 1)})

    train(3)
    train(2)
    get_runtime().recorder.flush()
    since, until = hr.window("1h")
    report = hr.report_for(so.HealthStore(str(store_dir)), since, until, days=None)
    lines = [r for r in report.training if r["flow"] == "hand-epochs"]
    assert sorted(r["epochs"] for r in lines) == [2, 3]
    assert {r["table"] for r in lines} == {"customers"} and {r["status"] for r in lines} == {None}
    assert all(r["model"].startswith(NO_MODEL_ID) for r in lines) and len({r["model"] for r in lines}) == 2
    assert all(r["nonfinite_losses"] == 1 for r in lines)  # epoch 1's NaN, in both runs
    three = next(r for r in lines if r["epochs"] == 3)
    assert three["final_losses"] == "nll 0.3333 ↓"  # 1/3 at epoch 2 against 1 at epoch 0
    assert report.training_tables == [
        {
            "table": "customers",
            "fits": 2,
            "completed": 0,
            "failed": 0,
            "stopped": 0,
            "other": 0,
            "no_fit_row": 2,
            "epochs": 5,
            "fit_seconds": None,
            "types": "copula",
            "time": max(r["time"] for r in lines),
        }
    ]


OLD_EPOCH_COLUMNS = ["event_id", "time", "flow_run_id", "flow_name", "model_type", "epoch", "loss_type", "loss"]


def test_an_old_store_without_models_or_the_new_columns_still_reports(tmp_path: Path) -> None:
    """Epochs written before ``model_id``/``epoch_seconds`` existed, and no ``models`` table at all."""
    root = tmp_path / "store"
    rows = epoch_rows(
        epoch=0,
        losses={"generator": 0.9, "discriminator": 1.1},
        time=BASE,
        flow_run_id="r",
        flow_name="old",
        model_type="ctgan",
    ) + epoch_rows(
        epoch=1,
        losses={"generator": 0.7, "discriminator": 1.2},
        time=BASE + timedelta(seconds=1),
        flow_run_id="r",
        flow_name="old",
        model_type="ctgan",
    )
    schema = pa.schema([tables.TRAINING_EPOCHS.schema.field(c) for c in OLD_EPOCH_COLUMNS])
    directory = root / names.TRAINING_EPOCHS / f"date={BASE:%Y-%m-%d}"
    directory.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist([{c: r[c] for c in OLD_EPOCH_COLUMNS} for r in rows], schema=schema),
        directory / f"part-{uuid.uuid4().hex}.parquet",
    )
    store = so.HealthStore(str(root))
    store.write(
        names.FLOW_RUNS,
        [
            flow_row(
                flow_run_id="r",
                flow_name="old",
                state_type="COMPLETED",
                state_name="Completed",
                start_time=BASE,
                end_time=BASE + timedelta(seconds=2),
                kind="training",
                table_name="customers",
            )
        ],
    )
    assert not (root / names.MODELS).exists()
    report = hr.report_for(store, SINCE, UNTIL, days=None)
    (line,) = report.training
    assert (line["model"], line["table"], line["epochs"], line["epoch_seconds_mean"]) == (
        f"{NO_MODEL_ID} r",
        "customers",
        2,
        None,
    )
    assert line["final_losses"] == "discriminator 1.2 ↑; generator 0.7 ↓"
    assert report.models == [] and report.training_tables[0]["no_fit_row"] == 1


def test_two_fits_of_one_model_are_two_lines_with_their_own_epochs(tmp_path: Path) -> None:
    """An SDV synthesizer keeps its id across ``fit`` calls: each fit's epochs are the ones before its row."""
    store = so.HealthStore(str(tmp_path / "store"))
    epochs: list[dict[str, Any]] = []
    for fit, start in ((0, 0), (1, 100)):
        for e in range(3):
            epochs += epoch_rows(
                epoch=e,
                losses={"loss": 10.0 * (fit + 1) - e},
                time=BASE + timedelta(seconds=start + e),
                flow_run_id="run-train",
                flow_name="train-customers",
                model_type="ctgan",
                model_id=CTGAN,
                epoch_seconds=float(fit + 1),
            )
    # a third fit still running: two epochs, no models row yet
    for e in range(2):
        epochs += epoch_rows(
            epoch=e,
            losses={"loss": 5.0},
            time=BASE + timedelta(seconds=200 + e),
            flow_run_id="run-train",
            flow_name="train-customers",
            model_type="ctgan",
            model_id=CTGAN,
        )
    store.write(names.TRAINING_EPOCHS, epochs)
    store.write(
        names.MODELS,
        [
            _fit(BASE, 3, CTGAN, synthesizer="CTGANSynthesizer", model_type="ctgan", table_name="customers", epochs=3),
            _fit(
                BASE, 103, CTGAN, synthesizer="CTGANSynthesizer", model_type="ctgan", table_name="customers", epochs=3
            ),
        ],
    )
    report = hr.report_for(store, SINCE, UNTIL, days=None, redact_pii=False)
    lines = {r["model"]: r for r in report.training}
    assert set(lines) == {"ctgan fit 1/2", "ctgan fit 2/2", "ctgan"}
    assert (lines["ctgan fit 1/2"]["final_losses"], lines["ctgan fit 1/2"]["epoch_seconds_mean"]) == ("loss 8 ↓", 1.0)
    assert (lines["ctgan fit 2/2"]["final_losses"], lines["ctgan fit 2/2"]["epoch_seconds_mean"]) == ("loss 18 ↓", 2.0)
    running = lines["ctgan"]
    assert (running["status"], running["epochs"], running["final_losses"]) == (None, 2, "loss 5 →")
    # a window that starts after the first fit ended: the first fit and its epochs are gone
    later = hr.report_for(store, BASE + timedelta(seconds=50), UNTIL, days=None, redact_pii=False)
    assert sorted(r["model"] for r in later.training) == ["ctgan", "ctgan"]
    # a window that starts within the second fit: its earlier epochs still count (read from the window before)
    within = hr.report_for(store, BASE + timedelta(seconds=101), UNTIL, days=None, redact_pii=False)
    fitted = next(r for r in within.training if r["status"] == "completed")
    assert fitted["final_losses"] == "loss 18 ↓" and fitted["loss_by_epoch"] == "loss █▅▁"


def test_hostile_names_in_training_rows_are_shown_as_text(tmp_path: Path) -> None:
    """Loss types, tables and model types come from user code: written out in the terminal, escaped in
    markdown and table artifacts, never interpreted."""
    store = so.HealthStore(str(tmp_path / "store"))
    loss_type, table, model_type = "\x1b[2Jgen|<b>", "[bold]t[/] | *x*", "ctgan\u202e"
    store.write(
        names.TRAINING_EPOCHS,
        epoch_rows(
            epoch=0,
            losses={loss_type: 0.5},
            time=BASE,
            flow_run_id="run-train",
            flow_name="train-customers",
            model_type=model_type,
            model_id=CTGAN,
        ),
    )
    store.write(
        names.MODELS,
        [_fit(BASE, 1, CTGAN, synthesizer="CTGANSynthesizer", model_type=model_type, table_name=table, epochs=1)],
    )
    report = hr.report_for(store, SINCE, UNTIL, days=None)
    console = Console(file=io.StringIO(), width=300, color_system=None)
    hr.render_text(report, console=console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b[2Jgen|<b>" in text and "[bold]t[/] | *x*" in text and "ctgan\\u202e" in text
    markdown = hr.overview_markdown(report)
    assert hr.escape(table) in markdown and table not in markdown
    (row,) = hr.table_rows(report.training)
    assert row["table"] == hr.escape(table) and hr.escape(loss_type) in row["final_losses"]
