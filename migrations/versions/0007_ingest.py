"""events: the unique digest starts with the second the event occurred

Revision ID: 0007
Revises: 0006

Why (see engine.models.events): keyed by SendGrid's random ids alone, a batch's inserts landed on
random leaf pages of the whole unique index, most of them written again at every commit; keyed
by time first, they land on a few neighbouring pages. Stored rows get the new digest here (the
column, its size and its unique constraint stay as they are).
"""

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 5000
_LAST = 2**32 - 1


def upgrade() -> None:
    _refill(_time_and_key)


def downgrade() -> None:
    _refill(lambda key, _at: hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest())


def _time_and_key(key: str, at: datetime | None) -> bytes:
    # engine.models.events.event_digest as of this revision (migrations do not import models).
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # SQLite stores naive UTC
    second = 0 if at is None else min(max(int(at.timestamp()), 0), _LAST)
    return second.to_bytes(4, "big") + hashlib.blake2b(key.encode("utf-8"), digest_size=12).digest()


def _refill(digest_of) -> None:  # type: ignore[no-untyped-def]
    connection = op.get_bind()
    events = sa.table(
        "events",
        sa.column("id"),
        sa.column("event_key"),
        sa.column("occurred_at", sa.DateTime(timezone=True)),
        sa.column("event_digest"),
    )
    update = (
        events.update()
        .where(events.c.id == sa.bindparam("row_id"))
        .values(event_digest=sa.bindparam("digest", type_=sa.LargeBinary()))
    )
    last_id = 0
    while True:  # in id order, a chunk at a time: the table may be large
        rows = connection.execute(
            sa.select(events.c.id, events.c.event_key, events.c.occurred_at)
            .where(events.c.id > last_id)
            .order_by(events.c.id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        connection.execute(
            update,
            [{"row_id": row_id, "digest": digest_of(key, at)} for row_id, key, at in rows],
        )
        last_id = rows[-1][0]
