"""Two weeks of plausible health-store history, written with explicit timestamps (for the trend tests,
the browser screenshot and docs/health-overview.png).

Every figure follows from ``seed``, so a test can recompute what a day should show.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

import prefect_synthobs as so
from prefect_synthobs import catalog as names

FLOWS = ("train-ctgan", "generate-customers", "quality-check")
TABLES = ("customers", "transactions")


def fill_history(store_url: str, until: datetime, days: int = 14, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Write ``days`` days of flow runs, quality checks, GPU samples and privacy spends ending at ``until``.

    Returns:
        The rows written, by table.
    """
    rng = np.random.default_rng(seed)
    store = so.HealthStore(store_url)
    written: dict[str, list[dict[str, Any]]] = {t: [] for t in (names.FLOW_RUNS, names.QUALITY_CHECKS)}
    written[names.GPU_SAMPLES], written[names.PRIVACY_LEDGER] = [], []
    spent = 0.0
    last_day = until.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    for d in range(days):
        day = last_day - timedelta(days=days - 1 - d)
        hours = max(1, int((until - day).total_seconds() // 3600)) if d == days - 1 else 24
        for k, flow in enumerate(FLOWS):
            for _ in range(6):
                start = day + timedelta(minutes=float(rng.uniform(0, hours * 60 - 5)))
                fails = rng.random() < (0.05 + 0.25 * (d >= days - 4) * (flow == "train-ctgan"))
                duration = float(rng.gamma(4, 10 + 15 * k + 2 * d * (flow == "generate-customers")))
                written[names.FLOW_RUNS].append(
                    {
                        "event_id": uuid.uuid4().hex,
                        "flow_run_id": str(uuid.uuid4()),
                        "flow_name": flow,
                        "kind": ("training", "generation", "quality")[k],
                        "state_type": "FAILED" if fails else "COMPLETED",
                        "start_time": start,
                        "end_time": start + timedelta(seconds=duration),
                        "duration_s": duration,
                        "rows": 20_000 if flow == "generate-customers" and not fails else 0,
                        "gpu_util_mean": float(np.clip(0.7 + rng.normal(0, 0.05), 0, 1)) if k == 0 else None,
                    }
                )
        for table in TABLES:
            for metric in ("overall", "column_shapes"):
                score = float(np.clip(0.9 - 0.01 * d * (table == "transactions") + rng.normal(0, 0.01), 0, 1))
                written[names.QUALITY_CHECKS].append(
                    {
                        "event_id": uuid.uuid4().hex,
                        "time": day + timedelta(hours=min(hours - 1, 6)),
                        "flow_name": "quality-check",
                        "table_name": table,
                        "metric": metric,
                        "score": score,
                        "threshold": 0.8,
                        "passed": score >= 0.8,
                    }
                )
        for gpu in range(2):
            for h in range(0, hours, 2):
                written[names.GPU_SAMPLES].append(
                    {
                        "event_id": uuid.uuid4().hex,
                        "time": day + timedelta(hours=h),
                        "host": "gpu-node-1",
                        "gpu_index": gpu,
                        "gpu_uuid": f"GPU-{gpu}",
                        "gpu_name": "NVIDIA H100",
                        "utilization": float(np.clip(0.55 + 0.2 * gpu + rng.normal(0, 0.08), 0, 1)),
                        "memory_used_bytes": int(40e9),
                        "energy_j": float(350 * 7200 * (0.6 + 0.1 * gpu)),
                    }
                )
        if d % 3 == 0:
            spent += 0.5
            written[names.PRIVACY_LEDGER].append(
                {
                    "event_id": uuid.uuid4().hex,
                    "time": day + timedelta(hours=min(hours - 1, 3)),
                    "flow_name": "generate-customers",
                    "dataset": "customers",
                    "epsilon": 0.5,
                    "spent": spent,
                    "budget": 5.0,
                    "remaining": 5.0 - spent,
                }
            )
    for table, rows in written.items():
        store.write(table, rows)
    return written
