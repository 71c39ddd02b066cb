"""``resistry events stats`` and ``resistry suppressions list``: read-only views for staff."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.runtime import Runtime, pass_runtime
from engine.suppressions import active_suppressions
from webhooks.applier import run_applier, summary
from webhooks.inbox import drain
from webhooks.inbox import retry_set_aside as retry_set_aside_bodies
from webhooks.report import event_stats
from webhooks.turn import WriterTurn

T = TypeVar("T")


def _in_session(runtime: Runtime, work: Callable[[so.Session], T]) -> T:
    try:
        with runtime.sessions() as session:
            return work(session)
    except sa.exc.SQLAlchemyError as exc:
        raise click.ClickException(
            f"database error ({exc.__class__.__name__}); is it migrated? Run `resistry db upgrade`."
        ) from None


@click.group()
def events() -> None:
    """SendGrid Event Webhook: what came back."""


@events.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_runtime
def events_stats(runtime: Runtime, as_json: bool) -> None:
    """Received, unique, duplicate and quarantined events; counts by type and label."""
    stats = _in_session(runtime, event_stats)
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    rows: list[tuple[str, Any]] = [
        (name, stats[name])
        for name in ("received", "unique", "duplicates", "quarantined", "unattributed")
    ]
    rows += [(f"opens: {k}", v) for k, v in stats["opens"].items()]
    rows += [(f"clicks: {k}", v) for k, v in stats["clicks"].items()]
    rows += [(f"type: {k}", v) for k, v in stats["by_type"].items()]
    inbox = stats["inbox"]
    rows += [
        ("inbox: pending bodies", inbox["pending"]),
        ("inbox: pending events", inbox["pending_events"]),
        ("inbox: set aside", len(inbox["set_aside"])),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value:>10,}")
    if inbox["oldest_pending_at"]:
        click.echo(f"oldest pending body received at {inbox['oldest_pending_at']}")
    for body in inbox["set_aside"]:
        click.echo(f"set aside: body {body['id']}: {body['failure']}")
    if inbox["set_aside"]:
        click.echo("once the cause is fixed: resistry events apply --retry-set-aside")


@events.command("apply")
@click.option("--follow", is_flag=True, help="Keep applying bodies as they arrive (Ctrl-C stops).")
@click.option(
    "--retry-set-aside", is_flag=True, help="First make the set-aside bodies pending again."
)
@pass_runtime
def events_apply(runtime: Runtime, follow: bool, retry_set_aside: bool) -> None:
    """Apply the webhook bodies waiting in the inbox: once, or as the applier process."""
    from engine.logs import configure_logging

    settings = runtime.settings
    if retry_set_aside:
        retried = _in_session(runtime, _retry_set_aside)
        click.echo(f"set-aside bodies pending again: {retried}")
    if not follow:
        turn = WriterTurn(settings.database.url, settings.database.wal_checkpoint_seconds)
        click.echo(summary(_in_session(runtime, lambda s: drain(s, settings.webhooks, turn))))
        return
    runtime.close()  # the appliers open their own connections
    configure_logging(settings.web.log_format)
    click.echo("applying webhook bodies as they arrive (Ctrl-C stops)")
    run_applier(settings)
    click.echo("applier stopped")


def _retry_set_aside(session: so.Session) -> int:
    count = retry_set_aside_bodies(session)
    session.commit()
    return count


@click.group()
def suppressions() -> None:
    """Addresses that must not be emailed."""


@suppressions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "include_lifted", is_flag=True, help="Also list lifted suppressions.")
@pass_runtime
def suppressions_list(runtime: Runtime, as_json: bool, include_lifted: bool) -> None:
    """Suppressed addresses with scope, reason and time (newest first)."""
    rows = [
        {
            "email": s.email,
            "scope": s.scope,
            "reason": s.reason,
            "at": s.event_at.isoformat(),
            "active": s.active,
        }
        for s in _in_session(runtime, lambda session: active_suppressions(session, include_lifted))
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no suppressions")
        return
    headers = ("email", "scope", "reason", "at", "active")
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        click.echo("  ".join(str(row[h]).ljust(w) for h, w in zip(headers, widths, strict=True)))
