"""Rows of the performance figures (issue 27): each with the baseline measured in the same run."""

from __future__ import annotations

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
        rows += [
            ratio_row(
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
                pf(res["seconds"] <= target),
            )
        )
    return out


def writers_rows(r: dict[str, Any]) -> list[Row]:
    target = r.get("s3_target", 0.8)
    spread = r.get("s3_over_local_spread")
    rounds = r.get("s3_rounds")
    detail = f" (median of {rounds} rounds" + (f", {spread[0]:.2f}–{spread[1]:.2f}" if spread else "") + ")"
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
            "S3 (moto on loopback) / local store, one writer, rows/s"
            + (detail if rounds else "")
            + (f", {requests:g} requests per flush" if requests is not None else ""),
            f"{r['s3_moto_one_writer_rows_per_s']:,}",
            f"{r['one_writer_rows_per_s']:,}",
            f"{r['s3_over_local']:.2f}",
            f"≥ {target:g}",
            pf(r["s3_over_local"] >= target),
        ),
    ]
