"""Bounded store calls and the circuit breaker that skips a store that failed.

A health-store call may hang (a frozen S3 endpoint, a stale NFS mount). Each one
runs through ``call_bounded``: on its own daemon thread, waited for at most the
store timeout, so a flow never waits longer than that for its health rows. A
store that failed is then skipped (``StoreBreaker``) until a background retry,
after a backoff that doubles up to five minutes, finds it answering again.

Neither knows what a store or a row is: the ``Recorder`` decides what a failure
costs (spooling the rows), this module only when to try again and how long to wait.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class StoreTimeout(TimeoutError):
    """A store call did not finish within the store timeout."""


def call_bounded(fn: Callable[[], T], timeout: float, *, name: str = "synthobs-store-write") -> T:
    """``fn()`` on a daemon thread, waited for at most ``timeout`` seconds.

    The thread runs in a copy of the caller's context: Prefect's settings (API
    URL, client timeouts) are context variables.

    Raises:
        StoreTimeout: ``fn`` had not finished in time (it goes on in the
            background; a daemon thread never holds the interpreter's exit).
        Exception: whatever ``fn`` raised.
    """
    done = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=contextvars.copy_context().run, args=(run,), name=name, daemon=True).start()
    if not done.wait(timeout):
        raise StoreTimeout(f"no answer within {timeout:g} s (store_timeout_seconds)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def backoff_seconds(failures: int, *, base: float, cap: float) -> float:
    """Seconds to wait after ``failures`` failures in a row (at least one): ``base`` doubled per failure
    after the first, at most ``cap`` (pure).

    The doubling stops at 2**64: a store down for days fails a thousand times and more, and ``2.0 ** 1024``
    overflows (``OverflowError``, which would have stopped the flusher thread).
    """
    return min(cap, base * 2.0 ** min(failures - 1, 64))


class StoreBreaker:
    """Skips a store that failed until a background retry succeeds.

    Closed (the store answered last time): every flush writes. Open (it
    failed): foreground flushes spool at once; the background flusher retries
    once the backoff (``base`` seconds, doubled per failure up to ``cap``)
    has passed.

    Args:
        base: Seconds before the first retry.
        cap: The longest backoff.
        clock: Monotonic seconds (injected by tests).
    """

    def __init__(self, *, base: float = 5.0, cap: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.base, self.cap, self._clock = base, cap, clock
        self.failures = 0
        self._retry_at = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """Whether the store failed last time it was tried."""
        return self.failures > 0

    def allows(self, *, background: bool) -> bool:
        """Whether a write may go to the store now."""
        with self._lock:
            return self.failures == 0 or (background and self._clock() >= self._retry_at)

    def seconds_to_retry(self) -> float | None:
        """Seconds until a background retry is due (``None`` while closed)."""
        with self._lock:
            return None if self.failures == 0 else max(self._retry_at - self._clock(), 0.0)

    def failed(self) -> None:
        """The store failed: open, and put the next retry one (longer) backoff away."""
        with self._lock:
            self.failures += 1
            self._retry_at = self._clock() + backoff_seconds(self.failures, base=self.base, cap=self.cap)

    def succeeded(self) -> None:
        """The store answered: close."""
        with self._lock:
            self.failures = 0
