"""The leaderboard and training artifacts fit Prefect's artifact pane and keep every value (``artifact_tables``).

Measured in headless Chromium with the Prefect 3.9 UI's stylesheet (Inter, 14 px, 12 px cell padding, bold
headers) at a 1,400 px window, the pane 844 px: ``synthobs-models`` needed 2,229 px before (15 columns, the
model id alone about 500 px), ``synthobs-training`` 3,484 px (21 columns); now, with names such as
``GaussianCopulaSynthesizer`` and ``CTGANSynthesizer 84a24d`` in a ``transactions`` table, 819 and 814 px, and
the tables they moved to at most 780 px. A browser cannot run in the fast tier: ``pane_px`` estimates a
table's width from its text (a character 7.4 px, 8.2 in a bold header, 10.6 in a sparkline, 24 px of padding a
column): at or above Chromium's width on all 34 tables measured (every artifact of two demo reports, and this
module's), by 0 to 40 px for the leaderboard and training tables.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest

from prefect_synthobs.reports.artifact_tables import (
    ARTIFACTS,
    EMPTY_TABLES,
    MODELS,
    MODELS_DETAILS,
    MODELS_PRIVACY,
    TRAINING,
    TRAINING_CURVES,
    TRAINING_DETAILS,
    artifact_table,
    table_rows,
)
from prefect_synthobs.reports.cells import escape
from prefect_synthobs.reports.models import LEADERBOARD_SCORES, leaderboard
from prefect_synthobs.reports.training import Training, build_training

PANE_PX = 844
"""The artifact pane of the Prefect 3.9 UI in a 1,400 px window."""
BOUND_PX = 850
"""What ``pane_px`` may say: it is up to 40 px above the measured width of these tables (this module's
leaderboard: 845 estimated, 828 measured), so a table within it is within the pane."""
_SPARK = set("▁▂▃▄▅▆▇█·")
UNTIL = datetime(2026, 12, 3, 20, 0, tzinfo=timezone.utc)
SINCE = UNTIL - timedelta(hours=24)


def pane_px(rows: list[dict[str, Any]]) -> int:
    """A table's width in the UI estimated from its text (see the module docstring)."""

    def text(value: Any, per: float) -> float:
        return sum(10.6 if ch in _SPARK else per for ch in str(value))

    columns = list(dict.fromkeys(c for r in rows for c in r))
    return round(sum(24 + max(text(c, 8.2), *(text(r.get(c, ""), 7.4) for r in rows)) for c in columns))


def sdv_id(synthesizer: str) -> str:
    return f"{synthesizer}_1.17.4_{uuid.uuid4().hex}"  # as SDV names its synthesizers


COPULA, CTGAN, CTGAN_B = sdv_id("GaussianCopulaSynthesizer"), sdv_id("CTGANSynthesizer"), sdv_id("CTGANSynthesizer")
MODELS_OF = {  # table -> (model id, type)
    "customers": ((COPULA, "GaussianCopulaSynthesizer"), (CTGAN, "CTGANSynthesizer")),
    "transactions": ((CTGAN, "CTGANSynthesizer"), (CTGAN_B, "CTGANSynthesizer")),
}


def quality() -> pd.DataFrame:
    rows = []
    for table, models in MODELS_OF.items():
        for k, (model_id, model_type) in enumerate(models):
            for j, metric in enumerate(LEADERBOARD_SCORES):
                rows.append(
                    {
                        "time": UNTIL - timedelta(hours=2, minutes=j),
                        "table_name": table,
                        "model_id": model_id,
                        "model_type": model_type,
                        "metric": metric,
                        "score": 0.912345 - 0.1 * k - 0.01 * j,
                        "threshold": 0.8 if metric == "overall" else None,
                        "passed": k == 0 if metric == "overall" else None,
                    }
                )
    frame: pd.DataFrame = pd.DataFrame(rows)
    return frame


def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Fits as SDV's autolog writes them, types named as their classes (the longest names): a copula, a CTGAN
    of 300 epochs fitted twice (one with NaN losses), a CTGAN that failed; the flow runs' rows."""
    models, epochs, runs = [], [], []
    fits = (
        ("customers", COPULA, "GaussianCopulaSynthesizer", "GaussianCopulaSynthesizer", 0, "completed", None, 3),
        ("customers", CTGAN, "CTGANSynthesizer", "CTGANSynthesizer", 300, "completed", None, 5),
        ("customers", CTGAN, "CTGANSynthesizer", "CTGANSynthesizer", 300, "completed", None, 8),
        ("transactions", CTGAN_B, "CTGANSynthesizer", "ctgan", 40, "failed", "ValueError", 10),
    )
    for n, (table, model_id, synthesizer, model_type, n_epochs, status, error, hours) in enumerate(fits):
        run = str(uuid.UUID(int=n + 1))
        end = UNTIL - timedelta(hours=hours)
        for e in range(n_epochs):
            for loss_type, loss in (("generator", 1.5 - e / 300), ("discriminator", -0.2 + e / 1000)):
                epochs.append(
                    {
                        "time": end - timedelta(seconds=n_epochs - e),
                        "flow_run_id": run,
                        "flow_name": "train-generator",
                        "model_type": model_type,
                        "epoch": e,
                        "loss_type": loss_type,
                        "loss": float("nan") if (n == 2 and e % 50 == 7) else loss,
                        "model_id": model_id,
                        "epoch_seconds": 4.115234,
                    }
                )
        models.append(
            {
                "time": end,
                "flow_run_id": run,
                "flow_name": "train-generator",
                "model_id": model_id,
                "library": "sdv",
                "synthesizer": synthesizer,
                "model_type": model_type,
                "table_name": table,
                "fit_rows": 200_000,
                "fit_columns": 120,
                "fit_seconds": 1234.5678,
                "epochs": n_epochs or None,
                "status": status,
                "error_type": error,
                "final_losses": None,
            }
        )
        runs.append({"flow_run_id": run, "table_name": table, "rows": 400_000, "duration_s": 1300.25})
    return pd.DataFrame(models), pd.DataFrame(epochs), pd.DataFrame(runs)


@pytest.fixture(scope="module")
def board() -> list[dict[str, Any]]:
    return leaderboard(quality(), frames()[0])


@pytest.fixture(scope="module")
def training() -> Training:
    models, epochs, runs = frames()
    return build_training(models, epochs, runs, SINCE, UNTIL)


def test_every_table_fits_the_pane_with_realistic_names(board: list[dict[str, Any]], training: Training) -> None:
    assert pane_px(table_rows(board)) > 2 * PANE_PX  # before: every column side by side
    assert pane_px(table_rows(training.fits)) > 3 * PANE_PX
    shown = {
        key: artifact_table(key, rows)
        for key, rows in (
            (MODELS, board),
            (MODELS_PRIVACY, board),
            (MODELS_DETAILS, board),
            (TRAINING, training.fits),
            (TRAINING_CURVES, training.losses),
            (TRAINING_DETAILS, training.fits),
        )
    }
    assert "CTGANSynthesizer fit 2/2" in {r["model"] for r in shown[TRAINING]}  # the longest names are there
    assert any(len(r["by epoch"]) == 24 for r in shown[TRAINING_CURVES])
    for key, rows in shown.items():
        assert pane_px(rows) <= BOUND_PX, (key, pane_px(rows))
    assert list(shown[MODELS][0]) == [
        "table",
        "model",
        "checks",
        "passed",
        "overall",
        "diag",
        "detect",
        "tstr",
        "fit s",
    ]
    assert list(shown[MODELS_PRIVACY][0]) == ["table", "model", "exact match", "DCR protect", "MIA AUC", "disclosure"]
    assert list(shown[TRAINING][0]) == [
        "table",
        "model",
        "status",
        "epochs",
        "rows × cols",
        "fit s",
        "epoch s",
        "NaN",
    ]
    assert list(shown[TRAINING_CURVES][0]) == ["table", "model", "loss", "final", "by epoch"]
    assert {tuple(r) for r in shown[MODELS_DETAILS] + shown[TRAINING_DETAILS]} == {("detail", "value")}


def test_the_models_tables_keep_every_value(board: list[dict[str, Any]]) -> None:
    main, privacy = artifact_table(MODELS, board), artifact_table(MODELS_PRIVACY, board)
    details = artifact_table(MODELS_DETAILS, board)
    assert len(main) == len(privacy) == len(board) == 4
    for raw, row, secret in zip(board, main, privacy, strict=True):
        assert (
            (row["table"], row["model"]) == (secret["table"], secret["model"]) == (raw["table"], escape(raw["model"]))
        )
        assert row["checks"] == raw["checks"] and row["passed"] == f"{100 * raw['pass_rate']:.1f} %"
        for column, name in (("overall", "overall"), ("diagnostic", "diag"), ("detection", "detect")):
            assert float(row[name]) == raw[column]
        assert float(row["tstr"]) == raw["tstr_ratio"] and row["fit s"] == f"{raw['fit_seconds']:,.2f}"
        assert float(secret["MIA AUC"]) == raw["membership_inference_auc"]
        assert float(secret["exact match"]) == raw["exact_match_rate"]
        assert float(secret["DCR protect"]) == raw["dcr_overfitting_protection"]
        assert float(secret["disclosure"]) == raw["disclosure_protection"]
    # each model's lines: model, table, type, id (escaped, whole)
    assert [(r["detail"], r["value"]) for r in details[:4]] == [
        ("model", escape(board[0]["model"])),
        ("table", board[0]["table"]),
        ("type", escape(board[0]["model_type"])),
        ("model id", escape(board[0]["model_id"])),
    ]
    assert {r["value"] for r in details if r["detail"] == "model id"} == {escape(m) for m in (COPULA, CTGAN, CTGAN_B)}
    assert "CTGANSynthesizer" in {r["model"] for r in board} and len(details) == 4 * len(board)


def test_the_training_tables_keep_every_value(training: Training) -> None:
    main, curves = artifact_table(TRAINING, training.fits), artifact_table(TRAINING_CURVES, training.losses)
    details = artifact_table(TRAINING_DETAILS, training.fits)
    for raw, row in zip(training.fits, main, strict=True):
        assert (row["model"], row["status"], row["epochs"]) == (
            escape(raw["model"]),
            raw["status"],
            raw["epochs"] or "",
        )
        assert row["rows × cols"] == "200,000 × 120" and row["fit s"] == "1,234.57"
        assert row["NaN"] == raw["nonfinite_losses"]
    assert sorted(r["NaN"] for r in main) == [0, 0, 0, 12]  # the first CTGAN fit's NaN losses: 6 epochs, 2 losses
    by_fit = {(r["model"], r["loss"]): r for r in curves}
    for raw in training.fits:  # each fit's final losses, as the table's one cell showed them
        for part in (raw["final_losses"] or "").split("; ") if raw["final_losses"] else []:
            loss, final = part.split(" ", 1)
            assert by_fit[(escape(raw["model"]), loss)]["final"] == final
    for raw, row in zip(training.losses, curves, strict=True):
        assert row["by epoch"] == raw["by_epoch"] and row["loss"] == raw["loss"]
    # the details: every value of every fit that is not in the other two tables
    blocks: list[dict[str, Any]] = []
    for r in details:
        if r["detail"] == "model":
            blocks.append({})
        blocks[-1][r["detail"]] = r["value"]
    assert len(blocks) == len(training.fits)
    for raw, block in zip(training.fits, blocks, strict=True):
        assert block["model"] == escape(raw["model"]) and block["table"] == raw["table"]
        assert block["flow run id"] == escape(raw["flow_run_id"]) and block["model id"] == escape(raw["model_id"])
        assert (block["flow"], block["library"], block["run rows"]) == ("train-generator", "sdv", 400_000)
        assert block["synthesizer"] == raw["synthesizer"] and block["type"] == escape(raw["model_type"])
        assert block["end (UTC)"] == f"{datetime.fromisoformat(raw['time']):%Y-%m-%d %H:%M}"
        assert block["run rows/s"] == "308" and block.get("error") == (raw["error_type"] or None)


def test_the_new_tables_say_when_they_are_empty() -> None:
    for key in (MODELS, MODELS_PRIVACY, MODELS_DETAILS, TRAINING, TRAINING_CURVES, TRAINING_DETAILS):
        assert key in ARTIFACTS and artifact_table(key, []) == [{"status": EMPTY_TABLES[key]}]
    # a leaderboard without privacy scores: the privacy table says so
    plain = [{"table": "t", "model": "m", "overall": 0.9, "exact_match_rate": None}]
    assert artifact_table(MODELS_PRIVACY, plain) == [{"status": EMPTY_TABLES[MODELS_PRIVACY]}]
    for key in (MODELS, TRAINING):  # each main table's description names where the rest went
        assert all(k in ARTIFACTS[key][1] for k in ARTIFACTS if k.startswith(key + "-"))


def test_hostile_names_stay_text_in_every_new_table() -> None:
    hostile = "a|b <img src=x onerror=alert(1)> [x](javascript:1) \x1b[2J\u202e"
    row = {"table": hostile, "model": hostile, "checks": 1, "overall": 0.5, "exact_match_rate": 0.1}
    row |= {"model_type": hostile, "model_id": hostile, "status": hostile, "flow": hostile, "error_type": hostile}
    loss = {"table": hostile, "model": hostile, "loss": hostile, "final": 0.5, "arrow": "↓", "by_epoch": "▁█"}
    for key, rows in ((MODELS, [row]), (MODELS_PRIVACY, [row]), (MODELS_DETAILS, [row]), (TRAINING, [row])):
        for cell in (v for r in artifact_table(key, rows) for v in r.values()):
            assert cell in ("", escape(hostile)) or not isinstance(cell, str) or "|" not in cell.replace("\\|", "")
    cells = [
        v for r in artifact_table(TRAINING_DETAILS, [row]) + artifact_table(TRAINING_CURVES, [loss]) for v in r.values()
    ]
    assert escape(hostile) in cells and hostile not in cells
    assert all("\x1b" not in str(c) and str(c).count("<") == str(c).count("\\<") for c in cells)


def test_the_quality_table_leaves_model_types_and_ids_to_the_details() -> None:
    from prefect_synthobs.reports.models import quality_table

    current = quality()
    rows = quality_table(current, current.iloc[0:0])
    for row in rows:  # 14 days of sparkline, as the report adds it
        row["average_by_day"] = "▁▂▃▄▅▆▇█▇▆▅▄▃▂"
    shown = artifact_table("synthobs-quality", rows)
    assert {"model_id", "model_type"}.isdisjoint(shown[0]) and list(shown[0])[:4] == [
        "table",
        "model",
        "metric",
        "average",
    ]
    assert len(shown) == len(rows) and {r["model"] for r in shown} == {r["model"] for r in rows}
    # the ids were its widest columns (an SDV id alone ~500 px); the table still needs about 1,140 px (left out)
    assert pane_px(shown) < pane_px(rows) - 600
    assert "synthobs-models-details" in ARTIFACTS["synthobs-quality"][1]
