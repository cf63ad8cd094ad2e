"""The demo's real generators: SDV's GaussianCopulaSynthesizer and CTGANSynthesizer (CPU).

``synthetic_pipeline.py`` uses them where SDV is installed (the ``sdv`` extra: ``scripts/demo.sh`` installs
it with PyTorch's CPU build into ``.venv-sdv``). Nothing here calls synthobs: inside an observed run its
autolog (on by default) records each ``fit`` (a ``models`` row: class, parameters, rows, columns, seconds,
size), CTGAN's epochs as each one ends (``training_epochs`` with the generator and discriminator losses)
and the rows each ``sample`` returns (the run's ``rows``, a ``generation.sample`` span). Without SDV the
pipeline keeps its numpy copula, recorded by hand.

SDV is imported on first use only (it imports PyTorch: seconds), never when this module is imported.
SDV 2.x API: ``fit`` takes ``{table: frame}``, ``sample(num_rows=)`` returns ``{table: frame}``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd

CTGAN_ROWS = 1_000
"""CTGAN trains on a sample of this many rows: a few epochs on 2 CPU cores stay within seconds."""
_EXPECTED_WARNINGS = (
    "We strongly recommend saving the metadata",  # the demo detects it again on every run, by design
    "The training data does not cover the full range",  # CTGAN fits on a sample of the rows, by design
)
"""SDV's warnings about what the demo does on purpose (silenced around its fits only)."""
CTGAN_BATCH_SIZE = 500
"""CTGAN's batch size (a multiple of its ``pac`` of 10): two steps an epoch on ``CTGAN_ROWS`` rows."""


def sdv_version() -> str | None:
    """The installed SDV's version, or ``None`` where SDV is not importable (checked without importing it)."""
    if importlib.util.find_spec("sdv") is None:
        return None
    try:
        return importlib.metadata.version("sdv")
    except importlib.metadata.PackageNotFoundError:
        return None


class Generators:
    """The fitted generators of one training run and the metadata they were fitted with.

    ``models`` maps a name to a fitted model, the first one generating the synthetic table, the others
    trained beside it as challengers (sampled and scored, never gated). Slotted on purpose: Prefect stores
    a flow's parameters as JSON, and an object without ``__dict__`` is stored as a placeholder at once
    instead of being walked through (a fitted synthesizer holds a torch network and a data processor).
    """

    __slots__ = ("metadata", "models")

    def __init__(self, models: dict[str, Any], metadata: Any) -> None:
        if not models:
            raise ValueError("Generators needs at least one model")
        self.models = dict(models)
        self.metadata = metadata

    @property
    def main(self) -> tuple[str, Any]:
        """``(name, model)`` of the model that generates the synthetic table."""
        return next(iter(self.models.items()))

    @property
    def challengers(self) -> dict[str, Any]:
        """The models trained beside the main one."""
        return dict(list(self.models.items())[1:])


def _sdv(module: str) -> Any:
    return importlib.import_module(f"sdv.{module}")


def detect_metadata(table: str, frame: pd.DataFrame) -> Any:
    """SDV's own ``Metadata`` for ``frame`` as table ``table`` (what synthobs' quality checks take as is)."""
    return _sdv("metadata").Metadata.detect_from_dataframes({table: frame})


@contextlib.contextmanager
def _expected_warnings_silenced() -> Iterator[None]:
    with warnings.catch_warnings():
        for advice in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=advice, category=UserWarning)
        yield


def gaussian_copula(metadata: Any) -> Any:
    """An unfitted ``GaussianCopulaSynthesizer`` (no epochs: one fit of marginals and correlations)."""
    with _expected_warnings_silenced():
        return _sdv("single_table").GaussianCopulaSynthesizer(metadata)


def ctgan(metadata: Any, epochs: int) -> Any:
    """An unfitted ``CTGANSynthesizer`` that trains ``epochs`` epochs on the CPU."""
    with _expected_warnings_silenced():
        return _sdv("single_table").CTGANSynthesizer(
            metadata, epochs=epochs, batch_size=CTGAN_BATCH_SIZE, enable_gpu=False, verbose=False
        )


def fit(synthesizer: Any, table: str, frame: pd.DataFrame) -> Any:
    """Fit ``synthesizer`` on ``frame`` as table ``table``; returns it.

    joblib runs in threads here: CTGAN transforms the columns of 500 rows or more with ``n_jobs=-1``, and
    on 2 cores starting joblib's worker processes cost 8-9 s of a 1,000-row fit (17 s against 8.6 s measured
    with threads; a second fit in the same process 12 s against 3.6 s)."""
    with importlib.import_module("joblib").parallel_config(backend="threading"), _expected_warnings_silenced():
        synthesizer.fit({table: frame})
    return synthesizer


def sample(synthesizer: Any, table: str, rows: int) -> pd.DataFrame:
    """``rows`` rows of table ``table`` from a fitted synthesizer."""
    out = synthesizer.sample(num_rows=rows)
    frame: pd.DataFrame = out[table] if isinstance(out, dict) else out
    return frame


def trained_models_summary(store: Any, flow_run_ids: set[str], *, since: str) -> list[str]:
    """The demo summary's section on the models the flow runs ``flow_run_ids`` trained, read from ``store``
    (a ``HealthStore``) since ``since``: a heading and one line per model; nothing when none was recorded
    (the numpy copula, or autolog off)."""
    models = store.read("models", since=since)
    models = models[models.flow_run_id.isin(flow_run_ids)]
    if models.empty:
        return []
    epochs = store.read("training_epochs", since=since)
    return ["models trained (recorded by autolog):", *trained_models_lines(models, epochs)]


def trained_models_lines(models: pd.DataFrame, epochs: pd.DataFrame) -> list[str]:
    """The demo summary's lines about the models a run trained, from the store's ``models`` and
    ``training_epochs`` rows (pure): one line per model (class, rows × columns, epochs, fit time, final
    losses), and how many epoch rows came with it, at how many distinct times."""
    lines: list[str] = []
    for row in models.sort_values("time").itertuples():
        shape = f"{_int(row.fit_rows):,} rows × {_int(row.fit_columns)} columns"
        n_epochs = f"{_int(row.epochs)} epochs" if pd.notna(row.epochs) else "no epochs"
        mine = epochs[epochs.model_id == row.model_id] if "model_id" in epochs else epochs.iloc[:0]
        recorded = f" ({len(mine)} loss rows, {mine.time.nunique()} epoch ends)" if len(mine) else ""
        losses = ", ".join(f"{k} {v:.3f}" for k, v in _losses(row.final_losses))
        lines.append(
            f"  {row.synthesizer!s:<26} {row.status!s:<9} {shape:<26} fit {row.fit_seconds:6.2f} s  "
            f"{n_epochs}{recorded}{f'; final losses: {losses}' if losses else ''}"
        )
    return lines


def _int(value: Any) -> int:
    return int(value) if pd.notna(value) else 0


def _losses(text: Any) -> Iterable[tuple[str, float]]:
    try:
        data = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return []
    return [(str(k), float(v)) for k, v in data.items() if isinstance(v, (int, float))]
