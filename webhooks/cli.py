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
from webhooks.report import event_stats

T = TypeVar("T")


def _read(runtime: Runtime, query: Callable[[so.Session], T]) -> T:
    try:
        with runtime.sessions() as session:
            return query(session)
    except sa.exc.SQLAlchemyError as exc:
        raise click.ClickException(
            f"cannot read the database ({exc.__class__.__name__}); is it migrated?"
            " Run `resistry db upgrade`."
        ) from None


@click.group()
def events() -> None:
    """SendGrid Event Webhook: what came back."""


@events.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_runtime
def events_stats(runtime: Runtime, as_json: bool) -> None:
    """Received, unique, duplicate and quarantined events; counts by type and label."""
    stats = _read(runtime, event_stats)
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
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value:>10,}")


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
        for s in _read(runtime, lambda session: active_suppressions(session, include_lifted))
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
