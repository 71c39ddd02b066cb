"""visits: partial indexes on the attribution columns

Revision ID: 0008
Revises: 0007

Why (see engine.models.audience.Visit): every landing view inserts a visit, and most visits carry
no group, recruiter or send; full indexes made each such insert touch (and, on SQLite, commit)
four index pages holding nothing anyone looks up. The visitor id is only ever looked up with the
group that sent the visitor, so it joins that group's partial index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _not_null(column: str) -> dict[str, sa.TextClause]:
    condition = sa.text(f"{column} IS NOT NULL")
    return {"sqlite_where": condition, "postgresql_where": condition}


def upgrade() -> None:
    with op.batch_alter_table("visits", schema=None) as batch_op:
        for column in ("visitor_id", "source_group_id", "recruiter_id", "send_id"):
            batch_op.drop_index(f"ix_visits_{column}")
        batch_op.create_index(
            "ix_visits_source_group_id_visitor_id",
            ["source_group_id", "visitor_id"],
            unique=False,
            **_not_null("source_group_id"),
        )
        for column in ("recruiter_id", "send_id"):
            batch_op.create_index(
                f"ix_visits_{column}", [column], unique=False, **_not_null(column)
            )


def downgrade() -> None:
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_index("ix_visits_source_group_id_visitor_id", **_not_null("source_group_id"))
        for column in ("recruiter_id", "send_id"):
            batch_op.drop_index(f"ix_visits_{column}", **_not_null(column))
        for column in ("visitor_id", "source_group_id", "recruiter_id", "send_id"):
            batch_op.create_index(f"ix_visits_{column}", [column], unique=False)
