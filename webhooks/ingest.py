"""Ingest one webhook request: store each event once, then apply what the new ones mean.

Everything happens in the caller's transaction, so a request is all-or-nothing: if the database
fails, nothing is kept and the caller answers 5xx for SendGrid to retry. Deduplication is the
unique index on ``events.event_digest`` (time and key; ``INSERT … ON CONFLICT DO NOTHING``, see
:mod:`webhooks.store`), so duplicates inside a batch, across batches, across retries and across
concurrent workers count once, and only the rows this request inserted go on to outcomes,
suppressions and alerts. Everything that needs no database is done by :func:`prepare_batch`,
before the writer's turn; :func:`store_batch` holds the turn only for the statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Alert, QuarantinedEvent
from engine.settings import WebhookSettings
from engine.suppressions import GLOBAL, SuppressionChange, apply_changes, asm_scope
from webhooks import native
from webhooks.apply import apply_outcomes, outcome_column
from webhooks.attribute import attribute, claimed_sends
from webhooks.native import Driver
from webhooks.parse import ParsedEvent, Rejected, parse_elements
from webhooks.store import EventInserts, build_inserts, insert_events

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
    """A parsed body: usable events (deduplicated within the batch, in digest order), rejects,
    and, for the database named by ``native_for``, everything the writer's turn needs that no
    database does: times in the driver's form, the column each event may set, the sends the
    events claim and the INSERT parameters."""

    received: int
    events: list[ParsedEvent]
    rejected: list[Rejected]
    body_bytes: int
    native_for: str | None  # the database the events' times are already encoded for
    claimed: list[int] = field(default_factory=list)
    inserts: EventInserts | None = None


def prepare_batch(body: bytes, dialect_name: str | None = None) -> PreparedBatch:
    """Parse and validate a body without touching the database (so it can run before a writer
    takes its turn); with ``dialect_name``, also prepare the writes for that database.

    Raises :class:`webhooks.parse.BodyError` when the body is not a JSON array."""
    elements = parse_elements(body)
    unique: dict[bytes, ParsedEvent] = {}  # by the stored unique key, as across batches
    rejected: list[Rejected] = []
    for parsed in elements:
        if isinstance(parsed, Rejected):
            rejected.append(parsed)
        else:
            unique.setdefault(parsed.digest, parsed)
    # Inserting in digest order makes concurrent requests wait on each other's rows in one
    # order, and walks the unique index from one leaf to the next (see engine.models.events).
    events = sorted(unique.values(), key=lambda e: e.digest)
    batch = PreparedBatch(len(elements), events, rejected, len(body), None)
    return batch if dialect_name is None else _for_database(batch, dialect_name)


def _for_database(batch: PreparedBatch, dialect_name: str) -> PreparedBatch:
    events = batch.events
    encode = native.encoder(dialect_name)
    encoded: dict[datetime | None, Any] = {}  # a batch's events share seconds
    for event in events:
        at = event.occurred_at
        value = encoded.get(at)
        if value is None:
            value = encoded[at] = encode(at)
        event.occurred_native = value
        event.outcome_column = outcome_column(event)
        event.suppression = _suppression_change(event)
    return replace(
        batch,
        native_for=dialect_name,
        claimed=claimed_sends(events),
        inserts=build_inserts(events, dialect_name),
    )


def store_batch(
    session: so.Session, batch: PreparedBatch, settings: WebhookSettings, now: datetime
) -> BatchResult:
    """Store a prepared batch and apply its new events; returns the batch's counts.

    Raises SQLAlchemy errors when the database fails (the caller rolls back: nothing is kept).
    """
    connection = session.connection()
    dialect = connection.dialect.name
    if batch.native_for != dialect or batch.inserts is None:
        batch = _for_database(batch, dialect)
    assert batch.inserts is not None
    db = Driver(connection)
    if dialect == "postgresql":
        # A batch looks up and updates a few hundred sends by id in tables that sit in memory.
        # With the default cost of a random page (4, for spinning disks) the planner scans the
        # whole sends table instead, which grows with every mailing (60,000 sends: 16 ms by a
        # scan, 6 ms by the primary key). For this transaction only.
        db.rows("SET LOCAL random_page_cost = 1.1")
    received_at = native.encoder(dialect)(now)
    # Sends are locked before events are inserted: every writer takes its locks in one order.
    locked = attribute(session, db, batch.events, batch.claimed)
    new_events = insert_events(db, batch.inserts, received_at)
    apply_outcomes(session, db, new_events, settings, locked)
    suppressions = [e.suppression for e in new_events if e.suppression is not None]
    apply_changes(session, suppressions, now=now)
    _raise_alerts(session, new_events, now)
    _quarantine(session, batch.rejected, now)
    result = BatchResult(
        received=batch.received,
        stored=len(new_events),
        duplicates=batch.received - len(batch.rejected) - len(new_events),
        quarantined=len(batch.rejected),
    )
    db.rows(
        _BATCH_INSERT[dialect],
        (
            result.received,
            result.stored,
            result.duplicates,
            result.quarantined,
            batch.body_bytes,
            received_at,
        ),
    )
    return result


_BATCH_INSERT = {
    dialect: "INSERT INTO webhook_batches"
    " (received, stored, duplicates, quarantined, body_bytes, received_at)"
    f" VALUES ({', '.join([mark] * 6)})"
    for dialect, mark in (("sqlite", "?"), ("postgresql", "%s"))
}


def ingest_body(
    session: so.Session, body: bytes, settings: WebhookSettings, now: datetime
) -> BatchResult:
    """Parse, deduplicate, store and apply one request body; returns the batch's counts.

    Raises :class:`webhooks.parse.BodyError` (nothing stored) when the body is not a JSON array,
    and SQLAlchemy errors when the database fails (the caller rolls back).
    """
    return store_batch(session, prepare_batch(body), settings, now)


def _suppression_change(event: ParsedEvent) -> SuppressionChange | None:
    """What storing ``event`` changes in the suppression list, if anything (decided before the
    writer's turn; applied only if the event is new)."""
    rule = _SUPPRESSING.get(event.event_type)
    if rule is None or event.email is None or event.occurred_at is None:
        return None
    if event.event_type == "bounce" and event.label != "bounce":
        return None  # "blocked" is a temporary refusal, not a dead address
    kind, active = rule
    if kind == "asm":
        if event.asm_group_id is None:
            return None
        scope = asm_scope(event.asm_group_id)
    else:
        scope = kind
    return SuppressionChange(event.email, scope, event.event_type, active, event.occurred_at)


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
