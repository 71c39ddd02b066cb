"""Analysts' reports: experiments, funnel, reciprocity, recruiters, policy areas.

Each report returns :class:`~engine.reports.tables.Table` objects, so the HTML page, the JSON
document and the CSV download show the same numbers. Reports hold aggregates only: recruiters
appear by referral code, never by email address.

Where the numbers come from. The reports read small rollup tables (:mod:`engine.models.rollups`)
instead of scanning sends, visits, signups and contacts; every rollup counter can be recomputed
from the stored rows (:func:`engine.reports.rebuild.rebuild_rollups`, ``resistry reports
rebuild-rollups``), and each write point updates them in the same transaction as the rows
(:mod:`engine.reports.rollups`, :mod:`engine.reports.rollup_visits`). Their meaning:

- Cohorts. Sends are bucketed by the UTC hour they went out, landing visits by the UTC hour of
  the visit. An outcome (delivery, open, click, visit, signup, unsubscribe, spam report) is
  credited to its send's or visit's bucket whenever it arrives, so the rate of any bucket, day
  or range is an honest cohort rate; recent cohorts are still filling in. A date range keeps the
  trials made in it. Cumulative conversion charts add successes up by the day of their trial.
- Epochs. An experiment's report counts the buckets that start at or after its latest restart;
  the hour the restart fell in mixes both epochs and is left out (unless the restart was exactly
  on the hour).
- Sample ratio. Allocation periods start at snapshot instants; an hour bucket belongs to the
  period it lies in, and an hour a boundary cuts in two is left out of the chi-square tests.
- Groups. A visitor counts once per group, on the day of their first visit from it; a contact is
  generated on the day of their first visit from the group that led to a signup; signups
  (contacts received, cross-group flow) count on the day they were made. A range thus shows
  what a group brought for the first time in it.
- Recruiters. A visit through a recruiter's link counts on its day; a friend once per recruiter,
  on the day of their first signup through the link. The ladder adds contacts and recruiters up
  by the day they were created.
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

    def day_clauses(self, column: sa.ColumnElement[date]) -> list[sa.ColumnElement[bool]]:
        """SQL conditions that keep a date ``column`` inside the range (empty when unbounded)."""
        conditions: list[sa.ColumnElement[bool]] = []
        if self.start is not None:
            conditions.append(column >= self.start)
        if self.end is not None:
            conditions.append(column <= self.end)
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
        day = date.fromisoformat(text)
    except ValueError:
        raise ReportInputError(f"{name} must be a date as YYYY-MM-DD, got {text[:40]!r}") from None
    if day.year > 9998:  # the range ends at the midnight after its last day
        raise ReportInputError(f"{name} must be before 9999-01-01, got {text!r}")
    return day
