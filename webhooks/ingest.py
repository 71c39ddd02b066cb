"""Ingest one webhook request: store each event once, then apply what the new ones mean.

Everything happens in the caller's transaction, so a request is all-or-nothing: if the database
fails, nothing is kept and the caller answers 5xx for SendGrid to retry. Deduplication is the
unique index on ``events.event_digest`` (``INSERT … ON CONFLICT DO NOTHING RETURNING``), so
duplicates inside a batch, across batches, across retries and across concurrent workers count
once, and only the rows this request inserted go on to outcomes, suppressions and alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Alert, QuarantinedEvent, WebhookBatch
from engine.settings import WebhookSettings
from engine.suppressions import GLOBAL, SuppressionChange, apply_changes, asm_scope
from webhooks import native
from webhooks.apply import apply_outcomes
from webhooks.attribute import attribute
from webhooks.parse import ParsedEvent, Rejected, parse_body, parse_event
from webhooks.store import store_events

# Event type -> (scope, suppress or lift); bounces suppress only when hard (label "bounce").
_SUPPRESSING = {
    "bounce": (GLOBAL, True),
    "spamreport": (GLOBAL, True),
    "unsubscribe": (GLOBAL, True),
    "group_unsubscribe": ("asm", True),
    "group_resubscribe": ("asm", False),
}


@dataclass(frozen=True)
class BatchResult:
    """What became of a request's elements."""

    received: int
    stored: int
    duplicates: int
    quarantined: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class PreparedBatch:
    """A parsed body: usable events (deduplicated within the batch, in key order) and rejects."""

    received: int
    events: list[ParsedEvent]
    rejected: list[Rejected]
    body_bytes: int
    native_for: str | None  # the database the events' times are already encoded for


def prepare_batch(body: bytes, dialect_name: str | None = None) -> PreparedBatch:
    """Parse and validate a body without touching the database (so it can run before a writer
    takes its turn); with ``dialect_name``, times are also put in that database's form.

    Raises :class:`webhooks.parse.BodyError` when the body is not a JSON array."""
    elements = parse_body(body)
    unique: dict[str, ParsedEvent] = {}
    rejected: list[Rejected] = []
    for element in elements:
        parsed = parse_event(element)
        if isinstance(parsed, Rejected):
            rejected.append(parsed)
        else:
            unique.setdefault(parsed.key, parsed)
    # Inserting in digest order makes concurrent requests wait on each other's rows in one order.
    events = sorted(unique.values(), key=lambda e: e.digest)
    if dialect_name is not None:
        _encode_times(events, dialect_name)
    return PreparedBatch(len(elements), events, rejected, len(body), dialect_name)


def _encode_times(events: Sequence[ParsedEvent], dialect_name: str) -> None:
    encode = native.encoder(dialect_name)
    for event in events:
        event.occurred_native = encode(event.occurred_at)


def store_batch(
    session: so.Session, batch: PreparedBatch, settings: WebhookSettings, now: datetime
) -> BatchResult:
    """Store a prepared batch and apply its new events; returns the batch's counts.

    Raises SQLAlchemy errors when the database fails (the caller rolls back: nothing is kept).
    """
    events = batch.events
    connection = session.connection()
    if batch.native_for != connection.dialect.name:
        _encode_times(events, connection.dialect.name)
    if connection.dialect.name == "postgresql":
        # A batch looks up and updates a few hundred sends by id in tables that sit in memory.
        # With the default cost of a random page (4, for spinning disks) the planner scans the
        # whole sends table instead, which grows with every mailing (60,000 sends: 16 ms by a
        # scan, 6 ms by the primary key). For this transaction only.
        connection.exec_driver_sql("SET LOCAL random_page_cost = 1.1")
    # Sends are locked before events are inserted: every writer takes its locks in one order.
    locked = attribute(session, events)
    new_events = store_events(session, events, now)
    apply_outcomes(session, new_events, settings, locked)
    apply_changes(session, _suppression_changes(new_events), now=now)
    _raise_alerts(session, new_events, now)
    _quarantine(session, batch.rejected, now)
    result = BatchResult(
        received=batch.received,
        stored=len(new_events),
        duplicates=batch.received - len(batch.rejected) - len(new_events),
        quarantined=len(batch.rejected),
    )
    session.connection().execute(
        sa.insert(WebhookBatch.__table__).values(
            received=result.received,
            stored=result.stored,
            duplicates=result.duplicates,
            quarantined=result.quarantined,
            body_bytes=batch.body_bytes,
            received_at=now,
        )
    )
    return result


def ingest_body(
    session: so.Session, body: bytes, settings: WebhookSettings, now: datetime
) -> BatchResult:
    """Parse, deduplicate, store and apply one request body; returns the batch's counts.

    Raises :class:`webhooks.parse.BodyError` (nothing stored) when the body is not a JSON array,
    and SQLAlchemy errors when the database fails (the caller rolls back).
    """
    return store_batch(session, prepare_batch(body), settings, now)


def _suppression_changes(events: Sequence[ParsedEvent]) -> list[SuppressionChange]:
    changes = []
    for event in events:
        rule = _SUPPRESSING.get(event.event_type)
        if rule is None or event.email is None or event.occurred_at is None:
            continue
        if event.event_type == "bounce" and event.label != "bounce":
            continue  # "blocked" is a temporary refusal, not a dead address
        kind, active = rule
        if kind == "asm":
            if event.asm_group_id is None:
                continue
            scope = asm_scope(event.asm_group_id)
        else:
            scope = kind
        changes.append(
            SuppressionChange(event.email, scope, event.event_type, active, event.occurred_at)
        )
    return changes


def _raise_alerts(session: so.Session, events: Sequence[ParsedEvent], now: datetime) -> None:
    raised = False
    for event in events:
        if event.event_type != "account_status_change":
            continue
        status = event.status_type or "unknown"
        # A reactivation is news, not a reason to stop; every other change pauses sending.
        pauses = status != "reactivate"
        session.add(
            Alert(
                kind="account_status_change",
                message=f"SendGrid account status changed: {status}"
                + ("; sending is paused until staff resolve this alert" if pauses else ""),
                details={
                    "type": status,
                    "event_key": event.key,
                    "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
                },
                pauses_sending=pauses,
                created_at=now,
            )
        )
        raised = True
    if raised:
        session.flush()


def _quarantine(session: so.Session, rejected: Sequence[Rejected], now: datetime) -> None:
    if rejected:
        session.execute(
            sa.insert(QuarantinedEvent),
            [{"reason": r.reason, "raw": r.raw, "received_at": now} for r in rejected],
        )
