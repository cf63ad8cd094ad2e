"""The README's code blocks run as written.

A block is found by the HTML comment on the line above its fence: ``<!-- runs: NAME -->`` (a test here runs
it by that name: a marked block that disappears, or a new name no test runs, fails
``test_marked_blocks_are_the_ones_run_here``) or ``<!-- not run: REASON -->`` (a fragment; ``uses a, b`` in
the reason lists the names it takes from the text around it). Every python block carries one of the two,
compiles, and uses no name it neither defines nor lists; bash blocks pass ``bash -n``; YAML blocks parse; every
``synthobs CMD --flag`` the README names is an option of that command.

The Quickstart runs in a child process as a user runs it on a fresh machine: a shell that runs the
``quickstart-env`` exports and then ``python quickstart.py``, with a fresh ``PREFECT_HOME``, no
``PREFECT_API_URL`` (Prefect's ephemeral server) and no synthobs settings. The blocks that read a store (the
notebook lines, ``examples/read_store.py``, ``jupyter execute``) then run on the store it wrote. The DuckDB
block runs against stores that hold rows written twice on purpose and must count what ``read()`` counts.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import symtable
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prefect_synthobs as so
from conftest import REPO
from prefect_synthobs import catalog as names
from prefect_synthobs.cli import main as synthobs_main
from prefect_synthobs.config import active as so_settings
from prefect_synthobs.health.rows import flow_row

README = REPO / "README.md"
RUN_HERE = {"quickstart", "quickstart-env", "first-look", "read-store", "notebook", "duckdb", "quality", "config-block"}
"""Every ``<!-- runs: NAME -->`` block of the README, each run by a test below."""
CHILD_TIMEOUT = 300  # seconds: a fresh PREFECT_HOME migrates its database on a loaded 2-core machine

FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!-- (runs|not run|output of): (.+?) -->$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README and the marker above it."""

    lang: str
    code: str
    line: int  # the opening fence's line, 1-based
    kind: str | None  # "runs", "not run", "output of" or None
    label: str  # the marker's text after the colon


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in order (pure)."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = MARKER.match(lines[i - 1].strip()) if i else None
        code = "\n".join(lines[i + 1 : end]) + "\n"
        kind, label = (marker.group(1), marker.group(2)) if marker else (None, "")
        blocks.append(Block(fence.group(1), code, i + 1, kind, label))
        i = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def block(name: str, kind: str = "runs") -> Block:
    """The one block marked ``<!-- KIND: NAME -->``."""
    found = [b for b in BLOCKS if b.kind == kind and b.label == name]
    assert len(found) == 1, f"README.md has {len(found)} blocks marked <!-- {kind}: {name} --> (want 1)"
    return found[0]


def undefined_names(code: str) -> set[str]:
    """Names ``code`` reads that it never binds (imports, assignments, defs, loop targets) and that are not
    builtins (pure)."""
    top = symtable.symtable(code, "<README block>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    used: set[str] = set()

    def walk(table: symtable.SymbolTable) -> None:
        for symbol in table.get_symbols():
            module_level = table is top or symbol.is_global() or (table.get_type() == "class" and not symbol.is_local())
            if symbol.is_referenced() and module_level:
                used.add(symbol.get_name())
        for child in table.get_children():
            walk(child)

    walk(top)
    return used - bound - set(dir(builtins))


def listed_names(label: str) -> set[str]:
    """The names a ``not run`` marker lists after ``uses``."""
    found = re.search(r"\buses ([\w, ]+)", label)
    return {n.strip() for n in found.group(1).split(",")} if found else set()


def user_env(home: Path) -> dict[str, str]:
    """A user's shell: this interpreter's ``bin`` first on ``PATH`` (``python``, ``jupyter``), a fresh
    ``PREFECT_HOME``, and no Prefect, synthobs or OpenTelemetry settings (the test session's refuse any API)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SYNTHOBS_", "OTEL_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PREFECT_HOME"] = str(home)
    return env


def run_shell(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert proc.returncode == 0, f"{script}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    return proc


# -- every block: marked, compiles, parses, names what it uses ------------------------------------------


def test_every_python_block_is_marked_compiles_and_defines_what_it_uses() -> None:
    python = [b for b in BLOCKS if b.lang == "python"]
    assert len(python) >= 6
    for b in python:
        where = f"README.md:{b.line}"
        assert b.kind in ("runs", "not run"), f"{where}: mark the block <!-- runs: NAME --> or <!-- not run: why -->"
        compile(b.code, where, "exec")
        missing = undefined_names(b.code)
        if b.kind == "runs":
            assert not missing, f"{where} uses {sorted(missing)} without defining them"
        else:
            assert missing == listed_names(b.label), f"{where} takes {sorted(missing)} from the text: list them"


def test_marked_blocks_are_the_ones_run_here() -> None:
    marked = [b.label for b in BLOCKS if b.kind == "runs"]
    assert sorted(marked) == sorted(RUN_HERE), "a test here runs each <!-- runs: NAME --> block, once"
    assert {b.label for b in BLOCKS if b.kind == "output of"} <= RUN_HERE


def test_shell_blocks_parse() -> None:
    shells = [b for b in BLOCKS if b.lang in ("bash", "sh", "shell")]
    assert len(shells) >= 4
    for b in shells:
        proc = subprocess.run(["bash", "-n"], input=b.code, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"README.md:{b.line}: {proc.stderr}"


def test_yaml_blocks_parse() -> None:
    yamls = [b for b in BLOCKS if b.lang in ("yaml", "yml")]
    assert yamls
    for b in yamls:
        assert isinstance(yaml.safe_load(b.code), dict), f"README.md:{b.line}"


def cli_help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        synthobs_main([*args, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_every_synthobs_option_the_readme_names_exists(capsys: pytest.CaptureFixture[str]) -> None:
    text = README.read_text(encoding="utf-8")
    commands = re.findall(r"`(synthobs [^`]+)`", text)
    top = cli_help([], capsys)
    checked = 0
    for command in commands:
        words = command.split()
        sub = words[1]
        if sub.startswith("--"):
            assert sub in top, f"`{command}`: synthobs has no option {sub}"
            continue
        if not re.fullmatch(r"[a-z][a-z-]*", sub):
            continue  # a placeholder (COMMAND)
        assert re.search(rf"\b{sub}\b", top), f"`{command}`: synthobs has no command {sub}"
        options = set(re.findall(r"--[a-z][\w-]*", cli_help([sub], capsys)))
        for flag in re.findall(r"--[a-z][\w-]*", command):
            assert flag == "--help" or flag in options, f"`{command}`: synthobs {sub} has no option {flag}"
            checked += 1
    assert checked >= 20


# -- blocks that run in this process -------------------------------------------------------------------


@contextlib.contextmanager
def configured_store(url: str) -> Iterator[None]:
    """``url`` as the configured store (what ``so.HealthStore()`` reads), reset afterwards."""
    so_settings.reset()
    so_settings.configure(store_url=url, metrics_mode="none")
    try:
        yield
    finally:
        so_settings.reset()


def run_block(name: str) -> tuple[dict[str, Any], str]:
    """Run a python block here; its namespace and what it printed."""
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block(name).code, f"README.md:{block(name).line}", "exec"), namespace)
    return namespace, out.getvalue()


def write_flow_runs(store: so.HealthStore, runs: list[tuple[str, float, int, int]]) -> int:
    """One ``flow_runs`` row per run (flow name, duration, day offset, extra copies); each copy of a row is
    written again, same ``event_id``, in a file of its own. Returns how many rows are stored in all."""
    base = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
    rows = []
    for flow_name, duration, day, copies in runs:
        start = base + timedelta(days=day)
        row = flow_row(
            flow_run_id=str(uuid.uuid4()),
            flow_name=flow_name,
            state_type="COMPLETED",
            state_name="Completed",
            start_time=start,
            end_time=start + timedelta(seconds=duration),
        )
        rows.append((row, copies))
    store.write(names.FLOW_RUNS, [row for row, _ in rows])
    for again in (1, 2):
        if repeated := [row for row, copies in rows if copies >= again]:
            store.write(names.FLOW_RUNS, repeated)  # the same rows (same event_id) in a new part file
    return sum(1 + copies for _, copies in rows)


def check_duckdb_block_counts_as_read_does(url: str, runs: list[tuple[str, float, int, int]]) -> None:
    import duckdb

    store = so.HealthStore(url)
    stored = write_flow_runs(store, runs)
    with configured_store(url):
        namespace, printed = run_block("duckdb")
    per_flow: pd.DataFrame = namespace["per_flow"]
    read = store.read(names.FLOW_RUNS)
    assert len(read) == len(runs)  # read() counts each run once
    every_row = duckdb.sql(f"SELECT count(*) FROM read_parquet('{url}/flow_runs/*/*.parquet')")
    assert every_row is not None and every_row.fetchall() == [(stored,)]  # the copies are there to be dropped
    expected = read.groupby("flow_name").duration_s.agg(["count", "mean"]).sort_index()
    assert list(per_flow.flow_name) == list(expected.index)
    assert list(per_flow.runs) == list(expected["count"])
    assert list(per_flow.avg_s) == pytest.approx(list(expected["mean"]), rel=1e-12, abs=1e-12)
    assert all(name in printed for name in expected.index)


def test_duckdb_block_reads_the_configured_store_and_counts_a_row_stored_twice_once(tmp_path: Path) -> None:
    runs = [("train", 2.5, 0, 0), ("train", 4.0, 1, 2), ("generate", 0.75, 0, 1), ("check", 1.0, 2, 0)]
    check_duckdb_block_counts_as_read_does(str(tmp_path / "store"), runs)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=st.lists(
        st.tuples(
            st.sampled_from(["train", "generate", "check-quality"]),
            st.floats(0, 86_400, allow_nan=False, allow_infinity=False),
            st.integers(0, 3),  # day: one date= partition per day
            st.integers(0, 2),  # copies stored again
        ),
        min_size=1,
        max_size=12,
    )
)
def test_duckdb_block_counts_what_read_counts(runs: list[tuple[str, float, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as root:
        check_duckdb_block_counts_as_read_does(f"{root}/store", runs)


def test_quality_block_runs() -> None:
    namespace, printed = run_block("quality")
    report = namespace["report"]
    assert set(report.properties) == {"Column Shapes", "Column Pair Trends"}
    assert 0.0 <= report.overall <= 1.0
    assert report.overall == pytest.approx(sum(report.properties.values()) / 2)
    assert f"{report.overall:.3f}" in printed


@pytest.mark.usefixtures("prefect_server")
def test_config_block_runs_with_a_saved_block(tmp_path: Path) -> None:
    from prefect_synthobs import HealthStoreConfig, MetricsConfig, SynthObsConfig
    from prefect_synthobs.instrument.instrumentation import reset_runtime

    block_store = tmp_path / "block-store"
    SynthObsConfig(
        service_name="readme-config-block",
        store=HealthStoreConfig(url=str(block_store), spool_dir=str(tmp_path / "block-spool")),
        metrics=MetricsConfig(mode="none"),
    ).save("prod", overwrite=True)
    so_settings.reset()
    reset_runtime()
    try:
        namespace, _ = run_block("config-block")
        assert so_settings.get_settings().service_name == "readme-config-block"  # configure(config=...) took it
        namespace["train"]()  # observe(config="prod") loads it when the run starts
        assert so_settings.get_settings().config_block == "prod"
    finally:
        reset_runtime()
        so_settings.reset()
    runs = so.HealthStore(str(block_store)).read(names.FLOW_RUNS)
    assert list(runs.flow_name) == ["train"] and list(runs.kind) == ["training"]


# -- the Quickstart in a child process, and the blocks that read its store --------------------------------
# One test: the Quickstart runs once (a module fixture would run it once per xdist worker).


@dataclass(frozen=True)
class Quickstart:
    home: Path
    store: Path
    stdout: str
    stderr: str


def run_quickstart(work: Path) -> Quickstart:
    """``quickstart.py`` run as the README says: its exports, then ``python quickstart.py``."""
    work.mkdir()
    (work / "quickstart.py").write_text(block("quickstart").code)
    home = work / "prefect-home"
    proc = run_shell(block("quickstart-env").code + "exec python quickstart.py\n", work, user_env(home))
    return Quickstart(home=home, store=home / "synthobs", stdout=proc.stdout, stderr=proc.stderr)


def check_quickstart_store(quickstart: Quickstart) -> None:
    printed = re.search(r"^([\d,]+) rows generated; health rows in (.+)$", quickstart.stdout, re.MULTILINE)
    assert printed, quickstart.stdout[-2000:]
    generated = int(printed.group(1).replace(",", ""))
    assert printed.group(2) == str(quickstart.store)  # the default store: $PREFECT_HOME/synthobs
    said = quickstart.stdout + quickstart.stderr
    assert not re.search(r"WARNING.*synthobs", said), said[-3000:]  # synthobs found nothing wrong
    epochs = int(re.findall(r"train\(epochs=(\d+)\)", block("quickstart").code)[-1])

    store = so.HealthStore(str(quickstart.store))
    flows = store.read(names.FLOW_RUNS).set_index("flow_name")
    assert sorted(flows.index) == ["generate", "train"]
    assert set(flows.state_type) == {"COMPLETED"}
    assert flows.loc["generate", "rows"] == generated > 0
    assert flows.loc["train", "rows"] == 0
    assert flows.loc["train", "kind"] == "training" and flows.loc["generate", "kind"] == "generation"
    assert set(flows.model_type) == {"toy_normal"} and set(flows.table_name) == {"customers"}

    tasks = store.read(names.TASK_RUNS)
    assert list(tasks.task_name) == ["sample"] and list(tasks.state_type) == ["COMPLETED"]
    assert list(tasks.flow_run_id) == [flows.loc["generate", "flow_run_id"]]  # a task not decorated by observe

    losses = store.read(names.TRAINING_EPOCHS).sort_values("epoch")
    assert set(losses.flow_run_id) == {flows.loc["train", "flow_run_id"]}
    for loss_type in ("mean", "std"):
        one = losses[losses.loss_type == loss_type]
        assert list(one.epoch) == list(range(epochs))
        assert one.loss.is_monotonic_decreasing and one.loss.iloc[-1] < one.loss.iloc[0]  # the toy converges
    assert len(losses) == 2 * epochs


def check_read_store_block(quickstart: Quickstart, work: Path) -> None:
    (work / "read.py").write_text(block("read-store").code)
    out = run_shell("python read.py", work, user_env(quickstart.home)).stdout
    assert re.search(r"^generate\s+1$", out, re.MULTILINE) and re.search(r"^train\s+1$", out, re.MULTILINE), out
    assert re.search(r"^sample\s+\d", out, re.MULTILINE), out


def check_first_look(quickstart: Quickstart) -> None:
    proc = run_shell(block("first-look").code, REPO, user_env(quickstart.home))
    assert f"store: {quickstart.store}" in proc.stdout
    assert "read_store.py:" not in proc.stderr, proc.stderr  # no warning from the script's own lines
    for heading in ("flow runs per flow and final state:", "generation throughput", "last loss per model"):
        assert heading in proc.stdout, proc.stdout
    shown = block("first-look", kind="output of").code.splitlines()
    assert len(shown) >= 5
    for line in shown:  # the README's excerpt, numbers aside, is what the script prints
        if line.strip() not in ("", "…") and not line.startswith("store:") and not re.search(r"\d", line):
            assert line.rstrip() in proc.stdout, line


def check_notebook_command(quickstart: Quickstart, work: Path) -> None:
    (work / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "health_analysis.ipynb", work / "examples")
    run_shell(block("notebook").code, work, user_env(quickstart.home))
    executed = json.loads((work / "examples" / "health_analysis_run.ipynb").read_text())
    printed = "".join(
        "".join(output.get("text", ""))
        for cell in executed["cells"]
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    )
    assert "2 flow runs, 1 task runs" in printed, printed[-2000:]


@pytest.mark.slow  # Prefect's ephemeral server in a child process (15-40 s), then a Jupyter kernel (about 6 s)
def test_quickstart_runs_and_the_blocks_that_read_its_store_run_on_it(tmp_path: Path) -> None:
    quickstart = run_quickstart(tmp_path / "quickstart")
    check_quickstart_store(quickstart)
    check_read_store_block(quickstart, tmp_path / "quickstart")
    check_first_look(quickstart)
    check_notebook_command(quickstart, tmp_path / "notebook")
