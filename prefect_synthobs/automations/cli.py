"""``synthobs automations apply|list|delete``: the subcommand's options and handlers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Literal
from uuid import UUID

from prefect.settings import get_current_settings

from prefect_synthobs.automations import manage
from prefect_synthobs.automations.manage import AutomationsError, Step
from prefect_synthobs.automations.specs import (
    DEFAULT_P95_DAYS,
    DEFAULT_P95_MIN_RUNS,
    DEFAULT_PREFIX,
    DEFAULT_STUCK_MINUTES,
    DEFAULT_ZOMBIE_MINUTES,
    P95_NAME,
    Options,
    action_summary,
    build,
    trigger_summary,
)
from prefect_synthobs.config.active import ConfiguredHealthStore

_VERBS = {"create": "created", "update": "updated", "unchanged": "unchanged", "delete": "deleted"}
_WOULD = {"create": "would create", "update": "would update", "unchanged": "unchanged", "delete": "would delete"}


MAX_MINUTES = 10_000_000


def _minutes(text: str) -> float:
    """Minutes, 0 (no such automation) or more; fractions allowed (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected minutes, 0 or more (0: no such automation), got {text!r}")
    if value > MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_MINUTES:,} minutes (about 19 years), got {text!r}")
    if 0 < value * 60 < 10:
        raise argparse.ArgumentTypeError(f"Prefect needs at least 10 seconds (0.17 min) here, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _prefix(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the prefix must not be empty: it is how synthobs tells its automations apart")
    return text


def register(sub: Any) -> None:
    """Add ``automations`` with ``apply``, ``list`` and ``delete`` to the ``synthobs`` subparsers ``sub``."""
    parser = sub.add_parser(
        "automations",
        help="Prefect Automations for synthobs' events and stuck, zombie, late or slow flow runs, managed as code",
        description="Create, show or remove the Prefect Automations synthobs manages on the configured Prefect "
        "server (PREFECT_API_URL). Each is named PREFIX… and tagged synthobs-managed; no other automation is touched.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="automations_command", required=True)
    apply = commands.add_parser(
        "apply",
        help="create or update synthobs' automations (idempotent; removes those of the prefix no longer asked for)",
    )
    _add_prefix(apply)
    apply.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    apply.add_argument(
        "--notify",
        metavar="BLOCK",
        help="also call this block when an automation fires: a Webhook block (CallWebhook) or a notification "
        "block (SendNotification), as NAME or TYPE-SLUG/NAME (default: notify nobody)",
    )
    apply.add_argument(
        "--cancel-stuck",
        action="store_true",
        help="cancel a stuck flow run and mark a zombie Crashed (default: do nothing but record that it fired)",
    )
    apply.add_argument(
        "--pause-deployment",
        nargs="?",
        const="inferred",
        metavar="FLOW/DEPLOYMENT",
        help="pause a deployment when a quality gate fails: without a value, the deployment of the run whose "
        "gate failed (a gate checked in a deployment's own flow run, not in a subflow); with one, that deployment",
    )
    apply.add_argument(
        "--stuck-minutes",
        type=_minutes,
        default=DEFAULT_STUCK_MINUTES,
        metavar="N",
        help="a flow run Running this long with no final state is stuck (0: no such automation; default: %(default)g)",
    )
    apply.add_argument(
        "--zombie-minutes",
        type=_minutes,
        default=DEFAULT_ZOMBIE_MINUTES,
        metavar="N",
        help="a flow run with no heartbeat for this long is a zombie (keep it above 3 heartbeats: "
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY, 180 s by default; 0: no such automation; default: %(default)g)",
    )
    apply.add_argument("--no-late", action="store_true", help="no automation for Late flow runs")
    apply.add_argument(
        "--p95-min-runs",
        type=_positive,
        default=DEFAULT_P95_MIN_RUNS,
        metavar="N",
        help="a flow gets a 'slower than its p95' automation with at least this many completed runs in the health "
        "store (default: %(default)s)",
    )
    apply.add_argument(
        "--p95-days",
        type=_positive,
        default=DEFAULT_P95_DAYS,
        metavar="DAYS",
        help="the history the p95 is computed over (default: %(default)s)",
    )
    apply.add_argument("--no-p95", action="store_true", help="no per-flow p95 automations")
    apply.add_argument("--store", help="health store URL for the p95 history (default: the configured store)")
    apply.set_defaults(func=_apply)
    show = commands.add_parser("list", help="show the automations synthobs manages under the prefix")
    _add_prefix(show)
    show.set_defaults(func=_list)
    delete = commands.add_parser("delete", help="delete exactly the automations synthobs manages under the prefix")
    _add_prefix(delete)
    delete.add_argument("--dry-run", action="store_true", help="show what would be deleted; delete nothing")
    delete.set_defaults(func=_delete)
    # every subcommand's usage under `synthobs automations --help` too
    parser.epilog = "\n".join(" ".join(p.format_usage().split()[1:]) for p in (apply, show, delete))


def _add_prefix(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefix",
        type=_prefix,
        default=DEFAULT_PREFIX,
        help="the names' prefix: synthobs manages only automations under it and tagged for it (default: %(default)s)",
    )


def _fail(command: str, exc: Exception) -> int:
    print(f"synthobs automations {command}: {exc}", file=sys.stderr)
    return 2


def _apply(args: argparse.Namespace) -> int:
    try:
        with manage.client() as prefect:
            options, notes, keep = _options(args, prefect)
            specs = build(options)
            steps = manage.plan(manage.read_all(prefect), specs, args.prefix, keep=keep)
            done = steps if args.dry_run else manage.execute(prefect, [s for s in steps if s.verb != "unchanged"])
    except AutomationsError as exc:
        return _fail("apply", exc)
    if not args.dry_run:
        done = [s for s in steps if s.verb == "unchanged"] + list(done)
    print(
        f"synthobs automations apply: {manage.api_url()}, prefix {args.prefix!r}"
        + (" (dry run)" if args.dry_run else "")
    )
    for line in step_lines(sorted(done, key=lambda s: s.name), dry_run=args.dry_run):
        print(line)
    for note in notes:
        print(note)
    counts = {verb: sum(1 for s in done if s.verb == verb) for verb in _VERBS}
    words = _WOULD if args.dry_run else _VERBS
    print("; ".join(f"{counts[v]} {words[v]}" for v in _VERBS))
    return 0


def step_lines(steps: Sequence[Step], *, dry_run: bool = False) -> list[str]:
    """One line per step: what happened to which automation, its trigger and its actions (pure)."""
    words = _WOULD if dry_run else _VERBS
    width = max((len(s.name) for s in steps), default=0)
    return [
        f"  {words[s.verb]:<13} {s.name:<{width}}  {trigger_summary(s.automation)} → {action_summary(s.automation)}"
        for s in steps
    ]


def _options(args: argparse.Namespace, prefect: Any) -> tuple[Options, list[str], str | None]:
    """The options, notes to print, and the name prefix of automations to keep (the p95 ones, when the store
    could not be read: a mistyped --store or a storage outage must not delete them)."""
    notes: list[str] = []
    keep: str | None = None
    notify = manage.resolve_notify(prefect, args.notify) if args.notify else None
    pause: UUID | Literal["inferred"] | None = None
    if args.pause_deployment == "inferred":
        pause = "inferred"
    elif args.pause_deployment:
        pause = manage.resolve_deployment(prefect, args.pause_deployment)
    p95: dict[str, float] = {}
    if not args.no_p95:
        try:
            store = ConfiguredHealthStore(args.store)
            history, why = manage.store_p95(store, days=args.p95_days, min_runs=args.p95_min_runs)
        except Exception as exc:  # an unreadable store costs the p95 automations, not the others
            history, why = None, f"the health store could not be read: {type(exc).__name__}: {exc}"
        if history is None:
            keep = args.prefix + P95_NAME
            notes.append(f"p95: no per-flow automation made or removed ({why}); existing ones are kept")
        else:
            for flow, seconds in history.seconds.items():
                if not flow or "*" in flow or seconds > MAX_MINUTES * 60:
                    # Prefect reads * in a matched name as a wildcard (other flows' runs would match)
                    notes.append(f"p95: skipped flow {flow!r} (an empty name, a * in it, or a p95 over 19 years)")
                    continue
                p95[flow] = seconds
                notes.append(f"p95: {flow}: {seconds:.1f} s over {history.runs[flow]} completed runs")
            if history.skipped:
                few = ", ".join(f"{flow} ({n})" for flow, n in history.skipped.items())
                notes.append(
                    f"p95: skipped {len(history.skipped)} flow(s) with fewer than {args.p95_min_runs} completed runs "
                    f"in {args.p95_days} days: {few}"
                )
    notes += _heartbeat_notes(args.zombie_minutes)
    options = Options(
        prefix=args.prefix,
        stuck_minutes=args.stuck_minutes,
        zombie_minutes=args.zombie_minutes,
        late=not args.no_late,
        notify=notify,
        cancel_stuck=args.cancel_stuck,
        pause_deployment=pause,
        p95_seconds=p95,
    )
    return options, notes, keep


def _heartbeat_notes(zombie_minutes: float) -> list[str]:
    """A note when the zombie bound would call healthy runs dead, going by this process's heartbeat setting (the
    runners' and workers' is what counts: Prefect's flow engine sends ``prefect.flow-run.heartbeat`` every
    ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds, 180 by default, 30 at least)."""
    if zombie_minutes <= 0:
        return []
    frequency = get_current_settings().flows.heartbeat_frequency
    if frequency is None:
        return [
            "zombie: heartbeats are off in this process (PREFECT_FLOWS_HEARTBEAT_FREQUENCY unset); the processes "
            "that run flows must send them, or every run looks alive to this automation"
        ]
    if zombie_minutes * 60 < 2 * frequency:
        return [
            f"zombie: {zombie_minutes:g} min is less than two heartbeats ({frequency} s each here, "
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY): healthy runs will be taken for zombies; raise --zombie-minutes"
        ]
    return []


def _list(args: argparse.Namespace) -> int:
    try:
        with manage.client() as prefect:
            ours = manage.managed(manage.read_all(prefect), args.prefix)
    except AutomationsError as exc:
        return _fail("list", exc)
    if not ours:
        print(f"no automation managed by synthobs under prefix {args.prefix!r} at {manage.api_url()}")
        return 0
    rows = [(a.name, trigger_summary(a), action_summary(a), "yes" if a.enabled else "no") for a in ours]
    header = ("name", "trigger", "actions", "enabled")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _delete(args: argparse.Namespace) -> int:
    try:
        with manage.client() as prefect:
            gone = manage.delete_managed(prefect, args.prefix, dry_run=args.dry_run)
    except AutomationsError as exc:
        return _fail("delete", exc)
    verb = "would delete" if args.dry_run else "deleted"
    for automation in gone:
        print(f"  {verb} {automation.name} ({automation.id})")
    print(f"{len(gone)} automation(s) {verb} under prefix {args.prefix!r}")
    return 0
