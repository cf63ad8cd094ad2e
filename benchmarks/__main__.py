"""Run the CPU benchmarks and print one table: figure, baseline measured in the same run, ratio, target, pass/fail.

    .venv/bin/python -m benchmarks                   # every CPU benchmark (about 25 minutes on 2 cores)
    .venv/bin/python -m benchmarks overhead writers  # some of them
    .venv/bin/python -m benchmarks --table           # the table from the last results, nothing run

Each benchmark runs in its own process (one at a time: they measure ratios, and two at once
on a small machine measure each other) and leaves its JSON in ``benchmarks/results/``. The GPU
ones (``run_on_gpu.sh``) need a GPU and are not part of this run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS  # noqa: E402

Row = tuple[str, str, str, str, str, str]  # figure, value, baseline, ratio, target, result


def _ratio_row(figure: str, value: float, baseline: float, ratio: float, target: float, unit: str = "s") -> Row:
    return (
        figure,
        f"{value:.3f} {unit}",
        f"{baseline:.3f} {unit}",
        f"{ratio:.3f}",
        f"≤ {target:g}",
        _pf(ratio <= target),
    )


def _pf(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def _overhead(name: str, label: str) -> Callable[[dict[str, Any]], list[Row]]:
    def rows(r: dict[str, Any]) -> list[Row]:
        out = [
            _ratio_row(
                f"{label}: observed / plain flow, {r['tasks_per_flow']} tasks (median of {r['rounds']} rounds)",
                r["observed_median_s"],
                r["plain_median_s"],
                r["median_ratio"],
                r["target_median_ratio"],
            ),
            (
                f"{label}: synthobs in the flow's process per run",
                f"{r['synthobs_in_process_ms_median']:.1f} ms",
                "",
                "",
                "(reported)",
                "",
            ),
        ]
        if r.get("synthobs_worker_ms_per_task_median") is not None:
            out.append(
                (
                    f"{label}: synthobs in the worker per task",
                    f"{r['synthobs_worker_ms_per_task_median']:.3f} ms",
                    "",
                    "",
                    "(reported)",
                    "",
                )
            )
        return out

    return rows


def _store_write(r: dict[str, Any]) -> list[Row]:
    return [
        _ratio_row(
            f"HealthStore.write of {r['rows']:,} rows / raw pyarrow write_table",
            r["store_write_median_s"],
            r["raw_write_table_median_s"],
            r["ratio"],
            r["target_ratio"],
        )
    ]


def _tracing(r: dict[str, Any]) -> list[Row]:
    return [
        _ratio_row(
            f"span export to OTLP / export off, {r['tasks_per_flow']} tasks",
            r["export_median_s"],
            r["off_median_s"],
            r["median_ratio"],
            r["target_median_ratio"],
        )
    ]


def _otel(r: dict[str, Any]) -> list[Row]:
    rows = []
    flow = r.get("flow")
    if flow:
        rows += [
            _ratio_row(
                f"OTLP metrics + run logs on / off, {flow['tasks_per_flow']} tasks (spans on in both)",
                flow["export_median_s"],
                flow["off_median_s"],
                flow["median_ratio"],
                flow["target_median_ratio"],
            ),
            (
                "OTLP metrics + run logs: synthobs in the flow's process per run",
                f"{flow['synthobs_ms_per_run_export']:.1f} ms",
                f"{flow['synthobs_ms_per_run_off']:.1f} ms",
                "",
                "",
                "",
            ),
        ]
    c = r.get("collection")
    if c:
        rows.append(
            _ratio_row(
                f"OTLP collection + encoding, {c['gpus']} GPUs, {c['flows']} flows ({c['otlp_points']} points) "
                "/ a Prometheus scrape of the same",
                c["otlp_collect_and_encode_ms_median"],
                c["prometheus_scrape_ms_median"],
                c["ratio"],
                c["target_ratio"],
                unit="ms",
            )
        )
    return rows


def _quality(r: dict[str, Any]) -> list[Row]:
    t = r["targets"]
    rows: list[Row] = []

    def timed(key: str, label: str, target_key: str, mb_key: str | None = None) -> None:
        res = r.get(key)
        if not res:
            return
        sdm = res.get("sdmetrics_seconds")
        speedup = res.get("speedup")
        rows.append(
            (
                label,
                f"{res['seconds']:.2f} s",
                f"SDMetrics {sdm:.2f} s" if isinstance(sdm, (int, float)) else f"SDMetrics {sdm} s" if sdm else "",
                f"{speedup:.1f}× faster" if speedup else "",
                f"≤ {t[target_key]:g} s" + (f", ≥ {t['speedup_vs_sdmetrics']:g}×" if speedup else ""),
                _pf(
                    res["seconds"] <= t[target_key] and (speedup is None or speedup >= t.get("speedup_vs_sdmetrics", 0))
                ),
            )
        )
        if mb_key and mb_key in t:
            rows.append(
                (
                    f"{label}: peak memory growth",
                    f"{res['peak_rss_growth_mb']:.0f} MB",
                    "",
                    "",
                    f"≤ {t[mb_key]} MB",
                    _pf(res["peak_rss_growth_mb"] <= t[mb_key]),
                )
            )

    timed("quality_report_100k_x_20", "quality_report, 100k × 20 columns", "quality_report_s", "quality_report_mb")
    timed("diagnostic_100k_x_20", "diagnostic_report, 100k × 20 columns", "diagnostic_s")
    timed("detection_100k_x_20", "logistic_detection, 100k × 20 columns", "detection_s", "detection_mb")
    timed(
        "disclosure_100k_3_known_1_sensitive", "disclosure_protection, 100k rows, 3 known + 1 sensitive", "disclosure_s"
    )
    dcr = r.get("dcr_20k_x_20k")
    if dcr:
        rows.append(
            (
                "dcr, 20k × 20k rows",
                f"{dcr['seconds']:.2f} s",
                "",
                "",
                f"≤ {t['dcr_s']:g} s",
                _pf(dcr["seconds"] <= t["dcr_s"]),
            )
        )
    return rows


def _multi_table(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    target = r["targets"]["quality_speedup_vs_sdmetrics"]
    for key, label in (("quality", "multi_table_quality_report"), ("diagnostic", "multi_table_diagnostic_report")):
        res = r.get(key)
        if not res:
            continue
        sdm, speedup = res.get("sdmetrics_seconds"), res.get("speedup")
        gated = key == "quality" and speedup is not None
        rows.append(
            (
                f"{label}, {r['rows']:,} rows over 3 tables",
                f"{res['seconds']:.2f} s",
                f"SDMetrics {sdm:.2f} s" if isinstance(sdm, (int, float)) else f"SDMetrics {sdm} s" if sdm else "",
                f"{speedup:.1f}× faster" if speedup else "",
                f"≥ {target:g}×" if gated else "(reported)",
                _pf(speedup >= target) if gated else "",
            )
        )
        if res.get("first_call_speedup"):
            rows.append(
                (
                    f"{label}: first call in a fresh process",
                    f"{res['first_seconds']:.2f} s",
                    f"SDMetrics {res['sdmetrics_first_seconds']:.2f} s",
                    f"{res['first_call_speedup']:.1f}× faster",
                    "(reported)",
                    "",
                )
            )
        rows.append((f"{label}: peak memory growth", f"{res['peak_rss_growth_mb']:.0f} MB", "", "", "(reported)", ""))
    return rows


def _report(r: dict[str, Any]) -> list[Row]:
    out = []
    for rows, res in r["results"].items():
        target = 1.0 if rows == "1000000" else 10.0
        out.append(
            (
                f"health report over {int(rows):,} task rows",
                f"{res['seconds']:.2f} s",
                "",
                "",
                f"≤ {target:g} s",
                _pf(res["seconds"] <= target),
            )
        )
    return out


def _faults(r: dict[str, Any]) -> list[Row]:
    out = []
    healthy = r["healthy"]["runs_s"]
    for case in ("frozen_s3", "stuck_collector"):
        runs = r[case]["runs_s"]
        timeout = r["timeouts"]["store_timeout_seconds" if case == "frozen_s3" else "otlp_timeout_seconds"]
        extra_first, extra_later = runs[0] - healthy[0], runs[-1] - healthy[-1]
        out.append(
            (
                f"{case.replace('_', ' ')}: first run, extra time",
                f"{extra_first:.2f} s",
                f"{healthy[0]:.2f} s",
                "",
                f"≈ one timeout ({timeout:g} s)",
                _pf(extra_first <= timeout * 1.5 + 1),
            )
        )
        out.append(
            (
                f"{case.replace('_', ' ')}: later run, extra time",
                f"{extra_later:.2f} s",
                f"{healthy[-1]:.2f} s",
                "",
                "≈ 0",
                _pf(extra_later <= 1.0),
            )
        )
    return out


def _redaction(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for label in ("clean", "secrets"):
        value = r[f"redact_{label}_200_us"]
        baseline = r.get(f"detect_secrets_scan_line_{label}_200_us")
        if baseline:
            rows.append(
                _ratio_row(
                    f"redact, 200-char log line ({label}) / detect-secrets scan_line (finds, does not redact)",
                    value,
                    baseline,
                    value / baseline,
                    0.1,
                    unit="µs",
                )
            )
        rows.append(
            (
                f"redact, 2,000-char log line ({label})",
                f"{r[f'redact_{label}_2000_us']:.1f} µs",
                "",
                "",
                "(reported)",
                "",
            )
        )
    rows.append(("redact, 100 kB hostile string", f"{r['redact_hostile_100kB_ms']:.1f} ms", "", "", "(reported)", ""))
    return rows


def _gpu_sampler(r: dict[str, Any]) -> list[Row]:
    cpu = r["sampler_thread_cpu_percent_of_core"]
    return [
        (
            f"GPU sampler at 1 Hz, {r['devices']} fake devices: CPU % of one core",
            f"{cpu:.4f} %",
            f"{r['process_cpu_percent_idle_baseline']:.4f} % (idle)",
            "",
            "≤ 0.2 %",
            _pf(cpu <= 0.2),
        ),
    ]


def _writers(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"{r['writers']} writer processes at once, rows/s ({r['cores']} cores)",
            f"{r['concurrent_rows_per_s']:,}",
            f"{r['one_writer_rows_per_s']:,} (one)",
            f"{r['concurrent_over_one']:.2f}",
            "(reported)",
            "",
        ),
        (
            "S3 (moto on loopback) / local store, one writer, rows/s",
            f"{r['s3_moto_one_writer_rows_per_s']:,}",
            f"{r['one_writer_rows_per_s']:,}",
            f"{r['s3_over_local']:.2f}",
            "(reported)",
            "",
        ),
    ]


def _autolog(r: dict[str, Any]) -> list[Row]:
    """Autolog's cost: the on/off ratios (reported: on 2 shared cores their rounds vary more than the 1 %
    target) and synthobs' own time measured directly, which decides."""
    out = [
        (
            f"autolog {kind}: on / off, {what} (median of {r['repeats']} rounds)",
            f"{r[kind]['on_median_s']:.3f} s",
            f"{r[kind]['off_median_s']:.3f} s",
            f"{r[kind]['median_ratio']:.3f}",
            "≤ 1.01 (reported)",
            "",
        )
        for kind, what in (
            ("fit", f"CTGAN {r['epochs']} epochs on {r['fit_rows']:,} rows"),
            ("sample", f"{r['sample_rows']:,} rows"),
        )
    ]
    share = r.get("synthobs_share_of_fit")
    out.append(
        (
            f"autolog: synthobs' own time per epoch {r.get('synthobs_epoch_hook_us_median')} µs, per fit "
            f"{r.get('synthobs_fit_wrapper_ms_median')} ms: share of the fit (direct)",
            "n/a" if share is None else f"{100 * share:.2f} %",
            "",
            "",
            "≤ 1 %",
            _pf(share is not None and share <= 0.01),
        )
    )
    return out


@dataclass(frozen=True)
class Benchmark:
    name: str
    args: list[str]
    result: str
    rows: Callable[[dict[str, Any]], list[Row]]
    python: str | None = None
    """The interpreter, relative to the repository (default: this one); autolog's runs in ``.venv-sdv``."""


SUITE = [
    Benchmark(
        "overhead", ["bench_overhead.py", "--rounds", "9"], "overhead", _overhead("overhead", "in-process tasks")
    ),
    Benchmark(
        "overhead_process_pool",
        ["bench_overhead.py", "--runner", "process_pool", "--rounds", "5"],
        "overhead_process_pool",
        _overhead("overhead_process_pool", "ProcessPoolTaskRunner"),
    ),
    Benchmark(
        "overhead_dask",
        ["bench_overhead.py", "--runner", "dask", "--rounds", "5"],
        "overhead_dask",
        _overhead("overhead_dask", "DaskTaskRunner"),
    ),
    Benchmark("tracing", ["bench_tracing.py", "--rounds", "9"], "tracing", _tracing),
    Benchmark("otel", ["bench_otel.py", "--rounds", "9"], "otel", _otel),
    Benchmark("store_write", ["bench_store_write.py", "--repeats", "5"], "store_write", _store_write),
    Benchmark("writers", ["bench_writers.py"], "writers", _writers),
    Benchmark("quality", ["bench_quality.py"], "quality", _quality),
    Benchmark("multi_table", ["bench_multi_table.py"], "multi_table", _multi_table),
    Benchmark("report", ["bench_report.py", "--rows", "1000000"], "report", _report),
    Benchmark("faults", ["bench_faults.py"], "bench_faults", _faults),
    Benchmark("redaction", ["bench_redaction.py"], "redaction", _redaction),
    Benchmark("gpu_sampler", ["bench_gpu_sampler.py", "--seconds", "30"], "gpu_sampler", _gpu_sampler),
    Benchmark("autolog", ["bench_autolog.py", "--repeats", "7"], "autolog", _autolog, python=".venv-sdv/bin/python"),
]


def table(rows: list[Row]) -> str:
    head: Row = ("figure", "value", "baseline (same run)", "ratio", "target", "result")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    return "\n".join(
        ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head]]
        + [line]
        + ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    known = [b.name for b in SUITE]
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(known)}"
    )
    parser.add_argument("--table", action="store_true", help="print the table from the last results, run nothing")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    chosen = [b for b in SUITE if not args.names or b.name in args.names]
    failed_to_run = []
    if not args.table:
        for bench in chosen:
            print(f"== {bench.name}: {' '.join(bench.args)}", flush=True)
            start = time.perf_counter()
            python = str(HERE.parent / bench.python) if bench.python else sys.executable
            if not Path(python).exists():
                print(
                    f"== {bench.name}: {bench.python} is missing: run `bash scripts/test.sh` once to make it",
                    flush=True,
                )
                failed_to_run.append(bench.name)
                continue
            proc = subprocess.run([python, str(HERE / bench.args[0]), *bench.args[1:]], cwd=HERE.parent)
            print(f"== {bench.name}: exit {proc.returncode} after {time.perf_counter() - start:.0f} s", flush=True)
            if proc.returncode != 0:
                failed_to_run.append(bench.name)
    rows: list[Row] = []
    for bench in chosen:
        path = RESULTS / f"{bench.result}.json"
        if bench.name in failed_to_run or not path.exists():
            rows.append((bench.name, "no result", "", "", "", "FAIL" if bench.name in failed_to_run else "not run"))
            continue
        data = json.loads(path.read_text())
        rows.extend((f"{r[0]}", *r[1:]) for r in bench.rows(data))
    print()
    print(table(rows))
    return 1 if failed_to_run or any(r[5] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
