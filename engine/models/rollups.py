"""Report rollups: counters per time bucket that the analyst reports read instead of raw rows.

They are a cache. Every counter can be recomputed from stored rows (``resistry reports
rebuild-rollups``), and each write point updates them in the same transaction as the rows.
An outcome is credited to the bucket of its send or visit (its cohort), never to the bucket of
the moment it happened. No foreign keys: the tables hold derived numbers only, and the checks
would cost the hottest write paths (every landing view, every webhook batch).
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models.base import Base

# A send without a variant of that kind is stored as variant 0 (keys cannot be NULL).
NO_VARIANT = 0


class SendRollup(Base):
    """Sends with status ``sent`` per mailing, variant combination and UTC hour of sending.

    ``sent`` counts the sends; each other counter counts the sends that reached that outcome
    (``visited``: at least one landing visit; ``signups``: converted), except ``groups_ticked``,
    which counts the signup rows of the sends' visits.
    """

    __tablename__ = "send_rollups"

    mailing_id: so.Mapped[int] = so.mapped_column(primary_key=True)
    subject_variant_id: so.Mapped[int] = so.mapped_column(primary_key=True)
    body_variant_id: so.Mapped[int] = so.mapped_column(primary_key=True)
    share_variant_id: so.Mapped[int] = so.mapped_column(primary_key=True)
    sent_hour: so.Mapped[datetime] = so.mapped_column(primary_key=True)
    sent: so.Mapped[int] = so.mapped_column(default=0)
    delivered: so.Mapped[int] = so.mapped_column(default=0)
    bounced: so.Mapped[int] = so.mapped_column(default=0)
    human_opens: so.Mapped[int] = so.mapped_column(default=0)
    machine_opens: so.Mapped[int] = so.mapped_column(default=0)
    human_clicks: so.Mapped[int] = so.mapped_column(default=0)
    scanner_clicks: so.Mapped[int] = so.mapped_column(default=0)
    visited: so.Mapped[int] = so.mapped_column(default=0)
    signups: so.Mapped[int] = so.mapped_column(default=0)
    groups_ticked: so.Mapped[int] = so.mapped_column(default=0)
    unsubscribes: so.Mapped[int] = so.mapped_column(default=0)
    spam_reports: so.Mapped[int] = so.mapped_column(default=0)


class VisitRollup(Base):
    """Landing visits per landing variant and UTC hour of the visit: visits, converted visits
    (``signups``) and the signup rows made on them (``groups_ticked``)."""

    __tablename__ = "visit_rollups"

    landing_variant_id: so.Mapped[int] = so.mapped_column(primary_key=True)
    visit_hour: so.Mapped[datetime] = so.mapped_column(primary_key=True)
    visits: so.Mapped[int] = so.mapped_column(default=0)
    signups: so.Mapped[int] = so.mapped_column(default=0)
    groups_ticked: so.Mapped[int] = so.mapped_column(default=0)


class GroupRollup(Base):
    """The reciprocity ledger per group and UTC day.

    ``visitors_sent``: visitors whose first visit from the group was that day;
    ``contacts_generated``: contacts whose first visit from the group that led to a signup was
    that day; ``contacts_received``: signup rows for the group made that day.
    """

    __tablename__ = "group_rollups"

    group_id: so.Mapped[int] = so.mapped_column(primary_key=True)
    day: so.Mapped[date] = so.mapped_column(primary_key=True)
    visitors_sent: so.Mapped[int] = so.mapped_column(default=0)
    contacts_generated: so.Mapped[int] = so.mapped_column(default=0)
    contacts_received: so.Mapped[int] = so.mapped_column(default=0)


class GroupFlowRollup(Base):
    """Signup rows per group that sent the visitor, group joined and UTC day of the signup."""

    __tablename__ = "group_flow_rollups"

    source_group_id: so.Mapped[int] = so.mapped_column(primary_key=True)
    joined_group_id: so.Mapped[int] = so.mapped_column(primary_key=True)
    day: so.Mapped[date] = so.mapped_column(primary_key=True)
    signups: so.Mapped[int] = so.mapped_column(default=0)


class RecruiterRollup(Base):
    """What each recruiter's link brought per UTC day: ``visits`` made that day, and ``friends``:
    contacts whose first signup through the link was that day (each friend once per recruiter)."""

    __tablename__ = "recruiter_rollups"

    recruiter_id: so.Mapped[int] = so.mapped_column(primary_key=True)
    day: so.Mapped[date] = so.mapped_column(primary_key=True)
    visits: so.Mapped[int] = so.mapped_column(default=0)
    friends: so.Mapped[int] = so.mapped_column(default=0)


class LadderRollup(Base):
    """The base of the engagement ladder per UTC day: contacts and recruiters created that day."""

    __tablename__ = "ladder_rollups"

    day: so.Mapped[date] = so.mapped_column(primary_key=True)
    contacts: so.Mapped[int] = so.mapped_column(default=0)
    recruiters: so.Mapped[int] = so.mapped_column(default=0)


ROLLUP_TABLES: tuple[sa.Table, ...] = (
    SendRollup.__table__,  # type: ignore[assignment]
    VisitRollup.__table__,  # type: ignore[assignment]
    GroupRollup.__table__,  # type: ignore[assignment]
    GroupFlowRollup.__table__,  # type: ignore[assignment]
    RecruiterRollup.__table__,  # type: ignore[assignment]
    LadderRollup.__table__,  # type: ignore[assignment]
)
