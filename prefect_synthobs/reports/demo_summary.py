"""What ``synthobs demo`` prints after the pipeline: each duration says what it measures (pure).

Two kinds of time appear, and they differ by seconds: the **wall time** of the command (from
its start to the pipeline's end: Prefect's temporary server starting, which is most of the
difference, the four flow runs, writing the store) and each flow run's **run time** (from its
own start to its end, as the ``flow_runs`` table's ``duration_s`` holds it; the three stages
run inside ``synthetic-pipeline``, so its run time holds theirs). Numbers read as
``reports.numbers`` writes them: ``22,000 rows``, ``44,465 rows/s``, a counter ``20,000``
rather than ``20000.0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from prefect_synthobs.reports.numbers import count_text, number_text, rate_text
from prefect_synthobs.reports.text import terminal_text

__all__ = ["automation_lines", "flow_run_lines", "metric_lines", "runs_of", "wall_time_line"]

WALL_TIME = "wall time"
RUN_TIME = "run time"
_FLOW, _KIND, _STATE = 20, 10, 10  # column widths (names wider than these push the line out, never cut)


def runs_of(runs: pd.DataFrame, root: str) -> pd.DataFrame:
    """The ``flow_runs`` rows of flow run ``root`` and its subflows, at any depth."""
    ids = {root}
    while True:
        more = set(runs.loc[runs.parent_flow_run_id.isin(ids), "flow_run_id"]) - ids
        if not more:
            out: pd.DataFrame = runs[runs.flow_run_id.isin(ids)]
            return out
        ids |= more


def wall_time_line(state_name: str, seconds: float, *, temporary_server: bool = True) -> str:
    """``pipeline completed in 33.6 s of wall time (...)``: the command's own clock, said to be one. With no
    server configured it holds Prefect's temporary server's start (most of its lead over the pipeline's run
    time), and says so; with a server of the user's own it does not."""
    took = f"{seconds:.1f} s of {WALL_TIME}"
    held = "this command so far, Prefect's start included" if temporary_server else "this command so far"
    return f"pipeline {state_name.lower()} in {took} ({held})"


def _value(value: Any) -> float | None:
    """A store number, or ``None`` for a missing one (None, NaN, pandas' NA)."""
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def flow_run_lines(runs: pd.DataFrame) -> list[str]:
    """The summary's flow runs: a heading that says what the time column is, a header line, and one
    line per run (``flow_name``, ``kind``, ``state_type``, ``duration_s``, ``rows``, ``rows_per_s``;
    store text written out by ``terminal_text``)."""
    lines = [
        f"flow runs in this demo ({RUN_TIME}: from each run's start to its end):",
        f"  {'flow':<{_FLOW}} {'kind':<{_KIND}} {'state':<{_STATE}} {RUN_TIME:>9}  rows",
    ]
    for row in runs.itertuples():
        flow, kind, state = (terminal_text(v) for v in (row.flow_name, row.kind, row.state_type))
        duration = _value(row.duration_s)
        took = f"{duration:7.2f} s" if duration is not None else f"{'':>9}"
        rows, per_s = _value(getattr(row, "rows", None)), _value(getattr(row, "rows_per_s", None))
        produced = f"{count_text(rows)} rows" if rows else ""
        if produced and per_s:
            produced += f", {rate_text(per_s)} rows/s"
        lines.append(f"  {flow:<{_FLOW}} {kind:<{_KIND}} {state:<{_STATE}} {took}  {produced}".rstrip())
    return lines


def metric_lines(exposition: str, names: Iterable[str]) -> list[str]:
    """The samples of the metrics ``names`` from a Prometheus text exposition, their values as people
    read them (``... 20,000``, not ``20000.0``); comments and other metrics left out."""
    wanted = set(names)
    out = []
    for line in exposition.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)  # a label value may hold spaces; the value never does
        if series.split("{", 1)[0] not in wanted:
            continue
        try:
            shown = number_text(float(value))
        except ValueError:  # not a number: as it came
            shown = value
        out.append(f"{series} {shown}")
    return out


def automation_lines(
    prefix: str,
    applied: int,
    firings: Sequence[Mapping[str, Any]],
    *,
    waited_s: float,
    timeout_s: float,
    removed: bool,
    error: str | None = None,
) -> list[str]:
    """What the demo's automations did: how many were applied under ``prefix``, then one line per firing of
    the quality-gate automation (``firings``: ``automation``, ``gate``, ``table``, ``value``, ``threshold``,
    ``action``), or why there is none (not applied; nothing reported within ``timeout_s``)."""
    where = f"{prefix}*"
    if not applied:
        return [f"automations: none applied ({error or 'unknown reason'})"]
    kept = "removed after the demo" if removed else "left on the server: synthobs automations delete --prefix " + prefix
    lines = [f"automations: {applied} applied ({where}, {kept}); what fired:"]
    if error:
        lines.append(f"  {error}")
    for firing in firings:
        gate, table = firing.get("gate") or "?", firing.get("table") or "?"
        value, threshold = firing.get("value"), firing.get("threshold")
        if value is not None:
            bound = f", {_number(value)} against {_number(threshold)}"
        else:  # a gate on a score never computed (NaN travels as null) fails closed
            bound = f", not computed, against {_number(threshold)}" if threshold is not None else ""
        action = firing.get("action") or f"action not reported within {timeout_s:g} s"
        lines.append(
            f"  {terminal_text(str(firing.get('automation')))} for gate {gate} (table {table}{bound}): {action}"
        )
    if not firings:
        lines.append(
            f"  not within {timeout_s:g} s (Prefect's trigger service or event persister is slow here; the Prefect "
            "UI's event feed shows prefect.automation.triggered when it fires)"
        )
    else:
        lines.append(f"  (read back from Prefect's event feed in {waited_s:.1f} s)")
    return lines


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return terminal_text(str(value))
