"""Insert a batch's events once each: the unique digest decides, in as few statements as it takes.

``INSERT … ON CONFLICT (event_digest) DO NOTHING RETURNING`` reports which events this request
inserted, so duplicates inside a batch, across batches, retries and concurrent workers count once.
Values go to the driver as they are stored (:mod:`webhooks.native`); the payload is the JSON text
the parser made once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from datetime import datetime

import orjson
import sqlalchemy.orm as so

from engine.suppressions import chunked
from webhooks import native
from webhooks.parse import ParsedEvent

# Events per INSERT on PostgreSQL (one JSON parameter per statement).
_INSERT_CHUNK = 2000
# Largest INSERT on SQLite: 9 parameters per event stays under its 32,766-parameter limit.
_SQLITE_CHUNK = 1024


def store_events(
    session: so.Session, events: Sequence[ParsedEvent], now: datetime
) -> list[ParsedEvent]:
    """Insert ``events`` (``occurred_native`` set, see :func:`webhooks.ingest.prepare_batch`),
    skipping digests already stored; returns the ones this call inserted (``event_id`` set), in
    the order given. Raises SQLAlchemy errors when the database fails."""
    if not events:
        return []
    connection = session.connection()
    dialect = connection.dialect.name
    encode = native.encoder(dialect)
    received_at = encode(now)
    inserted: dict[bytes, int] = {}
    chunks = chunked(events, _INSERT_CHUNK) if dialect == "postgresql" else _sqlite_chunks(events)
    for chunk in chunks:
        if dialect == "postgresql":
            result = connection.exec_driver_sql(_POSTGRES_INSERT, (received_at, _rows_json(chunk)))
        else:
            parameters = []
            for e in chunk:
                parameters += (
                    e.digest,
                    e.key,
                    e.event_type,
                    e.sg_message_id,
                    e.send_id,
                    e.occurred_native,
                    e.label,
                    e.payload_json,  # already JSON text (see parse.py): stored as is
                    received_at,
                )
            result = connection.exec_driver_sql(_sqlite_insert(len(chunk)), tuple(parameters))
        inserted.update((bytes(digest), event_id) for digest, event_id in result)
    new_events = []
    for e in events:
        event_id = inserted.get(e.digest)
        if event_id is not None:
            e.event_id = event_id
            new_events.append(e)
    return new_events


_INSERT_COLUMNS = (
    "event_digest",
    "event_key",
    "event_type",
    "sg_message_id",
    "send_id",
    "occurred_at",
    "label",
    "payload",
    "received_at",
)
_CONFLICT = "ON CONFLICT (event_digest) DO NOTHING RETURNING event_digest, id"


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
    # Many-row INSERTs: SQLite's work is the B-trees; binding values one statement at a time
    # through SQLAlchemy would cost more than that.
    row = "(" + ", ".join("?" * len(_INSERT_COLUMNS)) + ")"
    return (
        f"INSERT INTO events ({', '.join(_INSERT_COLUMNS)}) VALUES "
        + ", ".join([row] * rows)
        + f" {_CONFLICT}"
    )


# One parameter for the whole chunk: a JSON array of rows that jsonb_to_recordset() turns into
# a table. A VALUES list would need nine parameters per event, and text arrays cost the driver
# an escape pass over every payload.
_POSTGRES_INSERT = f"""
INSERT INTO events ({", ".join(_INSERT_COLUMNS)})
SELECT decode(r.event_digest, 'hex'), r.event_key, r.event_type, r.sg_message_id, r.send_id,
       r.occurred_at, r.label, r.payload, %s
FROM jsonb_to_recordset(%s::jsonb) AS r(
    event_digest text, event_key text, event_type text, sg_message_id text, send_id integer,
    occurred_at timestamptz, label text, payload jsonb)
{_CONFLICT}"""


def _rows_json(events: Sequence[ParsedEvent]) -> str:
    return orjson.dumps(
        [
            {
                "event_digest": e.digest.hex(),
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
