"""SQL building blocks shared by the reports: UTC days, time buckets, periods between instants."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so


def utc_day(session: so.Session, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[str]:
    """The UTC calendar day of ``column`` as ``YYYY-MM-DD`` text, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        # A timestamptz's date depends on the session time zone; pin it to UTC.
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    # SQLite stores UTC datetimes as naive ISO text (see engine.models.base.UTCDateTime).
    return sa.func.substr(column, 1, 10)


def tune_for_reports(session: so.Session) -> None:
    """Settings for the current transaction that suit one-off scans of many rows (PostgreSQL).

    JIT compilation costs more than it saves on these short scans, and a larger ``work_mem``
    keeps their GROUP BY sorts in memory instead of spilling to disk.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL jit = off"))
        session.execute(sa.text("SET LOCAL work_mem = '64MB'"))


def period_index(
    session: so.Session, column: sa.ColumnElement[datetime], boundaries: Sequence[datetime]
) -> sa.ColumnElement[int]:
    """SQL for the number of ``boundaries`` (sorted) that are ≤ ``column``: 0 … len(boundaries).

    PostgreSQL's ``width_bucket`` does a binary search in C; elsewhere a balanced tree of CASE
    expressions does the same, so each row costs log2(len) comparisons in one scan instead of
    one correlated lookup per row.
    """
    if not boundaries:
        return sa.literal(0, sa.Integer)
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        thresholds = postgresql.array([sa.literal(b, column.type) for b in boundaries])
        return sa.func.width_bucket(column, thresholds, type_=sa.Integer)

    def build(low: int, high: int) -> sa.ColumnElement[int]:
        if low == high:
            return sa.literal(low, sa.Integer)
        middle = (low + high) // 2
        return sa.case(
            (column < boundaries[middle], build(low, middle)), else_=build(middle + 1, high)
        )

    return build(0, len(boundaries))


def day_span(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last`` inclusive (empty when ``last`` < ``first``)."""
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def timeline_days(first: date, last: date, daily_up_to: int = 92) -> list[date]:
    """The days a time series is shown at: every day, or every 7th (and the last) when long."""
    days = day_span(first, last)
    if len(days) > daily_up_to:
        days = days[::7] + ([] if (len(days) - 1) % 7 == 0 else [days[-1]])
    return days
