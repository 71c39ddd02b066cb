"""What comes back: raw webhook events (deduplicated), quarantined ones, and alerts."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models.base import Base, utcnow


class Event(Base):
    """A SendGrid event, stored losslessly, unique on ``event_digest``.

    ``event_key`` is ``sg_event_id`` when present, else a hash of the canonical event;
    ``event_digest``, the unique key, is the second the event occurred followed by a digest of
    its key (see :func:`event_digest`). ``send_id`` is NULL for unattributed events, which never
    count in a variant.

    Every index here costs every webhook insert, so there are only two. Deduplication needs a
    unique key. SendGrid's ids are random: keyed by them alone, each insert of a batch landed on
    a random leaf page of the whole index (most of a batch's pages written at commit, and more
    with every event stored). SendGrid posts events soon after they occur, so keyed by time
    first, a batch's inserts land on a few neighbouring pages at the index's end; a retried or
    duplicated event is the same event, with the same time, so it still meets its copy. Click
    reclassification, the only query that looks events up by send, reads clicks: a partial
    index on clicks (a few percent of all events) serves it. ``send_id`` has no foreign key:
    attribution sets it only to a send it has read (and, on PostgreSQL, locked) in the same
    transaction, sends are never deleted, and the check cost about 30 % of PostgreSQL's insert
    time.
    """

    __tablename__ = "events"
    __table_args__ = (
        sa.Index(
            "ix_events_click_send_id",
            "send_id",
            sqlite_where=sa.text("event_type = 'click'"),
            postgresql_where=sa.text("event_type = 'click'"),
        ),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    event_digest: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary(16), unique=True)
    event_key: so.Mapped[str] = so.mapped_column(sa.String(128))
    event_type: so.Mapped[str] = so.mapped_column(sa.String(40))
    sg_message_id: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    send_id: so.Mapped[int | None]
    occurred_at: so.Mapped[datetime | None]
    # Derived labels used by counts: "bounce"/"blocked", "human"/"machine", "human"/"scanner".
    label: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    payload: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    received_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


def event_digest(event_key: str, occurred_at: datetime | None = None) -> bytes:
    """The unique key of an event (16 bytes): the UTC second it occurred (4 bytes big-endian,
    zero when it has no time), then the 12-byte BLAKE2b digest of its ``event_key``. Keys
    collide only within one second, where that needs about 2**48 events."""
    prefix = _SECONDS.get(occurred_at)
    if prefix is None:
        # A webhook batch's events share a few hundred seconds: computed once each.
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        second = 0 if occurred_at is None else min(max(int(occurred_at.timestamp()), 0), _LAST)
        prefix = _SECONDS[occurred_at] = second.to_bytes(4, "big")
    return prefix + hashlib.blake2b(event_key.encode("utf-8"), digest_size=12).digest()


_LAST = 2**32 - 1
_SECONDS: dict[datetime | None, bytes] = {}
_SECONDS_KEPT = 65_536


class QuarantinedEvent(Base):
    """An element of a valid batch that could not be used, kept with the reason."""

    __tablename__ = "quarantined_events"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    reason: so.Mapped[str] = so.mapped_column(sa.Text)
    raw: so.Mapped[str] = so.mapped_column(sa.Text)
    received_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class WebhookBatch(Base):
    """One accepted webhook request and what became of its elements (received vs duplicates)."""

    __tablename__ = "webhook_batches"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    received: so.Mapped[int]
    stored: so.Mapped[int]
    duplicates: so.Mapped[int]
    quarantined: so.Mapped[int]
    body_bytes: so.Mapped[int]
    received_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class InboxBatch(Base):
    """A verified webhook request body, kept exactly as received until it is applied.

    The endpoint stores the body and answers; an applier (``resistry events apply``) turns it
    into events and outcomes and deletes it in one transaction (see :mod:`webhooks.inbox`). A
    body whose application failed for a reason other than the database keeps its row, with
    ``failure`` saying why, until staff retry it.
    """

    __tablename__ = "webhook_inbox"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    body: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    elements: so.Mapped[int]
    received_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    failed_at: so.Mapped[datetime | None]
    failure: so.Mapped[str | None] = so.mapped_column(sa.Text)


class Alert(Base):
    """Something staff must look at; an open ``sending_paused`` alert stops all mailings."""

    __tablename__ = "alerts"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    kind: so.Mapped[str] = so.mapped_column(sa.String(40))
    message: so.Mapped[str] = so.mapped_column(sa.Text)
    details: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    pauses_sending: so.Mapped[bool] = so.mapped_column(default=False)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    resolved_at: so.Mapped[datetime | None]
