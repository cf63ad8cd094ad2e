"""What a finished run's asset events say (pure): keys, the real table upstream, the metadata.

``plan_run`` turns what a flow run did in this process (``RunRecord``: samples per table and model, the
models' fit facts, quality scores, privacy spends) and its end (``FlowRunEnded``: state, rows per table)
into one ``Materialization`` per synthetic table: the asset key (``asset_key_template``), the real table's
key (``asset_upstream_key_template``; ``{table}`` there is the table the model was fitted on when known,
else the synthetic table's own name), and a small JSON-safe payload, redacted like every event payload.

A key Prefect refuses (``render_key``: a space, ``#``, ``%``...; over 512 characters; an upper-case
scheme) skips that table (``Skipped``, one warning at the edge): Prefect's keys admit no escape (``%``
itself is refused) and replacing characters would merge different tables into one asset. With
``redact_pii``, the PII in a placeholder value (an e-mail as a table name) becomes ``redacted-<hash>`` (the
first 8 hex digits of the raw value's SHA-256: two such tables stay two assets), and the payload's texts and
its dictionaries' keys (metric and dataset names) are redacted.

The models' rows of a table add up to the run's rows of it (``FlowRunEnded.rows_by_table``, its last
attempt): one model takes them all; with several, each keeps the rows it sampled here, and the rest (sampled
in other processes, or counted by ``record_rows``) is one more part, synthesizer ``other processes``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from prefect_synthobs._version import __version__
from prefect_synthobs.config.settings import ASSET_KEY_FIELDS, SynthObsSettings
from prefect_synthobs.health.events import FlowRunEnded
from prefect_synthobs.telemetry.redaction import REDACTED, redact, redact_fields

UNKNOWN = "unknown"
"""A placeholder's value when the run does not know it (``{model_id}`` of rows counted by ``record_rows``)."""
REDACTED_PART = "redacted"
"""What a redacted placeholder value becomes in a key (Prefect refuses ``[`` and ``]``), with ``-<hash>``."""
OTHER_PROCESSES = "other processes"
"""The ``synthesizer`` of a table's rows no model sampled in this process (other processes, ``record_rows``)."""
STATUS_OF_STATE = {"COMPLETED": "succeeded", "FAILED": "failed"}
"""A run's final state -> the materialization's status; other states emit nothing (as Prefect's tasks)."""
MAX_TASK_RUNS = 10
"""Task runs that sampled a table named as related resources (the first ones: a mapped sample may have thousands)."""
MAX_SCORES = 24
"""Quality scores kept in an event's payload (the report's first, then by name)."""
MAX_TEXT = 256
"""Longest text kept in a payload value."""
_FIRST_SCORES = ("overall", "column_shapes", "column_pair_trends", "diagnostic")


@dataclass(frozen=True)
class ModelFacts:
    """What is known of a model that sampled a table (``None``: not known)."""

    model_id: str | None
    model_type: str | None = None
    library: str | None = None
    synthesizer: str | None = None
    trained_on: tuple[str, ...] = ()
    """The tables it was fitted on (multi-table: several)."""
    fit_rows: int | None = None
    fit_columns: int | None = None


@dataclass
class Sampled:
    """A model's rows of one table in a run, and the task runs that sampled them (id -> name).

    While the run is in progress the ledger keeps, per task run, the rows of the attempt that sampled them
    (``by_task``: task run id -> (attempt, rows)); ``rows`` counts the samples made in the flow itself. The
    ledger folds in each task run's last attempt when the run ends (``AssetLedger.take``)."""

    rows: int = 0
    task_runs: dict[str, str | None] = field(default_factory=dict)  # id -> name
    by_task: dict[str, tuple[int, int]] = field(default_factory=dict)  # task run id -> (attempt, rows)


@dataclass(frozen=True)
class Score:
    """One quality score recorded in a run (a ``QualityChecked``'s fields the payload reads)."""

    table: str
    model_id: str | None
    model_type: str | None
    metric: str
    score: float
    gate: str | None
    passed: bool | None


@dataclass
class RunRecord:
    """What one flow run in this process did that its asset events tell."""

    samples: dict[tuple[str, str], Sampled] = field(default_factory=dict)  # (table, model id) -> rows
    models: dict[str, ModelFacts] = field(default_factory=dict)
    scores: list[Score] = field(default_factory=list)
    privacy: dict[str, float] = field(default_factory=dict)  # dataset -> epsilon spent in the run
    attempt: int = 0
    """The flow's attempt the samples and scores belong to (0: not known; a later attempt drops them)."""
    task_attempts: dict[str, int] = field(default_factory=dict)  # task run id -> its latest attempt seen


def merged_facts(model: ModelFacts, fit: ModelFacts | None) -> ModelFacts:
    if fit is None:
        return model
    return ModelFacts(
        model.model_id,
        model.model_type or fit.model_type,
        model.library or fit.library,
        model.synthesizer or fit.synthesizer,
        model.trained_on or fit.trained_on,
        model.fit_rows if model.fit_rows is not None else fit.fit_rows,
        model.fit_columns if model.fit_columns is not None else fit.fit_columns,
    )


# -- planning (pure) ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssetConfig:
    """The settings asset events follow."""

    enabled: bool = True
    key_template: str = "synthobs://{table}/{model_type}"
    upstream_template: str = "synthobs://{table}/real"
    redact_pii: bool = True

    @classmethod
    def of(cls, settings: SynthObsSettings) -> AssetConfig:
        return cls(
            settings.assets, settings.asset_key_template, settings.asset_upstream_key_template, settings.redact_pii
        )


@dataclass(frozen=True)
class Materialization:
    """One synthetic table's materialization: what ``prefect_api.emit_asset_materialization`` emits."""

    key: str
    upstream: str
    status: str
    table: str
    name: str
    description: str
    metadata: dict[str, Any]
    materialized_by: str | None
    task_runs: tuple[tuple[str, str | None], ...] = ()
    """``(task run id, its name)`` of the task runs that sampled the table (names already redacted, as the rest)."""
    redact_run_names: bool = False
    """Redact the flow run's name too, where the event names it (read from the run's context as it is sent)."""


@dataclass(frozen=True)
class Skipped:
    """A table not materialized, and why (for the one warning per table)."""

    table: str
    reason: str


def key_part(value: object, *, redact_pii: bool) -> str:
    """A placeholder's value in a key: ``unknown`` when missing; PII replaced by ``redacted-<hash>``, the first
    8 hex digits of the raw value's SHA-256, so two tables whose names redact alike stay two assets."""
    text = str(value) if value is not None and str(value) != "" else UNKNOWN
    if redact_pii:
        redacted = redact(text)
        if redacted != text:
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
            text = redacted.replace(REDACTED, f"{REDACTED_PART}-{digest}")
    return text


def render_key(template: str, values: Mapping[str, object], *, redact_pii: bool) -> str:
    """``template`` filled with ``values`` (``ASSET_KEY_FIELDS``), checked as Prefect checks an asset key.

    Raises:
        ValueError: Prefect would refuse the key (its reason in the message).
    """
    from prefect.assets import Asset

    parts = {name: key_part(values.get(name), redact_pii=redact_pii) for name in ASSET_KEY_FIELDS}
    key = template.format(**parts)
    try:
        Asset(key=key)
    except ValidationError as exc:
        reasons = "; ".join(str(e.get("msg", e)) for e in exc.errors())
        raise ValueError(f"Prefect refuses asset key {key[:120]!r}: {reasons}") from None
    return key


def _latest_scores(scores: Iterable[Score]) -> tuple[dict[str, float], list[str], list[str]]:
    """The latest value of each score, and the gates whose latest check passed or failed."""
    values: dict[str, float] = {}
    gates: dict[str, bool] = {}
    for s in scores:
        if math.isfinite(s.score):
            values[s.metric] = round(float(s.score), 6)
        if s.passed is not None:
            gates[s.gate or s.metric] = bool(s.passed)
    order = [m for m in _FIRST_SCORES if m in values] + sorted(m for m in values if m not in _FIRST_SCORES)
    kept = {m: values[m] for m in order[:MAX_SCORES]}
    return kept, sorted(g for g, ok in gates.items() if ok), sorted(g for g, ok in gates.items() if not ok)


def _scores_for(record: RunRecord, table: str, model_ids: set[str | None], alone: bool) -> list[Score]:
    """The run's scores of ``table`` by these models (unattributed ones too when the table has one asset)."""

    def same_table(name: str) -> bool:  # a relational check records each table as "<dataset>.<table>"
        return name == table or ("." in name and name.rsplit(".", 1)[-1] == table)

    exact = [s for s in record.scores if s.table == table]
    chosen = exact or [s for s in record.scores if same_table(s.table)]
    return [s for s in chosen if s.model_id in model_ids or (s.model_id is None and alone)]


def _text(value: Any) -> Any:
    return value[:MAX_TEXT] if isinstance(value, str) else value


def _redacted_keys(value: Mapping[Any, Any], redact_pii: bool) -> dict[str, Any]:
    """``value`` with PII redacted in its keys too (a metric or dataset name); two keys that redact alike are
    one: their numbers summed (an epsilon spent on two datasets), else the first value kept."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        key = _text(redact(str(k)) if redact_pii else str(k))
        if key not in out:
            out[key] = _text(v)
        elif all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (out[key], v)):
            out[key] = out[key] + v
    return out


def _redacted_tree(value: Any, redact_pii: bool) -> Any:
    """A payload with every text redacted, keys too (``redact_fields`` at each level: machine ids stay)."""
    if isinstance(value, Mapping):
        flat = redact_fields(_redacted_keys(value, redact_pii), enabled=redact_pii)
        return {k: _redacted_tree(v, redact_pii) if isinstance(v, (Mapping, list)) else v for k, v in flat.items()}
    if isinstance(value, list):
        return [_redacted_tree(v, redact_pii) if isinstance(v, (Mapping, list)) else _text(v) for v in value]
    return value


def _model_fields(facts: ModelFacts) -> dict[str, Any]:
    out = {
        "model_id": facts.model_id,
        "model_type": facts.model_type,
        "library": facts.library,
        "synthesizer": facts.synthesizer,
        "trained_on": ",".join(facts.trained_on) or None,
        "fit_rows": facts.fit_rows,
        "fit_columns": facts.fit_columns,
    }
    return {k: v for k, v in out.items() if v is not None}


def _models_of(record: RunRecord, table: str, ended: FlowRunEnded, rows: int) -> list[tuple[ModelFacts, Sampled]]:
    """The models that generated ``table``'s rows, each with its rows (one model: all the table's rows)."""
    sampled = [
        (record.models[m], s)
        for (t, m), s in record.samples.items()
        if t == table and m in record.models and s.rows > 0
    ]
    if len(sampled) == 1:
        facts, one = sampled[0]
        return [(facts, Sampled(rows, one.task_runs))]
    if sampled:  # each model its rows as measured; rows no model here sampled (other processes): their own part
        other = rows - sum(s.rows for _, s in sampled)
        if other > 0:
            sampled.append((ModelFacts(None, ended.model_type, synthesizer=OTHER_PROCESSES), Sampled(other)))
        return sampled
    # rows counted by ``record_rows``: the model a quality score named, when exactly one did; else the flow's type
    named = {(s.model_id, s.model_type) for s in record.scores if s.table == table and s.model_id is not None}
    model_id, model_type = next(iter(named)) if len(named) == 1 else (None, None)
    return [(ModelFacts(model_id, model_type or ended.model_type), Sampled(rows))]


def plan_run(
    record: RunRecord | None, ended: FlowRunEnded, config: AssetConfig
) -> tuple[list[Materialization], list[Skipped]]:
    """The materializations of a finished run (none when assets are off, the run neither completed nor failed,
    or it generated no rows of a named table), and the tables skipped with why. Pure; never raises for a
    table's key (that table is skipped)."""
    status = STATUS_OF_STATE.get(ended.state_type)
    if not config.enabled or status is None:
        return [], []
    record = record or RunRecord()
    planned: dict[str, list[tuple[str, ModelFacts, Sampled, str]]] = {}
    skipped: list[Skipped] = []
    for table, rows in sorted((t, n) for t, n in ended.rows_by_table.items() if t is not None and n > 0):
        for facts, sampled in _models_of(record, table, ended, rows):
            trained_on = table if table in facts.trained_on or len(facts.trained_on) != 1 else facts.trained_on[0]
            values = {
                "model_type": facts.model_type,
                "library": facts.library,
                "model_id": facts.model_id,
            }
            try:
                key = render_key(config.key_template, {**values, "table": table}, redact_pii=config.redact_pii)
                upstream = render_key(
                    config.upstream_template, {**values, "table": trained_on}, redact_pii=config.redact_pii
                )
            except (ValueError, KeyError, IndexError) as exc:
                skipped.append(Skipped(table, str(exc)))
                continue
            planned.setdefault(key, []).append((upstream, facts, sampled, table))
    out = []
    for key, parts in planned.items():
        upstream, facts, _, table = parts[0]
        rows = sum(p[2].rows for p in parts)
        alone = sum(1 for ps in planned.values() if ps[0][3] == table) == 1
        model_ids = {p[1].model_id for p in parts}
        scores, passed, failed = _latest_scores(_scores_for(record, table, model_ids, alone))
        task_runs: dict[str, str | None] = {}
        for part in parts:
            task_runs.update(part[2].task_runs)
        metadata: dict[str, Any] = {"table": table, "rows": rows}
        if len(parts) == 1:
            metadata |= _model_fields(facts)
        else:
            metadata["models"] = [_model_fields(p[1]) | {"rows": p[2].rows} for p in parts]
        if scores:
            metadata["quality"] = scores
        if passed or failed:
            metadata["gates_passed"], metadata["gates_failed"] = passed, failed
        real = {table, *facts.trained_on}
        spends = {d: e for d, e in record.privacy.items() if d in real} or dict(record.privacy)
        if spends:
            metadata["privacy_epsilon"] = {d: round(e, 9) for d, e in sorted(spends.items())}
        metadata |= {"flow_run_id": ended.flow_run_id, "flow_name": ended.flow_name, "recorded_by": _RECORDED_BY}
        made_by = facts.synthesizer or facts.model_type or "a model synthobs does not know"
        trained = ", ".join(facts.trained_on) or "its real table"
        out.append(
            Materialization(
                key=key,
                upstream=upstream,
                status=status,
                table=table,
                name=_redacted_text(f"{table} (synthetic)", config.redact_pii),
                description=_redacted_text(
                    f"Synthetic {table}: {rows} rows sampled from {made_by} trained on {trained} "
                    f"(flow run {ended.flow_run_id}); recorded by prefect-synthobs.",
                    config.redact_pii,
                ),
                metadata=_redacted_tree(metadata, config.redact_pii),
                materialized_by=facts.library if len(parts) == 1 else None,
                task_runs=tuple(
                    (task_run_id, _redacted_text(name, config.redact_pii) if name else name)
                    for task_run_id, name in tuple(task_runs.items())[:MAX_TASK_RUNS]
                ),
                redact_run_names=config.redact_pii,
            )
        )
    return out, skipped


_RECORDED_BY = f"prefect-synthobs {__version__}"


def _redacted_text(text: str, redact_pii: bool) -> str:
    return redact(text) if redact_pii else text
