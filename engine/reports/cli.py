"""``resistry reports rebuild-rollups``: recompute the report rollups from the stored rows."""

from __future__ import annotations

import time

import click
import sqlalchemy as sa

from engine.runtime import Runtime, pass_runtime


@click.group()
def reports() -> None:
    """Analyst reports."""


@reports.command("rebuild-rollups")
@pass_runtime
def rebuild_command(runtime: Runtime) -> None:
    """Recompute every report rollup from sends, visits and signups, in one transaction.

    Safe at any time: readers see the old counters until the new ones are committed. Run it once
    after upgrading a database that already holds sends or visits.
    """
    from engine.reports.rebuild import rebuild_rollups

    started = time.perf_counter()
    try:
        with runtime.sessions.begin() as session:
            written = rebuild_rollups(session)
    except sa.exc.DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise click.ClickException(
            f"cannot rebuild the rollups: {detail} (nothing changed; is the schema at head? "
            "`resistry db upgrade`)"
        ) from None
    took = time.perf_counter() - started
    rows = ", ".join(f"{table} {count}" for table, count in written.items())
    click.echo(f"rollups rebuilt in {took:.1f} s: {rows}")
