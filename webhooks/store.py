"""Insert a batch's events once each: the unique digest decides, in as few statements as it takes.

``INSERT … ON CONFLICT (event_digest) DO NOTHING`` skips what is stored already, and the rows it
inserted tell which events are new (``RETURNING`` on PostgreSQL; read back by id on SQLite), so
duplicates inside a batch, across batches, retries and concurrent workers count once.
The statements' parameters are built before the writer's turn (:func:`build_inserts`); inside it
only each event's ``send_id`` (known after attribution) and the receipt time are filled in.
Values go to the driver as they are stored (:mod:`webhooks.native`); the payload is the JSON text
the parser made once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engine.suppressions import chunked
from webhooks import native
from webhooks.native import Driver
from webhooks.parse import ParsedEvent

# Events per INSERT on PostgreSQL (two array-like parameters per statement).
_INSERT_CHUNK = 2000
# Largest INSERT on SQLite: 8 parameters per event stays under its 32,766-parameter limit.
_SQLITE_CHUNK = 1024
_SQLITE_COLUMNS = (
    "event_digest",
    "event_key",
    "event_type",
    "sg_message_id",
    "send_id",
    "occurred_at",
    "label",
    "payload",
)
_PER_EVENT = len(_SQLITE_COLUMNS)
_SEND_ID = _SQLITE_COLUMNS.index("send_id")
_CONFLICT = "ON CONFLICT (event_digest) DO NOTHING"


@dataclass(frozen=True)
class EventInserts:
    """A batch's INSERT statements for one database: per chunk, its events and the parameters
    that do not depend on attribution (SQLite: the flat VALUES list with ``send_id`` left empty;
    PostgreSQL: the rows as one JSON text)."""

    dialect: str
    chunks: list[tuple[Sequence[ParsedEvent], Any]]


def build_inserts(events: Sequence[ParsedEvent], dialect: str) -> EventInserts:
    """The INSERT parameters of ``events`` (``occurred_native`` set for ``dialect``); needs no
    database, so it runs before the writer's turn."""
    if dialect == "postgresql":
        return EventInserts(
            dialect, [(chunk, _rows_json(chunk)) for chunk in chunked(events, _INSERT_CHUNK)]
        )
    chunks = []
    for chunk in _sqlite_chunks(events):
        parameters: list[Any] = []
        for e in chunk:
            parameters += (
                e.digest,
                e.key,
                e.event_type,
                e.sg_message_id,
                None,  # send_id, set by attribution inside the writer's turn
                e.occurred_native,
                e.label,
                e.payload_json,  # already JSON text (see parse.py): stored as is
            )
        chunks.append((chunk, parameters))
    return EventInserts(dialect, chunks)


def insert_events(db: Driver, inserts: EventInserts, received_at: Any) -> list[ParsedEvent]:
    """Insert the events (``send_id`` set by attribution), skipping digests already stored;
    returns the ones this call inserted (``event_id`` set), in the order given.
    ``received_at`` is in the driver's form. Raises SQLAlchemy errors when the database fails."""
    if inserts.dialect == "postgresql":
        inserted: dict[bytes, int] = {}
        for chunk, prepared in inserts.chunks:
            send_ids = native.list_parameter("postgresql", [e.send_id for e in chunk])
            inserted.update(db.rows(_POSTGRES_INSERT, (received_at, prepared, send_ids)))
    else:
        inserted = _insert_sqlite(db, inserts, received_at)
    new_events = []
    for chunk, _ in inserts.chunks:
        for e in chunk:
            event_id = inserted.get(e.digest)
            if event_id is not None:
                e.event_id = event_id
                new_events.append(e)
    return new_events


def _insert_sqlite(db: Driver, inserts: EventInserts, received_at: Any) -> dict[bytes, int]:
    """``{digest: id}`` of the rows inserted. Rather than ``RETURNING`` (SQLite collects the
    rows in a temporary table first: a fifth of the INSERT's time), the new rows are read back
    by id: this transaction holds SQLite's write lock, and a new rowid is one more than the
    largest, so the rows past the largest id before the INSERTs are exactly this request's."""
    (before,) = db.rows("SELECT coalesce(max(id), 0) FROM events")[0]
    inserted = 0
    for chunk, prepared in inserts.chunks:
        parameters = prepared.copy()
        for slot, e in enumerate(chunk):
            if e.send_id is not None:
                parameters[slot * _PER_EVENT + _SEND_ID] = e.send_id
        parameters.append(received_at)
        inserted += db.run(_sqlite_insert(len(chunk)), parameters)
    rows = db.rows("SELECT event_digest, id FROM events WHERE id > ?", (before,))
    if len(rows) != inserted:  # rowids ran out and SQLite picked random ones: never in practice
        raise RuntimeError(f"{inserted} events inserted but {len(rows)} found past id {before}")
    return dict(rows)


def _sqlite_chunks(events: Sequence[ParsedEvent]) -> Iterator[Sequence[ParsedEvent]]:
    """Chunks whose sizes are powers of two (950 events: 512, 256, 128, 32, 16, 4 and 2).

    Preparing a many-row INSERT costs SQLite about 2 ms, as much as running it; with a new size
    in nearly every batch, every batch paid it. With eleven sizes, the driver's statement cache
    keeps them all prepared, for a few more statements per batch.
    """
    start = 0
    while start < len(events):
        size = min(_SQLITE_CHUNK, 1 << ((len(events) - start).bit_length() - 1))
        yield events[start : start + size]
        start += size


@functools.lru_cache(maxsize=16)
def _sqlite_insert(rows: int) -> str:
    # Many-row INSERTs: SQLite's work is the B-trees; one execution per row would cost more.
    # Numbered parameters: the receipt time, shared by every row, is the last one.
    received_at = rows * _PER_EVENT + 1
    values = ", ".join(
        "("
        + ", ".join(f"?{row * _PER_EVENT + column + 1}" for column in range(_PER_EVENT))
        + f", ?{received_at})"
        for row in range(rows)
    )
    columns = ", ".join((*_SQLITE_COLUMNS, "received_at"))
    return f"INSERT INTO events ({columns}) VALUES {values} {_CONFLICT}"


# The chunk's rows as one JSON parameter that jsonb_to_recordset() turns into a table, beside
# their send ids as an array (known only inside the writer's turn): ROWS FROM zips the two. A
# VALUES list would need nine parameters per event, and text arrays cost the driver an escape
# pass over every payload.
_POSTGRES_INSERT = f"""
INSERT INTO events (event_digest, event_key, event_type, sg_message_id, send_id, occurred_at,
                    label, payload, received_at)
SELECT decode(r.event_digest, 'hex'), r.event_key, r.event_type, r.sg_message_id, r.send_id,
       r.occurred_at, r.label, r.payload, %s
FROM ROWS FROM (
    jsonb_to_recordset(%s::jsonb) AS (event_digest text, event_key text, event_type text,
        sg_message_id text, occurred_at timestamptz, label text, payload jsonb),
    unnest(%s::integer[])
) AS r(event_digest, event_key, event_type, sg_message_id, occurred_at, label, payload, send_id)
{_CONFLICT} RETURNING event_digest, id"""


def _rows_json(events: Sequence[ParsedEvent]) -> str:
    return orjson.dumps(
        [
            {
                "event_digest": e.digest.hex(),
                "event_key": e.key,
                "event_type": e.event_type,
                "sg_message_id": e.sg_message_id,
                "occurred_at": e.occurred_at,
                "label": e.label,
                # Already JSON text (see parse.py): embedded as is, not parsed and re-encoded.
                "payload": orjson.Fragment(e.payload_json),
            }
            for e in events
        ]
    ).decode("utf-8")
