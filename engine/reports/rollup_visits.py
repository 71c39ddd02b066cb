"""The landing side of the report rollups: visits, conversions, signups, contacts, recruiters.

Each function adds the increments one event means to a :class:`RollupChanges` (the caller applies
them last, see :mod:`engine.reports.rollups` for the lock order) and follows the definitions of
:mod:`engine.reports.rebuild`. "First" questions (first visit of a send, of a visitor from a
group, first signup of a friend through a recruiter) are answered by an indexed look-up of the
other rows; a concurrent duplicate is prevented by a row lock where one exists (the send, the
contact). Two simultaneous first visits of one browser from one group could both count: the
visitor's cookie makes that all but impossible, and a rebuild corrects it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Contact, Signup, Visit
from engine.reports.rollups import RollupChanges, day_of, hour_of, lock_send


def _exists(session: so.Session, *where: sa.ColumnElement[bool]) -> bool:
    return session.scalar(sa.select(Visit.id).where(*where).limit(1)) is not None


@dataclass(frozen=True)
class VisitFacts:
    """What the rollups need to know about a visit."""

    id: int
    created_at: datetime
    landing_variant_id: int | None
    source_group_id: int | None
    recruiter_id: int | None
    send_id: int | None


def visit_facts(session: so.Session, visit_id: int) -> VisitFacts | None:
    """The facts of visit ``visit_id``, or ``None`` when there is no such visit."""
    row = session.execute(
        sa.select(
            Visit.id,
            Visit.created_at,
            Visit.landing_variant_id,
            Visit.source_group_id,
            Visit.recruiter_id,
            Visit.send_id,
        ).where(Visit.id == visit_id)
    ).first()
    return VisitFacts(*row) if row is not None else None


def record_conversion(
    session: so.Session,
    changes: RollupChanges,
    visit: VisitFacts,
    contact_id: int,
    now: datetime,
) -> None:
    """Count a visit's conversion by ``contact_id`` at ``now``: a signup of its landing variant;
    if a group sent the visitor, a contact generated on the day of the contact's first such
    visit from that group; if a recruiter's link did, a new friend of that recruiter."""
    if visit.landing_variant_id is not None:
        changes.visits[(visit.landing_variant_id, hour_of(visit.created_at))]["signups"] += 1
    if visit.source_group_id is None and visit.recruiter_id is None:
        return
    # Locking the contact serializes two conversions of one person; each then sees the other.
    session.execute(
        sa.select(Contact.id).where(Contact.id == contact_id).with_for_update(key_share=True)
    )
    if visit.source_group_id is not None:
        _count_generated(session, changes, visit, visit.source_group_id, contact_id)
    if visit.recruiter_id is not None and not _exists(
        session,
        Visit.recruiter_id == visit.recruiter_id,
        Visit.contact_id == contact_id,
        Visit.id != visit.id,
    ):
        # Conversions are stored as they happen, so no other one of this friend came earlier.
        changes.recruiters[(visit.recruiter_id, day_of(now))]["friends"] += 1


def _count_generated(
    session: so.Session, changes: RollupChanges, visit: VisitFacts, group_id: int, contact_id: int
) -> None:
    other_first = session.scalar(
        sa.select(sa.func.min(Visit.created_at))
        .select_from(Signup)
        .join(Visit, Visit.id == Signup.visit_id)
        .where(
            Signup.contact_id == contact_id,
            Visit.contact_id == contact_id,
            Visit.source_group_id == group_id,
            Visit.id != visit.id,
        )
    )
    day = day_of(visit.created_at)
    if other_first is None:
        changes.groups[(group_id, day)]["contacts_generated"] += 1
    elif other_first > visit.created_at and day_of(other_first) != day:
        # An older visit converted late: the contact now dates from that visit's day.
        changes.groups[(group_id, day_of(other_first))]["contacts_generated"] -= 1
        changes.groups[(group_id, day)]["contacts_generated"] += 1


def record_signups(
    session: so.Session,
    changes: RollupChanges,
    *,
    visit: VisitFacts | None,
    group_ids: Iterable[int],
    now: datetime,
) -> None:
    """Count signup rows made ``now`` for ``group_ids`` on ``visit`` (if any): contacts
    received, cross-group flow and groups ticked of the visit's landing variant and send."""
    joined = list(group_ids)
    if not joined:
        return
    day = day_of(now)
    for group_id in joined:
        changes.groups[(group_id, day)]["contacts_received"] += 1
    if visit is None:
        return
    if visit.landing_variant_id is not None:
        bucket = (visit.landing_variant_id, hour_of(visit.created_at))
        changes.visits[bucket]["groups_ticked"] += len(joined)
    if visit.source_group_id is not None:
        for group_id in joined:
            changes.flows[(visit.source_group_id, group_id, day)]["signups"] += 1
    if visit.send_id is not None:
        send = lock_send(session, visit.send_id)
        if send is not None:
            changes.sends[send]["groups_ticked"] += len(joined)


def record_new_recruiter(session: so.Session, at: datetime) -> None:
    """Count a recruiter created at ``at`` (a transaction of its own: applies at once)."""
    changes = RollupChanges()
    count_new_people(changes, recruiters=1, at=at)
    changes.apply(session)


def count_new_people(
    changes: RollupChanges, *, contacts: int = 0, recruiters: int = 0, at: datetime
) -> None:
    """Count contacts and recruiters created at ``at`` (the engagement ladder's first rungs)."""
    changes.ladder[(day_of(at),)].update(contacts=contacts, recruiters=recruiters)
