"""A dataset's privacy-budget lock: one slot of a Prefect global concurrency limit, held with a beat.

The spent epsilon of a dataset is read, checked and written only while
holding one slot of the Prefect *global concurrency limit* of size 1
``synthobs-privacy-<dataset key>`` (``config.budget_state.lock_name``).
Prefect's server hands the slot to one holder at a time, whichever process or
worker asks; synthobs creates the limit on first use. A slot is leased, but
Prefect's server takes no lease under 60 s and frees an expired one only on
its next check (every 15 s by default), so a killed holder would block the
dataset for 75 s or more.

synthobs keeps its own, shorter lease on top: the holder beats (a counter in
the variable ``synthobs_privacy_holder__<dataset key>``, with its Prefect lease
id) every third of ``privacy_lock_lease_seconds`` (10 s by default); a spender
waiting for the lock that sees the beat stand still for that long releases
the holder's Prefect lease (by its id, so never a live holder's) and takes the
lock. A killed spender blocks the dataset for about ``privacy_lock_lease_seconds``
(one killed in the few milliseconds between taking the lock and its first
beat, whose lease id nobody knows, for Prefect's own lease: 60 s and the
server's next check; an ephemeral Prefect API, which runs no lease check,
never frees it).

A holder that stalled that long (a frozen process, a thread holding the GIL, a
long garbage collection) may have lost the lock while it stood still, and its
own beat thread notices only at its next Prefect lease renewal (every 20 s).
So right before each write the spender calls :meth:`HeldLock.confirm`: it
renews its Prefect lease (gone once a waiter released it) and re-reads the
total (changed if another spender wrote it since it was read); either way
``LockLost`` is raised and nothing is written.

The API calls themselves are ``prefect_api``'s (``take_slot``,
``renew_lease``, ``release_lease``); the variables are
``config.budget_state``'s.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator
from typing import Any

from prefect.client.orchestration import SyncPrefectClient

from prefect_synthobs._log import get_logger
from prefect_synthobs.config.budget_state import (
    holder_variable,
    lock_name,
    read_variable,
    spent_variable,
    write_variable,
)
from prefect_synthobs.instrument import prefect_api
from prefect_synthobs.instrument.prefect_api import LeaseGone

logger = get_logger()

PREFECT_MIN_LEASE_SECONDS = 60.0
"""The shortest lease Prefect's server takes on a concurrency slot."""

_created: set[str] = set()
_created_lock = threading.Lock()


class LockLost(RuntimeError):
    """This process stalled past its lease and another spender took the dataset's lock."""


def ensure_limit(name: str) -> None:
    """Create the concurrency limit ``name`` (size 1) unless this process did already."""
    with _created_lock:
        if name in _created:
            return
        prefect_api.ensure_concurrency_limit(name, limit=1)
        _created.add(name)


def read_total(client: SyncPrefectClient, dataset: str) -> float:
    """The spent total as the server has it now (also the re-read that tells a holder it lost the lock)."""
    value = read_variable(client, spent_variable(dataset))
    return 0.0 if value is None else float(value)


class HeldLock:
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
        opened: contextlib.AbstractContextManager[SyncPrefectClient] | None = None
        try:
            client: SyncPrefectClient | None = None
            while not self._stop.wait(interval):
                if client is None:  # a client of its own: the holder's is not for two threads at once
                    opened = prefect_api.open_client()
                    client = opened.__enter__()
                self.beat(client)
                if time.monotonic() - last_renewal >= renew_every:
                    prefect_api.renew_lease(client, self.lease_id, PREFECT_MIN_LEASE_SECONDS)
                    last_renewal = time.monotonic()
        except Exception as exc:  # the lease was released by a waiter (this process stalled)
            self.lost = exc
        finally:
            if opened is not None:
                with contextlib.suppress(Exception):
                    opened.__exit__(None, None, None)

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
            prefect_api.renew_lease(self.client, self.lease_id, PREFECT_MIN_LEASE_SECONDS)
        except Exception as exc:  # gone: released by a waiter that took this holder for dead
            self.lost = exc
            raise LockLost(
                f"the lock of {self.dataset!r} was taken over while this spender stood still past its lease "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        now = read_total(self.client, self.dataset)
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
def budget_lock(dataset: str, timeout_seconds: float, lease_seconds: float) -> Iterator[HeldLock]:
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
    with prefect_api.open_client() as client:
        while True:
            lease_id, retry_after = prefect_api.take_slot(client, lock, PREFECT_MIN_LEASE_SECONDS)
            if lease_id is not None:
                break
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
        held = HeldLock(client, dataset, lease_id, lease_seconds)
        try:
            held.start()
            yield held
        finally:
            held.stop()
            with contextlib.suppress(Exception):  # not released: its lease frees it
                prefect_api.release_lease(client, lease_id)


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
        prefect_api.renew_lease(client, lease_id, PREFECT_MIN_LEASE_SECONDS)
    except LeaseGone:
        logger.info(
            "synthobs: the privacy budget lock of %r is held by a spender that never beat (killed as it took "
            "the lock?); waiting for Prefect's own lease to free it (60 s and the server's next lease check)",
            dataset,
        )
        return False
    prefect_api.release_lease(client, lease_id)
    return True
