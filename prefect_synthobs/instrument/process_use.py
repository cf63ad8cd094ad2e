"""A flow run's CPU time and peak memory, measured in the process that runs it.

Prefect (>= 3.6, with ``opentelemetry-instrumentation-system-metrics``) exports
``process.cpu.utilization`` and ``process.memory.usage`` of a flow-run process
over OTLP every ``resource_metrics_interval_seconds``, from a ``MeterProvider``
private to its engine: synthobs cannot read those numbers back, and a series of
10-second samples would not give an exact total anyway. So synthobs measures
the same quantities of the same process itself, for the span of each flow run
it records, and puts two numbers in the run's ``flow_runs`` row:

- ``cpu_seconds``: user + system CPU time the process used from the run's start
  to its end (``time.process_time()``: every thread of the process, not its
  child processes). Exact, whatever the interval.
- ``peak_memory_bytes``: the highest resident set size (RSS, what Prefect's
  ``process.memory.usage`` reports) of the process during the run. When the
  process's lifetime high-water mark (``getrusage``'s ``ru_maxrss``, the
  kernel's own) rose during the run, the run set it: that value is exact, which
  is always the case for the run of a flow-run process started by a worker or a
  runner. Otherwise (a long-lived process whose earlier work peaked higher) it is
  the highest of the RSS samples a daemon thread takes every
  ``MEMORY_SAMPLE_SECONDS`` while runs are attached, and of the readings at the
  run's start and end: a lower bound that can miss a spike shorter than the
  interval.

Both are numbers of the *process*: a subflow's are contained in its parent's,
and flow runs that run concurrently in one process (threads, asyncio) each count
the whole process. Work in other processes (a ``ProcessPoolTaskRunner``'s or
Dask's workers) is not counted. A run this process did not see start (a runner
recording the crash of a flow-run process that died) has no measurement: its
row's columns stay null rather than carry the runner's numbers.

Readings come from the standard library (``resource``, ``/proc/self/statm``);
``psutil`` is used only where it is importable and ``/proc`` is not (macOS).
Nothing here raises into a run: a reading that fails is ``None``.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger

logger = get_logger()

ATTR_CPU_SECONDS = catalog.ATTR_CPU_SECONDS
ATTR_PEAK_MEMORY_BYTES = catalog.ATTR_PEAK_MEMORY_BYTES

MEMORY_SAMPLE_SECONDS = 0.2
"""Seconds between RSS samples while flow runs are attached (reading ``/proc/self/statm`` costs ~10 µs)."""


# -- readings (the process's own counters) ----------------------------------------------------------


def cpu_seconds() -> float:
    """User + system CPU seconds this process used so far (all its threads, not its children)."""
    return time.process_time()


def _page_size() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 4096


_PAGE_SIZE = _page_size()
_STATM = "/proc/self/statm"


def _psutil_rss() -> int | None:
    try:  # optional (it comes with opentelemetry-instrumentation-system-metrics): not a dependency
        psutil = importlib.import_module("psutil")
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def rss_bytes() -> int | None:
    """This process's resident set size now (``None`` where it cannot be read)."""
    try:
        with open(_STATM, "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        pass
    try:
        return _psutil_rss()
    except Exception:
        return None


def max_rss_bytes() -> int | None:
    """This process's lifetime peak RSS so far (``ru_maxrss``: KiB on Linux, bytes on macOS; ``None`` on
    Windows)."""
    try:
        import resource
    except ImportError:
        return None
    try:
        peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except (OSError, ValueError):
        return None
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass(frozen=True)
class Readers:
    """Where the readings come from (tests inject their own)."""

    cpu: Callable[[], float | None] = cpu_seconds
    rss: Callable[[], int | None] = rss_bytes
    max_rss: Callable[[], int | None] = max_rss_bytes


def _safe(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception as exc:  # a reading is never worth a failed run
        logger.debug("synthobs: process reading failed: %s", exc)
        return None


# -- one run's measurement (pure) ------------------------------------------------------------------


@dataclass
class _Run:
    cpu_start: float | None
    max_rss_start: int | None
    sampled_peak: int | None
    refs: int = 1

    def sample(self, rss: int | None) -> None:
        if rss is not None and (self.sampled_peak is None or rss > self.sampled_peak):
            self.sampled_peak = rss


@dataclass(frozen=True)
class ProcessUse:
    """What one flow run used of its process: its ``flow_runs`` columns."""

    cpu_seconds: float | None
    peak_memory_bytes: int | None
    peak_exact: bool = False
    """Whether ``peak_memory_bytes`` is the kernel's high-water mark (set during the run), not a sample."""

    def columns(self) -> dict[str, Any]:
        """The ``flow_runs`` columns (``events.FlowRunEnded`` fields)."""
        return {"cpu_seconds": self.cpu_seconds, "peak_memory_bytes": self.peak_memory_bytes}

    def span_attributes(self) -> dict[str, float | int]:
        """The same on the flow run's span (what is known)."""
        values = ((ATTR_CPU_SECONDS, self.cpu_seconds), (ATTR_PEAK_MEMORY_BYTES, self.peak_memory_bytes))
        return {k: v for k, v in values if v is not None}


def summarize(
    cpu_start: float | None,
    cpu_end: float | None,
    max_rss_start: int | None,
    max_rss_end: int | None,
    sampled_peak: int | None,
) -> ProcessUse:
    """A run's use from the readings at its start and end and its RSS samples (pure).

    The peak is the kernel's high-water mark when it rose during the run (then
    the run set it: exact), else the highest sample (a lower bound).
    """
    cpu = max(cpu_end - cpu_start, 0.0) if cpu_start is not None and cpu_end is not None else None
    if max_rss_start is not None and max_rss_end is not None and max_rss_end > max_rss_start:
        return ProcessUse(cpu, max(max_rss_end, sampled_peak or 0), peak_exact=True)
    return ProcessUse(cpu, sampled_peak)


# -- the tracker (one per process) -----------------------------------------------------------------


class RunProcessUse:
    """Measures the process's CPU time and peak memory for each attached flow run.

    One daemon thread samples RSS every ``interval`` seconds while at least one
    run is attached; it is stopped through an ``Event`` when the last run
    detaches. Thread-safe; never raises.

    Args:
        interval: Seconds between RSS samples.
        readers: The process readings (tests inject fakes).
        threaded: Run the sampling thread (``False``: tests call ``sample_once``).
    """

    def __init__(
        self, interval: float = MEMORY_SAMPLE_SECONDS, readers: Readers | None = None, *, threaded: bool = True
    ) -> None:
        self.interval = interval
        self.readers = readers or Readers()
        self.threaded = threaded
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, flow_run_id: str) -> None:
        """Start measuring ``flow_run_id`` now (again: counted once, detached as often as attached)."""
        rss = _safe(self.readers.rss)
        with self._lock:
            run = self._runs.get(flow_run_id)
            if run is not None:
                run.refs += 1
                return
            run = _Run(_safe(self.readers.cpu), _safe(self.readers.max_rss), None)
            run.sample(rss)
            self._runs[flow_run_id] = run
            if self.threaded and (self._thread is None or not self._thread.is_alive()):
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._loop, args=(self._stop,), name="synthobs-process-use", daemon=True
                )
                self._thread.start()

    def detach(self, flow_run_id: str) -> ProcessUse | None:
        """Stop measuring ``flow_run_id``; what it used (``None``: never attached in this process)."""
        cpu_end, max_rss_end, rss = _safe(self.readers.cpu), _safe(self.readers.max_rss), _safe(self.readers.rss)
        with self._lock:
            run = self._runs.get(flow_run_id)
            if run is None:
                return None
            run.sample(rss)
            run.refs -= 1
            if run.refs <= 0:
                del self._runs[flow_run_id]
            thread = None
            if not self._runs:
                self._stop.set()
                thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.interval + 1.0)
        return summarize(run.cpu_start, cpu_end, run.max_rss_start, max_rss_end, run.sampled_peak)

    def running(self) -> list[str]:
        """The flow runs being measured."""
        with self._lock:
            return list(self._runs)

    @property
    def thread_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def sample_once(self) -> None:
        """Read the RSS once and raise every attached run's peak to it."""
        rss = _safe(self.readers.rss)
        if rss is None:
            return
        with self._lock:
            for run in self._runs.values():
                run.sample(rss)

    def stop(self) -> None:
        """Forget every run and stop the thread (tests, process exit)."""
        with self._lock:
            self._runs.clear()
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.interval + 1.0)

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self.sample_once()


PROCESS_USE = RunProcessUse()
"""The process's tracker: one per process, so a runtime rebuilt by ``configure`` mid-run keeps its runs."""
