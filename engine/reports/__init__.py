"""Analysts' reports: experiments, funnel, reciprocity, recruiters, policy areas.

Every number is computed from stored rows by set-based SQL (GROUP BY); Python only reshapes the
aggregated rows and runs the pure statistics. Each report returns
:class:`~engine.reports.tables.Table` objects, so the HTML page, the JSON document and the CSV
download show the same numbers.
Reports hold aggregates only: recruiters appear by referral code, never by email address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa


class ReportInputError(ValueError):
    """A filter given to a report is malformed or impossible; the message says which and why."""


@dataclass(frozen=True)
class DateRange:
    """Whole UTC days from ``start`` to ``end`` inclusive; ``None`` leaves that side open."""

    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        if self.start and self.end and self.start > self.end:
            raise ReportInputError(
                f"start ({self.start.isoformat()}) is after end ({self.end.isoformat()})"
            )

    @property
    def start_at(self) -> datetime | None:
        """The first instant in the range (UTC midnight of ``start``)."""
        return datetime.combine(self.start, time(), UTC) if self.start else None

    @property
    def stop_at(self) -> datetime | None:
        """The first instant after the range (UTC midnight after ``end``)."""
        return datetime.combine(self.end + timedelta(days=1), time(), UTC) if self.end else None

    def clauses(self, column: sa.ColumnElement[datetime]) -> list[sa.ColumnElement[bool]]:
        """SQL conditions that keep ``column`` inside the range (empty when unbounded)."""
        conditions: list[sa.ColumnElement[bool]] = []
        if self.start_at is not None:
            conditions.append(column >= self.start_at)
        if self.stop_at is not None:
            conditions.append(column < self.stop_at)
        return conditions

    def as_json(self) -> dict[str, str | None]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }


def parse_date_range(start: str | None, end: str | None) -> DateRange:
    """Build a :class:`DateRange` from ``YYYY-MM-DD`` strings (empty or ``None`` = open side).

    Raises :class:`ReportInputError` naming the parameter for a malformed date or start > end.
    """
    return DateRange(_parse_day("start", start), _parse_day("end", end))


def _parse_day(name: str, value: str | None) -> date | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ReportInputError(f"{name} must be a date as YYYY-MM-DD, got {text[:40]!r}") from None
