"""No silent slip in settings: any malformed ``PREFECT_INTEGRATIONS_SYNTHOBS_*`` variable, on any key.

One malformed variable costs one warning naming it (never its value), its key keeps the default, every other
key keeps its value and recording goes on. A variable that names no setting is named with the closest one.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prefect_synthobs as so
from conftest import run_python, subprocess_env
from prefect_synthobs.config.active import ActiveSettings
from prefect_synthobs.config.settings import SynthObsSettings, env_name, forget_environment_warnings

SECRET = "Zq9xSECRETx"
"""Put into every generated value: no warning may show it."""
KEYS = sorted(SynthObsSettings.model_fields)
JSON_KEYS = {"store_options", "pushgateway_grouping", "otlp_headers"}


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def captured_warnings() -> Iterator[Captured]:
    handler = Captured()
    synthobs_logger = logging.getLogger("prefect.synthobs")
    synthobs_logger.addHandler(handler)
    try:
        yield handler
    finally:
        synthobs_logger.removeHandler(handler)


@contextmanager
def environment(**variables: str) -> Iterator[None]:
    """``variables`` set in ``os.environ`` for the block (hypothesis cannot use ``monkeypatch``)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _default(key: str) -> Any:
    return SynthObsSettings.model_fields[key].get_default(call_default_factory=True)


def _accepted(key: str, raw: str) -> tuple[bool, Any]:
    """Whether ``key`` accepts ``raw`` given explicitly (decoded from JSON for dict keys), and the value it takes."""
    try:
        value = json.loads(raw) if key in JSON_KEYS else raw
        return True, getattr(SynthObsSettings(**{key: value}), key)
    except Exception:
        return False, None


def test_the_json_keys_are_the_dict_fields() -> None:
    """The oracle below decodes JSON for these keys only: a new dict field must be added to it."""
    dict_fields = {k for k, f in SynthObsSettings.model_fields.items() if "dict" in str(f.annotation)}
    assert dict_fields == JSON_KEYS


garbage = st.one_of(
    st.text(max_size=40),  # random text, the empty string included
    st.text(max_size=20).map(lambda t: "{" + t),  # invalid JSON
    st.text(max_size=20).map(lambda t: "[" + t + ","),
    st.sampled_from(["", " ", "null", "{}", "[]", '{"a": 1}', '{"job": "x"}', "true", "nan", "inf", "-inf"]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),  # huge and negative numbers
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.just("9" * 400),
    st.just("1e309"),
)


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), raw=garbage, with_secret=st.booleans())
def test_any_garbage_in_any_variable_costs_one_warning_and_that_key_only(key: str, raw: str, with_secret: bool) -> None:
    if with_secret and key not in ("config_block",):  # a block name is looked up and named, not a secret
        raw = f"{raw}{SECRET}"
    raw = raw.replace("\x00", "")  # an environment value cannot hold NUL
    other_key, other_raw, other_value = (
        ("gpu_interval_seconds", "2.5", 2.5) if key == "service_name" else ("service_name", "kept-svc", "kept-svc")
    )
    forget_environment_warnings()
    active = ActiveSettings()
    with environment(**{env_name(key): raw, env_name(other_key): other_raw}), captured_warnings() as log:
        cfg = active.configure(trace_console=True) if key != "trace_console" else active.configure()
        again = active.configure()  # configure is called again and again in a process: no second warning
    naming = [m for m in log.messages if env_name(key) in m]
    ok, expected = _accepted(key, raw)
    if ok:
        assert naming == [], (key, raw, log.messages)
        assert getattr(cfg, key) == expected
    else:
        assert len(naming) == 1, (key, raw, log.messages)
        assert getattr(cfg, key) == _default(key)
    assert getattr(cfg, other_key) == other_value  # every other key keeps its value
    if key != "trace_console":
        assert cfg.trace_console is True
    assert again == cfg
    if with_secret and key != "config_block":
        assert not [m for m in log.messages if SECRET in m], log.messages


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("STORE_ULR", "STORE_URL"),
        ("SPOOLDIR", "SPOOL_DIR"),
        ("METRIC_MODE", "METRICS_MODE"),
        ("OTLP_ENDPIONT", "OTLP_ENDPOINT"),
        ("flush_interval", "FLUSH_INTERVAL_SECONDS"),
        ("GPU_ENABLE", "GPU_ENABLED"),
    ],
)
def test_a_misspelled_variable_is_named_with_the_closest_key(variable: str, closest: str) -> None:
    forget_environment_warnings()
    name = "PREFECT_INTEGRATIONS_SYNTHOBS_" + variable
    with environment(**{name: f"/tmp/{SECRET}"}), captured_warnings() as log:
        cfg = ActiveSettings().configure()
        ActiveSettings().configure()  # once per process
    naming = [m for m in log.messages if name in m]
    assert len(naming) == 1, log.messages
    assert "PREFECT_INTEGRATIONS_SYNTHOBS_" + closest in naming[0]
    assert SECRET not in naming[0]
    assert cfg == SynthObsSettings()  # nothing taken from it


@settings(max_examples=40, deadline=None)
@given(suffix=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", min_size=1, max_size=30))
def test_any_unknown_variable_is_named_once_with_a_known_one(suffix: str) -> None:
    name = "PREFECT_INTEGRATIONS_SYNTHOBS_" + suffix
    if suffix.lower() in SynthObsSettings.model_fields:
        return
    forget_environment_warnings()
    with environment(**{name: "x"}), captured_warnings() as log:
        ActiveSettings().configure()
    naming = [m for m in log.messages if name + " " in m]
    assert len(naming) == 1, log.messages
    assert any(f"did you mean {env_name(k)}?" in naming[0] for k in KEYS)


def test_a_bad_explicit_value_still_raises_naming_the_key() -> None:
    """Only the environment is tolerant: a bad value given in code is the caller's error."""
    with pytest.raises(ValueError, match="metrics_port"):
        ActiveSettings().configure(metrics_port="not a port")


FLOW = """
import prefect_synthobs as so
from prefect import flow, task

@task
def step(i):
    return i

@so.observe(kind="generation", table="customers")
@flow(name="{name}")
def gen():
    so.record_rows(10)
    return sum(step(i) for i in range(3))

assert gen() == 3
"""


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PUSHGATEWAY_GROUPING", "{not json"),
        ("STORE_OPTIONS", "[1, 2"),
        ("FLUSH_INTERVAL_SECONDS", "soon"),
        ("OTLP_PROTOCOL", "carrier-pigeon"),
    ],
)
def test_a_flow_with_a_malformed_variable_records_its_rows(tmp_path: Path, variable: str, value: str) -> None:
    name = f"env-slip-{uuid.uuid4().hex[:6]}"
    store = tmp_path / "store"
    env = subprocess_env(
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(store),
        PREFECT_INTEGRATIONS_SYNTHOBS_SPOOL_DIR=str(tmp_path / "spool"),
        **{"PREFECT_INTEGRATIONS_SYNTHOBS_" + variable: value},
    )
    proc = run_python(FLOW.replace("{name}", name), env)
    output = proc.stdout + proc.stderr
    assert output.count("PREFECT_INTEGRATIONS_SYNTHOBS_" + variable) == 1, output[-3000:]
    flows = so.HealthStore(str(store)).read("flow_runs")
    tasks = so.HealthStore(str(store)).read("task_runs")
    assert list(flows["flow_name"]) == [name] and list(flows["rows"]) == [10]
    assert len(tasks) == 3 and set(tasks["state_type"]) == {"COMPLETED"}


@pytest.mark.parametrize(
    ("key", "raw"),
    [  # found by a hostile probe: repr() escapes a ' inside a value, which cut the old blanking short
        ("otlp_endpoint", "grpc://c:4317/?k=x'SECRETxyz\"Y"),
        ("pushgateway_url", "ftp://h/?tok=a'bSECRETxyz\"q"),
        ("store_url", "gs://bkt/x?token=a'SECRETxyz\""),
        ("metrics_mode", "none,otlp'SECRETxyz\""),  # the validator lower-cases what it quotes
    ],
)
def test_a_value_with_both_quotes_never_shows_in_the_warning(key: str, raw: str) -> None:
    forget_environment_warnings()
    active = ActiveSettings()
    with captured_warnings() as seen, environment(**{env_name(key): raw}):
        settings_now = active.configure()
    assert getattr(settings_now, key) == _default(key)
    assert len(seen.messages) == 1 and env_name(key) in seen.messages[0]
    assert "secretxyz" not in seen.messages[0].lower(), seen.messages[0]


def test_a_config_block_with_values_its_settings_refuse_warns_per_key_and_keeps_recording_settings() -> None:
    from prefect_synthobs.config.blocks import HealthStoreConfig, MetricsConfig, SynthObsConfig

    forget_environment_warnings()
    block = SynthObsConfig(
        store=HealthStoreConfig(url="gs://bucket/x?token=SECRETxyz"),  # a scheme the store refuses
        metrics=MetricsConfig(
            pushgateway_grouping={"job": "x"}, pushgateway_url="ftp://h/?t=SECRETabc", pushgateway_timeout_seconds=3
        ),
    )
    active = ActiveSettings()
    with captured_warnings() as seen:
        settings_now = active.configure(config=block, metrics_mode="none")  # used to raise ValueError
    assert settings_now.store_url == _default("store_url")
    assert settings_now.pushgateway_url == _default("pushgateway_url")
    assert settings_now.pushgateway_timeout_seconds == 3  # the block's good values are kept
    keys = ("store_url", "pushgateway_url", "pushgateway_grouping")
    assert len(seen.messages) == len(keys), seen.messages
    for key, message in zip(sorted(keys), sorted(seen.messages, key=lambda m: m.split()[2]), strict=True):
        assert key in message
    assert not any("secret" in m.lower() for m in seen.messages), seen.messages
