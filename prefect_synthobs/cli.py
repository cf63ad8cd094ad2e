"""The ``synthobs`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import __version__ as prefect_version
from prometheus_client import generate_latest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from prefect_synthobs import catalog as names
from prefect_synthobs._version import __version__
from prefect_synthobs.automations.cli import register as register_automations
from prefect_synthobs.automations.demo import demo_automations
from prefect_synthobs.config.active import ConfiguredHealthStore, configure, get_settings
from prefect_synthobs.config.prefect_process import prefect_defaults
from prefect_synthobs.gpu.nvml import DeviceLost, get_backend
from prefect_synthobs.gpu.sampler import format_table
from prefect_synthobs.health.maintenance import describe, maintain, parse_retention
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.instrument.gates import evaluate_gates
from prefect_synthobs.instrument.hook_logs import DEMO_STAGE
from prefect_synthobs.instrument.instrumentation import get_runtime
from prefect_synthobs.instrument.reconcile import reconcile
from prefect_synthobs.reports.dashboards import export
from prefect_synthobs.reports.demo_summary import flow_run_lines, metric_lines, wall_time_line
from prefect_synthobs.reports.demo_summary import runs_of as runs_of  # the cli's name too
from prefect_synthobs.reports.health import render_text, report_for, window
from prefect_synthobs.reports.health_query import ReportTooLarge
from prefect_synthobs.reports.text import terminal_text
from prefect_synthobs.reports.trends import DEFAULT_TREND_DAYS
from prefect_synthobs.sample_flows import synthetic_pipeline as pipeline
from prefect_synthobs.sample_flows.sdv_generators import trained_models_summary
from prefect_synthobs.telemetry.metrics import REGISTRY


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def _progress(what: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """Progress of ``what`` on stderr while stderr is a terminal (a bar with ``total``, a spinner without);
    nothing otherwise. Yields ``step(description, advance=0)``; the display is gone when the block ends, so
    stdout stays clean and readable."""
    if not _stderr_is_tty():
        yield lambda *_args, **_kwargs: None
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    console = Console(stderr=True, force_terminal=True)
    with Progress(
        *columns,
        TimeElapsedColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as progress:
        task = progress.add_task(what, total=total)

        def step(description: str, advance: int = 0) -> None:
            progress.update(task, description=f"{what}: {description}", advance=advance, refresh=True)

        yield step


def _say(line: str) -> None:
    """A progress line on stdout, outside Prefect's ``log_prints`` (which turns ``print`` into log records)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def _stage_lines() -> Iterator[None]:
    """``1/3 train …`` on stdout as each stage of the demo pipeline starts: a Prefect ``on_running`` hook
    on its subflows for the duration of the block (the pipeline itself is unchanged)."""
    stages = [
        ("train", pipeline.train_generator),
        ("generate", pipeline.generate_synthetic),
        ("quality check", pipeline.check_quality),
    ]
    added = []
    for number, (label, subflow) in enumerate(stages, 1):
        line = f"{number}/{len(stages)} {label} ({subflow.name}) …"

        def synthobs_demo_stage(flow: object, flow_run: object, state: object, line: str = line) -> None:
            _say(line)

        synthobs_demo_stage.__name__ = synthobs_demo_stage.__qualname__ = DEMO_STAGE  # Prefect logs it at DEBUG
        subflow.on_running(synthobs_demo_stage)
        added.append((subflow, synthobs_demo_stage))
    try:
        yield
    finally:
        for subflow, hook in added:
            with contextlib.suppress(ValueError):
                subflow.on_running_hooks.remove(hook)


def _ui_url() -> str | None:
    """The Prefect UI of the API in use (Prefect derives it from ``PREFECT_API_URL``), else ``None``."""
    try:
        from prefect.settings import get_current_settings

        url = get_current_settings().ui_url
    except Exception:
        return None
    return str(url).rstrip("/") if url else None


def _demo(args: argparse.Namespace) -> int:
    overrides = {"store_url": args.store} if args.store else {}
    settings = configure(**overrides)
    store = ConfiguredHealthStore()  # the store configure just set (with its storage options)
    started = time.time()
    print(f"synthobs demo: train → generate → quality check, store {store.url}", flush=True)
    print(f"generator: {pipeline.GENERATOR}", flush=True)
    with _stage_lines(), demo_automations() as automations:  # the release gate fails on purpose: one fires
        state = pipeline.synthetic_pipeline(
            n_real=args.real_rows,
            n_synthetic=args.rows,
            epochs=args.epochs,
            gates=pipeline.RELEASE_GATES,
            return_state=True,
        )
        get_runtime().recorder.flush()
        _say(wall_time_line(state.name, time.time() - started, temporary_server=_ui_url() is None))
        failed = _failed_gates(state, pipeline.RELEASE_GATES)
        automations.watch(expected=max(1, len(failed)), gates=failed)
    runs = store.read(names.FLOW_RUNS, since=_ts(started - 1))
    root = getattr(state.state_details, "flow_run_id", None)  # this demo's runs, not others' in the same window
    runs = runs_of(runs, str(root)).sort_values("start_time") if root else runs.sort_values("start_time")
    print("\n── synthobs demo summary " + "─" * 40)
    print(f"pipeline: {state.name}")
    print(f"store:    {store.url}")
    for table in names.TABLES:
        count = store.count(table)
        print(f"  {table:<16} {count:>8,} {'row' if count == 1 else 'rows'}")
    for line in flow_run_lines(runs):
        print(line)
    for line in trained_models_summary(store, set(runs.flow_run_id), since=_ts(started - 1)):
        print(terminal_text(line))
    print("\n".join(automations.summary_lines()))
    prefix = settings.metrics_prefix
    samples = metric_lines(_exposition(REGISTRY), (f"{prefix}_flow_runs_total", f"{prefix}_generation_rows_total"))
    print("metrics (in-process; a few of them):")
    for line in samples:
        print(f"  {line}")
    store_flag = f" --store {args.store}" if args.store else ""
    python, synthobs, prefect = _command("python"), _command("synthobs"), _command("prefect")
    ui_url = _ui_url()  # the user's own server's UI; the demo's temporary server is gone by now
    where = f"at {ui_url}/artifacts" if ui_url else f"{prefect} server start, then http://127.0.0.1:4200/artifacts"
    print(
        "see them all: PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE=http (scrape 127.0.0.1:9464), "
        "=pushgateway or =textfile\n"
        f'read the store: {python} -c "import prefect_synthobs as so; '
        f"print(so.HealthStore({repr(args.store) if args.store else ''}).read('flow_runs'))\"\n"
        f"dashboards: {synthobs} report{store_flag} (terminal), or {python} -m "
        f"prefect_synthobs.sample_flows.health_report --once{store_flag} (artifacts with trend charts; see "
        f"them in the Prefect UI: {where})"
    )
    return 0 if state.is_completed() else 1


def _failed_gates(state: Any, gates: Any) -> list[str]:
    """The names of ``gates`` the pipeline's returned scores fail (each raised one gate event); none when its
    scores cannot be read (a failed run)."""
    try:
        scores = state.result(raise_on_failure=False)
        if not isinstance(scores, dict):
            return []
        return [result.gate for result in evaluate_gates(scores, gates) if not result.passed]
    except Exception:
        return []


def _command(name: str) -> str:
    """How to run ``name`` from this shell: this interpreter's bin directory (a venv the user may not have
    activated), relative to the current directory when it is under it."""
    directory = Path(sys.executable).parent
    path = directory / name
    if name == "python":
        path = Path(sys.executable)
    elif not path.exists():
        return name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _exposition(registry: object) -> str:

    return generate_latest(registry).decode()  # type: ignore[arg-type]


def _ts(epoch: float) -> str:

    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def _no_store(command: str, store: HealthStore) -> int:
    print(
        f"synthobs {command}: no health store at {store.url} (no table of the store there: nothing was ever "
        "recorded there, or the path is wrong); check --store or PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL",
        file=sys.stderr,
    )
    return 2


def _compact(args: argparse.Namespace) -> int:
    try:
        retain = parse_retention(args.retain) if args.retain is not None else None
    except ValueError as exc:
        print(f"synthobs compact: {exc}", file=sys.stderr)
        return 2
    store = ConfiguredHealthStore(args.store)
    if not store.exists():
        return _no_store("compact", store)
    started = time.monotonic()
    today = datetime.now(timezone.utc).date()
    table_names = [args.table] if args.table else list(names.TABLES)
    lines, files, size, failed = [], [0, 0], [0, 0], 0
    with _progress("compacting", total=len(table_names)) as step:
        for table in table_names:
            step(table)
            before = _table_bytes(store, table)
            stats = maintain(store, retain=retain, table_names=[table], today=today)[table]
            failed += stats.get("failed", 0)  # maintain warned, naming the table; the others go on
            size[0], size[1] = size[0] + before, size[1] + _table_bytes(store, table)
            files[0], files[1] = files[0] + stats["files_before"], files[1] + stats["files_after"]
            lines.append(describe(table, stats))
            if not _stderr_is_tty():  # one plain line per table as it is done; a terminal has the bar
                print(lines[-1], flush=True)
            step(table, advance=1)
    if _stderr_is_tty():
        print("\n".join(lines))
    print(
        f"compacted {len(table_names)} table(s): {files[0]} → {files[1]} files in compacted partitions, "
        f"{_size(size[0])} → {_size(size[1])} in all, {time.monotonic() - started:.1f} s"
    )
    if failed:
        print(f"synthobs compact: {failed} table(s) could not be maintained (see the warnings)", file=sys.stderr)
    return 1 if failed else 0


def _table_bytes(store: HealthStore, table: str) -> int:
    dataset = store.dataset(table)
    return store.size_of(dataset.files) if dataset is not None else 0


def _size(n: int) -> str:
    """``n`` bytes, human-readable (pure)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _gpu(args: argparse.Namespace) -> int:

    backend = get_backend()
    devices = backend.devices()
    if not devices:
        print(f"synthobs gpu: no GPU to show ({backend.unavailable_reason or 'no device'})")
        return 1
    lost: dict[str, object] = {}
    shown = 0
    try:
        while True:
            readings = []
            for device in devices:
                if device.uuid in lost:
                    continue
                try:
                    readings.append(backend.read(device))
                except DeviceLost:
                    lost[device.uuid] = device
            table = format_table(readings, list(lost.values()))  # type: ignore[arg-type]
            if args.watch and sys.stdout.isatty():
                print("\033[H\033[J", end="")
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{stamp}  {len(devices)} GPU(s)\n{table}", flush=True)
            shown += 1
            if not args.watch or (args.count and shown >= args.count):
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        backend.close()


def _report(args: argparse.Namespace) -> int:
    try:
        since, until = window(args.since)
    except ValueError as exc:
        print(f"synthobs report: {exc}", file=sys.stderr)
        return 2
    store = ConfiguredHealthStore(args.store)
    if not store.exists():
        return _no_store("report", store)
    if args.tables:
        print(f"health store {store.url}")
        for table in names.TABLES:
            count = store.count(table)
            print(f"  {table:<16} {count:>10,} {'row' if count == 1 else 'rows'}")
        return 0
    started = time.monotonic()
    try:
        with _progress("report") as step:
            report = report_for(
                store,
                since,
                until,
                args.flow,
                days=args.trend_days or None,
                progress=step,
                redact_pii=get_settings().redact_pii,
            )
    except ReportTooLarge as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        render_text(report)
    print(f"synthobs report: {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    try:
        since, until = window(args.since)
    except ValueError as exc:
        print(f"synthobs reconcile: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with _progress("reconciling") as step:
        result = reconcile(
            ConfiguredHealthStore(args.store),
            since=since,
            until=until,
            redact_pii=get_settings().redact_pii,
            progress=step,
        )
    print(
        f"reconciled {result.flow_runs} flow run(s) and {result.task_runs} task run(s) from the Prefect API "
        f"({result.flows_checked} flow runs and {result.task_runs_checked} task runs compared since "
        f"{since:%Y-%m-%d %H:%M} UTC) in {time.monotonic() - started:.1f} s"
    )
    return 0


def _days(text: str) -> int:
    """A number of days, 0 or more (an argparse type: its error names the option and the subcommand)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (no trends) or a positive number of days, got {text!r}")
    return value


def _seconds(text: str) -> float:
    """A duration such as ``6h``, ``90m``, ``3600s``, ``1d`` or plain seconds, in seconds (an argparse type)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration such as 6h, 90m, 3600s or 3600, got {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _export_dashboards(args: argparse.Namespace) -> int:

    prefix = args.prefix or get_settings().metrics_prefix
    for path in export(args.directory, prefix, args.runbook_base, stuck_after_seconds=args.stuck_after):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthobs", description="Observability for synthetic-data pipelines on Prefect."
    )
    parser.add_argument("--version", action="version", version=f"synthobs {__version__} (prefect {prefect_version})")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the observed sample pipeline and summarise what was recorded")
    demo.add_argument("--rows", type=int, default=20_000, help="synthetic rows to generate (default: %(default)s)")
    demo.add_argument(
        "--real-rows", type=int, default=5_000, help="rows of the real training table (default: %(default)s)"
    )
    demo.add_argument("--epochs", type=int, default=5, help="training epochs (default: %(default)s)")
    demo.add_argument("--store", help="health store URL (default: the configured store)")
    demo.set_defaults(func=_demo)
    compact = sub.add_parser(
        "compact", help="merge closed partitions of the health store; with --retain, drop old ones"
    )
    compact.add_argument(
        "--retain",
        metavar="DURATION",
        help="keep this many days before today (30d, 8w); older partitions are deleted (default: keep all)",
    )
    compact.add_argument("--table", choices=names.TABLES, help="one table (default: all)")
    compact.add_argument("--store", help="health store URL (default: the configured store)")
    compact.set_defaults(func=_compact)
    rec = sub.add_parser("reconcile", help="write rows for finished runs the hooks never saw, from the Prefect API")
    rec.add_argument(
        "--since", default="24h", help="window start: a duration (24h, 7d, 90m) or a timestamp (default: %(default)s)"
    )
    rec.add_argument("--store", help="health store URL (default: the configured store)")
    rec.set_defaults(func=_reconcile)
    report = sub.add_parser("report", help="the health dashboards in the terminal")
    report.add_argument(
        "--since", default="24h", help="window start: a duration (24h, 7d, 90m) or a timestamp (default: %(default)s)"
    )
    report.add_argument("--flow", help="only this flow's runs")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument("--store", help="health store URL (default: the configured store)")
    report.add_argument("--tables", action="store_true", help="list the store's tables and their row counts")
    report.add_argument(
        "--trend-days",
        type=_days,
        default=DEFAULT_TREND_DAYS,
        metavar="N",
        help="days of daily sparklines in the tables (the window's if longer, at most 92; 0: none; "
        "default: %(default)s)",
    )
    report.set_defaults(func=_report)
    export = sub.add_parser(
        "export-dashboards", help="write a Grafana dashboard, Prometheus alert rules, runbooks and a scrape config"
    )
    export.add_argument("directory", help="where to write them (created if needed)")
    export.add_argument("--prefix", help="metric prefix (default: the configured one)")
    export.add_argument(
        "--runbook-base",
        default="runbooks",
        help="base of the alerts' runbook_url (default: %(default)s, the exported runbooks/ folder)",
    )
    export.add_argument(
        "--stuck-after",
        metavar="DURATION",
        type=_seconds,
        default="6h",
        help="alert SynthobsFlowRunStuck when a flow run is in progress longer than this "
        "(6h, 90m, 3600s or seconds; default: %(default)s)",
    )
    export.set_defaults(func=_export_dashboards)
    gpu = sub.add_parser("gpu", help="show the state of each GPU (through NVML)")
    gpu.add_argument("--watch", action="store_true", help="refresh until interrupted")
    gpu.add_argument(
        "--interval", type=float, default=1.0, help="seconds between refreshes (with --watch; default: %(default)s)"
    )
    gpu.add_argument(
        "--count",
        type=int,
        default=None,
        help="stop after this many refreshes (with --watch; default: until interrupted)",
    )
    gpu.set_defaults(func=_gpu)
    register_automations(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "interval", None) is not None and not 0.1 <= args.interval <= 3600:
        build_parser().error("--interval must be between 0.1 and 3600 seconds")
    for flag in ("rows", "real_rows", "epochs", "count"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            build_parser().error(f"--{flag.replace('_', '-')} must be at least 1")
    with prefect_defaults():
        return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
