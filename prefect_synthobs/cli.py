"""The ``synthobs`` command line."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import pandas as pd
from prefect import __version__ as prefect_version
from prometheus_client import generate_latest

from prefect_synthobs import catalog as names
from prefect_synthobs._version import __version__
from prefect_synthobs.config.active import configure, get_settings
from prefect_synthobs.gpu.nvml import DeviceLost, get_backend
from prefect_synthobs.gpu.sampler import format_table
from prefect_synthobs.health.maintenance import describe, maintain, parse_retention
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.instrument.instrumentation import get_runtime
from prefect_synthobs.instrument.reconcile import reconcile
from prefect_synthobs.reports.dashboards import export
from prefect_synthobs.reports.health import build_report, load_frames, render_text, window
from prefect_synthobs.sample_flows.synthetic_pipeline import synthetic_pipeline
from prefect_synthobs.telemetry.metrics import REGISTRY


def _demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # a fresh PREFECT_HOME migrates a new database on first start: give it time
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

    overrides = {"store_url": args.store} if args.store else {}
    settings = configure(**overrides)
    store = HealthStore(settings.resolved_store_url())
    started = time.time()
    print(f"synthobs demo: train → generate → quality check, store {store.url}", flush=True)
    state = synthetic_pipeline(n_real=args.real_rows, n_synthetic=args.rows, epochs=args.epochs, return_state=True)
    get_runtime().recorder.flush()
    runs = store.read(names.FLOW_RUNS, since=_ts(started - 1))
    root = getattr(state.state_details, "flow_run_id", None)  # this demo's runs, not others' in the same window
    runs = runs_of(runs, str(root)).sort_values("start_time") if root else runs.sort_values("start_time")
    print("\n── synthobs demo summary " + "─" * 40)
    print(f"pipeline: {state.name}")
    print(f"store:    {store.url}")
    for table in names.TABLES:
        print(f"  {table:<16} {store.count(table):>8,} rows")
    print("flow runs in this demo:")
    for row in runs.itertuples():
        rows = f"{int(row.rows):>8,} rows" if row.rows else ""
        print(f"  {row.flow_name:<20} {row.kind:<10} {row.state_type:<10} {row.duration_s:7.2f} s {rows}")
    samples = [
        line
        for line in _exposition(REGISTRY).splitlines()
        if line.startswith(f"{settings.metrics_prefix}_flow_runs_total")
        or line.startswith(f"{settings.metrics_prefix}_generation_rows_total")
    ]
    print("metrics (in-process; a few of them):")
    for line in samples:
        print(f"  {line}")
    print(
        "see them all: PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE=http (scrape 127.0.0.1:9464), "
        "=pushgateway or =textfile\n"
        'read the store: python -c "import prefect_synthobs as so; '
        "print(so.HealthStore().read('flow_runs'))\""
    )
    return 0 if state.is_completed() else 1


def runs_of(runs: pd.DataFrame, root: str) -> pd.DataFrame:
    """The ``flow_runs`` rows of flow run ``root`` and its subflows, at any depth (pure)."""
    ids = {root}
    while True:
        more = set(runs.loc[runs.parent_flow_run_id.isin(ids), "flow_run_id"]) - ids
        if not more:
            out: pd.DataFrame = runs[runs.flow_run_id.isin(ids)]
            return out
        ids |= more


def _exposition(registry: object) -> str:

    return generate_latest(registry).decode()  # type: ignore[arg-type]


def _ts(epoch: float) -> str:

    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def _compact(args: argparse.Namespace) -> int:
    try:
        retain = parse_retention(args.retain) if args.retain is not None else None
    except ValueError as exc:
        print(f"synthobs compact: {exc}", file=sys.stderr)
        return 2
    store = HealthStore(args.store)
    results = maintain(store, retain=retain, table_names=[args.table] if args.table else None)
    for table, stats in results.items():
        print(describe(table, stats))
    return 0


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
    store = HealthStore(args.store)
    if not store.exists():
        print(
            f"synthobs report: no health store at {store.url} (nothing was ever recorded there); check --store "
            "or PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL",
            file=sys.stderr,
        )
        return 2
    if args.tables:
        print(f"health store {store.url}")
        for table in names.TABLES:
            print(f"  {table:<16} {store.count(table):>10,} rows")
        return 0
    report = build_report(load_frames(store, since, until, args.flow), since, until)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        render_text(report)
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    try:
        since, until = window(args.since)
    except ValueError as exc:
        print(f"synthobs reconcile: {exc}", file=sys.stderr)
        return 2
    result = reconcile(HealthStore(args.store), since=since, until=until, redact_pii=get_settings().redact_pii)
    print(
        f"reconciled {result.flow_runs} flow run(s) and {result.task_runs} task run(s) from the Prefect API "
        f"({result.flows_checked} flow runs and {result.task_runs_checked} task runs compared since "
        f"{since:%Y-%m-%d %H:%M} UTC)"
    )
    return 0


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
    demo.add_argument("--rows", type=int, default=20_000, help="synthetic rows to generate")
    demo.add_argument("--real-rows", type=int, default=5_000, help="rows of the real training table")
    demo.add_argument("--epochs", type=int, default=5, help="training epochs")
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
    rec.add_argument("--since", default="24h", help="window start: a duration (24h, 7d, 90m) or a timestamp")
    rec.add_argument("--store", help="health store URL (default: the configured store)")
    rec.set_defaults(func=_reconcile)
    report = sub.add_parser("report", help="the health dashboards in the terminal")
    report.add_argument("--since", default="24h", help="window start: a duration (24h, 7d, 90m) or a timestamp")
    report.add_argument("--flow", help="only this flow's runs")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument("--store", help="health store URL (default: the configured store)")
    report.add_argument("--tables", action="store_true", help="list the store's tables and their row counts")
    report.set_defaults(func=_report)
    export = sub.add_parser(
        "export-dashboards", help="write a Grafana dashboard, Prometheus alert rules, runbooks and a scrape config"
    )
    export.add_argument("directory", help="where to write them (created if needed)")
    export.add_argument("--prefix", help="metric prefix (default: the configured one)")
    export.add_argument(
        "--runbook-base",
        default="runbooks",
        help="base of the alerts' runbook_url (default: the exported runbooks/ folder)",
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
    gpu.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (with --watch)")
    gpu.add_argument("--count", type=int, default=None, help="stop after this many refreshes (with --watch)")
    gpu.set_defaults(func=_gpu)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "interval", None) is not None and not 0.1 <= args.interval <= 3600:
        build_parser().error("--interval must be between 0.1 and 3600 seconds")
    for flag in ("rows", "real_rows", "epochs", "count"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            build_parser().error(f"--{flag.replace('_', '-')} must be at least 1")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
