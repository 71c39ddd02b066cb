"""events: a 16-byte digest as the unique key, a partial index on clicks, no foreign key

Revision ID: 0005
Revises: 0004

Why (see engine.models.events): every index costs every webhook insert. The unique key becomes
``event_digest`` (BLAKE2b-128 of ``event_key``, filled here for stored rows), four times smaller
than the text key; ``(send_id, event_type)`` becomes an index on ``send_id`` of clicks only, the
one query that needs it; the foreign key to sends goes (attribution guarantees it).
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLICKS = sa.text("event_type = 'click'")
_CHUNK = 5000


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_send_id_event_type")
        batch_op.drop_constraint("uq_events_event_key", type_="unique")
        batch_op.drop_constraint("fk_events_send_id_sends", type_="foreignkey")
        batch_op.add_column(sa.Column("event_digest", sa.LargeBinary(length=16), nullable=True))
    _fill_digests()
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column(
            "event_digest", existing_type=sa.LargeBinary(length=16), nullable=False
        )
        batch_op.create_unique_constraint("uq_events_event_digest", ["event_digest"])
        batch_op.create_index(
            "ix_events_click_send_id",
            ["send_id"],
            unique=False,
            sqlite_where=CLICKS,
            postgresql_where=CLICKS,
        )


def _fill_digests() -> None:
    connection = op.get_bind()
    events = sa.table("events", sa.column("id"), sa.column("event_key"), sa.column("event_digest"))
    rows = connection.execute(sa.select(events.c.id, events.c.event_key)).all()
    update = (
        events.update()
        .where(events.c.id == sa.bindparam("row_id"))
        .values(event_digest=sa.bindparam("digest", type_=sa.LargeBinary()))
    )
    for start in range(0, len(rows), _CHUNK):
        connection.execute(
            update,
            [
                {
                    "row_id": row_id,
                    "digest": hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest(),
                }
                for row_id, key in rows[start : start + _CHUNK]
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_click_send_id", sqlite_where=CLICKS, postgresql_where=CLICKS)
        batch_op.drop_constraint("uq_events_event_digest", type_="unique")
        batch_op.drop_column("event_digest")
        batch_op.create_foreign_key("fk_events_send_id_sends", "sends", ["send_id"], ["id"])
        batch_op.create_unique_constraint("uq_events_event_key", ["event_key"])
        batch_op.create_index(
            "ix_events_send_id_event_type", ["send_id", "event_type"], unique=False
        )
