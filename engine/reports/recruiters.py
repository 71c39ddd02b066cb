"""Recruiters: the leaderboard by friends recruited, and the engagement ladder over time.

A friend is a contact who signed up during a visit that carried the recruiter's link
(``Visit.recruiter_id``). Recruiters are named by referral code only, never by email. The ladder
counts, at the end of each day: contacts → recruiters → active recruiters (at least one friend)
→ leaders (at least ``leader_min_friends`` friends), each cumulative from the first row.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Contact, Recruiter, Visit
from engine.reports import DateRange
from engine.reports.sql import timeline_days, tune_for_reports, utc_day
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
    tune_for_reports(session)
    return RecruiterReport(
        date_range,
        leader_min_friends,
        _leaderboard(session, date_range, limit, leader_min_friends),
        _ladder(session, date_range, leader_min_friends),
    )


def _leaderboard(session: so.Session, date_range: DateRange, limit: int, leader_min: int) -> Table:
    friends = sa.func.count(sa.distinct(Visit.contact_id)).label("friends")
    visits = sa.func.count(Visit.id).label("visits")
    rows = session.execute(
        sa.select(Recruiter.code, Recruiter.active, Recruiter.created_at, friends, visits)
        .join(Visit, Visit.recruiter_id == Recruiter.id)
        .where(*date_range.clauses(Visit.created_at))
        .group_by(Recruiter.id, Recruiter.code, Recruiter.active, Recruiter.created_at)
        .order_by(friends.desc(), visits.desc(), Recruiter.code)
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
                "friends": friend_count,
                "visits": visit_count,
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
    stop = date_range.stop_at
    daily: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(LADDER, 0))
    for model, rung in ((Contact, "contacts"), (Recruiter, "recruiters")):
        day = utc_day(session, model.created_at)
        statement = sa.select(day, sa.func.count()).group_by(day)
        if stop is not None:
            statement = statement.where(model.created_at < stop)
        for on_day, count in session.execute(statement):
            daily[on_day][rung] += count
    # Each friend once per recruiter, at their first signup; the 1st and Nth mark the rungs.
    friends = (
        sa.select(Visit.recruiter_id, sa.func.min(Visit.converted_at).label("at"))
        .where(Visit.recruiter_id.is_not(None), Visit.contact_id.is_not(None))
        .group_by(Visit.recruiter_id, Visit.contact_id)
    )
    if stop is not None:
        friends = friends.where(Visit.converted_at < stop)
    friends_subquery = friends.subquery()
    ranked = sa.select(
        friends_subquery.c.at,
        sa.func.row_number()
        .over(partition_by=friends_subquery.c.recruiter_id, order_by=friends_subquery.c.at)
        .label("n"),
    ).subquery()
    day = utc_day(session, ranked.c.at)
    for on_day, active, leaders in session.execute(
        sa.select(
            day,
            sa.func.count().filter(ranked.c.n == 1),
            sa.func.count().filter(ranked.c.n == leader_min),
        )
        .where(ranked.c.n.in_({1, leader_min}))
        .group_by(day)
    ):
        daily[on_day]["active_recruiters"] += active
        daily[on_day]["leaders"] += leaders
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
