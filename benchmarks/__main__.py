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
from _rows import Row, autolog_rows, faults_rows, gpu_sampler_rows, multi_table_rows, quality_rows, redaction_rows  # noqa: E402
from _rows_perf import (  # noqa: E402
    aa_rows,
    flow_end_rows,
    otel_rows,
    overhead_rows,
    report_rows,
    store_write_rows,
    tracing_rows,
    writers_rows,
)


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
        "overhead", ["bench_overhead.py", "--rounds", "9"], "overhead", overhead_rows("overhead", "in-process tasks")
    ),
    Benchmark("overhead_aa", ["bench_overhead.py", "--aa", "--rounds", "15"], "overhead_aa", aa_rows),
    Benchmark(
        "overhead_process_pool",
        ["bench_overhead.py", "--runner", "process_pool", "--rounds", "7"],
        "overhead_process_pool",
        overhead_rows("overhead_process_pool", "ProcessPoolTaskRunner"),
    ),
    Benchmark(
        "overhead_dask",
        ["bench_overhead.py", "--runner", "dask", "--rounds", "7"],
        "overhead_dask",
        overhead_rows("overhead_dask", "DaskTaskRunner"),
    ),
    Benchmark("flow_end", ["bench_flow_end.py", "--rounds", "7"], "flow_end", flow_end_rows),
    Benchmark("tracing", ["bench_tracing.py", "--rounds", "9"], "tracing", tracing_rows),
    Benchmark("otel", ["bench_otel.py", "--rounds", "15", "--receiver", "rotel"], "otel", otel_rows),
    Benchmark("store_write", ["bench_store_write.py", "--repeats", "5"], "store_write", store_write_rows),
    Benchmark("writers", ["bench_writers.py", "--rounds", "5"], "writers", writers_rows),
    Benchmark("quality", ["bench_quality.py"], "quality", quality_rows),
    Benchmark("multi_table", ["bench_multi_table.py"], "multi_table", multi_table_rows),
    Benchmark("report", ["bench_report.py", "--rows", "10000000", "--rounds", "3"], "report", report_rows),
    Benchmark("faults", ["bench_faults.py"], "bench_faults", faults_rows),
    Benchmark("redaction", ["bench_redaction.py"], "redaction", redaction_rows),
    Benchmark("gpu_sampler", ["bench_gpu_sampler.py", "--seconds", "30"], "gpu_sampler", gpu_sampler_rows),
    Benchmark(
        "autolog", ["bench_autolog.py", "--repeats", "7"], "autolog", autolog_rows, python=".venv-sdv/bin/python"
    ),
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
