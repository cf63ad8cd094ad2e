"""Privacy budgets: spend epsilon atomically, across processes and workers.

How a spend stays atomic: the epsilon spent on a dataset lives in a Prefect
variable (``synthobs_privacy_spent__<dataset key>``), and it is read, checked
and written only while holding one slot of a Prefect *global concurrency
limit* of size 1 (``synthobs-privacy-<dataset key>``). Prefect's server
hands the slot to one holder at a time, whichever process or worker asks, so
two flows spending at once can never both see the same "spent" value. The
limit is a primitive Prefect already runs and shows in its UI; synthobs
creates it on first use. A slot is leased, but Prefect's server takes no
lease under 60 s and frees an expired one only on its next check (every 15 s
by default), so a killed holder would block the dataset for 75 s or more.
synthobs keeps its own, shorter lease on top: the holder beats (a counter in
the variable ``synthobs_privacy_holder__<dataset key>``, with its Prefect lease
id) every third of ``privacy_lock_lease_seconds`` (10 s by default); a spender
waiting for the lock that sees the beat stand still for that long releases
the holder's Prefect lease (by its id, so never a live holder's) and takes the
lock. A killed spender blocks the dataset for about ``privacy_lock_lease_seconds``
(one killed in the few milliseconds between taking the lock and its first
beat, whose lease id nobody knows, for Prefect's own lease: 60 s and the
server's next check; an ephemeral Prefect API, which runs no lease check,
never frees it, as before).
A holder that stalled that long (a frozen process, a thread holding the GIL, a
long garbage collection) may have lost the lock while it stood still, and its
own beat thread notices only at its next Prefect lease renewal (every 20 s). So
right before each write of the journal and of the total, the holder asks the
server: it renews its Prefect lease (gone once a waiter released it) and re-reads
the total (changed if another spender wrote it since it was read). Either way it
spends nothing and the spend is refused (``PrivacyBudgetUnavailable``): the
total is never overwritten with a stale one.

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

import contextlib
import contextvars
import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists, PrefectHTTPStatusError

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import get_settings, load_block
from prefect_synthobs.config.blocks import PrivacyBudget
from prefect_synthobs.config.budget_state import (
    dataset_key,
    holder_variable,
    lock_name,
    pending_spends,
    pending_variable,
    read_variable,
    spent_variable,
    write_variable,
)
from prefect_synthobs.health.rows import privacy_row
from prefect_synthobs.health.tables import EVENT_ID, Row, new_event_id
from prefect_synthobs.instrument.instrumentation import get_runtime
from prefect_synthobs.instrument.spans import span
from prefect_synthobs.telemetry.redaction import redact_fields

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


PREFECT_MIN_LEASE_SECONDS = 60.0


class LockLost(RuntimeError):
    """This process stalled past its lease and another spender took the dataset's lock."""


class _HeldLock:
    """The dataset's lock while held: beats for waiters and renews the Prefect lease on a daemon thread."""

    def __init__(self, client: SyncPrefectClient, dataset: str, lease_id: str, lease_seconds: float) -> None:
        self.client = client
        """The client that took the lock; the holder's reads and writes use it (one connection, not one each)."""
        self.dataset, self.lease_id, self.lease_seconds = dataset, lease_id, lease_seconds
        self.lost: BaseException | None = None
        self._stop = threading.Event()
        self._beats = 0
        self._thread: threading.Thread | None = None

    def beat(self, client: SyncPrefectClient) -> None:
        self._beats += 1
        write_variable(client, holder_variable(self.dataset), {"lease_id": self.lease_id, "beat": self._beats})

    def start(self) -> None:
        self.beat(self.client)  # before the caller goes on: a waiter can tell this holder from a dead one
        context = contextvars.copy_context()  # Prefect's settings (API URL) are context variables
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="synthobs-privacy-lock", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        interval = self.lease_seconds / 3
        renew_every = PREFECT_MIN_LEASE_SECONDS / 3
        last_renewal = time.monotonic()
        client: SyncPrefectClient | None = None
        try:
            while not self._stop.wait(interval):
                if client is None:  # a client of its own: the holder's is not for two threads at once
                    client = get_client(sync_client=True).__enter__()
                self.beat(client)
                if time.monotonic() - last_renewal >= renew_every:
                    client.renew_concurrency_lease(uuid.UUID(self.lease_id), PREFECT_MIN_LEASE_SECONDS)
                    last_renewal = time.monotonic()
        except Exception as exc:  # 410: the lease was released by a waiter (this process stalled)
            self.lost = exc
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.__exit__(None, None, None)

    def check(self) -> None:
        """Raise ``LockLost`` if the lock may have passed to another spender."""
        if self.lost is not None:
            raise LockLost(f"the lock of {self.dataset!r} was lost ({type(self.lost).__name__}: {self.lost})")

    def confirm(self, spent: float) -> None:
        """Raise ``LockLost`` unless the server says this holder still has the lock and the total is ``spent``.

        Called right before a write: renewing the Prefect lease fails once a waiter released it (this process
        stood still past ``privacy_lock_lease_seconds``), and a total other than the one read means another
        spender wrote it meanwhile. The re-read comes last, one request before the write it guards.
        """
        self.check()
        try:
            self.client.renew_concurrency_lease(uuid.UUID(self.lease_id), PREFECT_MIN_LEASE_SECONDS)
        except Exception as exc:  # 410 Gone: released by a waiter that took this holder for dead
            self.lost = exc
            raise LockLost(
                f"the lock of {self.dataset!r} was taken over while this spender stood still past its lease "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        now = _read_total(self.client, self.dataset)
        if now != spent:
            self.lost = LockLost(f"the spent total changed from {spent:g} to {now:g}")
            raise LockLost(
                f"the spent epsilon of {self.dataset!r} changed from {spent:g} to {now:g} while this spender held "
                "its lock (it stood still past its lease and another spender took over)"
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@contextlib.contextmanager
def _budget_lock(dataset: str, timeout_seconds: float, lease_seconds: float) -> Iterator[_HeldLock]:
    """Hold ``dataset``'s lock (one slot of its global concurrency limit) for the block.

    Waits at most ``timeout_seconds`` (``TimeoutError``). While waiting, a
    holder whose beat has not moved for ``lease_seconds`` is taken for dead
    and its Prefect lease released.
    """
    lock = lock_name(dataset)
    deadline = time.monotonic() + timeout_seconds
    seen: Any = None
    seen_since = time.monotonic()
    checked: set[str] = set()  # lease ids of beats found already gone
    with get_client(sync_client=True) as client:
        while True:
            try:
                response = client.increment_concurrency_slots_with_lease(
                    names=[lock], slots=1, mode="concurrency", lease_duration=PREFECT_MIN_LEASE_SECONDS
                )
                lease_id = str(response.json()["lease_id"])
                break
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 423:  # 423 Locked: someone holds it
                    raise
                retry_after = float(exc.response.headers.get("Retry-After", 0.5))
            now = time.monotonic()
            holder = read_variable(client, holder_variable(dataset))
            if holder != seen:
                seen, seen_since = holder, now
            elif now - seen_since >= lease_seconds and _release_if_dead(client, dataset, holder, checked):
                logger.warning(
                    "synthobs: the privacy budget lock of %r was held by a spender that stopped beating %.0f s "
                    "ago (killed?); its lease is released",
                    dataset,
                    now - seen_since,
                )
                seen = None
                continue
            if now >= deadline:
                raise TimeoutError(f"the privacy budget lock of {dataset!r} was not obtained in {timeout_seconds:g} s")
            time.sleep(max(0.05, min(retry_after, 0.5, lease_seconds / 6, deadline - now)))
        held = _HeldLock(client, dataset, lease_id, lease_seconds)
        try:
            held.start()
            yield held
        finally:
            held.stop()
            with contextlib.suppress(Exception):  # not released: its lease frees it
                client.release_concurrency_slots_with_lease(uuid.UUID(lease_id))


def _release_if_dead(client: SyncPrefectClient, dataset: str, holder: Any, checked: set[str]) -> bool:
    """Release the Prefect lease of a holder whose beat stood still; whether there was one to release.

    The beat's lease may be gone already (released normally: the lock's
    holder then is a spender killed between taking the lock and its first
    beat, whose lease id nobody knows; Prefect's own lease frees it, within
    its 60 s and the server's next lease check). Renewing tells them apart.
    """
    if not isinstance(holder, dict) or not holder.get("lease_id") or str(holder["lease_id"]) in checked:
        return False
    lease_id = str(holder["lease_id"])
    checked.add(lease_id)
    try:
        client.renew_concurrency_lease(uuid.UUID(lease_id), PREFECT_MIN_LEASE_SECONDS)
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 410:  # 410 Gone: released or expired already
            raise
        logger.info(
            "synthobs: the privacy budget lock of %r is held by a spender that never beat (killed as it took "
            "the lock?); waiting for Prefect's own lease to free it (60 s and the server's next lease check)",
            dataset,
        )
        return False
    client.release_concurrency_slots_with_lease(uuid.UUID(lease_id))
    return True


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
            _ensure_limit(lock)
            lease = get_settings().privacy_lock_lease_seconds
            with _budget_lock(dataset, timeout_seconds, lease) as held:
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
    return _read_total(client, dataset)


def _read_total(client: SyncPrefectClient, dataset: str) -> float:
    """The spent total as the server has it now (also the re-read that tells a holder it lost the lock)."""
    value = read_variable(client, spent_variable(dataset))
    return 0.0 if value is None else float(value)


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
        runtime.recording.privacy_checked(
            dataset,
            epsilon,
            spent=spent,
            budget=total,
            allowed=allowed,
            time=datetime.now(timezone.utc),
            flow_run_id=str(ctx.flow_run.id) if ctx and ctx.flow_run else None,
            flow_name=ctx.flow.name if ctx and ctx.flow else None,
            ledger=False,  # the row was made durable while the lock was held
        )
        if allowed and ctx is None:  # outside a flow nothing else flushes soon: write now
            runtime.recorder.flush()
    except Exception as exc:  # the spend and its ledger row are already durable
        logger.warning("synthobs: privacy spend not counted in the metrics (%s)", exc)


def _emit_exceeded(dataset: str, epsilon: float, spent: float, total: float) -> None:
    try:
        ctx = FlowRunContext.get()
        related = (
            [{"prefect.resource.id": f"prefect.flow-run.{ctx.flow_run.id}", "prefect.resource.role": "flow-run"}]
            if ctx and ctx.flow_run
            else []
        )
        redacting = get_settings().redact_pii
        emit_event(
            event=names.EVENT_PRIVACY_BUDGET_EXCEEDED,
            resource=redact_fields(
                {
                    "prefect.resource.id": f"synthobs.dataset.{dataset_key(dataset)}",
                    "prefect.resource.name": dataset,
                },
                enabled=redacting,
            ),
            related=related,
            payload=redact_fields(
                {
                    "dataset": dataset,
                    "epsilon": epsilon,
                    "spent": spent,
                    "budget": total,
                    "remaining": max(total - spent, 0.0),
                },
                enabled=redacting,
            ),
        )
    except Exception as exc:
        logger.warning("synthobs: privacy budget event not emitted (%s)", exc)
