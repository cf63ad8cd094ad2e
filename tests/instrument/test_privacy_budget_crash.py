"""The privacy ledger under crashes: real spender processes SIGKILLed at every point of a spend.

A spender killed while holding a dataset's lock blocks the other spenders for about ``privacy_lock_lease_seconds``
(not Prefect's 60 s minimum lease plus its 15 s lease check), and however the spenders die, the ledger sums to what
the Prefect variable says was spent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import prefect_synthobs as so
from conftest import subprocess_env
from prefect_synthobs import catalog as names
from prefect_synthobs.config import active as so_settings
from prefect_synthobs.config.budget_state import dataset_key, pending_spends, spent_epsilon
from prefect_synthobs.instrument.instrumentation import reset_runtime

pytestmark = pytest.mark.usefixtures("prefect_server")

SPENDER = """
import os, signal, sys, time
import prefect_synthobs as so
from prefect_synthobs.instrument import privacy_budget as pb

so.configure(
    store_url=os.environ["STORE"],
    spool_dir=os.environ["SPOOL"],
    privacy_lock_lease_seconds=float(os.environ["LEASE"]),
)
pause_at, pause_on = os.environ.get("PAUSE_AT", ""), int(os.environ.get("PAUSE_ON", "0"))
state = {"spend": 0, "new": None}

def pause(point):
    if point == pause_at and state["spend"] == pause_on:
        print("PAUSED " + point, flush=True)
        time.sleep(3600)

read_spent, write_journal, persist = pb._read_spent, pb._write_journal, pb._persist

def paused_read_spent(client, dataset):  # called holding the lock, before anything is read
    pause("locked")
    value = read_spent(client, dataset)
    if pause_at == "read" and state["spend"] == pause_on:  # the total read: freeze the whole process
        print("STOPPED", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    return value

def paused_write_journal(client, dataset, journal):
    ids = [entry["event_id"] for entry in journal]
    if state["new"] is not None and state["new"] not in ids:
        pause("persisted")  # the row is durable, the journal not cleared yet
    write_journal(client, dataset, journal)
    state["new"] = ids[-1] if ids and ids[-1] != state["new"] else state["new"]

def paused_persist(entries):
    if any(entry["event_id"] == state["new"] for entry in entries):
        pause("spent")  # the total is set, the ledger row not written yet
    return persist(entries)

pb._read_spent, pb._write_journal, pb._persist = paused_read_spent, paused_write_journal, paused_persist
print("STARTED", flush=True)
for i in range(int(os.environ["SPENDS"])):
    state["spend"], state["new"] = i + 1, None
    spend = so.record_privacy_spend(
        float(os.environ["EPS"]), dataset=os.environ["DATASET"], timeout_seconds=float(os.environ.get("WAIT", 60))
    )
    print(f"SPENT {spend.spent}", flush=True)
"""


def _spender(env: dict[str, str], **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SPENDER],
        env={**env, **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 120) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"no {prefix!r} line: {proc.communicate()[1][-3000:]}")


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


@pytest.fixture
def budget_env(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    dataset = f"crash {uuid.uuid4().hex[:6]}"
    so.PrivacyBudget(dataset=dataset, total_epsilon=100.0).save(dataset_key(dataset))
    env = subprocess_env(
        STORE=str(tmp_path / "store"),
        SPOOL=str(tmp_path / "spool"),
        DATASET=dataset,
        EPS="0.25",
        LEASE="2",
        PREFECT_CLIENT_MAX_RETRIES="10",
    )
    so_settings.reset()
    reset_runtime()
    so.configure(store_url=env["STORE"], spool_dir=env["SPOOL"], metrics_mode="none", privacy_lock_lease_seconds=2.0)
    yield dataset, env
    reset_runtime()
    so_settings.reset()


@pytest.mark.slow
def test_a_spender_killed_holding_the_lock_blocks_others_for_the_lease_only(
    budget_env: tuple[str, dict[str, str]],
) -> None:
    dataset, env = budget_env
    holder = _spender(env, SPENDS="1", PAUSE_AT="locked", PAUSE_ON="1")
    _wait_for_line(holder, "PAUSED")
    _kill(holder)
    started = time.monotonic()
    spend = so.record_privacy_spend(0.25, dataset=dataset, timeout_seconds=120)
    blocked = time.monotonic() - started
    assert spend.spent == pytest.approx(0.25)  # the killed holder spent nothing
    # the lease (2 s) and a margin for a loaded machine; Prefect's own lease would hold it 60 s or more
    assert blocked < 2 + 8, blocked
    print(f"blocked {blocked:.1f} s after the holder was killed")


@pytest.mark.slow
def test_the_ledger_sums_to_what_was_spent_however_spenders_die(budget_env: tuple[str, dict[str, str]]) -> None:
    dataset, env = budget_env
    expected = 0
    # killed at each point of its second spend: before reading (nothing spent), after the total was set (the row
    # not written), after the row was durable (the journal not cleared)
    for point, committed in (("spent", 2), ("persisted", 2), ("locked", 1)):
        proc = _spender(env, SPENDS="3", PAUSE_AT=point, PAUSE_ON="2")
        _wait_for_line(proc, "PAUSED")
        _kill(proc)
        expected += committed
    # a healthy spender settles whatever was left
    proc = _spender(env, SPENDS="2")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    so.record_privacy_spend(0.25, dataset=dataset, timeout_seconds=60)
    assert pending_spends(dataset) == []
    spent = spent_epsilon(dataset)
    assert spent == pytest.approx((expected + 3) * 0.25)
    reset_runtime()  # the final flush drains the spool the killed spenders left
    ledger = so.HealthStore(env["STORE"]).read(names.PRIVACY_LEDGER)
    ledger = ledger[ledger.dataset == dataset]
    assert ledger.event_id.is_unique
    assert ledger.epsilon.sum() == pytest.approx(spent)
    assert sorted(ledger.spent) == pytest.approx([0.25 * (i + 1) for i in range(len(ledger))])  # each spend once


def _wait_until_stopped(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.05)
    pytest.fail(f"spender {proc.pid} did not stop")


@pytest.mark.slow
def test_a_holder_frozen_past_its_lease_spends_nothing_when_it_resumes(
    budget_env: tuple[str, dict[str, str]],
) -> None:
    """A holder frozen (SIGSTOP) right after reading the total, for longer than the lease but less than its
    Prefect lease renewal (20 s), loses the lock to a waiter; resumed, it must not write its stale total."""
    dataset, env = budget_env
    frozen = _spender(env, SPENDS="1", PAUSE_AT="read", PAUSE_ON="1")
    try:
        _wait_for_line(frozen, "STOPPED")
        _wait_until_stopped(frozen)
        other = so.record_privacy_spend(0.5, dataset=dataset, timeout_seconds=60)  # takes over after ~2 s
        assert other.spent == pytest.approx(0.5)  # the frozen holder had spent nothing yet
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    _, err = frozen.communicate(timeout=60)
    assert frozen.returncode != 0, "the frozen holder's spend was allowed"
    assert "PrivacyBudgetUnavailable" in err and "nothing was spent" in err, err[-3000:]
    assert spent_epsilon(dataset) == pytest.approx(0.5)  # not the frozen holder's stale 0.25
    assert pending_spends(dataset) == []  # no journal entry of the refused spend for the next spender to settle
    so.record_privacy_spend(0.25, dataset=dataset, timeout_seconds=60)  # settles whatever a spender left
    assert spent_epsilon(dataset) == pytest.approx(0.75)
    reset_runtime()
    ledger = so.HealthStore(env["STORE"]).read(names.PRIVACY_LEDGER)
    ledger = ledger[ledger.dataset == dataset]
    assert ledger.event_id.is_unique
    assert ledger.epsilon.sum() == pytest.approx(spent_epsilon(dataset))
    assert sorted(ledger.epsilon) == pytest.approx([0.25, 0.5])
