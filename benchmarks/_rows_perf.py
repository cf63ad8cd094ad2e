"""Rows of the performance figures (issue 27): each with the baseline measured in the same run."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from typing import Any

from _rows import Row, pf, ratio_row


def overhead_rows(name: str, label: str) -> Callable[[dict[str, Any]], list[Row]]:
    """Observed / plain (median of the rounds' ratios and ratio of medians, both ≤ 1.05), synthobs' own time in
    the flow's process as a share of the plain run (≤ 1 %) and in a worker per task (≤ 0.5 ms)."""

    def rows(r: dict[str, Any]) -> list[Row]:
        spread = r.get("ratio_spread") or [r.get("ratio_min"), r.get("ratio_max")]
        rounds = f"median of {r['rounds']} rounds" + (
            f", {spread[0]:.3f}–{spread[1]:.3f}" if None not in spread else ""
        )
        out = [
            ratio_row(
                f"{label}: observed / plain flow, {r['tasks_per_flow']} tasks ({rounds})",
                r["observed_median_s"],
                r["plain_median_s"],
                r["median_ratio"],
                r["target_median_ratio"],
            ),
            (
                f"{label}: ratio of medians",
                f"{r['observed_median_s']:.3f} s",
                f"{r['plain_median_s']:.3f} s",
                f"{r['ratio_of_medians']:.3f}",
                f"≤ {r['target_median_ratio']:g}",
                pf(r["ratio_of_medians"] <= r["target_median_ratio"]),
            ),
        ]
        share = r.get("synthobs_in_process_share_of_plain")
        if share is None:
            share = r["synthobs_in_process_ms_median"] / 1000 / r["plain_median_s"]
        out.append(
            (
                f"{label}: synthobs' own time in the flow's process per run / the plain run",
                f"{r['synthobs_in_process_ms_median']:.1f} ms",
                f"{r['plain_median_s']:.3f} s",
                f"{100 * share:.2f} %",
                "≤ 1 %",
                pf(share <= 0.01),
            )
        )
        if r.get("synthobs_worker_ms_per_task_median") is not None:
            worker = r["synthobs_worker_ms_per_task_median"]
            out.append(
                (
                    f"{label}: synthobs' own time in the worker per task",
                    f"{worker:.3f} ms",
                    f"{1000 * r['plain_median_s'] / r['tasks_per_flow']:.2f} ms (plain run per task)",
                    "",
                    "≤ 0.5 ms",
                    pf(worker <= 0.5),
                )
            )
        return out

    return rows


def chance_median_above(ratios: list[float], rounds: int, limit: float, resamples: int = 4000) -> float:
    """How often the median of ``rounds`` rounds drawn from ``ratios`` (with replacement) is above ``limit``: for
    A/A rounds, the chance that a change costing nothing fails a ``limit`` target measured with ``rounds``."""
    draw = random.Random(0)
    above = sum(statistics.median(draw.choices(ratios, k=rounds)) > limit for _ in range(resamples))
    return above / resamples


def aa_rows(r: dict[str, Any]) -> list[Row]:
    """The noise floor of the ratio rows: the same protocol with a plain flow in the observed one's place."""
    spread = r["ratio_spread"]
    rows: list[Row] = [
        (
            f"A/A noise floor: plain / plain flow, {r['tasks_per_flow']} in-process tasks, the overhead protocol "
            f"(median of {r['rounds']} rounds, {spread[0]:.3f}–{spread[1]:.3f})",
            f"{r['median_ratio']:.3f}",
            f"ratio of medians {r['ratio_of_medians']:.3f}",
            "",
            "(reported)",
            "",
        )
    ]
    ratios = r.get("ratios") or []
    if len(ratios) >= 5:
        for rounds, limit in ((9, 1.05), (15, 1.03)):
            chance = chance_median_above(ratios, rounds, limit)
            rows.append(
                (
                    f"A/A: chance a change costing nothing shows a median above {limit:g} in {rounds} rounds "
                    f"(resampled from these {len(ratios)})",
                    f"{100 * chance:.0f} %",
                    "",
                    "",
                    "(reported)",
                    "",
                )
            )
    return rows


def flow_end_rows(r: dict[str, Any]) -> list[Row]:
    """The flow end's Prefect API work: none when nothing ran elsewhere; against one bare task-run read."""
    return [
        (
            f"flow end, {r['in_process_tasks']} tasks all in the flow's process: API reads (max of {r['rounds']})",
            f"{r['in_process_end_api_reads_max']:g} reads, {r['in_process_end_api_s_median']:.3f} s",
            f"flow end {r['in_process_end_ms_median']:.2f} ms",
            "",
            f"≤ {r['target_in_process_s']:g} s",
            pf(r["in_process_end_api_s_median"] <= r["target_in_process_s"]),
        ),
        (
            f"flow end, {r['pool_tasks']} tasks on a process pool: API time (median of {r['rounds']}, "
            f"{r['pool_end_api_ms_spread'][0]:.0f}–{r['pool_end_api_ms_spread'][1]:.0f} ms)",
            f"{r['pool_end_api_s_median']:.3f} s",
            f"{r['bare_task_runs_read_ms_median'] / 1000:.3f} s (one bare task-run read)",
            f"{r['pool_end_api_over_bare_read']:.2f}",
            f"≤ {r['target_pool_s']:g} s",
            pf(r["pool_end_api_s_median"] <= r["target_pool_s"]),
        ),
    ]


def store_write_rows(r: dict[str, Any]) -> list[Row]:
    return [
        ratio_row(
            f"HealthStore.write of {r['rows']:,} rows / raw pyarrow write_table",
            r["store_write_median_s"],
            r["raw_write_table_median_s"],
            r["ratio"],
            r["target_ratio"],
        )
    ]


def tracing_rows(r: dict[str, Any]) -> list[Row]:
    return [
        ratio_row(
            f"span export to OTLP / export off, {r['tasks_per_flow']} tasks",
            r["export_median_s"],
            r["off_median_s"],
            r["median_ratio"],
            r["target_median_ratio"],
        )
    ]


def otel_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    flow = r.get("flow")
    if flow:
        spread = flow.get("ratio_spread")
        rounds = f"median of {flow['rounds']} rounds" + (f", {spread[0]:.3f}–{spread[1]:.3f}" if spread else "")
        rows += [
            ratio_row(
                f"OTLP metrics + run logs on / off, {flow['tasks_per_flow']} tasks, spans on in both ({rounds})",
                flow["export_median_s"],
                flow["off_median_s"],
                flow["median_ratio"],
                flow["target_median_ratio"],
            ),
            (
                "OTLP metrics + run logs: ratio of medians",
                f"{flow['export_median_s']:.3f} s",
                f"{flow['off_median_s']:.3f} s",
                f"{flow['ratio_of_medians']:.3f}",
                f"≤ {flow['target_median_ratio']:g}",
                pf(flow["ratio_of_medians"] <= flow["target_median_ratio"]),
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
            ratio_row(
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


def report_rows(r: dict[str, Any]) -> list[Row]:
    """The health report against DuckDB computing the same aggregates on the same Parquet (≤ 1.0×), its peak
    memory (≤ 1 GB at 10 M rows, ≤ 4 GB at 100 M); S3 (moto) rows when measured."""
    out: list[Row] = []
    for where, results in (("local", r.get("results", {})), ("S3 (moto)", r.get("results_s3", {}))):
        for rows, res in results.items():
            n = int(rows)
            label = f"health report over {n:,} task rows, {where}"
            if "ratio_vs_duckdb" in res:
                out.append(
                    (
                        f"{label} (median of {res.get('rounds', 1)})",
                        f"{res['seconds']:.2f} s",
                        f"DuckDB {res['duckdb_seconds']:.2f} s",
                        f"{res['ratio_vs_duckdb']:.2f}×",
                        "≤ 1.0×",
                        pf(res["ratio_vs_duckdb"] <= 1.0),
                    )
                )
            else:
                lines = str(res.get("duckdb_error", "not run")).replace(" | ", "\n").splitlines() or ["failed"]
                error = next((line for line in reversed(lines) if "Error" in line), lines[-1]).strip()[:70]
                out.append((label, f"{res['seconds']:.2f} s", f"DuckDB: {error}", "", "(reported)", ""))
            limit = 1000 if n <= 10_000_000 else 4000
            out.append(
                (
                    f"{label}: peak memory",
                    f"{res['peak_rss_mb']:.0f} MB",
                    f"DuckDB {res['duckdb_peak_rss_mb']:.0f} MB" if "duckdb_peak_rss_mb" in res else "",
                    "",
                    f"≤ {limit:,} MB",
                    pf(res["peak_rss_mb"] <= limit),
                )
            )
    return out


def writers_rows(r: dict[str, Any]) -> list[Row]:
    target = r.get("s3_target", 0.8)
    each = r.get("s3_over_local_rounds") or []
    rounds = r.get("s3_rounds") or len(each)
    detail = f" (median of {rounds} rounds" + (f", {min(each):.2f}–{max(each):.2f}" if each else "") + ")"
    requests = r.get("s3_write_requests_per_flush")
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
            "S3 (moto on loopback"
            + (", TCP_NODELAY" if r.get("s3_server") else "")
            + ") / local store, one writer, rows/s"
            + (detail if rounds else "")
            + (f", {requests:g} requests per flush" if requests is not None else ""),
            f"{r['s3_moto_one_writer_rows_per_s']:,}",
            f"{r['one_writer_rows_per_s']:,}",
            f"{r['s3_over_local']:.2f}",
            f"≥ {target:g}",
            pf(r["s3_over_local"] >= target),
        ),
        *(
            [
                (
                    "S3 (stock moto_server, stalls on its own small writes) / local store, one writer, rows/s"
                    + f" (median of {rounds} rounds, {min(stock):.2f}–{max(stock):.2f})",
                    f"{r['s3_stock_moto_one_writer_rows_per_s']:,}",
                    f"{r['one_writer_rows_per_s']:,}",
                    f"{r['s3_stock_over_local']:.2f}",
                    "(reported)",
                    "",
                )
            ]
            if (stock := r.get("s3_stock_over_local_rounds"))
            else []
        ),
    ]
