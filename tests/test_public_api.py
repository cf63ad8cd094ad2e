"""The public API snapshot: the names ``prefect_synthobs`` exports, and every contract path of DESIGN.md
(``../shared/DESIGN.md``, the sections marked *contract*) importable with the shape it promises.

A failure here means a public name appeared, vanished or changed its call signature. If that was meant,
update the expected values below (and README.md, and the DESIGN contract when a contract name changes);
if not, the change broke users' code.
"""

from __future__ import annotations

import argparse
import inspect
import json
import types
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prefect.blocks.core import Block
from prometheus_client import CollectorRegistry

import prefect_synthobs
import prefect_synthobs as so
from conftest import run_python, subprocess_env
from prefect_synthobs import blocks, cli, metrics, quality
from prefect_synthobs.health import tables

# --- the package's names ---------------------------------------------------------------------------------

PUBLIC_NAMES = [
    "HealthStore",
    "HealthStoreConfig",
    "MetricsConfig",
    "OtlpExporter",
    "PrivacyBudget",
    "PrivacyBudgetExceeded",
    "PrivacyBudgetUnavailable",
    "PrivacySpend",
    "QualityGateFailed",
    "QualityGates",
    "SynthObsConfig",
    "SynthObsSettings",
    "TrainingHealthError",
    "autolog",
    "check_quality",
    "configure",
    "observe",
    "record_epoch",
    "record_privacy_spend",
    "record_quality",
    "record_rows",
    "span",
]
"""``dir(prefect_synthobs)`` without private names and without the subpackages Python adds as attributes
when something imports them (``prefect_synthobs.health`` and the like: where code lives, not API)."""

UPDATE = "if this was meant, update PUBLIC_NAMES in tests/test_public_api.py, __all__ and README.md"


def public_names(module: types.ModuleType) -> list[str]:
    """The public names of ``module``: no leading underscore, and a submodule only when ``__all__`` names it."""
    exported = set(getattr(module, "__all__", ()))
    return sorted(
        name
        for name in dir(module)
        if not name.startswith("_")
        and not (isinstance(getattr(module, name), types.ModuleType) and name not in exported)
    )


def test_the_package_exports_exactly_the_checked_in_names() -> None:
    names = public_names(prefect_synthobs)
    added, removed = sorted(set(names) - set(PUBLIC_NAMES)), sorted(set(PUBLIC_NAMES) - set(names))
    assert not added and not removed, f"public names added {added}, removed {removed}: {UPDATE}"
    assert names == sorted(PUBLIC_NAMES), f"PUBLIC_NAMES has duplicates: {UPDATE}"
    assert sorted(set(so.__all__) - {"__version__"}) == PUBLIC_NAMES, f"__all__ differs from PUBLIC_NAMES: {UPDATE}"
    assert isinstance(so.__version__, str) and so.__version__


def test_public_names_leave_out_implicit_submodules_only() -> None:
    module = types.ModuleType("m")
    module.__all__ = ["exported"]  # type: ignore[attr-defined]
    module.exported = types.ModuleType("m.exported")  # type: ignore[attr-defined]
    module.implicit = types.ModuleType("m.implicit")  # type: ignore[attr-defined]
    module.f = len  # type: ignore[attr-defined]
    module._private = len  # type: ignore[attr-defined]
    assert public_names(module) == ["exported", "f"]


# --- call signatures -------------------------------------------------------------------------------------

POS = inspect.Parameter.POSITIONAL_OR_KEYWORD
KW = inspect.Parameter.KEYWORD_ONLY
VAR_KW = inspect.Parameter.VAR_KEYWORD
REQUIRED = inspect.Parameter.empty

# function -> the contract's parameters in order: (name, kind, default). Further parameters may follow, each
# with a default (a later round's addition must not break a call written to the contract).
SIGNATURES: dict[str, tuple[Callable[..., Any], list[tuple[str, Any, Any]]]] = {
    "observe": (so.observe, [("kind", POS, "other"), ("model_type", KW, None), ("table", KW, None)]),
    "record_rows": (so.record_rows, [("n", POS, REQUIRED), ("table", KW, None)]),
    "record_epoch": (so.record_epoch, [("epoch", POS, REQUIRED), ("loss", KW, None)]),
    "record_quality": (
        so.record_quality,
        [("metric", POS, REQUIRED), ("score", POS, REQUIRED), ("table", KW, None), ("threshold", KW, None)],
    ),
    "record_privacy_spend": (so.record_privacy_spend, [("epsilon", POS, REQUIRED), ("dataset", KW, REQUIRED)]),
    "span": (so.span, [("name", POS, REQUIRED), ("attributes", VAR_KW, REQUIRED)]),
    # configure(**overrides) in DESIGN; the SynthObsConfig block (or its name) may come first
    "configure": (so.configure, [("config", POS, None), ("overrides", VAR_KW, REQUIRED)]),
    "check_quality": (
        so.check_quality,
        [("real", POS, REQUIRED), ("synthetic", POS, REQUIRED), ("metadata", POS, REQUIRED), ("model", KW, None)],
    ),
    "HealthStore": (so.HealthStore, [("url", POS, None)]),
    "HealthStore.read": (
        so.HealthStore.read,
        [
            ("self", POS, REQUIRED),
            ("table", POS, REQUIRED),
            ("since", KW, None),
            ("until", KW, None),
            ("columns", KW, None),
        ],
    ),
    "HealthStore.compact": (so.HealthStore.compact, [("self", POS, REQUIRED), ("table", POS, REQUIRED)]),
    "quality.ks_complement": (quality.ks_complement, [("real", POS, REQUIRED), ("synthetic", POS, REQUIRED)]),
    "quality.tv_complement": (quality.tv_complement, [("real", POS, REQUIRED), ("synthetic", POS, REQUIRED)]),
    "quality.correlation_similarity": (
        quality.correlation_similarity,
        [("real", POS, REQUIRED), ("synthetic", POS, REQUIRED), ("coefficient", POS, "pearson")],
    ),
    "quality.contingency_similarity": (
        quality.contingency_similarity,
        [("real", POS, REQUIRED), ("synthetic", POS, REQUIRED)],
    ),
    "quality.statistic_similarity": (
        quality.statistic_similarity,
        [("real", POS, REQUIRED), ("synthetic", POS, REQUIRED), ("statistic", POS, "mean")],
    ),
    "quality.disclosure_protection": (
        quality.disclosure_protection,
        [
            ("real", POS, REQUIRED),
            ("synthetic", POS, REQUIRED),
            ("known_column_names", POS, REQUIRED),
            ("sensitive_column_names", POS, REQUIRED),
        ],
    ),
    "quality.categorical_cap": (
        quality.categorical_cap,
        [
            ("real", POS, REQUIRED),
            ("synthetic", POS, REQUIRED),
            ("key_fields", POS, REQUIRED),
            ("sensitive_fields", POS, REQUIRED),
        ],
    ),
    "quality.logistic_detection": (
        quality.logistic_detection,
        [("real", POS, REQUIRED), ("synthetic", POS, REQUIRED), ("metadata", POS, REQUIRED), ("seed", POS, 0)],
    ),
    **{
        f"quality.{name}": (
            getattr(quality, name),
            [("real", POS, REQUIRED), ("synthetic", POS, REQUIRED), ("metadata", POS, REQUIRED)],
        )
        for name in (
            "quality_report",
            "diagnostic_report",
            "multi_table_quality_report",
            "multi_table_diagnostic_report",
        )
    },
    **{
        f"quality.{name}": (getattr(quality, name), [("real", POS, REQUIRED), ("synthetic", POS, REQUIRED)])
        for name in (
            "range_coverage",
            "boundary_adherence",
            "category_coverage",
            "category_adherence",
            "missing_value_similarity",
            "key_uniqueness",
        )
    },
}

# named by the contract without a signature: they must exist and be callable
CALLABLES = ["exact_match_rate", "dcr", "dcr_overfitting_protection", "membership_inference_auc", "tstr"]


def signature_problems(fn: Callable[..., Any], expected: list[tuple[str, Any, Any]]) -> list[str]:
    """How ``fn``'s signature departs from ``expected`` (empty when it keeps the contract)."""
    params = list(inspect.signature(fn).parameters.values())
    problems = []
    for i, (name, kind, default) in enumerate(expected):
        if i >= len(params) or params[i].name != name:
            found = params[i].name if i < len(params) else "nothing"
            problems.append(f"parameter {i} should be {name!r}, is {found}")
            continue
        if params[i].kind != kind:
            problems.append(f"{name!r} is {params[i].kind.description}, should be {kind.description}")
        if kind is not VAR_KW and params[i].default != default:
            problems.append(f"{name!r} defaults to {params[i].default!r}, should be {default!r}")
    for extra in params[len(expected) :]:
        required = extra.default is REQUIRED and extra.kind not in (inspect.Parameter.VAR_POSITIONAL, VAR_KW)
        if required:
            problems.append(f"{extra.name!r} is required: a call written to the contract misses it")
    return problems


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_contract_function_keeps_its_signature(name: str) -> None:
    fn, expected = SIGNATURES[name]
    problems = signature_problems(fn, expected)
    assert not problems, f"{name}{inspect.signature(fn)}: {'; '.join(problems)}"


def test_signature_problems_finds_each_kind_of_departure() -> None:
    def keeps(n: int, *, table: str | None = None, extra: int = 0) -> None: ...
    def renamed(rows: int, *, table: str | None = None) -> None: ...
    def positional(n: int, table: str | None = None) -> None: ...
    def new_default(n: int, *, table: str | None = "t") -> None: ...
    def new_required(n: int, *, table: str | None = None, more: int) -> None: ...

    contract = [("n", POS, REQUIRED), ("table", KW, None)]
    assert signature_problems(keeps, contract) == []
    for fn in (renamed, positional, new_default, new_required):
        assert len(signature_problems(fn, contract)) == 1, fn.__name__


@pytest.mark.parametrize("name", CALLABLES)
def test_named_score_is_a_public_callable(name: str) -> None:
    assert callable(getattr(quality, name)) and name in quality.__all__


def test_contract_scores_are_in_the_quality_module_all() -> None:
    contract = {name.removeprefix("quality.") for name in SIGNATURES if name.startswith("quality.")}
    assert contract - set(quality.__all__) == set()


# --- shapes of what they return --------------------------------------------------------------------------

PEOPLE_META = {"columns": {"age": {"sdtype": "numerical"}, "plan": {"sdtype": "categorical"}}}


def people(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame: pd.DataFrame = pd.DataFrame({"age": rng.normal(40, 10, n).round(1), "plan": rng.choice(["basic", "pro"], n)})
    return frame


def test_quality_report_has_an_overall_and_the_two_properties() -> None:
    report = quality.quality_report(people(200, 0), people(200, 1), PEOPLE_META)
    assert isinstance(report.overall, float) and 0.0 <= report.overall <= 1.0
    assert set(report.properties) == {"Column Shapes", "Column Pair Trends"}
    assert all(isinstance(v, float) for v in report.properties.values())


def test_diagnostic_report_has_an_overall_and_the_two_properties() -> None:
    report = quality.diagnostic_report(people(100, 0), people(100, 1), PEOPLE_META)
    assert isinstance(report.overall, float) and set(report.properties) == {"Data Validity", "Data Structure"}


def test_tstr_returns_the_contract_keys() -> None:
    def labelled(n: int, seed: int) -> pd.DataFrame:
        x = np.random.default_rng(seed).normal(size=n)
        frame: pd.DataFrame = pd.DataFrame({"x": x, "y": np.where(x > 0, "a", "b")})
        return frame

    meta = {"columns": {"x": {"sdtype": "numerical"}, "y": {"sdtype": "categorical"}}}
    result = quality.tstr(labelled(60, 1), labelled(60, 2), labelled(40, 3), "y", meta)
    assert {"ratio", "synthetic_score", "real_score", "baseline_score", "task", "metric"} <= set(result)


def test_configure_returns_the_active_config_with_the_contract_keys(store_dir: Path) -> None:
    config = so.configure(service_name="public-api-check")
    assert config.service_name == "public-api-check" and str(config.store_url) == str(store_dir)
    for key in ("store_url", "metrics_mode", "gpu_interval_seconds", "service_name"):
        assert hasattr(config, key), key


def test_the_metrics_registry_is_a_collector_registry() -> None:
    assert isinstance(metrics.REGISTRY, CollectorRegistry)


# --- blocks and CLI --------------------------------------------------------------------------------------

BLOCKS = ["HealthStoreConfig", "MetricsConfig", "OtlpExporter", "PrivacyBudget", "QualityGates", "SynthObsConfig"]


@pytest.mark.parametrize("name", BLOCKS)
def test_block_is_a_prefect_block_at_both_public_paths(name: str) -> None:
    cls = getattr(blocks, name)
    assert isinstance(cls, type) and issubclass(cls, Block)
    assert getattr(so, name) is cls  # `prefect block register -m prefect_synthobs` finds it


def test_the_package_is_a_prefect_collection_with_a_synthobs_command() -> None:
    (script,) = entry_points(group="console_scripts", name="synthobs")
    assert script.value == "prefect_synthobs.cli:main"
    assert "prefect_synthobs" in {e.value for e in entry_points(group="prefect.collections")}


CLI_COMMANDS = ["demo", "report", "export-dashboards", "gpu", "compact", "reconcile", "automations"]


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_cli_command_exists(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0, capsys.readouterr().err
    assert f"synthobs {command}" in capsys.readouterr().out


def test_cli_refuses_an_unknown_command_and_answers_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["no-such-command"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"synthobs {so.__version__} ")
    assert isinstance(cli.build_parser(), argparse.ArgumentParser)


# --- the health store's tables (DESIGN: Health store, and the later rounds' columns) --------------------

TABLE_COLUMNS = {
    "flow_runs": "event_id flow_run_id flow_name kind model_type table_name state_type state_name start_time "
    "end_time duration_s rows rows_per_s error_type error_message tags host trace_id gpu_util_mean gpu_util_max "
    "gpu_memory_peak_bytes gpu_energy_j source",
    "task_runs": "event_id task_run_id flow_run_id flow_name task_name state_type state_name start_time end_time "
    "duration_s run_count error_type error_message rows source",
    "gpu_samples": "event_id time host gpu_index gpu_uuid gpu_name utilization memory_used_bytes memory_total_bytes "
    "power_w temperature_c energy_j flow_run_id",
    "quality_checks": "event_id time flow_run_id table_name metric score threshold passed model_id model_type",
    "training_epochs": "event_id time flow_run_id epoch loss_type loss model_id epoch_seconds",
    "privacy_ledger": "event_id time flow_run_id dataset epsilon budget remaining",
    "models": "event_id time flow_run_id flow_name model_id library synthesizer model_type table_name parameters "
    "fit_rows fit_columns fit_seconds epochs size_bytes",
}


def test_the_store_has_exactly_the_contract_tables() -> None:
    assert sorted(tables.TABLES) == sorted(TABLE_COLUMNS)


@pytest.mark.parametrize("table", sorted(TABLE_COLUMNS))
def test_store_table_has_the_contract_columns(table: str) -> None:
    columns = tables.schema_for(table).names
    missing = [c for c in TABLE_COLUMNS[table].split() if c not in columns]
    assert not missing, f"{table} lacks contract columns {missing}"
    assert columns[0] == "event_id"  # every row's deduplication key


# --- the metric catalog ----------------------------------------------------------------------------------

# name -> type and label names, as registered: DESIGN's Metric catalog (a label added since is named in a comment)
METRICS = {
    "synthobs_flow_runs_total": ("counter", "flow kind state"),
    "synthobs_flow_run_duration_seconds": ("histogram", "flow kind"),
    "synthobs_task_runs_total": ("counter", "flow task state"),
    "synthobs_task_run_duration_seconds": ("histogram", "flow task"),
    "synthobs_task_retries_total": ("counter", "flow task"),
    "synthobs_errors_total": ("counter", "flow kind error_type"),
    "synthobs_last_success_timestamp_seconds": ("gauge", "flow"),
    "synthobs_generation_rows_total": ("counter", "flow table model_type"),
    "synthobs_generation_rows_per_second": ("gauge", "flow table model_type"),
    "synthobs_training_epochs_total": ("counter", "flow model_type"),
    "synthobs_training_loss": ("gauge", "flow model_type loss_type"),
    "synthobs_quality_score": ("gauge", "table metric model_type"),  # model_type: third round (quality by model)
    "synthobs_quality_gate_checks_total": ("counter", "table gate result"),
    "synthobs_privacy_epsilon_spent_total": ("counter", "dataset"),
    "synthobs_privacy_epsilon_remaining": ("gauge", "dataset"),
    "synthobs_privacy_budget_checks_total": ("counter", "dataset result"),
    "synthobs_gpu_utilization_ratio": ("gauge", "gpu uuid model"),
    "synthobs_gpu_memory_used_bytes": ("gauge", "gpu uuid model"),
    "synthobs_gpu_memory_total_bytes": ("gauge", "gpu uuid model"),
    "synthobs_gpu_power_watts": ("gauge", "gpu uuid model"),
    "synthobs_gpu_temperature_celsius": ("gauge", "gpu uuid model"),
    "synthobs_gpu_energy_joules_total": ("counter", "gpu uuid model"),
}

# A fresh process (the registry fills when the first measurement is made; here one outside any run, which
# updates metrics only, so no Prefect API): each collector's name, type and label names.
REGISTERED = """
import json, sys
import prefect_synthobs as so
from prefect_synthobs.metrics import REGISTRY
so.configure(store_url=sys.argv[1], spool_dir=sys.argv[2], metrics_mode="none")
so.record_rows(1)
types = {family.name: family.type for family in REGISTRY.collect()}  # a counter's family name lacks _total
found = {}
for name, collector in REGISTRY._names_to_collectors.items():  # prometheus_client keeps no public label list
    base = name.removesuffix("_total") if name.endswith("_total") else name
    if base in types:
        found[name] = [types[base], list(getattr(collector, "_labelnames", ()))]
print("REGISTERED=" + json.dumps(found))
"""


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("registry")
    code = REGISTERED.replace("sys.argv[1]", repr(str(tmp / "store"))).replace("sys.argv[2]", repr(str(tmp / "sp")))
    out = run_python(code, subprocess_env(), timeout=120).stdout
    line = next(x for x in out.splitlines() if x.startswith("REGISTERED="))
    found = json.loads(line.removeprefix("REGISTERED="))
    return {name: (kind, " ".join(labels)) for name, (kind, labels) in found.items()}


@pytest.mark.parametrize("name", sorted(METRICS))
def test_catalog_metric_is_registered_with_its_type_and_labels(name: str, registered: dict[str, Any]) -> None:
    assert name in registered, f"{name} is not in prefect_synthobs.metrics.REGISTRY"
    assert registered[name] == METRICS[name]
