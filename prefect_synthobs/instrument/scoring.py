"""What ``check_quality`` scores, for one table or for multi-table data (pure: no recording).

``score_table`` computes the single-table scores a gate may decide on;
``score_tables`` does the same for a dict of tables with SDV multi-table
metadata: the multi-table Quality and Diagnostic reports for the dataset,
and each table's own scores (quality report, privacy) under its name.

Score names are the ``QualityGates`` score names (a gate ``min_X`` / ``max_X``
checks score ``X``), so ``evaluate_gates`` needs no translation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from prefect_synthobs.scores.detection import logistic_detection
from prefect_synthobs.scores.diagnostic import diagnostic_report
from prefect_synthobs.scores.disclosure import disclosure_protection
from prefect_synthobs.scores.fidelity import SDTYPES, quality_report, strict_scores
from prefect_synthobs.scores.metadata import multi_table_metadata, single_table_metadata
from prefect_synthobs.scores.multi_table import multi_table_diagnostic_report, multi_table_quality_report
from prefect_synthobs.scores.privacy import dcr_overfitting_protection, exact_match_rate, membership_inference_auc
from prefect_synthobs.scores.utility import tstr

# SDMetrics' property names -> the score names gates and rows use.
PROPERTY_SCORES = {
    "Column Shapes": "column_shapes",
    "Column Pair Trends": "column_pair_trends",
    "Cardinality": "cardinality",
    "Intertable Trends": "intertable_trends",
    "Data Validity": "data_validity",
    "Data Structure": "data_structure",
    "Relationship Validity": "relationship_validity",
}

# The sdtypes a table's own scores read (SDV metadata may hold text and PII sdtypes too).
_SCORED_SDTYPES = frozenset({*SDTYPES, "id"})

# How one table's privacy scores combine into the dataset's: the worst table decides.
_WORST = {
    "exact_match_rate": max,
    "membership_inference_auc": max,
    "dcr_overfitting_protection": min,
    "disclosure_protection": min,
}


@dataclass
class Scored:
    """Scores of one check.

    Attributes:
        scores: Score name -> value (NaN: could not be computed) for the table,
            or for the whole dataset when multi-table.
        per_table: For multi-table data, each table's own scores by table name.
        report: The quality report (single- or multi-table).
        diagnostic: The diagnostic report (single- or multi-table).
        notes: Why a score differs from SDMetrics' or could not be computed.
        tstr: ``tstr``'s full result when it ran (metric, baseline, ...).
    """

    scores: dict[str, float]
    per_table: dict[str, dict[str, float]] = field(default_factory=dict)
    report: Any = None
    diagnostic: Any = None
    notes: list[str] = field(default_factory=list)
    tstr: dict[str, Any] | None = None


def _sample(synthetic: pd.DataFrame, privacy_sample: int | None, seed: int) -> pd.DataFrame:
    if privacy_sample is not None and len(synthetic) > privacy_sample:
        sample: pd.DataFrame = synthetic.sample(n=privacy_sample, random_state=seed)
        return sample
    return synthetic


def _privacy(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: Mapping[str, Any],
    holdout: pd.DataFrame | None,
    *,
    privacy_sample: int | None,
    seed: int,
    known_columns: list[str] | None,
    sensitive_columns: list[str] | None,
) -> dict[str, float]:
    sample = _sample(synthetic, privacy_sample, seed)
    scores = {"exact_match_rate": exact_match_rate(real, synthetic, metadata)}
    if known_columns and sensitive_columns:
        scores["disclosure_protection"] = disclosure_protection(
            real, sample, known_column_names=known_columns, sensitive_column_names=sensitive_columns
        )
    if holdout is not None:
        scores["membership_inference_auc"] = membership_inference_auc(real, holdout, sample, metadata)
        scores["dcr_overfitting_protection"] = dcr_overfitting_protection(real, sample, holdout, metadata, seed=seed)[
            "score"
        ]
    return scores


def score_table(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: Any,
    *,
    holdout: pd.DataFrame | None = None,
    target: str | None = None,
    positive_label: Any = None,
    privacy_sample: int | None = None,
    seed: int = 0,
    known_columns: list[str] | None = None,
    sensitive_columns: list[str] | None = None,
    detection: bool = False,
    table: str | None = None,
) -> Scored:
    """The single-table scores (see ``check_quality``); ``table``: which table of SDV multi-table
    metadata describes ``real`` (default: the only one, or the one with exactly its columns)."""
    metadata = single_table_metadata(metadata, prefer=table, columns=real.columns)
    report = quality_report(real, synthetic, metadata)
    strict = strict_scores(report, real, synthetic)  # what gates decide on: empty columns count as 0
    notes = []
    if strict.empty_columns:
        notes.append(
            f"synthetic column(s) {', '.join(strict.empty_columns)} have no values: they count as 0 in the "
            f"quality scores and gates (overall {strict.overall:.4f}; SDMetrics' report, which leaves "
            f"them out, gives {report.overall:.4f})"
        )
    scores: dict[str, float] = {
        "overall": strict.overall,
        "column_shapes": strict.properties["Column Shapes"],
        "column_pair_trends": strict.properties["Column Pair Trends"],
    }
    diagnostic = diagnostic_report(real, synthetic, metadata)
    scores["diagnostic"] = diagnostic.overall
    scores["data_validity"] = diagnostic.properties["Data Validity"]
    scores["data_structure"] = diagnostic.properties["Data Structure"]
    if detection:
        scores["detection"] = logistic_detection(real, synthetic, metadata, seed=seed)
    scores |= _privacy(
        real,
        synthetic,
        metadata,
        holdout,
        privacy_sample=privacy_sample,
        seed=seed,
        known_columns=known_columns,
        sensitive_columns=sensitive_columns,
    )
    utility = None
    if holdout is not None and target is not None:
        utility = tstr(real, synthetic, holdout, target, metadata, positive_label=positive_label)
        scores["tstr_ratio"] = utility["ratio"]
        for key in ("synthetic_score", "real_score", "baseline_score"):
            scores[f"tstr_{key}"] = utility[key]
        if utility.get("note"):  # cautions too (positive label picked by row order, labels read as another type)
            prefix = "TSTR: " if math.isfinite(utility["ratio"]) else "TSTR ratio not computed: "
            notes.append(prefix + str(utility["note"]))
        elif not math.isfinite(utility["ratio"]):
            notes.append("TSTR ratio not computed: the real-data model scored no skill")
    return Scored(scores, report=report, diagnostic=diagnostic, notes=notes, tstr=utility)


def _frames(value: Any, what: str) -> dict[str, pd.DataFrame]:
    if not isinstance(value, Mapping) or not all(isinstance(v, pd.DataFrame) for v in value.values()):
        raise ValueError(f"multi-table {what} must be a dict of table name -> DataFrame, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def score_tables(
    real: Mapping[str, pd.DataFrame],
    synthetic: Mapping[str, pd.DataFrame],
    metadata: Any,
    *,
    holdout: Mapping[str, pd.DataFrame] | None = None,
    privacy_sample: int | None = None,
    seed: int = 0,
    detection: bool = False,
) -> Scored:
    """Multi-table scores: the dataset's reports, and each table's own scores in ``per_table``.

    The dataset's ``overall`` and properties are SDMetrics' multi-table reports'; a table's
    ``overall`` / ``column_shapes`` / ``column_pair_trends`` are its single-table report's (with
    empty synthetic columns counted as 0, as for one table). The dataset's privacy scores are
    its worst table's (highest exact-match rate or attack AUC, lowest protection).

    A table holding only key columns (a link table) or no rows has no scores of its own (a note
    says so; the dataset's reports still count it). A table whose own scores fail leaves the
    dataset's privacy scores NaN (so a gate on them fails closed), with the reason in a note.

    Raises:
        ValueError: Not dicts of frames, bad metadata, or a ``holdout`` naming a table the
            metadata does not have.
    """
    real, synthetic = _frames(real, "real data"), _frames(synthetic, "synthetic data")
    holdouts = _frames(holdout, "holdout") if holdout is not None else {}
    meta = multi_table_metadata(metadata)
    unknown = sorted(set(holdouts) - set(meta["tables"]))
    if unknown:
        raise ValueError(
            f"holdout names table(s) {unknown} the metadata does not have (tables: {sorted(meta['tables'])})"
        )
    report = multi_table_quality_report(real, synthetic, meta)
    diagnostic = multi_table_diagnostic_report(real, synthetic, meta)
    scores: dict[str, float] = {"overall": report.overall, "diagnostic": diagnostic.overall}
    for prop, value in [*report.properties.items(), *diagnostic.properties.items()]:
        scores[PROPERTY_SCORES.get(prop, prop.lower().replace(" ", "_"))] = value
    per_table: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    failed = False
    if holdouts and set(holdouts) != set(meta["tables"]):
        missing = sorted(set(meta["tables"]) - set(holdouts))
        notes.append(f"no holdout for table(s) {missing}: their membership inference and DCR are not computed")
    for name, table_meta in meta["tables"].items():
        if name not in real or name not in synthetic:
            continue
        scored_columns = {  # text and PII sdtypes (email, phone_number, ...) are skipped, as SDMetrics does
            c: m for c, m in table_meta.get("columns", {}).items() if m.get("sdtype") in _SCORED_SDTYPES
        }
        if not any(m.get("sdtype") != "id" for m in scored_columns.values()):
            notes.append(f"table {name!r} holds only key columns: it has no scores of its own")
            continue
        if real[name].empty or synthetic[name].empty:
            notes.append(f"table {name!r} has no rows in the {'real' if real[name].empty else 'synthetic'} data")
            continue
        try:
            one = score_table(
                real[name],
                synthetic[name],
                {**table_meta, "columns": scored_columns},
                holdout=holdouts.get(name),
                privacy_sample=privacy_sample,
                seed=seed,
                detection=detection,
            )
        except ValueError as exc:
            failed = True
            notes.append(
                f"table {name!r}: its own scores failed ({exc}); the dataset's privacy scores are not computed"
            )
            continue
        per_table[name] = one.scores
        notes.extend(f"table {name!r}: {note}" for note in one.notes)
    for score, worst in _WORST.items():
        values = [s[score] for s in per_table.values() if score in s and not math.isnan(s[score])]
        if values:
            scores[score] = math.nan if failed else worst(values)
    if detection:
        values = [s["detection"] for s in per_table.values() if not math.isnan(s.get("detection", math.nan))]
        scores["detection"] = min(values) if values and not failed else math.nan
    return Scored(scores, per_table=per_table, report=report, diagnostic=diagnostic, notes=notes)
