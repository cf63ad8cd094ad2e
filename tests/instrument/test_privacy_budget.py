"""Privacy budgets: atomic spends across processes, ledger exactly once, denial event."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prefect import flow

import prefect_synthobs as so
from conftest import subprocess_env, wait_for_events
from prefect_synthobs import catalog as names
from prefect_synthobs.config.budget_state import dataset_key, spent_epsilon

pytestmark = pytest.mark.usefixtures("prefect_server")

SPENDER = """
import json, os, sys
import prefect_synthobs as so
from prefect import flow

so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"])

@so.observe(kind="generation", table="customers")
@flow(name="dp-generate")
def generate(eps: float) -> str:
    try:
        spend = so.record_privacy_spend(eps, dataset=os.environ["DATASET"])
        return f"allowed {spend.spent}"
    except so.PrivacyBudgetExceeded:
        return "denied"

print("RESULT " + generate(float(os.environ["EPS"])))
"""


@pytest.mark.slow
def test_concurrent_spenders_never_exceed_the_budget(tmp_path: Path) -> None:
    dataset = f"patients {uuid.uuid4().hex[:6]}"  # a space: names are made safe
    so.PrivacyBudget(dataset=dataset, total_epsilon=1.0).save(dataset_key(dataset))
    env = subprocess_env(
        STORE=str(tmp_path / "store"),
        SPOOL=str(tmp_path / "spool"),
        DATASET=dataset,
        EPS="0.3",
        PREFECT_CLIENT_MAX_RETRIES="10",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SPENDER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(next(line for line in out.splitlines() if line.startswith("RESULT ")).split(" ", 1)[1])
    allowed = [r for r in results if r.startswith("allowed")]
    assert len(allowed) == 3 and results.count("denied") == 5, results  # 3 × 0.3 <= 1.0 < 4 × 0.3
    assert spent_epsilon(dataset) == pytest.approx(0.9)
    assert sorted(float(r.split()[1]) for r in allowed) == pytest.approx([0.3, 0.6, 0.9])  # strictly serialised
    ledger = so.HealthStore(str(tmp_path / "store")).read(names.PRIVACY_LEDGER)
    ledger = ledger[ledger.dataset == dataset]
    assert len(ledger) == 3 and ledger.event_id.is_unique  # every spend exactly once
    assert sorted(ledger.spent) == pytest.approx([0.3, 0.6, 0.9])
    assert ledger.flow_run_id.notna().all() and set(ledger.budget) == {1.0}
    assert so.PrivacyBudget.load(dataset_key(dataset)).remaining() == pytest.approx(0.1)


def test_denied_spend_raises_counts_and_emits(store_dir: Path) -> None:
    dataset = f"claims-{uuid.uuid4().hex[:6]}"
    budget = so.PrivacyBudget(dataset=dataset, total_epsilon=0.5)

    @so.observe(kind="generation")
    @flow(name=f"dp-{dataset}")
    def spend_twice() -> None:
        so.record_privacy_spend(0.4, dataset=dataset, budget=budget)
        so.record_privacy_spend(0.2, dataset=dataset, budget=budget)

    state = spend_twice(return_state=True)
    assert state.is_failed()
    with pytest.raises(so.PrivacyBudgetExceeded, match=r"remaining 0\.1"):
        state.result()
    assert spent_epsilon(dataset) == pytest.approx(0.4)  # the denied spend took nothing
    events = wait_for_events(
        names.EVENT_PRIVACY_BUDGET_EXCEEDED, resource_id=f"synthobs.dataset.{dataset_key(dataset)}"
    )
    assert len(events) == 1 and events[0].payload["epsilon"] == 0.2 and events[0].payload["budget"] == 0.5
    from prometheus_client import generate_latest

    from prefect_synthobs.metrics import REGISTRY

    text = generate_latest(REGISTRY).decode()
    assert f'synthobs_privacy_budget_checks_total{{dataset="{dataset}",result="denied"}} 1.0' in text
    assert f'synthobs_privacy_budget_checks_total{{dataset="{dataset}",result="allowed"}} 1.0' in text
    assert f'synthobs_privacy_epsilon_spent_total{{dataset="{dataset}"}} 0.4' in text
    ledger = so.HealthStore(str(store_dir)).read(names.PRIVACY_LEDGER)
    assert ledger.loc[ledger.dataset == dataset, "epsilon"].tolist() == [0.4]


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        so.record_privacy_spend(0, dataset="x")
    with pytest.raises(ValueError, match="epsilon"):
        so.record_privacy_spend(float("nan"), dataset="x")
    with pytest.raises(ValueError, match="no PrivacyBudget block"):
        so.record_privacy_spend(0.1, dataset=f"unbudgeted-{uuid.uuid4().hex[:6]}")
    with pytest.raises(ValueError, match="is for dataset"):
        so.record_privacy_spend(0.1, dataset="a", budget=so.PrivacyBudget(dataset="b", total_epsilon=1))
    key = dataset_key("Patients / EU")
    assert re.fullmatch(r"[a-z0-9_-]+", key)  # a name Prefect accepts for variables and limits
    assert key != dataset_key("patients-eu")  # made-safe names of different datasets stay apart


def test_unreachable_api_refuses_the_spend_clearly(store_dir: Path) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from conftest import free_port

    dataset = f"offline-{uuid.uuid4().hex[:6]}"
    budget = so.PrivacyBudget(dataset=dataset, total_epsilon=1.0)
    with (
        temporary_settings(
            updates={PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api", PREFECT_CLIENT_MAX_RETRIES: 0}
        ),
        pytest.raises(so.PrivacyBudgetUnavailable, match="nothing was spent"),
    ):
        so.record_privacy_spend(0.1, dataset=dataset, budget=budget)
    assert spent_epsilon(dataset) == 0.0  # the server (reachable again) holds no spend
    from prefect_synthobs.instrument.instrumentation import get_runtime

    get_runtime().recorder.flush()
    ledger = so.HealthStore(str(store_dir)).read(names.PRIVACY_LEDGER)
    assert dataset not in set(ledger.dataset)


def test_a_lock_created_by_another_process_between_read_and_create_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's upsert reads, then creates; a rival creating in between gets a 409 (the CI failure)."""
    from prefect.client.orchestration import SyncPrefectClient, get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    from prefect_synthobs.config.budget_state import lock_name
    from prefect_synthobs.instrument import privacy_lock

    dataset = f"race-{uuid.uuid4().hex[:6]}"
    lock = lock_name(dataset)
    original_read = SyncPrefectClient.read_global_concurrency_limit_by_name
    raced: list[str] = []

    def read_then_lose_the_race(self: SyncPrefectClient, name: str):  # type: ignore[no-untyped-def]
        if not raced:
            raced.append(name)
            with get_client(sync_client=True) as rival:  # the other process wins
                rival.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            raise ObjectNotFound(http_exc=Exception("not yet"))
        return original_read(self, name)

    monkeypatch.setattr(SyncPrefectClient, "read_global_concurrency_limit_by_name", read_then_lose_the_race)
    spend = so.record_privacy_spend(0.25, dataset=dataset, budget=so.PrivacyBudget(dataset=dataset, total_epsilon=1))
    assert raced == [lock] and spend.spent == pytest.approx(0.25)
    assert lock in privacy_lock._created
