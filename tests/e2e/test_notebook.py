"""The analysis notebook runs end to end against a store filled by the demo pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, subprocess_env

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
    assert plot.stat().st_size > 10_000  # the figure was drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["store", "plot.png"])  # nothing in the cwd
    source = notebook.read_text()
    assert "._" not in source.replace("__", "")  # no private attributes (store._fs)
