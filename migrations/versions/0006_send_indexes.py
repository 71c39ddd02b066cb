"""sends: no index on mailing_id alone; x_message_id and sent_at indexed only once set

Revision ID: 0006
Revises: 0005

Why (see engine.models.mail.Send): a mailing inserts one planned send per recruiter, and each
index costs every insert. ``ix_sends_mailing_id`` repeats the first column of the unique key
``(mailing_id, recruiter_id)``, which serves every query by mailing. ``x_message_id`` and
``sent_at`` are NULL until a send is handed over, and every query on them compares them with a
value, so partial indexes over the set values serve the same queries without an entry per
planned send.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTIAL = ("x_message_id", "sent_at")


def upgrade() -> None:
    op.drop_index("ix_sends_mailing_id", table_name="sends")
    for column in PARTIAL:
        op.drop_index(f"ix_sends_{column}", table_name="sends")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_sends_{column}",
            "sends",
            [column],
            unique=False,
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    for column in PARTIAL:
        op.drop_index(f"ix_sends_{column}", table_name="sends")
        op.create_index(f"ix_sends_{column}", "sends", [column], unique=False)
    op.create_index("ix_sends_mailing_id", "sends", ["mailing_id"], unique=False)
