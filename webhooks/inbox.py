"""The webhook inbox: verified bodies stored as received, then applied, each exactly once.

Why: applying a batch (every event validated, deduplicated, attributed, folded into its send's
outcomes and counters) costs several times what storing it does, and SendGrid waits for the
answer, retrying what is slow. So the endpoint only verifies the signature, checks that the
body is a JSON array, stores it here (:func:`enqueue`) and answers; the applier (``resistry
events apply``, a process of its own) applies bodies oldest first (:func:`drain`).

Nothing is lost or counted twice: a body leaves the inbox only by the DELETE in the transaction
that applies it, so either both happen or neither. A database error rolls that back and leaves
the body for the next attempt. A body whose application fails for any other reason (a bug) is
set aside with the error (``failed_at``, ``failure``), so the bodies behind it go on, and is
applied again after :func:`retry_set_aside`. Events are still deduplicated on their unique
digest, so SendGrid's retries and duplicates count once whichever body brings them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.collector import collector_paused
from engine.models import InboxBatch, utcnow
from engine.settings import WebhookSettings
from webhooks.ingest import BatchResult, prepare_batch, store_batch
from webhooks.turn import WriterTurn

log = logging.getLogger(__name__)


def enqueue(session: so.Session, body: bytes, elements: int, now: datetime) -> None:
    """Store a verified body that is a JSON array of ``elements`` (the caller commits)."""
    session.execute(sa.insert(InboxBatch).values(body=body, elements=elements, received_at=now))


@dataclass
class DrainResult:
    """What a :func:`drain` did: bodies applied (their events' counts summed) and set aside."""

    applied: int = 0
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    set_aside: int = 0

    def add(self, result: BatchResult) -> None:
        self.applied += 1
        self.received += result.received
        self.stored += result.stored
        self.duplicates += result.duplicates
        self.quarantined += result.quarantined


class _Pending(NamedTuple):
    id: int
    body: bytes
    received_at: datetime


def drain(
    session: so.Session,
    settings: WebhookSettings,
    turn: WriterTurn,
    *,
    limit: int | None = None,
) -> DrainResult:
    """Apply pending bodies, oldest first, each in its own committed transaction, until none is
    left (or ``limit`` were taken). Several appliers may drain at once (PostgreSQL: each skips
    the bodies another holds; SQLite: they take turns).

    Raises SQLAlchemy errors when the database fails (that body's transaction is rolled back;
    it stays pending)."""
    done = DrainResult()
    dialect = session.get_bind().dialect.name
    while limit is None or done.applied + done.set_aside < limit:
        pending = _oldest(session)
        if pending is None:
            session.rollback()
            break
        if dialect == "sqlite":
            # End the read: a write in a transaction begun before another writer's commit fails.
            session.rollback()
        try:
            # A batch makes thousands of short-lived objects: see engine.collector.
            with collector_paused():
                # Parsed before the turn, which is then held only for the statements.
                batch = prepare_batch(pending.body, dialect)
                with turn.held(session):
                    if not _claim(session, pending.id):
                        session.rollback()  # another applier took it meanwhile
                        continue
                    result = store_batch(session, batch, settings, now=pending.received_at)
                    session.commit()
        except sa.exc.SQLAlchemyError:
            session.rollback()
            raise
        except Exception as exc:  # a bug must not stop the bodies behind this one
            session.rollback()
            log.exception("webhook body %d set aside: %s", pending.id, exc.__class__.__name__)
            _set_aside(session, pending.id, f"{exc.__class__.__name__}: {exc}"[:2000])
            session.commit()
            done.set_aside += 1
            continue
        done.add(result)
    return done


def _oldest(session: so.Session) -> _Pending | None:
    # On PostgreSQL the row stays locked until this transaction ends, and other appliers skip it.
    statement = (
        sa.select(InboxBatch.id, InboxBatch.body, InboxBatch.received_at)
        .where(InboxBatch.failed_at.is_(None))
        .order_by(InboxBatch.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    row = session.execute(statement).first()
    return None if row is None else _Pending(row.id, bytes(row.body), row.received_at)


def _claim(session: so.Session, inbox_id: int) -> bool:
    deleted = session.execute(sa.delete(InboxBatch).where(InboxBatch.id == inbox_id))
    return deleted.rowcount == 1


def _set_aside(session: so.Session, inbox_id: int, failure: str) -> None:
    session.execute(
        sa.update(InboxBatch)
        .where(InboxBatch.id == inbox_id)
        .values(failed_at=utcnow(), failure=failure)
    )


def retry_set_aside(session: so.Session) -> int:
    """Make every set-aside body pending again (the caller commits); returns how many."""
    result = session.execute(
        sa.update(InboxBatch)
        .where(InboxBatch.failed_at.is_not(None))
        .values(failed_at=None, failure=None)
    )
    return int(result.rowcount)


def inbox_stats(session: so.Session) -> dict[str, Any]:
    """``pending`` bodies and the events they hold, the oldest one's receipt time, and
    ``set_aside`` bodies with their failures."""
    pending, events, oldest = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(InboxBatch.elements), 0),
            sa.func.min(InboxBatch.received_at),
        ).where(InboxBatch.failed_at.is_(None))
    ).one()
    set_aside = session.execute(
        sa.select(InboxBatch.id, InboxBatch.failure)
        .where(InboxBatch.failed_at.is_not(None))
        .order_by(InboxBatch.id)
    ).all()
    return {
        "pending": int(pending),
        "pending_events": int(events),
        "oldest_pending_at": None if oldest is None else oldest.isoformat(),
        "set_aside": [{"id": row.id, "failure": row.failure} for row in set_aside],
    }
