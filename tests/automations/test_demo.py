"""``synthobs demo`` applies synthobs' automations on its server, and its failing release gate fires one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from conftest import subprocess_env
from prefect_synthobs.automations import manage
from prefect_synthobs.automations.demo import DEMO_PREFIX

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.mark.slow  # the demo in a process of its own (about 11 s)
def test_the_demos_failing_gate_fires_the_automation_it_applied(tmp_path: Path) -> None:
    argv = ["demo", "--rows", "2000", "--real-rows", "1000", "--epochs", "2", "--store", str(tmp_path / "store")]
    proc = subprocess.run(
        [sys.executable, "-m", "prefect_synthobs.cli", *argv],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]  # a failed gate (policy warn) is no error
    out = proc.stdout
    assert re.search(rf"^automations: 5 applied \({re.escape(DEMO_PREFIX)}\*, removed after the demo\)", out, re.M), out
    fired = re.search(
        rf"^  {re.escape(DEMO_PREFIX)}quality-gate-failed for gate min_column_pair_trends "
        r"\(table customers, 0\.\d+ against 0\.95\): do-nothing executed$",
        out,
        re.M,
    )
    assert fired, out[out.index("automations:") :]
    waited = re.search(r"read back from Prefect's event feed in (\d+\.\d) s", out)
    assert waited and float(waited.group(1)) < 15
    with get_client(sync_client=True) as client:  # the demo leaves none of its automations behind
        assert manage.managed(manage.read_all(client), DEMO_PREFIX) == []
