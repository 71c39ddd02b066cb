"""What comes back: raw webhook events (deduplicated), quarantined ones, and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models.base import Base, utcnow


class Event(Base):
    """A SendGrid event, stored losslessly, unique on ``event_key``.

    ``event_key`` is ``sg_event_id`` when present, else a hash of the canonical event.
    ``send_id`` is NULL for unattributed events, which never count in a variant.
    """

    __tablename__ = "events"
    # One index serves both attribution lookups (a send's events) and click reclassification
    # (a send's clicks); every extra index on this, the busiest insert path, costs throughput.
    __table_args__ = (sa.Index("ix_events_send_id_event_type", "send_id", "event_type"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    event_key: so.Mapped[str] = so.mapped_column(sa.String(128), unique=True)
    event_type: so.Mapped[str] = so.mapped_column(sa.String(40))
    sg_message_id: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    send_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("sends.id"))
    occurred_at: so.Mapped[datetime | None]
    # Derived labels used by counts: "bounce"/"blocked", "human"/"machine", "human"/"scanner".
    label: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    payload: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    received_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


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
