"""Privacy budgets: spend epsilon atomically, across processes and workers.

How a spend stays atomic: the epsilon spent on a dataset lives in a Prefect
variable (``synthobs_privacy_spent__<dataset key>``), and it is read, checked
and written only while holding the dataset's lock, one slot of a Prefect
*global concurrency limit* of size 1 (``privacy_lock.py``: how the lock is
taken, kept alive and taken over from a killed holder). Prefect's server
hands the slot to one holder at a time, whichever process or worker asks, so
two flows spending at once can never both see the same "spent" value. A
holder that stalled past its lease may have lost the lock: right before each
write of the journal and of the total it confirms it still holds it
(``HeldLock.confirm``); if not, it spends nothing and the spend is refused
(``PrivacyBudgetUnavailable``): the total is never overwritten with a stale one.

Every allowed spend is one ``privacy_ledger`` row, and the ledger always sums
to what was spent, even when a spender is killed at any point: still holding
the lock, the spender writes the spend to a journal (the Prefect variable
``synthobs_privacy_pending__<dataset key>``) together with the new total, then
makes its ledger row durable (a local spool file, written synchronously, or
the store) and clears the journal before it returns. A spender killed in
between leaves the spend in the journal; the next spender on that dataset
writes its row (same ``event_id``: a row written twice is read once) before
spending. A denied spend raises ``PrivacyBudgetExceeded``, counts as
``denied`` and emits the Prefect event ``synthobs.privacy.budget.exceeded``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from prefect.client.orchestration import SyncPrefectClient
from prefect.context import FlowRunContext

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import get_settings, load_block
from prefect_synthobs.config.blocks import PrivacyBudget
from prefect_synthobs.config.budget_state import (
    dataset_key,
    lock_name,
    pending_spends,
    pending_variable,
    spent_variable,
    write_variable,
)
from prefect_synthobs.health.events import PrivacyChecked
from prefect_synthobs.health.rows import privacy_row
from prefect_synthobs.health.tables import EVENT_ID, Row, new_event_id
from prefect_synthobs.instrument import prefect_api
from prefect_synthobs.instrument.instrumentation import get_runtime
from prefect_synthobs.instrument.privacy_lock import budget_lock, ensure_limit, read_total
from prefect_synthobs.instrument.spans import span

logger = get_logger()


class PrivacyBudgetExceeded(Exception):
    """A spend would take a dataset past its privacy budget; nothing was spent."""

    def __init__(self, dataset: str, epsilon: float, spent: float, budget: float) -> None:
        self.dataset, self.epsilon, self.spent, self.budget = dataset, epsilon, spent, budget
        super().__init__(
            f"privacy budget of {dataset!r} exceeded: spending {epsilon:g} on top of {spent:g} "
            f"would pass the budget of {budget:g} (remaining {max(budget - spent, 0):g})"
        )


class PrivacyBudgetUnavailable(RuntimeError):
    """The budget could not be checked (Prefect API unreachable, lock not obtained in
    time); nothing was spent. A privacy budget fails closed: an unchecked spend is refused."""

    def __init__(self, dataset: str, reason: BaseException) -> None:
        self.dataset = dataset
        super().__init__(
            f"privacy budget of {dataset!r} could not be checked ({type(reason).__name__}: {reason}); nothing was spent"
        )


@dataclass(frozen=True)
class PrivacySpend:
    """An allowed spend."""

    dataset: str
    epsilon: float
    spent: float  # total after this spend
    budget: float

    @property
    def remaining(self) -> float:
        return max(self.budget - self.spent, 0.0)


def _resolve_budget(budget: PrivacyBudget | str | None, dataset: str) -> PrivacyBudget:
    block = load_block(
        PrivacyBudget,
        dataset_key(dataset) if budget is None else budget,
        what=f"the privacy budget of dataset {dataset!r}",
    )
    if block.dataset != dataset:
        raise ValueError(f"the PrivacyBudget block is for dataset {block.dataset!r}, not {dataset!r}")
    return block


def record_privacy_spend(
    epsilon: float, *, dataset: str, budget: Any = None, timeout_seconds: float = 60.0
) -> PrivacySpend:
    """Spend ``epsilon`` of ``dataset``'s privacy budget, or refuse.

    Args:
        epsilon: Epsilon to spend (> 0).
        dataset: The dataset the synthetic data was made from.
        budget: A ``PrivacyBudget`` block or block name; default: the block
            named after the dataset (``dataset_key(dataset)``).
        timeout_seconds: How long to wait for the dataset's lock.

    Returns:
        The spend, with the total spent and the budget.

    Raises:
        PrivacyBudgetExceeded: The spend would pass the budget (nothing spent).
        PrivacyBudgetUnavailable: The Prefect API could not be reached or the
            lock was not obtained within ``timeout_seconds`` (nothing spent).
        ValueError: A bad epsilon, or no budget for the dataset.

    Example:
        ```python
        import prefect_synthobs as so

        so.record_privacy_spend(0.5, dataset="customers")
        ```
    """
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a non-empty string, got {dataset!r}")
    block = _resolve_budget(budget, dataset)
    total = float(block.total_epsilon)
    epsilon = float(epsilon)
    ctx = FlowRunContext.get()
    spend = {
        EVENT_ID: new_event_id(),
        "flow_run_id": str(ctx.flow_run.id) if ctx and ctx.flow_run else None,
        "flow_name": ctx.flow.name if ctx and ctx.flow else None,
        "dataset": dataset,
        "epsilon": epsilon,
        "budget": total,
    }
    with span(names.SPAN_PRIVACY_BUDGET_CHECK, dataset=dataset, epsilon=epsilon, budget=total) as current:
        lock = lock_name(dataset)
        try:
            ensure_limit(lock)
            lease = get_settings().privacy_lock_lease_seconds
            with budget_lock(dataset, timeout_seconds, lease) as held:
                spent = _read_spent(held.client, dataset)
                journal, settled = _settle(held.client, dataset, spent)
                allowed = spent + epsilon <= total * (1 + 1e-12)
                if allowed:
                    spend["spent"], spend["time"] = spent + epsilon, datetime.now(timezone.utc).isoformat()
                    # a holder that stood still past its lease may have lost the lock: spend nothing then
                    held.confirm(spent)
                    _write_journal(held.client, dataset, [*journal, spend])  # the row first, then the spend
                    held.confirm(spent)
                    write_variable(held.client, spent_variable(dataset), spent + epsilon)
                    if _persist([spend]):  # durable before the spend is acknowledged
                        _write_journal(held.client, dataset, journal)
                elif settled:
                    held.confirm(spent)
                    _write_journal(held.client, dataset, journal)
        except Exception as exc:
            raise PrivacyBudgetUnavailable(dataset, exc) from exc
        if current.is_recording():
            current.set_attributes({names.ATTR_PRIVACY_ALLOWED: allowed, names.ATTR_PRIVACY_SPENT: spent})
    _record(dataset, epsilon, spent + epsilon if allowed else spent, total, allowed, ctx)
    if not allowed:
        _emit_exceeded(dataset, epsilon, spent, total)
        raise PrivacyBudgetExceeded(dataset, epsilon, spent, total)
    return PrivacySpend(dataset, epsilon, spent + epsilon, total)


def _read_spent(client: SyncPrefectClient, dataset: str) -> float:
    """Epsilon spent on ``dataset`` so far (the lock held)."""
    return read_total(client, dataset)


def _settle(client: SyncPrefectClient, dataset: str, spent: float) -> tuple[list[dict[str, Any]], bool]:
    """Settle ``dataset``'s journal (the lock held): the spends of a spender killed before its ledger row was
    durable get their rows now; a spend the killed spender never committed (the total never reached it) is
    dropped. Returns the journal that remains (spends whose rows could not be made durable yet) and whether
    it differs from the one read."""
    journal = pending_spends(dataset, client)
    if not journal:
        return [], False
    committed = [entry for entry in journal if spent >= float(entry.get("spent", math.inf)) - 1e-9]
    if committed and _persist(committed):
        logger.warning(
            "synthobs: %d privacy spend(s) on %r were made by a process that stopped before writing their ledger "
            "rows; the rows are written now",
            len(committed),
            dataset,
        )
        return [], True
    return committed, len(committed) != len(journal)


def _write_journal(client: SyncPrefectClient, dataset: str, journal: list[dict[str, Any]]) -> None:
    write_variable(client, pending_variable(dataset), journal)


def _ledger_row(entry: dict[str, Any]) -> Row:
    row = privacy_row(
        time=datetime.fromisoformat(str(entry["time"])),
        flow_run_id=entry.get("flow_run_id"),
        flow_name=entry.get("flow_name"),
        dataset=str(entry["dataset"]),
        epsilon=float(entry["epsilon"]),
        spent=float(entry["spent"]),
        budget=float(entry["budget"]),
    )
    row[EVENT_ID] = str(entry[EVENT_ID])  # the same id each time it is written: a row written twice is read once
    return row


def _persist(entries: list[dict[str, Any]]) -> bool:
    """Make the ledger rows of ``entries`` durable now (a spool file, or the store). Never raises."""
    try:
        rows = [_ledger_row(entry) for entry in entries]
        return get_runtime().recorder.persist(names.PRIVACY_LEDGER, rows)
    except Exception as exc:
        logger.warning(
            "synthobs: privacy ledger row(s) not made durable yet (%s); the next spend on this dataset retries them",
            exc,
        )
        return False


def _record(
    dataset: str, epsilon: float, spent: float, total: float, allowed: bool, ctx: FlowRunContext | None
) -> None:
    try:
        runtime = get_runtime()
        runtime.recording.handle(
            PrivacyChecked(
                time=datetime.now(timezone.utc),
                flow_run_id=str(ctx.flow_run.id) if ctx and ctx.flow_run else None,
                flow_name=ctx.flow.name if ctx and ctx.flow else None,
                dataset=dataset,
                epsilon=epsilon,
                spent=spent,
                budget=total,
                allowed=allowed,
                ledger=False,  # the row was made durable while the lock was held
            )
        )
        if allowed and ctx is None:  # outside a flow nothing else flushes soon: write now
            runtime.recorder.flush()
    except Exception as exc:  # the spend and its ledger row are already durable
        logger.warning("synthobs: privacy spend not counted in the metrics (%s)", exc)


def _emit_exceeded(dataset: str, epsilon: float, spent: float, total: float) -> None:
    try:
        ctx = FlowRunContext.get()
        prefect_api.emit(
            names.EVENT_PRIVACY_BUDGET_EXCEEDED,
            resource_id=names.RESOURCE_DATASET_PREFIX + dataset_key(dataset),
            resource_name=dataset,
            payload={
                "dataset": dataset,
                "epsilon": epsilon,
                "spent": spent,
                "budget": total,
                "remaining": max(total - spent, 0.0),
            },
            flow_run_ids=[ctx.flow_run.id] if ctx and ctx.flow_run else [],
            redact_pii=get_settings().redact_pii,
        )
    except Exception as exc:
        logger.warning("synthobs: privacy budget event not emitted (%s)", exc)
