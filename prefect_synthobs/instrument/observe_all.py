"""``observe_all``: every flow run in the process recorded, decorated or not.

For teams that cannot touch flow code. Set ``observe_all`` (``configure(observe_all=True)``, the variable
``PREFECT_INTEGRATIONS_SYNTHOBS_OBSERVE_ALL=true`` read by synthobs' Prefect plugin at start-up, or a
``configure()`` call that reads it) and each flow run is recorded: an undecorated flow as kind ``other``,
a flow decorated with ``observe(...)`` with its own arguments, each run once, subflows included.

How: the run listener (``listener.RunListener``), a span processor on the tracer provider, already sees
the start and end of every Prefect run span. With ``observe_all`` on it puts each flow run that nothing
else put in scope into scope as its span starts, and records it as the span ends (inside the run's
context: accurate state and times). It is the public OpenTelemetry hook Prefect's engine calls anyway:
no ``Flow`` object is rewritten (hooks added to every flow would need ``Flow`` patched, and would miss
flows built before the patch), nothing is monkeypatched, and turning it off is reading a setting.

Switching: turning ``observe_all`` on installs synthobs' instrumentation in the process (the listener
must be on the provider before a flow's span starts); turning it off makes the listener put no new run
in scope (runs already started are recorded to their end); ``INSTRUMENTATION.uninstall()`` removes it
all. What it needs: Prefect's run telemetry (``PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY``, on by
default) and a tracer provider that takes span processors (synthobs installs an SDK one when there is
none); without them only decorated flows are recorded, with one warning.
"""

from __future__ import annotations

from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import on_change
from prefect_synthobs.config.settings import SynthObsSettings
from prefect_synthobs.instrument.instrumentation import INSTRUMENTATION

logger = get_logger()

__all__ = ["apply", "enabled"]


def apply(settings: SynthObsSettings) -> bool:
    """Follow ``settings.observe_all``: install synthobs when it is on (idempotent). Never raises.

    Called whenever ``configure`` changes the settings, and by the plugin at start-up.

    Returns:
        Whether every flow run in this process is now recorded.
    """
    if not settings.observe_all:
        return False
    try:
        if not INSTRUMENTATION.installed:
            INSTRUMENTATION.install()
        return INSTRUMENTATION.listener_active()
    except Exception as exc:  # observability never breaks what it observes
        logger.warning(
            "synthobs: observe_all could not install the run listener (%s); only decorated flows are recorded", exc
        )
        return False


def enabled() -> bool:
    """Whether ``observe_all`` records every flow run in this process now (on, installed and listening)."""
    return INSTRUMENTATION.installed and INSTRUMENTATION.settings().observe_all and INSTRUMENTATION.listener_active()


def _follow(settings: SynthObsSettings) -> None:
    apply(settings)


on_change(_follow)  # how ``configure(observe_all=...)`` reaches this layer: config cannot import instrument
