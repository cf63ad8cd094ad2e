"""Helpers of the asset tests: the asset sink on the runtime's recording seam, and the asset events read back.

``assets_wired``: every runtime built during the test has ``AssetSink`` among its recording's sinks. The
runtime wires it itself (``instrument/runtime.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import wait_for_events
from prefect_synthobs.instrument.assets import LEDGER, reset_warnings

SUCCEEDED = "prefect.asset.materialization.succeeded"
FAILED = "prefect.asset.materialization.failed"
REFERENCED = "prefect.asset.referenced"


@pytest.fixture
def assets_wired() -> Iterator[None]:
    """Each asset test starts with an empty ledger and fresh warnings; the runtime wires ``AssetSink``
    itself (``instrument/runtime.py``), and ``test_the_runtime_wires_the_asset_sink`` checks it."""
    LEDGER.clear()
    reset_warnings()
    yield
    LEDGER.clear()
    reset_warnings()


def asset_events(name: str, flow_run_id: Any, count: int = 1, timeout: float = 30.0) -> list[Any]:
    """The events ``name`` that name the flow run, read back from the test server."""
    return wait_for_events(name, related_flow_run=flow_run_id, count=count, timeout=timeout)


def related(event: Any, role: str) -> list[dict[str, str]]:
    """The related resources of ``event`` with ``role``, as plain dicts."""
    return [dict(r.root) for r in event.related if r.role == role]
