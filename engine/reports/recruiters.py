"""Recruiters: the leaderboard by friends recruited, and the engagement ladder over time.

A friend is a contact who signed up during a visit that carried the recruiter's link
(``Visit.recruiter_id``), counted once per recruiter, on the UTC day of their first such signup.
Recruiters are named by referral code only, never by email. The ladder counts, at the end of each
day: contacts → recruiters → active recruiters (at least one friend) → leaders (at least
``leader_min_friends`` friends), each cumulative from the first row.

The numbers come from the daily rollups (:class:`~engine.models.RecruiterRollup`: visits and new
friends per recruiter and day; :class:`~engine.models.LadderRollup`: contacts and recruiters
created per day). A range counts the visits made in it and the friends first recruited in it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import LadderRollup, Recruiter, RecruiterRollup
from engine.reports import DateRange
from engine.reports.sql import timeline_days
from engine.reports.tables import Column, Table, iso, ratio

LADDER = ("contacts", "recruiters", "active_recruiters", "leaders")


@dataclass
class RecruiterReport:
    date_range: DateRange
    leader_min_friends: int
    leaderboard: Table
    ladder: Table

    def tables(self) -> list[Table]:
        return [self.leaderboard, self.ladder]

    def as_json(self) -> dict[str, Any]:
        return {
            "range": self.date_range.as_json(),
            "leader_min_friends": self.leader_min_friends,
            "tables": {table.name: table.as_json() for table in self.tables()},
        }


def recruiter_report(
    session: so.Session,
    *,
    leader_min_friends: int,
    date_range: DateRange | None = None,
    limit: int = 50,
) -> RecruiterReport:
    """Build the leaderboard (top ``limit`` by friends recruited in the range) and the ladder.

    Raises ValueError when ``limit`` or ``leader_min_friends`` is below 1.
    """
    if limit < 1 or leader_min_friends < 1:
        raise ValueError("limit and leader_min_friends must be ≥ 1")
    date_range = date_range or DateRange()
    return RecruiterReport(
        date_range,
        leader_min_friends,
        _leaderboard(session, date_range, limit, leader_min_friends),
        _ladder(session, date_range, leader_min_friends),
    )


def _leaderboard(session: so.Session, date_range: DateRange, limit: int, leader_min: int) -> Table:
    totals = (
        sa.select(
            RecruiterRollup.recruiter_id,
            sa.func.sum(RecruiterRollup.friends).label("friends"),
            sa.func.sum(RecruiterRollup.visits).label("visits"),
        )
        .where(*date_range.day_clauses(RecruiterRollup.day))
        .group_by(RecruiterRollup.recruiter_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(
            Recruiter.code,
            Recruiter.active,
            Recruiter.created_at,
            totals.c.friends,
            totals.c.visits,
        )
        .join(totals, totals.c.recruiter_id == Recruiter.id)
        .order_by(totals.c.friends.desc(), totals.c.visits.desc(), Recruiter.code)
        .limit(limit)
    ).all()
    return Table(
        "leaderboard",
        f"Recruiter leaderboard (top {limit} by friends recruited)",
        [
            Column("rank", "Rank", "int"),
            Column("code", "Referral code"),
            Column("friends", "Friends recruited", "int"),
            Column("visits", "Visits brought", "int"),
            Column("friends_per_visit", "Friends / visits", "rate"),
            Column("leader", "Leader", "bool"),
            Column("active", "Active", "bool"),
            Column("since", "Recruiter since (UTC)"),
        ],
        [
            {
                "rank": rank,
                "code": code,
                "friends": int(friend_count),
                "visits": int(visit_count),
                "friends_per_visit": ratio(friend_count, visit_count),
                "leader": friend_count >= leader_min,
                "active": active,
                "since": iso(created_at.date()),
            }
            for rank, (code, active, created_at, friend_count, visit_count) in enumerate(
                rows, start=1
            )
        ],
    )


def _ladder(session: so.Session, date_range: DateRange, leader_min: int) -> Table:
    upto = DateRange(None, date_range.end)
    daily: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(LADDER, 0))
    for day, contacts, recruiters in session.execute(
        sa.select(LadderRollup.day, LadderRollup.contacts, LadderRollup.recruiters).where(
            *upto.day_clauses(LadderRollup.day)
        )
    ):
        daily[day.isoformat()]["contacts"] += contacts
        daily[day.isoformat()]["recruiters"] += recruiters
    # A recruiter becomes active on the day of their first friend, a leader on the day of their
    # leader_min-th: follow each recruiter's running count of friends.
    running: dict[int, int] = {}
    for recruiter_id, day, friends in session.execute(
        sa.select(RecruiterRollup.recruiter_id, RecruiterRollup.day, RecruiterRollup.friends)
        .where(RecruiterRollup.friends != 0, *upto.day_clauses(RecruiterRollup.day))
        .order_by(RecruiterRollup.recruiter_id, RecruiterRollup.day)
    ):
        before = running.get(recruiter_id, 0)
        running[recruiter_id] = after = before + friends
        daily[day.isoformat()]["active_recruiters"] += (after >= 1) - (before >= 1)
        daily[day.isoformat()]["leaders"] += (after >= leader_min) - (before >= leader_min)
    rows: list[dict[str, Any]] = []
    if daily or (date_range.start and date_range.end):
        first = date_range.start or date.fromisoformat(min(daily))
        last = date_range.end or date.fromisoformat(max(daily))
        ordered = sorted(daily.items())
        totals = dict.fromkeys(LADDER, 0)
        position = 0
        for day_shown in timeline_days(first, last):
            while position < len(ordered) and ordered[position][0] <= day_shown.isoformat():
                for rung, count in ordered[position][1].items():
                    totals[rung] += count
                position += 1
            rows.append(
                {
                    "day": day_shown.isoformat(),
                    **totals,
                    "recruiters_per_contact": ratio(totals["recruiters"], totals["contacts"]),
                    "active_per_recruiter": ratio(
                        totals["active_recruiters"], totals["recruiters"]
                    ),
                    "leaders_per_active": ratio(totals["leaders"], totals["active_recruiters"]),
                }
            )
    return Table(
        "ladder",
        "Engagement ladder over time (cumulative)",
        [
            Column("day", "Day (UTC)"),
            Column("contacts", "Contacts", "int"),
            Column("recruiters", "Recruiters", "int"),
            Column("active_recruiters", "Active recruiters (≥ 1 friend)", "int"),
            Column("leaders", f"Leaders (≥ {leader_min} friends)", "int"),
            Column("recruiters_per_contact", "Recruiters / contacts", "rate"),
            Column("active_per_recruiter", "Active / recruiters", "rate"),
            Column("leaders_per_active", "Leaders / active", "rate"),
        ],
        rows,
    )
