"""The analysis notebook runs end to end against a store filled by the demo pipeline."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import prefect_synthobs as so
from conftest import REPO, subprocess_env
from prefect_synthobs import catalog as names
from prefect_synthobs.health.rows import epoch_rows, model_row

pytestmark = pytest.mark.usefixtures("prefect_server")

RUNNER = """
import sys
import nbformat
from nbclient import NotebookClient

nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, kernel_name="python3", timeout=240).execute()  # a real kernel, as Jupyter runs it
out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
print(out)
print("NOTEBOOK OK")
"""


@pytest.mark.slow
def test_notebook_executes_end_to_end(tmp_path: Path) -> None:
    store = tmp_path / "store"
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect_synthobs.cli",
            "demo",
            "--rows",
            "2000",
            "--real-rows",
            "1000",
            "--epochs",
            "2",
            "--store",
            str(store),
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    # a fit as generator autolog records it (the demo here may record its epochs by hand only)
    now = datetime.now(timezone.utc)
    health = so.HealthStore(str(store))
    health.write(
        names.TRAINING_EPOCHS,
        [
            row
            for epoch in range(3)
            for row in epoch_rows(
                epoch=epoch,
                losses={"generator": 1.0 - 0.2 * epoch, "discriminator": math.nan if epoch == 1 else 0.5},
                time=now + timedelta(seconds=epoch),
                flow_run_id="fit-run",
                flow_name="train",
                model_type="ctgan",
                model_id="CTGANSynthesizer_2.0.0_f00d42",
                epoch_seconds=0.25,
            )
        ],
    )
    health.write(
        names.MODELS,
        [
            model_row(
                time=now + timedelta(seconds=3),
                flow_run_id="fit-run",
                flow_name="train",
                task_run_id=None,
                model_id="CTGANSynthesizer_2.0.0_f00d42",
                library="sdv",
                synthesizer="CTGANSynthesizer",
                model_type="ctgan",
                table_name="customers",
                parameters="{}",
                fit_rows=800,
                fit_columns=5,
                fit_seconds=0.9,
                epochs=3,
                size_bytes=None,
                status="completed",
            )
        ],
    )
    notebook = REPO / "examples" / "health_analysis.ipynb"
    assert json.loads(notebook.read_text())["nbformat"] == 4
    plot = tmp_path / "plot.png"
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(notebook)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(SYNTHOBS_STORE=str(store), SYNTHOBS_PLOT=str(plot)),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "NOTEBOOK OK" in proc.stdout and "4 flow runs" in proc.stdout
    fits = re.search(r"^([\d,]+) fits$", proc.stdout, re.MULTILINE)  # the Training section read the models table
    assert fits and int(fits.group(1).replace(",", "")) >= 1, proc.stdout[-2000:]
    assert re.search(r"ctgan f00d42\s+0\.25$", proc.stdout, re.MULTILINE), proc.stdout[-2000:]  # mean epoch s
    assert plot.stat().st_size > 10_000  # the figure was drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["store", "plot.png"])  # nothing in the cwd
    source = notebook.read_text()
    assert "._" not in source.replace("__", "")  # no private attributes (store._fs)
