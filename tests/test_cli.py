"""What users of the ``synthobs`` command and of observed flows see: log lines, Prefect settings, help, progress."""

from __future__ import annotations

import argparse
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prefect.settings import (
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

from conftest import nvml_env, run_python, task_rows
from prefect_synthobs import catalog as names
from prefect_synthobs import cli
from prefect_synthobs.health.rows import flow_row
from prefect_synthobs.health.store import HealthStore

# -- synthobs' own log lines ------------------------------------------------------------------

OBSERVED = """
import os
from prefect import flow
import prefect_synthobs as so

@so.observe(kind="training", model_type="ctgan", table="customers")
@flow(name=os.environ["FLOW_NAME"])
def train():
    return 42

assert train() == 42
"""


# Prefect's console format (logging.yml, formatter "standard"): time | level | logger - message
def console_line(level: str, logger: str, message: str) -> re.Pattern[str]:
    time = r"\d\d:\d\d:\d\d\.\d{3}"
    return re.compile(rf"^{time} \| {level:<7} \| {re.escape(logger)} - {message}", re.MULTILINE)


def observed_flow_env(fake_nvml: dict[str, Path], tmp_path: Path, level: str) -> dict[str, str]:
    """An observed flow's environment on a machine whose NVML does not start (as without a driver), configured
    only through the environment, with one bad synthobs variable (a warning) and ``PREFECT_LOGGING_LEVEL``."""
    return nvml_env(
        fake_nvml["current"],
        FAKE_NVML_INIT_FAIL="1",  # nvmlInit fails: on a GPU machine too, unlike a library path that finds nothing
        FLOW_NAME=f"log-lines-{uuid.uuid4().hex[:6]}",
        PREFECT_LOGGING_LEVEL=level,
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(tmp_path / "store"),
        PREFECT_INTEGRATIONS_SYNTHOBS_SPOOL_DIR=str(tmp_path / "spool"),
        PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE="none",
        PREFECT_INTEGRATIONS_SYNTHOBS_FLUSH_INTERVAL_SECONDS="soon",
    )


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
def test_synthobs_log_lines_show_in_prefects_console_format(fake_nvml: dict[str, Path], tmp_path: Path) -> None:
    # no logging setup in the script: Prefect's logging config alone must show them
    proc = run_python(OBSERVED, observed_flow_env(fake_nvml, tmp_path, "INFO"))
    info = console_line("INFO", "prefect.synthobs.gpu", "synthobs: GPU sampling off")
    assert len(info.findall(proc.stderr)) == 1, proc.stderr[-3000:]
    warning = console_line("WARNING", "prefect.synthobs", r"synthobs: ignoring PREFECT_INTEGRATIONS_SYNTHOBS_FLUSH")
    assert warning.search(proc.stderr), proc.stderr[-3000:]
    assert HealthStore(str(tmp_path / "store")).count(names.FLOW_RUNS) == 1


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
def test_prefect_logging_level_warning_silences_the_info_lines(fake_nvml: dict[str, Path], tmp_path: Path) -> None:
    proc = run_python(OBSERVED, observed_flow_env(fake_nvml, tmp_path, "WARNING"))
    assert "GPU sampling off" not in proc.stderr, proc.stderr[-3000:]
    assert "ignoring PREFECT_INTEGRATIONS_SYNTHOBS_FLUSH" in proc.stderr, proc.stderr[-3000:]  # warnings still show


# -- the Prefect settings every command runs with ------------------------------------------------

SETTINGS_SEEN = """
import json
from prefect.settings import (
    PREFECT_SERVER_ANALYTICS_ENABLED as A, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as T, get_current_settings,
)
from prefect_synthobs import cli

def seen(args):  # stands in for the command: what a client or ephemeral server started now would get
    env = get_current_settings().to_environment_variables(exclude_unset=True)  # what the server process is given
    print(json.dumps({"timeout": T.value(), "analytics": A.value(),
                      "server_env": {k: env.get(k) for k in (A.name, T.name)}}))
    return 0

cli._gpu = seen
raise SystemExit(cli.main(["gpu"]))
"""


@pytest.mark.slow
def test_every_command_runs_with_a_long_startup_timeout_and_no_server_analytics(tmp_path: Path) -> None:
    env = nvml_env(tmp_path, PREFECT_HOME=str(tmp_path / "home"))  # a fresh PREFECT_HOME, as on a new machine
    for key in (PREFECT_SERVER_ANALYTICS_ENABLED.name, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.name):
        env.pop(key, None)
    seen = json.loads(run_python(SETTINGS_SEEN, env).stdout.strip().splitlines()[-1])
    assert seen["timeout"] == 120 and seen["analytics"] is False
    server_env = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "False",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    assert seen["server_env"] == server_env


def test_a_users_prefect_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[object, object]] = []

    def record(args: argparse.Namespace) -> int:
        seen.append(
            (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), PREFECT_SERVER_ANALYTICS_ENABLED.value())
        )
        return 0

    monkeypatch.setattr(cli, "_gpu", record)
    updates = {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 7, PREFECT_SERVER_ANALYTICS_ENABLED: True}
    with temporary_settings(updates=updates):
        assert cli.main(["gpu"]) == 0
        assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() == 7
    assert seen == [(7, True)]


# -- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["report", "demo", "reconcile", "gpu", "compact", "export-dashboards"])
def test_help_shows_every_default(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # one line per option
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out
    # one entry per option: its line and the help lines under it
    entries = [" ".join(e.split()) for e in re.split(r"\n(?=  -)", text.split("options:", 1)[1])]
    subparsers = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for action in subparsers.choices[command]._actions:
        if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
            continue
        entry = next(e for e in entries if e.startswith(action.option_strings[-1]))
        assert f"default: {action.default}" in entry, entry
        checked += 1
    assert checked or command in ("compact",)
    assert "default:" in text


def test_help_defaults_read_as_users_expect(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    shown = {}
    for command in ("report", "demo", "reconcile", "gpu"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        shown[command] = capsys.readouterr().out
    assert "(default: 24h)" in shown["report"] and "(default: 24h)" in shown["reconcile"]
    assert "(default: 20000)" in shown["demo"] and "(default: 5)" in shown["demo"]
    assert "default: 1.0" in shown["gpu"] and "default: until interrupted" in shown["gpu"]


# -- progress and summaries ----------------------------------------------------------------------


def closed_partitions(store: HealthStore, files: int = 2) -> None:
    """``files`` files of ``task_runs`` in a partition of three days ago (closed: ``compact`` merges it)."""
    when = datetime.now(timezone.utc) - timedelta(days=3)
    for i in range(files):
        store.write(names.TASK_RUNS, task_rows(3, start=3 * i, when=when))


SUMMARY = re.compile(
    r"^compacted (\d+) table\(s\): (\d+) → (\d+) files in compacted partitions, "
    r"[\d.]+ (B|KiB|MiB|GiB) → [\d.]+ (B|KiB|MiB|GiB) in all, [\d.]+ s$",
    re.MULTILINE,
)


def test_compact_prints_a_line_per_table_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed_partitions(HealthStore(str(tmp_path / "store")))
    assert cli.main(["compact", "--store", str(tmp_path / "store")]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [ln.split(":")[0] for ln in lines[:-1]] == list(names.TABLES)  # one plain line per table
    assert "task_runs: 1 partition(s) compacted, 2 → 1 files, 6 rows" in out
    summary = SUMMARY.fullmatch(lines[-1])
    assert summary and summary.group(1, 2, 3) == (str(len(names.TABLES)), "2", "1"), lines[-1]
    # not a terminal: no progress display. Prefect's API log worker, started by an earlier test on this worker,
    # may print its failure to reach the no-server URL here ("--- Error logging to API ---"): not this command's
    prefect_noise = ("--- Error logging to API", "All connection attempts failed", "I/O operation on closed file")
    assert [line for line in err.splitlines() if line.strip() and not line.startswith(prefect_noise)] == []

    assert cli.main(["compact", "--store", str(tmp_path / "store"), "--table", "task_runs"]) == 0
    summary = SUMMARY.search(capsys.readouterr().out)
    assert summary and summary.group(1, 2, 3) == ("1", "0", "0")


def test_compact_on_a_terminal_shows_a_progress_bar_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed_partitions(HealthStore(str(tmp_path / "store")))
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    assert cli.main(["compact", "--store", str(tmp_path / "store")]) == 0
    out, err = capsys.readouterr()
    assert "compacting" in err and f"{len(names.TABLES)}/{len(names.TABLES)}" in err  # the bar, on stderr
    assert "\x1b" not in out and "compacting" not in out  # stdout: the same lines as without a terminal
    assert "task_runs: 1 partition(s) compacted, 2 → 1 files, 6 rows" in out
    assert SUMMARY.search(out)


@pytest.mark.parametrize("tty", [False, True])
def test_report_json_stays_parseable_with_progress_on(
    tty: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = HealthStore(str(tmp_path / "store"))
    now = datetime.now(timezone.utc)
    store.write(
        names.FLOW_RUNS,
        [
            flow_row(
                flow_run_id="r1",
                flow_name="generate",
                state_type="COMPLETED",
                state_name="Completed",
                start_time=now - timedelta(minutes=5),
                end_time=now - timedelta(minutes=4),
            )
        ],
    )
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: tty)
    assert cli.main(["report", "--store", str(tmp_path / "store"), "--json", "--since", "2h"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["totals"]["runs"] == 1
    assert re.search(r"synthobs report: [\d.]+ s$", err, re.MULTILINE), err
    assert ("reading the store" in err) is tty


@pytest.mark.usefixtures("prefect_server")
def test_reconcile_reports_its_progress_and_elapsed_time(
    store_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(timezone.utc)
    HealthStore(str(store_dir)).write(
        names.FLOW_RUNS,
        [
            flow_row(
                flow_run_id=str(uuid.uuid4()),
                flow_name=f"never-in-the-api-{uuid.uuid4().hex[:6]}",
                state_type="COMPLETED",
                state_name="Completed",
                start_time=now - timedelta(minutes=5),
                end_time=now - timedelta(minutes=4),
            )
        ],
    )
    lines: list[str] = []

    from prefect_synthobs.instrument.reconcile import reconcile

    result = reconcile(HealthStore(str(store_dir)), since=now - timedelta(hours=1), progress=lines.append)
    assert result.flows_checked == 0
    assert lines[0] == "reading the finished flow runs of 1 flow(s) from the API"
    assert "0 flow run(s) read from the API; reading their task runs" in lines

    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    assert cli.main(["reconcile", "--since", "1h", "--store", str(store_dir)]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^reconciled 0 flow run\(s\) and 0 task run\(s\) .* in [\d.]+ s$", out, re.MULTILINE), out
    assert "reconciling" in err and "\x1b" not in out


def test_report_shows_daily_sparklines_and_takes_a_trend_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from report_history import fill_history

    store = str(tmp_path / "store")
    fill_history(store, datetime.now(timezone.utc), days=10)
    assert cli.main(["report", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "Flow trends" in out and "success/day" in out and "score/day" in out and "util/day" in out
    assert re.search(r"train-ctgan .*[▁▂▃▄▅▆▇█·]{14}", out), out  # 14 days by default, the first 4 empty

    assert cli.main(["report", "--store", store, "--json", "--trend-days", "30"]) == 0
    trends = json.loads(capsys.readouterr().out)["trends"]
    # the ten filled days have runs; today's holds only those started by now (none, just after midnight UTC)
    assert len(trends["days"]) == 30 and trends["success_rate"]["train-ctgan"][-10:-1].count(None) == 0

    assert cli.main(["report", "--store", store, "--json", "--trend-days", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["trends"] is None
    with pytest.raises(SystemExit):
        cli.main(["report", "--store", store, "--trend-days", "-1"])
    err = capsys.readouterr().err
    assert "synthobs report: error: argument --trend-days: expected 0 (no trends)" in err


def test_compact_refuses_a_path_that_is_not_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not-a-store").mkdir()
    for path in (tmp_path / "missing", tmp_path / "not-a-store"):
        assert cli.main(["compact", "--store", str(path)]) == 2
        assert f"synthobs compact: no health store at {path}" in capsys.readouterr().err


def test_the_demo_points_to_the_ui_of_the_users_own_server() -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    from prefect_synthobs.cli import _ui_url

    with temporary_settings(updates={PREFECT_API_URL: "http://10.1.2.3:4300/api"}, set_defaults={PREFECT_UI_URL: None}):
        assert _ui_url() == "http://10.1.2.3:4300"
    with temporary_settings(updates={PREFECT_UI_URL: "https://prefect.example.com/"}):
        assert _ui_url() == "https://prefect.example.com"


# -- automations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["apply", "list", "delete"])
def test_automations_help_shows_every_default(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit):
        cli.main(["automations", command, "--help"])
    text = capsys.readouterr().out
    entries = [" ".join(e.split()) for e in re.split(r"\n(?=  -)", text.split("options:", 1)[1])]
    top = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    nested = next(a for a in top.choices["automations"]._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for action in nested.choices[command]._actions:
        if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
            continue
        entry = next(e for e in entries if e.startswith(action.option_strings[-1]))
        assert (
            f"default: {action.default:g}" in entry
            if isinstance(action.default, float)
            else (f"default: {action.default}" in entry)
        ), entry
        checked += 1
    assert checked and "(default: synthobs/)" in text
    if command == "apply":
        assert "default: 360)" in text and "default: 10)" in text and "(default: 20)" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stuck-minutes", "0.1"], "at least 10 seconds"),
        (["--zombie-minutes", "-1"], "expected minutes, 0 or more"),
        (["--p95-min-runs", "0"], "at least 1"),
        (["--prefix", " "], "must not be empty"),
    ],
)
def test_automations_apply_refuses_bad_options_before_reaching_prefect(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["automations", "apply", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
