"""Autolog's cost: a CTGAN fit and a large sample inside an observed flow, autolog on vs off.

Needs SDV (the ``sdv`` extra: pandas 2, PyTorch's CPU build): run it with ``.venv-sdv`` (made by
``scripts/demo.sh`` or ``scripts/test.sh``).

- Fit: ``--epochs`` (20) epochs of CTGAN on ``--rows`` (2,000) rows of the demo's customers table on the
  CPU (``--library sdv``: SDV's ``CTGANSynthesizer``, whose fit autolog records through SDV and its epochs
  through the ``ctgan`` class inside; ``--library ctgan``: ``ctgan.CTGAN`` itself), each fit in its own
  observed flow run, with autolog on (``prefect_synthobs.autolog.enable()``) and off (``disable()``: the
  library's methods are the originals again) alternating in one process, ``--repeats`` of each, the
  order swapped every round. The time is the fit call's own, measured inside the flow. Target: median of
  the per-round ratios on / off ≤ 1.01.
- Sample: ``--sample-rows`` (100,000) rows from the last fitted model, on vs off alternating the same
  way, each in its own observed flow run. Target ≤ 1.01.
- synthobs' own time, measured directly (not as a difference of two noisy timings): the time spent
  inside autolog's per-epoch hook (``autolog.ctgan.loss_values_set``, called when CTGAN stores an epoch's
  losses: parsing them, the ``training_epochs`` rows, the span event, the health checks, the progress
  artifact when due), per epoch in µs; the time inside autolog's fit and sample wrappers outside the
  library's own call (``fit_session`` / ``sample_call`` entry and exit: the ``models`` row with the
  pickled size, spans, counting rows), per fit and per sample in ms. Each is timed with
  ``time.perf_counter`` around those functions, patched here in autolog's modules.

Runs use a real Prefect server (``prefect_test_harness``), the heartbeat off, and a pause after each
flow run (``--settle``) so the server's backlog of the previous run is not measured in the next one.
Seeds are fixed (NumPy, PyTorch) so on and off fit the same data the same way. PyTorch runs on one CPU
thread by default (``--torch-threads``): with two on a 2-core machine shared with other work, a fit took
3 s or 28 s depending on what else ran, far more than the 1 % measured here.

    .venv-sdv/bin/python benchmarks/bench_autolog.py                 # full size (about 3-4 minutes on 2 cores)
    .venv-sdv/bin/python benchmarks/bench_autolog.py --epochs 2 --rows 500 --sample-rows 2000 --repeats 1
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, cast

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import numpy as np
from prefect import flow
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

import prefect_synthobs as so
from prefect_synthobs import autolog
from prefect_synthobs.autolog import ctgan as autolog_ctgan
from prefect_synthobs.autolog import sdv as autolog_sdv
from prefect_synthobs.sample_flows.synthetic_pipeline import make_customers

sys.path.insert(0, os.path.dirname(__file__))
from _common import median, report

TABLE = "customers"
TARGET_RATIO = 1.01

# -- synthobs' own time, by entry point ------------------------------------------------------------------------

INSIDE: dict[str, float] = {"epoch_hook": 0.0, "fit_wrapper": 0.0, "sample_wrapper": 0.0}
CALLS: dict[str, int] = {"epoch_hook": 0}


def _timed_function(original: Callable[..., Any], key: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            INSIDE[key] += time.perf_counter() - start
            CALLS[key] = CALLS.get(key, 0) + 1

    return timed


def _timed_context(factory: Callable[..., Any], key: str) -> Callable[..., Any]:
    """``factory``'s context manager, with the time spent entering and leaving it (not its body) added up."""

    @contextlib.contextmanager
    def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
        start = time.perf_counter()
        manager = factory(*args, **kwargs)
        value = manager.__enter__()
        spent = time.perf_counter() - start
        try:
            yield value
        except BaseException as exc:
            start = time.perf_counter()
            try:
                suppressed = manager.__exit__(type(exc), exc, exc.__traceback__)
            finally:
                INSIDE[key] += spent + time.perf_counter() - start
            if not suppressed:
                raise
        else:
            start = time.perf_counter()
            manager.__exit__(None, None, None)
            INSIDE[key] += spent + time.perf_counter() - start

    return timed


def _time_autolog() -> None:
    """Time autolog's entry points where its wrappers look them up (module globals, read at each call)."""
    autolog_ctgan.loss_values_set = _timed_function(autolog_ctgan.loss_values_set, "epoch_hook")
    for module in (autolog_ctgan, autolog_sdv):
        module.fit_session = _timed_context(module.fit_session, "fit_wrapper")  # type: ignore[attr-defined]
        module.sample_call = _timed_context(module.sample_call, "sample_wrapper")  # type: ignore[attr-defined]


def _reset_inside() -> None:
    for key in INSIDE:
        INSIDE[key] = 0.0
    CALLS["epoch_hook"] = 0


# -- the work --------------------------------------------------------------------------------------------------


def _module(name: str) -> Any:
    """A library of the ``sdv`` extra (imported on use: they ship no type information)."""
    return importlib.import_module(name)


def _seed(seed: int) -> None:
    np.random.seed(seed)
    _module("torch").manual_seed(seed)


def make_model(library: str, epochs: int, device: str) -> Any:
    gpu = device == "cuda"
    if library == "sdv":
        return _module("sdv.single_table").CTGANSynthesizer(METADATA[0], epochs=epochs, enable_gpu=gpu, verbose=False)
    return _module("ctgan").CTGAN(epochs=epochs, enable_gpu=gpu, verbose=False)


METADATA: list[Any] = []
DISCRETE = ["segment", "region", "churned"]


def fit(model: Any, library: str, data: Any) -> None:
    with _module("joblib").parallel_config(backend="threading"):  # as the demo: no worker processes on 2 cores
        if library == "sdv":
            model.fit({TABLE: data})
        else:
            model.fit(data, discrete_columns=DISCRETE)


def sample(model: Any, library: str, rows: int) -> int:
    out = model.sample(num_rows=rows) if library == "sdv" else model.sample(rows)
    frame = out[TABLE] if isinstance(out, dict) else out
    return len(frame)


@so.observe(kind="training", model_type="ctgan", table=TABLE)
@flow(name="bench-autolog-fit")
def fit_flow(library: str, epochs: int, rows: int, device: str, seed: int) -> float:
    """Fit one CTGAN (kept in ``LAST_MODEL``); returns the seconds of the fit call."""
    data = make_customers(rows, seed=7)
    _seed(seed)
    model = make_model(library, epochs, device)
    start = time.perf_counter()
    fit(model, library, data)
    elapsed = time.perf_counter() - start
    LAST_MODEL[:] = [model]
    return elapsed


LAST_MODEL: list[Any] = []
"""The model the last fit made (not a flow parameter: Prefect would try to store it as JSON)."""


@so.observe(kind="generation", model_type="ctgan", table=TABLE)
@flow(name="bench-autolog-sample")
def sample_flow(library: str, rows: int, seed: int) -> float:
    """Sample ``rows`` rows from the last fitted model; returns the seconds of the sample call."""
    _seed(seed)
    start = time.perf_counter()
    n = sample(LAST_MODEL[0], library, rows)
    elapsed = time.perf_counter() - start
    assert n == rows, (n, rows)
    return elapsed


def _switch(on: bool) -> None:
    if on:
        autolog.enable()
    else:
        autolog.disable()


def _alternate(
    label: str, repeats: int, settle: float, run: Callable[[], float], per_on: Callable[[], None]
) -> dict[str, Any]:
    """``repeats`` rounds of (on, off) or (off, on), alternating the order; per-round ratios."""
    on_s: list[float] = []
    off_s: list[float] = []
    ratios: list[float] = []
    for r in range(repeats):
        pair: dict[bool, float] = {}
        for on in (True, False) if r % 2 == 0 else (False, True):
            _switch(on)
            if on:
                _reset_inside()
            pair[on] = run()
            if on:
                per_on()
            time.sleep(settle)
        on_s.append(pair[True])
        off_s.append(pair[False])
        ratios.append(pair[True] / pair[False])
        print(
            f"{label} round {r + 1}/{repeats}: on {pair[True]:.3f} s, off {pair[False]:.3f} s, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    return {
        "on_median_s": round(median(on_s), 4),
        "off_median_s": round(median(off_s), 4),
        "median_ratio": round(median(ratios), 4),
        "ratio_of_medians": round(median(on_s) / median(off_s), 4),
        "on_s": [round(v, 4) for v in on_s],
        "off_s": [round(v, 4) for v in off_s],
        "target_median_ratio": TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=["sdv", "ctgan"], default="sdv")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--sample-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of (on, off) for the fit and the sample")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of pause after each flow run")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="PyTorch's CPU threads (default 1: on a shared 2-core machine, two threads stall each other "
        "whenever another process runs, which swamps a 1 %% difference)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # SDV's advice to save metadata, CTGAN's range warnings
    _module("torch").set_num_threads(args.torch_threads)
    store_url = tempfile.mkdtemp(prefix="synthobs-bench-")
    so.configure(store_url=store_url, metrics_mode="none")
    METADATA.append(_module("sdv.metadata").Metadata.detect_from_dataframes({TABLE: make_customers(args.rows, seed=7)}))
    _time_autolog()
    epoch_us: list[float] = []
    fit_ms: list[float] = []
    sample_ms: list[float] = []

    def run_fit() -> float:
        return float(cast(float, fit_flow(args.library, args.epochs, args.rows, args.device, seed=1)))

    def after_fit() -> None:
        if CALLS["epoch_hook"]:
            epoch_us.append(INSIDE["epoch_hook"] / args.epochs * 1e6)
        fit_ms.append(INSIDE["fit_wrapper"] * 1000)

    def run_sample() -> float:
        return float(cast(float, sample_flow(args.library, args.sample_rows, seed=2)))

    def after_sample() -> None:
        sample_ms.append(INSIDE["sample_wrapper"] * 1000)

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        for on in (True, False):  # warm-up both paths: imports, torch's first optimizer, the first artifact
            _switch(on)
            run_fit()
            run_sample()
        fits = _alternate("fit", args.repeats, args.settle, run_fit, after_fit)
        samples = _alternate("sample", args.repeats, args.settle, run_sample, after_sample)
        autolog.enable()
        store = so.HealthStore(store_url)
    from prefect_synthobs.instrument.instrumentation import get_runtime

    get_runtime().recorder.flush()
    models = store.read("models")
    epochs = store.read("training_epochs")
    report(
        "autolog",
        {
            "library": args.library,
            "device": args.device,
            "torch": _module("torch").__version__,
            "torch_threads": args.torch_threads,
            "cores": os.cpu_count(),
            "epochs": args.epochs,
            "fit_rows": args.rows,
            "sample_rows": args.sample_rows,
            "repeats": args.repeats,
            "fit": fits,
            "sample": samples,
            "synthobs_epoch_hook_us_median": round(median(epoch_us), 1) if epoch_us else None,
            "synthobs_fit_wrapper_ms_median": round(median(fit_ms), 2) if fit_ms else None,
            "synthobs_sample_wrapper_ms_median": round(median(sample_ms), 2) if sample_ms else None,
            "synthobs_share_of_fit": (
                round((median(epoch_us) * args.epochs / 1e6 + median(fit_ms) / 1000) / fits["off_median_s"], 5)
                if epoch_us and fit_ms
                else None
            ),
            # what autolog recorded over the whole run: the fits with autolog on (warm-up included) only
            "recorded_models": len(models),
            "expected_models": args.repeats + 1,
            "recorded_epoch_rows": len(epochs),
            "expected_epoch_rows": (args.repeats + 1) * args.epochs * 2,
        },
    )


if __name__ == "__main__":
    main()
