"""Alerts: what staff must look at, and ``resistry alerts list|resolve``.

An open alert that pauses sending (SendGrid reporting a change to the account, say a compliance
suspension) stops every mailing until someone who has dealt with its cause resolves it. Resolving
is recorded, never deleted, so the history of pauses stays.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Alert, utcnow
from engine.runtime import Runtime, pass_runtime


def list_alerts(session: so.Session, *, include_resolved: bool = False) -> list[Alert]:
    """Alerts, newest first; only the open ones unless ``include_resolved``."""
    statement = sa.select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc())
    if not include_resolved:
        statement = statement.where(Alert.resolved_at.is_(None))
    return list(session.scalars(statement))


def pausing_alert(session: so.Session) -> Alert | None:
    """The oldest open alert that pauses sending, if any."""
    statement = (
        sa.select(Alert)
        .where(Alert.pauses_sending, Alert.resolved_at.is_(None))
        .order_by(Alert.created_at, Alert.id)
    )
    return session.scalars(statement.limit(1)).first()


def resolve_alert(session: so.Session, alert_id: int, now: datetime) -> Alert:
    """Mark alert ``alert_id`` resolved (again: unchanged). Raises :class:`LookupError`."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise LookupError(f"no alert #{alert_id}")
    if alert.resolved_at is None:
        alert.resolved_at = now
        session.flush()
    return alert


def as_dict(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "message": alert.message,
        "pauses_sending": alert.pauses_sending,
        "created_at": alert.created_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "details": alert.details,
    }


# --- command line ------------------------------------------------------------------------------


@click.group()
def alerts() -> None:
    """Alerts for staff; an open one that pauses sending stops every mailing."""


@alerts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@click.option("--all", "include_resolved", is_flag=True, help="Also list resolved alerts.")
@pass_runtime
def alerts_list(runtime: Runtime, as_json: bool, include_resolved: bool) -> None:
    """Open alerts, newest first."""
    with runtime.sessions() as session:
        rows = [as_dict(a) for a in list_alerts(session, include_resolved=include_resolved)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no open alerts" if not include_resolved else "no alerts")
    for row in rows:
        state = f"resolved {row['resolved_at']}" if row["resolved_at"] else "open"
        pauses = ", pauses sending" if row["pauses_sending"] and not row["resolved_at"] else ""
        click.echo(f"#{row['id']}  {row['created_at']}  {row['kind']} ({state}{pauses})")
        click.echo(f"    {row['message']}")


@alerts.command("resolve")
@click.argument("alert_id", type=click.IntRange(min=1, max=2**63 - 1))
@pass_runtime
def alerts_resolve(runtime: Runtime, alert_id: int) -> None:
    """Resolve alert ALERT_ID once its cause is dealt with (sending resumes if none is left)."""
    with runtime.sessions.begin() as session:
        try:
            alert = resolve_alert(session, alert_id, utcnow())
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
        left = pausing_alert(session)
    click.echo(f"alert #{alert.id} resolved")
    if left is not None:
        click.echo(f"sending is still paused by alert #{left.id}: {left.message}")
