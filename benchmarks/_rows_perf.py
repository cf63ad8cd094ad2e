"""Rows of the performance figures (issue 27): each with the baseline measured in the same run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _rows import Row, pf, ratio_row


def overhead_rows(name: str, label: str) -> Callable[[dict[str, Any]], list[Row]]:
    def rows(r: dict[str, Any]) -> list[Row]:
        out = [
            ratio_row(
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
