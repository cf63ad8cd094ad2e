"""The health report's pictures in a real browser: a Prefect server with its UI, the health-report flow
publishing two weeks of history, and headless Chromium rendering the artifact pages.

Set ``SYNTHOBS_DOCS_SCREENSHOT=docs/health-overview.png`` to refresh the README's picture from this test.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from report_history import FLOWS, fill_history

from conftest import REPO, free_port, run_python, stop, wait_http
from prefect_synthobs.reports.charts import PALETTE

pytestmark = pytest.mark.slow


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        pytest.fail(
            "Chromium is needed for the browser check: run the README's test command (apt-get install chromium)"
        )
    return binary


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server with its UI on a free port (the UI must be told its API's address)."""
    port = free_port()
    home = tmp_path_factory.mktemp("prefect-ui-home")
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(home),
        "PREFECT_UI_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_http(f"{api}/health", timeout=180)
        yield api
    finally:
        stop(server, timeout=30)


def publish(api: str, store: Path) -> dict[str, str]:
    """Run the health-report flow against ``api``; returns its artifacts' ids by key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_INTEGRATIONS_SYNTHOBS_")}
    env.update(PREFECT_API_URL=api, PYTHONPATH=str(REPO))
    code = f"""
import json, sys
sys.path.insert(0, {str(REPO / "flows")!r})
from health_report import health_report
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
state = health_report(store_url={str(store)!r}, return_state=True)
assert state.is_completed(), state
with get_client(sync_client=True) as client:
    arts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    )
print("ARTIFACTS=" + json.dumps({{a.key: str(a.id) for a in arts}}))
"""
    out = run_python(code, env).stdout
    return json.loads(out.split("ARTIFACTS=", 1)[1].splitlines()[0])


def browse(url: str, tmp: Path, *, screenshot: Path | None = None, size: str = "1400,1000", expect: str = "") -> str:
    """The page's DOM after its scripts ran (and a screenshot); retried while ``expect`` is not in it yet."""
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--virtual-time-budget=15000",
        f"--window-size={size}",
    ]
    dom = ""
    for _ in range(8):  # a loaded machine can leave the UI's API calls unanswered in one page load: load again
        dom = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
        if expect in dom:
            break
    if screenshot is not None:  # once the page is known to render
        subprocess.run([*args, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return dom


def svg_images(dom: str) -> dict[str, str]:
    """alt text → decoded SVG of every data-URI SVG image in the DOM."""
    found = {}
    for tag in re.findall(r"<img\b[^>]*>", dom):
        src = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', tag)
        alt = re.search(r'alt="([^"]*)"', tag)
        if src and alt:
            found[alt.group(1)] = base64.b64decode(src.group(1)).decode()
    return found


def palette_pixels(png: Path, colour: str) -> int:
    from PIL import Image

    target = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    with Image.open(png) as image:
        pixels = image.convert("RGB").getdata()
        return sum(1 for p in pixels if all(abs(a - b) <= 24 for a, b in zip(p, target, strict=True)))


def test_the_overview_shows_trend_pictures_in_the_prefect_ui(ui_server: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    fill_history(str(store), datetime.now(timezone.utc))
    arts = publish(ui_server, store)
    base = ui_server.removesuffix("/api")
    shot = tmp_path / "overview.png"

    for ui in ("", "/v2"):  # the default UI and the new one both render the images
        dom = browse(
            f"{base}{ui}/artifacts/artifact/{arts['synthobs-overview']}",
            tmp_path,
            screenshot=shot if not ui else None,
            size="1400,2300",
            expect="Success rate per flow per day",
        )
        images = svg_images(dom)
        assert {
            "Success rate per flow per day",
            "p95 duration per flow per day (s)",
            "Overall quality score per table and model per day",
            "GPU utilisation per device per day",
            "GPU energy per host per day (kWh)",
        } <= set(images), (ui, sorted(images))
        assert any(a.startswith("Privacy budget used per dataset") for a in images), sorted(images)
        for flow_name in FLOWS:
            assert flow_name in images["Success rate per flow per day"]
        assert images["Success rate per flow per day"].count("<polyline") >= len(FLOWS)

    # the browser drew them: the charts' first series colour and their white cards are on the screen
    assert palette_pixels(shot, PALETTE[0]) > 2000
    assert palette_pixels(shot, "#ffffff") > 200_000
    if target := os.environ.get("SYNTHOBS_DOCS_SCREENSHOT"):
        from PIL import Image

        with Image.open(shot) as image:  # a 256-colour palette: a third of the size, the same to the eye
            image.convert("RGB").quantize(256).save(REPO / target, optimize=True)


def test_empty_tables_say_so_in_the_prefect_ui(ui_server: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    fill_history(str(store), datetime.now(timezone.utc), days=1)  # flow runs, no task runs
    arts = publish(ui_server, store)
    base = ui_server.removesuffix("/api")
    dom = browse(
        f"{base}/artifacts/artifact/{arts['synthobs-failed-tasks']}",
        tmp_path,
        expect="No failed or crashed task runs in this window.",
    )
    assert "No failed or crashed task runs in this window." in dom
    assert ">status<" in dom.replace(" ", "")  # a real column header, not an empty one
