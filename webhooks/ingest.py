"""Ingest one webhook request: store each event once, then apply what the new ones mean.

Everything happens in the caller's transaction, so a request is all-or-nothing: if the database
fails, nothing is kept and the caller answers 5xx for SendGrid to retry. Deduplication is the
unique index on ``events.event_key`` (``INSERT … ON CONFLICT DO NOTHING RETURNING``), so
duplicates inside a batch, across batches, across retries and across concurrent workers count
once, and only the rows this request inserted go on to outcomes, suppressions and alerts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB

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


@dataclass(frozen=True)
class PreparedBatch:
    """A parsed body: usable events (deduplicated within the batch, in key order) and rejects."""

    received: int
    events: list[ParsedEvent]
    rejected: list[Rejected]
    body_bytes: int


def prepare_batch(body: bytes) -> PreparedBatch:
    """Parse and validate a body without touching the database (so it can run before a writer
    takes its turn). Raises :class:`webhooks.parse.BodyError` when it is not a JSON array."""
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
    return PreparedBatch(len(elements), events, rejected, len(body))


def store_batch(
    session: so.Session, batch: PreparedBatch, settings: WebhookSettings, now: datetime
) -> BatchResult:
    """Store a prepared batch and apply its new events; returns the batch's counts.

    Raises SQLAlchemy errors when the database fails (the caller rolls back: nothing is kept).
    """
    events = batch.events
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
    session.execute(
        sa.insert(WebhookBatch).values(
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


def store_events(
    session: so.Session, events: Sequence[ParsedEvent], now: datetime
) -> list[ParsedEvent]:
    """Insert ``events``, skipping keys already stored; returns the ones this call inserted."""
    if not events:
        return []
    dialect = session.get_bind().dialect.name
    encode = native.encoder(dialect)
    received_at = encode(now)
    inserted: set[str] = set()
    for chunk in chunked(events, _INSERT_CHUNK):
        if dialect == "postgresql":
            parameters: Any = {"rows": _rows_json(chunk), "received_at": received_at}
            statement = _postgres_insert()
        else:
            parameters = [
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
            statement = _sqlite_insert()
        inserted.update(session.execute(statement, parameters).scalars())
    return [e for e in events if e.key in inserted]


@functools.cache
def _sqlite_insert() -> Any:
    # Many-row INSERT (SQLAlchemy's insertmanyvalues); the payload is bound as the JSON text the
    # parser made once (orjson), and times in the driver's form, skipping per-value conversion.
    table = Event.__table__
    return (
        sqlite.insert(table)
        .values(
            payload=sa.bindparam("payload_text", type_=sa.Text()),
            occurred_at=sa.type_coerce(sa.bindparam("occurred_raw"), native.RAW),
            received_at=sa.type_coerce(sa.bindparam("received_raw"), native.RAW),
        )
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(table.c.event_key)
    )


@functools.cache
def _postgres_insert() -> Any:
    # One parameter for the whole chunk: a JSON array of rows that jsonb_to_recordset() turns
    # into a table. A VALUES list would need eight parameters per event, and text arrays cost
    # the driver an escape pass over every payload.
    table = Event.__table__
    rows = (
        sa.func.jsonb_to_recordset(sa.cast(sa.bindparam("rows", type_=native.RAW), JSONB()))
        .table_valued(
            sa.column("event_key", sa.Text()),
            sa.column("event_type", sa.Text()),
            sa.column("sg_message_id", sa.Text()),
            sa.column("send_id", sa.Integer()),
            sa.column("occurred_at", postgresql.TIMESTAMP(timezone=True)),
            sa.column("label", sa.Text()),
            sa.column("payload", JSONB()),
        )
        .render_derived(with_types=True)
    )
    columns = ["event_key", "event_type", "sg_message_id", "send_id", "occurred_at", "label"]
    select = sa.select(
        *(rows.c[name] for name in columns),
        rows.c.payload,
        sa.type_coerce(sa.bindparam("received_at"), native.RAW),
    )
    return (
        postgresql.insert(table)
        .from_select([*columns, "payload", "received_at"], select)
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(table.c.event_key)
    )


def _rows_json(events: Sequence[ParsedEvent]) -> str:
    return orjson.dumps(
        [
            {
                "event_key": e.key,
                "event_type": e.event_type,
                "sg_message_id": e.sg_message_id,
                "send_id": e.send_id,
                "occurred_at": e.occurred_at,
                "label": e.label,
                # Already JSON text (see parse.py): embedded as is, not parsed and re-encoded.
                "payload": orjson.Fragment(e.payload_json),
            }
            for e in events
        ]
    ).decode("utf-8")


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
