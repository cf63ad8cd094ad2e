"""A fit's Prefect artifacts: a progress artifact updated as epochs end, a loss-curve picture at the end.

The Prefect API calls run on one daemon thread per process (``_Publisher``) with synthobs' own client
(never the run's, which closes when the run ends), naming the fit's flow and task run ids taken when the
fit started: an epoch only puts a small item on a queue, never waits for the API. Updates are
rate-limited (``training_progress_interval_seconds``); the first and
last epochs always update. A fit outside a Prefect run publishes nothing. A failed call costs one warning.
At process exit the queue is drained for at most ``DRAIN_SECONDS``.
"""

from __future__ import annotations

import atexit
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from prefect_synthobs._log import get_logger
from prefect_synthobs.instrument import prefect_api
from prefect_synthobs.reports.charts import markdown_image
from prefect_synthobs.reports.training import loss_curve_svg

logger = get_logger("autolog")

DRAIN_SECONDS = 5.0
"""How long process exit waits for artifacts still queued."""

_KEY_UNSAFE = re.compile(r"[^a-z0-9-]+")


def artifact_key(prefix: str, model_type: str | None) -> str:
    """A Prefect artifact key (``^[a-z0-9-]*$``): ``prefix`` and the model type, e.g. ``synthobs-fit-ctgan``."""
    suffix = _KEY_UNSAFE.sub("-", (model_type or "model").lower()).strip("-") or "model"
    return f"{prefix}-{suffix}"[:100]


class _Publisher:
    """One daemon thread that makes the Prefect API calls queued by fits, in order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._warned = False

    def submit(self, call: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="synthobs-autolog-artifacts", daemon=True)
                self._thread.start()
        self._queue.put(call)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                try:
                    item()
                except Exception as exc:
                    if not self._warned:
                        self._warned = True
                        logger.warning(
                            "synthobs: a training progress artifact could not be published (%s); the fit and its "
                            "rows are unaffected; this warning is given once per process",
                            exc,
                        )
            finally:
                self._queue.task_done()

    def drain(self, timeout: float) -> bool:
        """Wait until every queued call ran, at most ``timeout`` seconds; whether it did."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


PUBLISHER = _Publisher()
atexit.register(PUBLISHER.drain, DRAIN_SECONDS)


def _run_ids() -> tuple[UUID | None, UUID | None]:
    """The flow run and task run this code runs in (``None``, ``None`` outside a Prefect run)."""
    try:
        from prefect.context import FlowRunContext, TaskRunContext

        flow_ctx, task_ctx = FlowRunContext.get(), TaskRunContext.get()
        task_run = task_ctx.task_run if task_ctx is not None else None
        flow_run_id = flow_ctx.flow_run.id if flow_ctx is not None and flow_ctx.flow_run is not None else None
        if flow_run_id is None and task_run is not None:
            flow_run_id = task_run.flow_run_id
        return flow_run_id, task_run.id if task_run is not None else None
    except Exception:
        return None, None


def _create(
    kind: str, key: str, data: Any, description: str, flow_run_id: UUID | None, task_run_id: UUID | None
) -> UUID:
    return prefect_api.create_artifact(
        kind, data, description, flow_run_id=flow_run_id, task_run_id=task_run_id, key=key
    )


class FitProgress:
    """The progress artifact of one fit (see the module docstring)."""

    def __init__(
        self, model_id: str, model_type: str | None, interval: float, run_ids: tuple[UUID | None, UUID | None]
    ) -> None:
        self.model_id = model_id
        self.model_type = model_type
        self.interval = interval
        self._run_ids = run_ids
        self._artifact: dict[str, Any] = {}
        self._last = 0.0
        self._pending: tuple[float, str] | None = None

    @classmethod
    def start(cls, model_id: str, model_type: str | None, interval: float) -> FitProgress | None:
        """A progress artifact at 0 % for a fit starting now; ``None`` outside a Prefect run."""
        run_ids = _run_ids()
        if run_ids[0] is None:
            return None
        progress = cls(model_id, model_type, interval, run_ids)
        key = artifact_key("synthobs-fit", model_type)
        description = f"Training {model_type or 'model'} {model_id}: starting"

        def create() -> None:
            progress._artifact["id"] = _create("progress", key, 0.0, description, *run_ids)

        PUBLISHER.submit(create)
        return progress

    def epoch(self, done: int, planned: int | None, losses: Mapping[str, float]) -> None:
        """Epoch ``done`` (1-based count) of ``planned`` ended with ``losses``: update, rate-limited."""
        share = 100.0 * min(done / planned, 1.0) if planned else 0.0
        shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
        text = (
            f"Training {self.model_type or 'model'} {self.model_id}: epoch {done}"
            + (f" of {planned}" if planned else "")
            + (f" ({shown})" if shown else "")
        )
        now = time.monotonic()
        if done == 1 or (planned is not None and done >= planned) or now - self._last >= self.interval:
            self._last = now
            self._update(share, text)

    def _update(self, share: float, text: str) -> None:
        artifact = self._artifact

        def update() -> None:
            artifact_id = artifact.get("id")
            if artifact_id is None:
                return
            prefect_api.update_artifact(artifact_id, share, text)

        PUBLISHER.submit(update)

    def finish(
        self, status: str, history: Mapping[str, Sequence[tuple[int, float]]], *, title: str, share: float = 1.0
    ) -> None:
        """The fit ended: ``share`` done (1 when it completed; a failed or stopped fit, where it ended) and,
        with epochs, a loss-curve picture."""
        epochs = max((len(v) for v in history.values()), default=0)
        self._update(
            100.0 * min(max(share, 0.0), 1.0),
            f"Training {self.model_type or 'model'} {self.model_id}: {status} after {epochs} epochs",
        )
        if not history:
            return
        key = artifact_key("synthobs-loss", self.model_type)
        model_id, run_ids = self.model_id, self._run_ids

        def picture() -> None:
            svg = loss_curve_svg(history, title=title)
            markdown = f"### {title}\n\nModel `{model_id}`, {status}, {epochs} epochs.\n\n" + markdown_image(svg, title)
            _create("markdown", key, markdown, f"Loss curve of {model_id}", *run_ids)

        PUBLISHER.submit(picture)
