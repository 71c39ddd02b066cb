"""SQL building blocks shared by the reports: UTC days and hours, timelines."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so


def tune_for_reports(session: so.Session) -> None:
    """Settings for the current transaction that suit one-off scans of many rows (PostgreSQL).

    JIT compilation costs more than it saves on these short scans, and a larger ``work_mem``
    keeps their GROUP BY sorts in memory instead of spilling to disk.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL jit = off"))
        session.execute(sa.text("SET LOCAL work_mem = '64MB'"))


def day_span(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last`` inclusive (empty when ``last`` < ``first``)."""
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def timeline_days(first: date, last: date, daily_up_to: int = 92) -> list[date]:
    """The days a time series is shown at: every day, or every 7th (and the last) when long."""
    days = day_span(first, last)
    if len(days) > daily_up_to:
        days = days[::7] + ([] if (len(days) - 1) % 7 == 0 else [days[-1]])
    return days


def hour_bucket(session: so.Session, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[Any]:
    """SQL for the UTC hour holding ``column``, stored as the rollups store it (see
    :func:`engine.reports.rollups.hour_of`)."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.timezone("UTC", sa.func.date_trunc("hour", sa.func.timezone("UTC", column)))
    # SQLite's UTC datetimes are "YYYY-MM-DD HH:MM:SS.ffffff" text: keep the hour, zero the rest.
    return sa.func.substr(column, 1, 13).concat(":00:00.000000")


def day_bucket(session: so.Session, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[Any]:
    """SQL for the UTC day of ``column`` as a date (SQLite: ``YYYY-MM-DD`` text, as dates are)."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)
    return sa.func.substr(column, 1, 10)
