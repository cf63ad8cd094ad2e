"""Quality gates: score a synthetic table, check the scores, record and alert.

``check_quality`` computes the quality report (and, given the data for them,
privacy and utility scores) inside a ``quality.check`` span, checks them
against a ``QualityGates`` block, records every score (``quality_checks``
rows, ``synthobs_quality_score``, ``synthobs_quality_gate_checks_total``),
emits the Prefect event ``synthobs.quality.gate.failed`` for each missed
gate (so an Automation can notify), and with policy ``fail`` raises
``QualityGateFailed`` naming every missed gate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from prefect.context import FlowRunContext

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import get_settings, load_block
from prefect_synthobs.config.blocks import QualityGates
from prefect_synthobs.instrument import prefect_api
from prefect_synthobs.instrument.instrumentation import current_runtime
from prefect_synthobs.instrument.measurements import record_check
from prefect_synthobs.instrument.models import redacted_identity
from prefect_synthobs.instrument.runtime import RunInfo
from prefect_synthobs.instrument.scoring import score_table, score_tables
from prefect_synthobs.instrument.spans import span

logger = get_logger()


@dataclass(frozen=True)
class GateResult:
    """One threshold checked against one score."""

    gate: str
    score: str
    kind: str  # "min" or "max"
    threshold: float
    value: float | None  # None: the score could not be computed

    @property
    def passed(self) -> bool:
        if self.value is None or not math.isfinite(self.value):  # not computed, or overflowed: fail closed
            return False
        return self.value >= self.threshold if self.kind == "min" else self.value <= self.threshold

    def describe(self) -> str:
        sign = ">=" if self.kind == "min" else "<="
        shown = "not computed" if self.value is None or not math.isfinite(self.value) else f"{self.value:.4f}"
        return f"{self.score} = {shown}, needs {sign} {self.threshold:g}"


class QualityGateFailed(Exception):
    """A synthetic table missed one or more quality gates (policy ``fail``)."""

    def __init__(self, table: str | None, failed: list[GateResult]) -> None:
        self.table, self.failed = table, failed
        where = f" for table {table!r}" if table else ""
        super().__init__(f"quality gates failed{where}: " + "; ".join(g.describe() for g in failed))

    def __reduce__(self) -> tuple[Any, tuple[str | None, list[GateResult]]]:
        """Pickled by its arguments, so a task on a process-pool or Dask worker fails with this error, not
        with a ``TypeError`` from unpickling it."""
        return (QualityGateFailed, (self.table, self.failed))


@dataclass
class QualityCheck:
    """What ``check_quality`` measured and decided."""

    scores: dict[str, float]
    results: list[GateResult]
    report: Any = field(repr=False, default=None)
    notes: list[str] = field(default_factory=list)
    """Why a score differs from the SDMetrics report's (e.g. empty synthetic columns)."""
    diagnostic: Any = field(repr=False, default=None)
    """The ``DiagnosticReport`` (its details name each invalid column)."""
    per_table: dict[str, dict[str, float]] = field(default_factory=dict)
    """Relational data: each table's own scores (recorded as ``<dataset>.<table>``)."""
    tstr: dict[str, Any] | None = None
    """TSTR's full result (metric, positive label, baseline) when it ran."""

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]


def evaluate_gates(scores: Mapping[str, float], gates: Any) -> list[GateResult]:
    """Check ``scores`` against every threshold set on a ``QualityGates`` block (pure)."""
    return [
        GateResult(gate, score, kind, threshold, scores.get(score)) for gate, score, kind, threshold in gates.gates()
    ]


def _resolve_gates(gates: QualityGates | str | None) -> QualityGates | None:
    if gates is None:
        gates = get_settings().quality_gates_block
        if not gates:
            return None
    return load_block(QualityGates, gates, what="gates")


def check_quality(
    real: pd.DataFrame | Mapping[str, pd.DataFrame],
    synthetic: pd.DataFrame | Mapping[str, pd.DataFrame],
    metadata: Any,
    *,
    model: Any = None,
    gates: Any = None,
    table: str | None = None,
    holdout: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None,
    target: str | None = None,
    positive_label: Any = None,
    privacy_sample: int | None = None,
    seed: int = 0,
    known_columns: list[str] | None = None,
    sensitive_columns: list[str] | None = None,
    detection: bool | None = None,
) -> QualityCheck:
    """Score ``synthetic`` against ``real``, check the gates, record everything.

    Args:
        real: The real table the generator learned from; or, for relational
            data, a dict of table name -> DataFrame.
        synthetic: The synthetic table (a dict of tables for relational data).
        metadata: ``{"columns": {name: {"sdtype": ...}}}``, SDV multi-table
            metadata for a dict of tables, or an SDV ``Metadata`` /
            ``SingleTableMetadata`` object.
        model: The model that generated ``synthetic``: a synthesizer object
            or a model id. Its rows carry ``model_id`` and ``model_type`` so
            reports compare models instead of averaging them.
        gates: A ``QualityGates`` block or block name; default: the configured
            ``quality_gates_block`` (none: scores are recorded, nothing is gated).
        table: Table name for rows, metrics and events (default: ``observe``'s);
            for relational data the dataset's name (default: its table names
            joined by ``+``); each table's own scores are recorded as
            ``<dataset>.<table>``.
        holdout: Real rows the generator did not see (a dict of tables for
            relational data); enables the privacy scores that need them
            (membership inference, DCR overfitting protection) and TSTR.
        target: Column to predict for TSTR (needs ``holdout``; one table only).
        positive_label: TSTR's positive class for a two-class target (default:
            ``True``, ``1``, else SDMetrics' rule: the first label of the holdout).
        privacy_sample: Score privacy and utility on a seeded sample of at
            most this many synthetic rows (distance work grows with
            synthetic × real rows); ``None`` uses every row.
        seed: Seed of that sample and of the privacy scores' own sampling.
        known_columns: Columns an attacker knows (quasi-identifiers); with
            ``sensitive_columns``, enables ``disclosure_protection`` (CAP).
        sensitive_columns: Columns an attacker wants to infer.
        detection: Compute ``logistic_detection`` (a classifier telling the
            tables apart); default: when a gate needs it.

    The Diagnostic report (``diagnostic``, ``data_validity``, ``data_structure``;
    for relational data also ``relationship_validity``) is always computed: it is cheap.

    Returns:
        The scores and the gate results.

    Raises:
        QualityGateFailed: A gate was missed and the policy is ``fail``.
        ValueError: Invalid input (see ``quality_report``) or gates that
            cannot be loaded.
    """
    resolved = _resolve_gates(gates)
    relational = isinstance(real, Mapping)
    if relational and (known_columns or sensitive_columns or target is not None or positive_label is not None):
        raise ValueError(
            "check_quality on a dict of tables takes no target, known_columns or sensitive_columns "
            "(TSTR and disclosure protection score one table: call check_quality on that table)"
        )
    if (
        resolved is not None
        and resolved.min_disclosure_protection is not None
        and not (known_columns and sensitive_columns)
    ):
        raise ValueError("the min_disclosure_protection gate needs check_quality(known_columns=, sensitive_columns=)")
    if detection is None:
        detection = resolved is not None and resolved.min_detection is not None
    model_id, model_type = redacted_identity(model, enabled=get_settings().redact_pii)
    info = _observed_run()
    spec = info.spec if info is not None else None

    if model_type is None and spec is not None:  # no model or an id string: the observed flow's declared type
        model_type = spec.model_type
    table = table or (spec.table if spec is not None else None)
    if model is None and info is not None:  # autolog saw exactly one model sample this table here: that one made it
        only = info.only_model_sampled(None if relational else table)
        if only is not None:
            model_id, model_type = only
    if relational and not table:
        table = "+".join(str(name) for name in real)
    with span(names.SPAN_QUALITY_CHECK, table=table or "", gated=resolved is not None) as current:
        common: dict[str, Any] = {
            "holdout": holdout,
            "privacy_sample": privacy_sample,
            "seed": seed,
            "detection": detection,
        }
        if relational:
            scored = score_tables(real, synthetic, metadata, **common)  # type: ignore[arg-type]
        else:
            scored = score_table(
                real,  # type: ignore[arg-type]
                synthetic,  # type: ignore[arg-type]
                metadata,
                target=target,
                positive_label=positive_label,
                known_columns=known_columns,
                sensitive_columns=sensitive_columns,
                table=table,
                **common,
            )
        for note in scored.notes:
            logger.warning("synthobs: %s%s", f"table {table!r}: " if table else "", note)
        scores = scored.scores
        results = evaluate_gates(scores, resolved) if resolved is not None else []
        identity = {"model_id": model_id, "model_type": model_type}
        _record(scores, results, table, identity)
        for name, table_scores in scored.per_table.items():
            _record(table_scores, [], f"{table}.{name}", identity)
        check = QualityCheck(
            scores, results, scored.report, scored.notes, scored.diagnostic, scored.per_table, scored.tstr
        )
        if current.is_recording():
            current.set_attributes(
                {names.ATTR_QUALITY_PREFIX + k: v for k, v in scores.items() if v is not None and math.isfinite(v)}
            )
            current.set_attribute(names.ATTR_QUALITY_PASSED, check.passed)
            attributes = {names.ATTR_MODEL_ID: model_id, names.ATTR_MODEL_TYPE: model_type}
            current.set_attributes({k: v for k, v in attributes.items() if v})
            if scored.tstr is not None:
                current.set_attribute(names.ATTR_QUALITY_TSTR_METRIC, str(scored.tstr["metric"]))
    if check.failed:
        _emit_failures(check.failed, table, identity)
        if resolved is not None and resolved.policy == "fail":
            raise QualityGateFailed(table, check.failed)
        logger.warning("synthobs: %s", QualityGateFailed(table, check.failed))
    return check


def _record(
    scores: Mapping[str, float], results: list[GateResult], table: str | None, identity: Mapping[str, str | None]
) -> None:
    """One ``quality_checks`` row (and metrics) per computed score; a gate on a score never computed
    is recorded as missed (NaN score)."""
    by_score = {r.score: r for r in results}
    for score_name, value in scores.items():
        if value is None or not math.isfinite(value):  # not computed (a gate on it is recorded below)
            continue
        result = by_score.get(score_name)
        record_check(
            score_name,
            float(value),
            threshold=result.threshold if result else None,
            passed=result.passed if result else None,
            table=table,
            gate=result.gate if result else score_name,
            **identity,
        )
    for result in results:
        if result.value is None or not math.isfinite(result.value):  # a gate on a score never computed
            record_check(
                result.score,
                math.nan,
                threshold=result.threshold,
                passed=False,
                table=table,
                gate=result.gate,
                **identity,
            )


def _observed_run() -> RunInfo | None:
    """The observed flow run this runs in (its spec: table, model type; the models autolog saw sample), if any."""
    try:
        ctx, runtime = FlowRunContext.get(), current_runtime()
        if ctx is None or ctx.flow_run is None or runtime is None:
            return None
        return runtime.run_info(ctx.flow_run.id)
    except Exception:
        return None


def _emit_failures(
    failed: list[GateResult], table: str | None, identity: Mapping[str, str | None] | None = None
) -> None:
    identity = identity or {}
    try:
        ctx = FlowRunContext.get()
        flow_run_ids = [ctx.flow_run.id] if ctx is not None and ctx.flow_run is not None else []
        redacting = get_settings().redact_pii
        for result in failed:
            prefect_api.emit(
                names.EVENT_QUALITY_GATE_FAILED,
                resource_id=names.RESOURCE_TABLE_PREFIX + (table or "unknown"),
                resource_name=table or "unknown",
                labels={
                    names.ATTR_GATE: result.gate,
                    names.ATTR_MODEL_ID: (identity or {}).get("model_id"),
                    names.ATTR_MODEL_TYPE: (identity or {}).get("model_type"),
                },
                payload={
                    "gate": result.gate,
                    "score": result.score,
                    "value": result.value,
                    "threshold": result.threshold,
                    "table": table,
                    **identity,
                },
                flow_run_ids=flow_run_ids,
                redact_pii=redacting,
            )
    except Exception as exc:  # the gate's verdict stands even if the event cannot be sent
        logger.warning("synthobs: quality gate event not emitted (%s)", exc)
