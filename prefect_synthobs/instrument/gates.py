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
from prefect.events import emit_event

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import get_settings, load_block
from prefect_synthobs.config.blocks import QualityGates
from prefect_synthobs.instrument.instrumentation import current_runtime
from prefect_synthobs.instrument.measurements import record_check
from prefect_synthobs.instrument.spans import span
from prefect_synthobs.scores.detection import logistic_detection
from prefect_synthobs.scores.diagnostic import diagnostic_report
from prefect_synthobs.scores.disclosure import disclosure_protection
from prefect_synthobs.scores.fidelity import quality_report, strict_scores
from prefect_synthobs.scores.privacy import dcr_overfitting_protection, exact_match_rate, membership_inference_auc
from prefect_synthobs.scores.utility import tstr
from prefect_synthobs.telemetry.redaction import redact_fields

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
        if self.value is None or math.isnan(self.value):
            return False
        return self.value >= self.threshold if self.kind == "min" else self.value <= self.threshold

    def describe(self) -> str:
        sign = ">=" if self.kind == "min" else "<="
        shown = "not computed" if self.value is None or math.isnan(self.value) else f"{self.value:.4f}"
        return f"{self.score} = {shown}, needs {sign} {self.threshold:g}"


class QualityGateFailed(Exception):
    """A synthetic table missed one or more quality gates (policy ``fail``)."""

    def __init__(self, table: str | None, failed: list[GateResult]) -> None:
        self.table, self.failed = table, failed
        where = f" for table {table!r}" if table else ""
        super().__init__(f"quality gates failed{where}: " + "; ".join(g.describe() for g in failed))


@dataclass
class QualityCheck:
    """What ``check_quality`` measured and decided."""

    scores: dict[str, float]
    results: list[GateResult]
    report: Any = field(repr=False, default=None)
    notes: list[str] = field(default_factory=list)
    diagnostic: Any = field(repr=False, default=None)
    """The ``DiagnosticReport`` (its details name each invalid column)."""
    """Why a score differs from the SDMetrics report's (e.g. empty synthetic columns)."""

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
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: Mapping[str, Any],
    *,
    gates: Any = None,
    table: str | None = None,
    holdout: pd.DataFrame | None = None,
    target: str | None = None,
    privacy_sample: int | None = None,
    seed: int = 0,
    known_columns: list[str] | None = None,
    sensitive_columns: list[str] | None = None,
    detection: bool | None = None,
) -> QualityCheck:
    """Score ``synthetic`` against ``real``, check the gates, record everything.

    Args:
        real: The real table the generator learned from.
        synthetic: The synthetic table.
        metadata: ``{"columns": {name: {"sdtype": ...}}}``.
        gates: A ``QualityGates`` block or block name; default: the configured
            ``quality_gates_block`` (none: scores are recorded, nothing is gated).
        table: Table name for rows, metrics and events (default: ``observe``'s).
        holdout: Real rows the generator did not see; enables the privacy
            scores that need them (membership inference, DCR overfitting
            protection) and TSTR.
        target: Column to predict for TSTR (needs ``holdout``).
        privacy_sample: Score privacy and utility on a seeded sample of at
            most this many synthetic rows (distance work grows with
            synthetic × real rows); ``None`` uses every row.
        seed: Seed of that sample and of the privacy scores' own sampling.
        known_columns: Columns an attacker knows (quasi-identifiers); with
            ``sensitive_columns``, enables ``disclosure_protection`` (CAP).
        sensitive_columns: Columns an attacker wants to infer.
        detection: Compute ``logistic_detection`` (a classifier telling the
            tables apart); default: when a gate needs it.

    The Diagnostic report (``diagnostic``, ``data_validity``, ``data_structure``)
    is always computed: it is cheap.

    Returns:
        The scores and the gate results.

    Raises:
        QualityGateFailed: A gate was missed and the policy is ``fail``.
        ValueError: Invalid input (see ``quality_report``) or gates that
            cannot be loaded.
    """
    resolved = _resolve_gates(gates)
    if (
        resolved is not None
        and resolved.min_disclosure_protection is not None
        and not (known_columns and sensitive_columns)
    ):
        raise ValueError("the min_disclosure_protection gate needs check_quality(known_columns=, sensitive_columns=)")
    if detection is None:
        detection = resolved is not None and resolved.min_detection is not None
    table = table or _observed_table()
    with span(names.SPAN_QUALITY_CHECK, table=table or "", gated=resolved is not None) as current:
        report = quality_report(real, synthetic, metadata)
        strict = strict_scores(report, real, synthetic)  # what gates decide on: empty columns count as 0
        notes = []
        if strict.empty_columns:
            notes.append(
                f"synthetic column(s) {', '.join(strict.empty_columns)} have no values: they count as 0 in the "
                f"quality scores and gates (overall {strict.overall:.4f}; SDMetrics' report, which leaves "
                f"them out, gives {report.overall:.4f})"
            )
            logger.warning("synthobs: %s%s", f"table {table!r}: " if table else "", notes[-1])
        scores: dict[str, float] = {
            "overall": strict.overall,
            "column_shapes": strict.properties["Column Shapes"],
            "column_pair_trends": strict.properties["Column Pair Trends"],
            "exact_match_rate": exact_match_rate(real, synthetic, metadata),
        }
        diagnostic = diagnostic_report(real, synthetic, metadata)
        scores["diagnostic"] = diagnostic.overall
        scores["data_validity"] = diagnostic.properties["Data Validity"]
        scores["data_structure"] = diagnostic.properties["Data Structure"]
        sample = synthetic
        if privacy_sample is not None and len(synthetic) > privacy_sample:
            sample = synthetic.sample(n=privacy_sample, random_state=seed)
        if known_columns and sensitive_columns:
            scores["disclosure_protection"] = disclosure_protection(
                real, sample, known_column_names=known_columns, sensitive_column_names=sensitive_columns
            )
        if detection:
            scores["detection"] = logistic_detection(real, synthetic, metadata, seed=seed)
        if holdout is not None:
            scores["membership_inference_auc"] = membership_inference_auc(real, holdout, sample, metadata)
            scores["dcr_overfitting_protection"] = dcr_overfitting_protection(
                real, sample, holdout, metadata, seed=seed
            )["score"]
            if target is not None:
                scores["tstr_ratio"] = tstr(real, synthetic, holdout, target, metadata)["ratio"]
        results = evaluate_gates(scores, resolved) if resolved is not None else []
        by_score = {r.score: r for r in results}
        for score_name, value in scores.items():
            if value is None or math.isnan(value):
                continue
            result = by_score.get(score_name)
            record_check(
                score_name,
                float(value),
                threshold=result.threshold if result else None,
                passed=result.passed if result else None,
                table=table,
                gate=result.gate if result else score_name,
            )
        for result in results:
            if result.value is None or math.isnan(result.value):  # a gate on a score never computed
                record_check(
                    result.score, math.nan, threshold=result.threshold, passed=False, table=table, gate=result.gate
                )
        check = QualityCheck(scores, results, report, notes, diagnostic)
        if current.is_recording():
            current.set_attributes(
                {f"synthobs.quality.{k}": v for k, v in scores.items() if v is not None and not math.isnan(v)}
            )
            current.set_attribute("synthobs.quality.passed", check.passed)
    if check.failed:
        _emit_failures(check.failed, table)
        if resolved is not None and resolved.policy == "fail":
            raise QualityGateFailed(table, check.failed)
        logger.warning("synthobs: %s", QualityGateFailed(table, check.failed))
    return check


def _observed_table() -> str | None:
    try:
        ctx, runtime = FlowRunContext.get(), current_runtime()
        if ctx is None or ctx.flow_run is None or runtime is None:
            return None
        info = runtime.run_info(ctx.flow_run.id)
        return info.spec.table if info else None
    except Exception:
        return None


def _emit_failures(failed: list[GateResult], table: str | None) -> None:
    try:
        ctx = FlowRunContext.get()
        related = []
        if ctx is not None and ctx.flow_run is not None:
            related.append(
                {"prefect.resource.id": f"prefect.flow-run.{ctx.flow_run.id}", "prefect.resource.role": "flow-run"}
            )
        redacting = get_settings().redact_pii
        for result in failed:
            emit_event(
                event=names.EVENT_QUALITY_GATE_FAILED,
                resource=redact_fields(
                    {
                        "prefect.resource.id": f"synthobs.table.{table or 'unknown'}",
                        "prefect.resource.name": table or "unknown",
                        "synthobs.gate": result.gate,
                    },
                    enabled=redacting,
                ),
                related=related,
                payload=redact_fields(
                    {
                        "gate": result.gate,
                        "score": result.score,
                        "value": result.value,
                        "threshold": result.threshold,
                        "table": table,
                    },
                    enabled=redacting,
                ),
            )
    except Exception as exc:  # the gate's verdict stands even if the event cannot be sent
        logger.warning("synthobs: quality gate event not emitted (%s)", exc)
