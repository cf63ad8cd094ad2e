"""Answer the first questions about a synthobs health store with pandas.

Flows, tasks, throughput and training (fits and last losses). Run after `bash scripts/demo.sh` (or any
observed flows):

    .venv/bin/python examples/read_store.py [STORE_URL]
"""

from __future__ import annotations

import sys

import pandas as pd

import prefect_synthobs as so

store = so.HealthStore(sys.argv[1] if len(sys.argv) > 1 else None)
runs = store.read("flow_runs")
tasks = store.read("task_runs", columns=["flow_name", "task_name", "state_type", "duration_s", "run_count"])
if runs.empty:
    sys.exit(f"no flow runs in {store.url}: run `bash scripts/demo.sh` first")

pd.set_option("display.width", 120)
print(f"store: {store.url}\n")
print("flow runs per flow and final state:")
print(runs.pivot_table(index="flow_name", columns="state_type", values="event_id", aggfunc="count", fill_value=0), "\n")
print("flow duration (s):")
print(runs.groupby("flow_name").duration_s.describe()[["count", "mean", "50%", "max"]].round(3), "\n")
print("slowest tasks by p95 duration (s):")
print(tasks.groupby("task_name").duration_s.quantile(0.95).sort_values(ascending=False).head(10).round(4), "\n")
print(f"tasks retried: {(tasks.run_count > 1).sum()}, failed: {(tasks.state_type == 'FAILED').sum()}")
generated = runs[runs.rows > 0]
if not generated.empty:
    print("\ngeneration throughput (rows/s):")
    print(generated.groupby("flow_name").rows_per_s.median().round(0).astype("Int64"))

# training: one `models` row per fit (generator autolog), one `training_epochs` row per epoch and loss type
models = store.read("models", columns=["table_name", "model_type", "status", "fit_seconds"])
if not models.empty:
    print("\nfits per table, model type and status (fit seconds):")
    print(models.groupby(["table_name", "model_type", "status"]).fit_seconds.agg(["count", "median", "max"]).round(3))
epochs = store.read("training_epochs", columns=["time", "model_id", "model_type", "loss_type", "loss"])
if not epochs.empty:
    # a model by its type and the end of its id; epochs recorded by hand (no model id) together
    epochs["model"] = (epochs.model_type.fillna("?") + " " + epochs.model_id.str[-6:]).fillna("recorded by hand")
    print("\nlast loss per model and loss type:")
    print(epochs.sort_values("time").groupby(["model", "loss_type"]).loss.last().round(4))
