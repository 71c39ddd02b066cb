"""Ingest one webhook request: store each event once, then apply what the new ones mean.

Everything happens in the caller's transaction, so a request is all-or-nothing: if the database
fails, nothing is kept and the caller answers 5xx for SendGrid to retry. Deduplication is the
unique index on ``events.event_key`` (``INSERT … ON CONFLICT DO NOTHING RETURNING``), so
duplicates inside a batch, across batches, across retries and across concurrent workers count
once, and only the rows this request inserted go on to outcomes, suppressions and alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql, sqlite

from engine.models import Alert, Event, QuarantinedEvent, WebhookBatch
from engine.settings import WebhookSettings
from engine.suppressions import GLOBAL, SuppressionChange, apply_changes, asm_scope, chunked
from webhooks import native
from webhooks.apply import apply_outcomes
from webhooks.attribute import attribute
from webhooks.parse import ParsedEvent, Rejected, parse_body, parse_event

# Events per INSERT: 8 parameters each stays under SQLite's 32,766 bound-parameter limit.
_INSERT_CHUNK = 2000
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


def ingest_body(
    session: so.Session, body: bytes, settings: WebhookSettings, now: datetime
) -> BatchResult:
    """Parse, deduplicate, store and apply one request body; returns the batch's counts.

    Raises :class:`webhooks.parse.BodyError` (nothing stored) when the body is not a JSON array,
    and SQLAlchemy errors when the database fails (the caller rolls back).
    """
    elements = parse_body(body)
    unique: dict[str, ParsedEvent] = {}
    rejected: list[Rejected] = []
    for element in elements:
        parsed = parse_event(element)
        if isinstance(parsed, Rejected):
            rejected.append(parsed)
        else:
            unique.setdefault(parsed.key, parsed)
    # Inserting in key order makes concurrent requests wait on each other's rows in one order.
    events = sorted(unique.values(), key=lambda e: e.key)
    attribute(session, events)
    new_events = store_events(session, events, now)
    apply_outcomes(session, new_events, settings)
    apply_changes(session, _suppression_changes(new_events), now=now)
    _raise_alerts(session, new_events, now)
    _quarantine(session, rejected, now)
    result = BatchResult(
        received=len(elements),
        stored=len(new_events),
        duplicates=len(elements) - len(rejected) - len(new_events),
        quarantined=len(rejected),
    )
    session.execute(
        sa.insert(WebhookBatch).values(
            received=result.received,
            stored=result.stored,
            duplicates=result.duplicates,
            quarantined=result.quarantined,
            body_bytes=len(body),
            received_at=now,
        )
    )
    return result


def store_events(
    session: so.Session, events: Sequence[ParsedEvent], now: datetime
) -> list[ParsedEvent]:
    """Insert ``events``, skipping keys already stored; returns the ones this call inserted."""
    if not events:
        return []
    dialect = session.get_bind().dialect.name
    statement = _insert_statement(dialect)
    encode = native.encoder(dialect)
    received_at = encode(now)
    inserted: set[str] = set()
    for chunk in chunked(events, _INSERT_CHUNK):
        rows = [
            {
                "event_key": e.key,
                "event_type": e.event_type,
                "sg_message_id": e.sg_message_id,
                "send_id": e.send_id,
                "occurred_raw": encode(e.occurred_at),
                "label": e.label,
                "payload_text": e.payload_json,
                "received_raw": received_at,
            }
            for e in chunk
        ]
        inserted.update(session.execute(statement, rows).scalars())
    return [e for e in events if e.key in inserted]


def _insert_statement(dialect: str) -> Any:
    # The payload is bound as JSON text serialized once by the parser (orjson), and times in
    # the driver's form, instead of converting each value again through the column types.
    payload: Any = sa.bindparam("payload_text", type_=sa.Text())
    if dialect == "postgresql":
        insert: Any = postgresql.insert
        payload = sa.cast(payload, postgresql.JSONB())
    else:
        insert = sqlite.insert
    return (
        insert(Event.__table__)
        .values(
            payload=payload,
            occurred_at=sa.type_coerce(sa.bindparam("occurred_raw"), native.RAW),
            received_at=sa.type_coerce(sa.bindparam("received_raw"), native.RAW),
        )
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(Event.__table__.c.event_key)
    )


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
        changes.append(SuppressionChange(event.email, scope, event.event_type, active, event.occurred_at))
    return changes


def _raise_alerts(session: so.Session, events: Sequence[ParsedEvent], now: datetime) -> None:
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
    session.flush()


def _quarantine(session: so.Session, rejected: Sequence[Rejected], now: datetime) -> None:
    if rejected:
        session.execute(
            sa.insert(QuarantinedEvent),
            [{"reason": r.reason, "raw": r.raw, "received_at": now} for r in rejected],
        )
