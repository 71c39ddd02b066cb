"""Recompute every report rollup from the stored rows: the cache can always be rebuilt.

One ``DELETE`` and one ``INSERT … SELECT`` per rollup table, grouped in the database, in the
caller's transaction: readers see either the old counters or the new ones, never a mix. The
definitions here are the reference the write points (:mod:`engine.reports.rollups`,
:mod:`engine.reports.rollup_visits`) follow.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import (
    Contact,
    GroupFlowRollup,
    GroupRollup,
    LadderRollup,
    Recruiter,
    RecruiterRollup,
    Send,
    SendRollup,
    Signup,
    Visit,
    VisitRollup,
)
from engine.models.rollups import NO_VARIANT
from engine.reports.rollups import SEND_OUTCOMES
from engine.reports.sql import day_bucket, hour_bucket, tune_for_reports


def rebuild_rollups(session: so.Session) -> dict[str, int]:
    """Replace every rollup with counts recomputed from sends, visits, signups, contacts and
    recruiters. Returns the rows written per rollup table. Raises SQLAlchemy errors if the
    database fails (the caller rolls back, and the old counters stay).
    """
    session.flush()
    tune_for_reports(session)
    written = {}
    for table, select in (
        (SendRollup.__table__, _send_rows(session)),
        (VisitRollup.__table__, _visit_rows(session)),
        (GroupRollup.__table__, _group_rows(session)),
        (GroupFlowRollup.__table__, _flow_rows(session)),
        (RecruiterRollup.__table__, _recruiter_rows(session)),
        (LadderRollup.__table__, _ladder_rows(session)),
    ):
        session.execute(sa.delete(table))
        columns = [column.key for column in select.selected_columns]
        session.execute(sa.insert(table).from_select(columns, select))
        written[table.name] = session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
    return written


def _send_rows(session: so.Session) -> sa.Select[Any]:
    """Sends with status ``sent`` per bucket; visits and their signup rows reduced per send."""
    per_send = (
        sa.select(Visit.send_id, sa.func.count(Signup.id).label("ticked"))
        .outerjoin(Signup, Signup.visit_id == Visit.id)
        .where(Visit.send_id.is_not(None))
        .group_by(Visit.send_id)
        .subquery()
    )
    keys = {
        "mailing_id": Send.mailing_id,
        "subject_variant_id": sa.func.coalesce(Send.subject_variant_id, NO_VARIANT),
        "body_variant_id": sa.func.coalesce(Send.body_variant_id, NO_VARIANT),
        "share_variant_id": sa.func.coalesce(Send.share_variant_id, NO_VARIANT),
        "sent_hour": hour_bucket(session, Send.sent_at),
    }
    counts = {
        "sent": sa.func.count(),
        **{name: sa.func.count(getattr(Send, column)) for name, column in SEND_OUTCOMES.items()},
        "visited": sa.func.count(per_send.c.send_id),
        "groups_ticked": sa.func.coalesce(sa.func.sum(per_send.c.ticked), 0),
    }
    return (
        sa.select(*(value.label(name) for name, value in {**keys, **counts}.items()))
        .outerjoin(per_send, per_send.c.send_id == Send.id)
        .where(Send.status == "sent", Send.sent_at.is_not(None))
        .group_by(*keys.values())
    )


def _visit_rows(session: so.Session) -> sa.Select[Any]:
    ticked = (
        sa.select(Signup.visit_id, sa.func.count().label("ticked"))
        .where(Signup.visit_id.is_not(None))
        .group_by(Signup.visit_id)
        .subquery()
    )
    hour = hour_bucket(session, Visit.created_at)
    return (
        sa.select(
            Visit.landing_variant_id.label("landing_variant_id"),
            hour.label("visit_hour"),
            sa.func.count().label("visits"),
            sa.func.count(Visit.converted_at).label("signups"),
            sa.func.coalesce(sa.func.sum(ticked.c.ticked), 0).label("groups_ticked"),
        )
        .outerjoin(ticked, ticked.c.visit_id == Visit.id)
        .where(Visit.landing_variant_id.is_not(None))
        .group_by(Visit.landing_variant_id, hour)
    )


def _firsts(owner: Any, person: Any, at: Any, *where: sa.ColumnElement[bool]) -> Any:
    """Per (owner, person): the earliest ``at``; each person counts once per owner."""
    return (
        sa.select(owner.label("owner"), sa.func.min(at).label("first_at"))
        .where(owner.is_not(None), person.is_not(None), *where)
        .group_by(owner, person)
        .subquery()
    )


def _per_day(
    session: so.Session, table: Any, parts: list[tuple[Any, Any, str]], key: str | None
) -> sa.Select[Any]:
    """Counters of ``table`` per (``key``, UTC day): each part (owner column or ``None``, time
    column, counter) counts its rows on their day; the parts are added up."""
    counters = [column.key for column in table.columns if not column.primary_key]

    def part(owner: Any, at: Any, counter: str) -> sa.Select[Any]:
        day = day_bucket(session, at)
        owners = [owner.label(key)] if key else []
        ones = {name: sa.literal_column("1" if name == counter else "0") for name in counters}
        return (
            sa.select(*owners, day.label("day"), *(sa.func.sum(ones[n]).label(n) for n in counters))
            .where(*([owner.is_not(None)] if key else []))
            .group_by(*([owner] if key else []), day)
        )

    union = sa.union_all(*(part(*spec) for spec in parts)).subquery()
    keys = [union.c[key], union.c.day] if key else [union.c.day]
    return sa.select(*keys, *(sa.func.sum(union.c[n]).label(n) for n in counters)).group_by(*keys)


def _group_rows(session: so.Session) -> sa.Select[Any]:
    """Visitors and contacts each counted once per group, on the day of their first visit from
    it (contacts: first visit that led to a signup); signup rows on the day they were made."""
    visitors = _firsts(Visit.source_group_id, Visit.visitor_id, Visit.created_at)
    led_to_signup = sa.exists().where(Signup.visit_id == Visit.id)
    contacts = _firsts(Visit.source_group_id, Visit.contact_id, Visit.created_at, led_to_signup)
    return _per_day(
        session,
        GroupRollup.__table__,
        [
            (visitors.c.owner, visitors.c.first_at, "visitors_sent"),
            (contacts.c.owner, contacts.c.first_at, "contacts_generated"),
            (Signup.group_id, Signup.created_at, "contacts_received"),
        ],
        "group_id",
    )


def _flow_rows(session: so.Session) -> sa.Select[Any]:
    day = day_bucket(session, Signup.created_at)
    return (
        sa.select(
            Visit.source_group_id.label("source_group_id"),
            Signup.group_id.label("joined_group_id"),
            day.label("day"),
            sa.func.count().label("signups"),
        )
        .select_from(Signup)
        .join(Visit, Visit.id == Signup.visit_id)
        .where(Visit.source_group_id.is_not(None))
        .group_by(Visit.source_group_id, Signup.group_id, day)
    )


def _recruiter_rows(session: so.Session) -> sa.Select[Any]:
    """Visits through each recruiter's link on their day; each friend once per recruiter, on the
    day of their first signup through it."""
    friends = _firsts(Visit.recruiter_id, Visit.contact_id, Visit.converted_at)
    return _per_day(
        session,
        RecruiterRollup.__table__,
        [
            (Visit.recruiter_id, Visit.created_at, "visits"),
            (friends.c.owner, friends.c.first_at, "friends"),
        ],
        "recruiter_id",
    )


def _ladder_rows(session: so.Session) -> sa.Select[Any]:
    return _per_day(
        session,
        LadderRollup.__table__,
        [(None, Contact.created_at, "contacts"), (None, Recruiter.created_at, "recruiters")],
        None,
    )
