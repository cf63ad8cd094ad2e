"""Privacy budgets: spend epsilon atomically, across processes and workers.

How a spend stays atomic: the epsilon spent on a dataset lives in a Prefect
variable (``synthobs_privacy_spent__<dataset key>``), and it is read, checked
and written only while holding one slot of a Prefect *global concurrency
limit* of size 1 (``synthobs-privacy-<dataset key>``). Prefect's server
hands the slot to one holder at a time, whichever process or worker asks, so
two flows spending at once can never both see the same "spent" value. The
limit is a primitive Prefect already runs and shows in its UI; synthobs
creates it on first use. A slot is leased: if the holder dies, the lease
expires and the lock frees itself.

Every allowed spend is one ``privacy_ledger`` row; a denied one raises
``PrivacyBudgetExceeded``, counts as ``denied`` and emits the Prefect event
``synthobs.privacy.budget.exceeded``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists, PrefectHTTPStatusError
from prefect.variables import Variable

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import load_block
from prefect_synthobs.config.blocks import PrivacyBudget
from prefect_synthobs.config.budget_state import dataset_key, lock_name, spent_epsilon, spent_variable
from prefect_synthobs.instrument.instrumentation import get_runtime
from prefect_synthobs.instrument.spans import span

logger = get_logger()

_created: set[str] = set()
_created_lock = threading.Lock()


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


def _ensure_limit(name: str) -> None:
    with _created_lock:
        if name in _created:
            return
        with get_client(sync_client=True) as client:
            try:
                client.upsert_global_concurrency_limit_by_name(name, limit=1)
            except (ObjectAlreadyExists, PrefectHTTPStatusError) as exc:
                # Prefect's upsert reads, then creates: another process may create the
                # limit in between (409, raised as ObjectAlreadyExists by Prefect 3.8).
                # It exists then, which is all that is needed.
                if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code != 409:
                    raise
                client.read_global_concurrency_limit_by_name(name)
        _created.add(name)


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
    with span(names.SPAN_PRIVACY_BUDGET_CHECK, dataset=dataset, epsilon=epsilon, budget=total) as current:
        lock = lock_name(dataset)
        try:
            _ensure_limit(lock)
            with concurrency(lock, occupy=1, timeout_seconds=timeout_seconds, strict=True):
                spent = spent_epsilon(dataset)
                allowed = spent + epsilon <= total * (1 + 1e-12)
                if allowed:
                    Variable.set(
                        spent_variable(dataset),
                        spent + epsilon,
                        overwrite=True,  # type: ignore[call-arg]
                        _sync=True,
                    )
        except Exception as exc:
            raise PrivacyBudgetUnavailable(dataset, exc) from exc
        if current.is_recording():
            current.set_attributes({names.ATTR_PRIVACY_ALLOWED: allowed, names.ATTR_PRIVACY_SPENT: spent})
    _record(dataset, epsilon, spent + epsilon if allowed else spent, total, allowed)
    if not allowed:
        _emit_exceeded(dataset, epsilon, spent, total)
        raise PrivacyBudgetExceeded(dataset, epsilon, spent, total)
    return PrivacySpend(dataset, epsilon, spent + epsilon, total)


def _record(dataset: str, epsilon: float, spent: float, total: float, allowed: bool) -> None:
    try:
        runtime = get_runtime()
        ctx = FlowRunContext.get()
        runtime.recording.privacy_checked(
            dataset,
            epsilon,
            spent=spent,
            budget=total,
            allowed=allowed,
            time=datetime.now(timezone.utc),
            flow_run_id=str(ctx.flow_run.id) if ctx and ctx.flow_run else None,
            flow_name=ctx.flow.name if ctx and ctx.flow else None,
        )
        if allowed and ctx is None:  # outside a flow nothing else flushes soon: write now
            runtime.recorder.flush()
    except Exception as exc:  # the spend itself is already durable in the Prefect variable
        logger.warning("synthobs: privacy spend not recorded in the ledger (%s)", exc)


def _emit_exceeded(dataset: str, epsilon: float, spent: float, total: float) -> None:
    try:
        ctx = FlowRunContext.get()
        related = (
            [{"prefect.resource.id": f"prefect.flow-run.{ctx.flow_run.id}", "prefect.resource.role": "flow-run"}]
            if ctx and ctx.flow_run
            else []
        )
        emit_event(
            event=names.EVENT_PRIVACY_BUDGET_EXCEEDED,
            resource={
                "prefect.resource.id": f"synthobs.dataset.{dataset_key(dataset)}",
                "prefect.resource.name": dataset,
            },
            related=related,
            payload={
                "dataset": dataset,
                "epsilon": epsilon,
                "spent": spent,
                "budget": total,
                "remaining": max(total - spent, 0.0),
            },
        )
    except Exception as exc:
        logger.warning("synthobs: privacy budget event not emitted (%s)", exc)
