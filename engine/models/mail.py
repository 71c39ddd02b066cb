"""What goes out: mailings, one send per recipient per mailing, and suppressed addresses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models.base import Base, Timestamped

MAILING_STATUSES = ("planned", "sending", "sent", "failed")
SEND_STATUSES = ("planned", "sending", "sent", "failed")


class Mailing(Timestamped, Base):
    __tablename__ = "mailings"
    __table_args__ = (sa.CheckConstraint(f"status IN {MAILING_STATUSES}", name="status"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    # Natural key, e.g. "recruiters-2026-11-24": re-running the same mailing reuses its row.
    key: so.Mapped[str] = so.mapped_column(sa.String(100), unique=True)
    asm_group_id: so.Mapped[int]
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="planned")
    scheduled_for: so.Mapped[datetime]
    finished_at: so.Mapped[datetime | None]
    # The plan: recipients per variant combination, stored for the record.
    plan: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)

    sends: so.Mapped[list[Send]] = so.relationship(back_populates="mailing")


class Send(Timestamped, Base):
    """One email to one recruiter in one mailing: the unit of a trial for its three variants.

    Outcome columns are derived from webhook events by timestamp, not by arrival order.

    Every index costs every planned send (a mailing inserts one row per recruiter, then moves
    each twice). Sends by mailing are found through the unique key, which starts with
    ``mailing_id``; ``x_message_id`` and ``sent_at`` are indexed only once set (every query on
    them compares them with a value), so planning a send touches neither index.
    """

    __tablename__ = "sends"
    __table_args__ = (
        sa.UniqueConstraint("mailing_id", "recruiter_id"),
        sa.CheckConstraint(f"status IN {SEND_STATUSES}", name="status"),
        sa.Index(
            "ix_sends_x_message_id",
            "x_message_id",
            sqlite_where=sa.text("x_message_id IS NOT NULL"),
            postgresql_where=sa.text("x_message_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_sends_sent_at",
            "sent_at",
            sqlite_where=sa.text("sent_at IS NOT NULL"),
            postgresql_where=sa.text("sent_at IS NOT NULL"),
        ),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    mailing_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("mailings.id"))
    recruiter_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("recruiters.id"), index=True)
    subject_variant_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("variants.id"), index=True
    )
    body_variant_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("variants.id"), index=True
    )
    share_variant_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("variants.id"), index=True
    )
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="planned")
    error: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    # SendGrid's X-Message-Id of the request that carried this send (prefix of sg_message_id).
    x_message_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    sent_at: so.Mapped[datetime | None]

    delivered_at: so.Mapped[datetime | None]
    bounced_at: so.Mapped[datetime | None]
    bounce_type: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    dropped_at: so.Mapped[datetime | None]
    deferred_at: so.Mapped[datetime | None]
    first_open_at: so.Mapped[datetime | None]  # first human open
    machine_open_at: so.Mapped[datetime | None]  # first Apple MPP (sg_machine_open) open
    first_click_at: so.Mapped[datetime | None]  # first human click
    scanner_click_at: so.Mapped[datetime | None]  # first suspected scanner click
    spam_report_at: so.Mapped[datetime | None]
    unsubscribed_at: so.Mapped[datetime | None]
    converted_at: so.Mapped[datetime | None]  # first signup attributed to this send

    mailing: so.Mapped[Mailing] = so.relationship(back_populates="sends")


class Suppression(Base):
    """An address that must not be emailed: globally (scope 'global') or for one ASM group.

    ``active`` with ``event_at`` implements "the later timestamp wins" between an ASM group
    unsubscribe and resubscribe.
    """

    __tablename__ = "suppressions"
    __table_args__ = (sa.UniqueConstraint("email", "scope"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    email: so.Mapped[str] = so.mapped_column(sa.String(320))
    scope: so.Mapped[str] = so.mapped_column(sa.String(32))  # "global" or "asm:<group id>"
    reason: so.Mapped[str] = so.mapped_column(sa.String(32))
    active: so.Mapped[bool] = so.mapped_column(default=True)
    event_at: so.Mapped[datetime]
    created_at: so.Mapped[datetime]
