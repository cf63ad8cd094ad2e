"""The store breaker and the bounded store call (``health/breaker.py``), without a store or a server."""

from __future__ import annotations

import contextvars
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_synthobs.health.breaker import StoreBreaker, StoreTimeout, backoff_seconds, call_bounded


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


STEPS = st.lists(
    st.one_of(
        st.just(("failed", 0.0)),
        st.just(("succeeded", 0.0)),
        st.tuples(st.just("wait"), st.floats(min_value=0.0, max_value=400.0, allow_nan=False)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps=STEPS, base=st.floats(0.5, 20.0), cap=st.floats(1.0, 600.0))
def test_the_breaker_follows_its_model_through_any_failures_successes_and_waits(
    steps: list[tuple[str, float]], base: float, cap: float
) -> None:
    """Closed: every flush writes; open: only a background flush once the backoff (``base`` doubled per failure,
    at most ``cap``) has passed since the last failure."""
    clock = Clock()
    breaker = StoreBreaker(base=base, cap=cap, clock=clock)
    failures, retry_at = 0, 0.0
    for step, seconds in steps:
        if step == "failed":
            breaker.failed()
            failures += 1
            retry_at = clock.now + min(cap, base * 2 ** (failures - 1))
        elif step == "succeeded":
            breaker.succeeded()
            failures = 0
        else:
            clock.now += seconds
        assert breaker.is_open == (failures > 0)
        assert breaker.allows(background=False) == (failures == 0)
        assert breaker.allows(background=True) == (failures == 0 or clock.now >= retry_at)
        expected = None if failures == 0 else max(retry_at - clock.now, 0.0)
        assert breaker.seconds_to_retry() == pytest.approx(expected)


@given(failures=st.integers(1, 64), base=st.floats(0.01, 60.0), cap=st.floats(0.01, 600.0))
def test_the_backoff_doubles_per_failure_and_never_passes_the_cap(failures: int, base: float, cap: float) -> None:
    wait = backoff_seconds(failures, base=base, cap=cap)
    assert 0 < wait <= cap
    assert wait == min(cap, base * 2 ** (failures - 1))
    assert backoff_seconds(failures + 1, base=base, cap=cap) >= wait


def test_a_store_down_for_days_keeps_the_capped_backoff() -> None:
    """A retry every five minutes fails about 300 times a day: past 1024 failures ``2.0 ** n`` would overflow."""
    clock = Clock()
    breaker = StoreBreaker(clock=clock)
    for _ in range(5000):
        breaker.failed()
    assert breaker.seconds_to_retry() == 300.0 and backoff_seconds(10**6, base=5.0, cap=300.0) == 300.0
    clock.now += 300
    assert breaker.allows(background=True)


def test_failures_from_many_threads_are_each_counted() -> None:
    breaker = StoreBreaker(clock=Clock())
    start = threading.Barrier(8)

    def fail() -> None:
        start.wait()
        for _ in range(200):
            breaker.failed()

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.failures == 1600 and breaker.seconds_to_retry() == 300.0  # the default cap


def test_call_bounded_returns_the_value_and_raises_what_the_call_raised() -> None:
    assert call_bounded(lambda: "rows", 5.0) == "rows"
    empty: dict[str, int] = {}
    with pytest.raises(KeyError, match="gone"):
        call_bounded(lambda: empty["gone"], 5.0)


def test_call_bounded_gives_up_after_the_timeout_without_waiting_for_the_call() -> None:
    release, finished = threading.Event(), threading.Event()

    def hangs() -> None:
        release.wait(60)
        finished.set()

    with pytest.raises(StoreTimeout, match=r"0\.2 s \(store_timeout_seconds\)") as raised:
        call_bounded(hangs, 0.2)
    assert not finished.is_set()  # it returned while the call still hung: no wait for the call's 60 s
    assert isinstance(raised.value, TimeoutError)
    release.set()


def test_call_bounded_runs_on_a_named_daemon_thread_in_the_callers_context() -> None:
    """Prefect's settings (API URL, client timeouts) are context variables: the store call must see the caller's."""
    setting: contextvars.ContextVar[str] = contextvars.ContextVar("setting", default="unset")
    setting.set("the caller's")

    def look() -> tuple[str, str, bool, bool]:
        thread = threading.current_thread()
        return setting.get(), thread.name, thread.daemon, thread is threading.main_thread()

    value, name, daemon, main = call_bounded(look, 5.0, name="synthobs-store-probe")
    assert value == "the caller's" and name == "synthobs-store-probe" and daemon and not main
