"""report rollups: send, visit, group, flow, recruiter and ladder counters per time bucket

Revision ID: 0004
Revises: 0003

The tables start empty; fill them from the stored rows with ``resistry reports rebuild-rollups``
(a database upgraded from 0003 that already holds sends or visits needs it once).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _counters(*names: str) -> list[sa.Column]:
    return [sa.Column(name, sa.Integer(), nullable=False) for name in names]


def upgrade() -> None:
    op.create_table(
        "send_rollups",
        sa.Column("mailing_id", sa.Integer(), nullable=False),
        sa.Column("subject_variant_id", sa.Integer(), nullable=False),
        sa.Column("body_variant_id", sa.Integer(), nullable=False),
        sa.Column("share_variant_id", sa.Integer(), nullable=False),
        sa.Column("sent_hour", sa.DateTime(timezone=True), nullable=False),
        *_counters(
            "sent",
            "delivered",
            "bounced",
            "human_opens",
            "machine_opens",
            "human_clicks",
            "scanner_clicks",
            "visited",
            "signups",
            "groups_ticked",
            "unsubscribes",
            "spam_reports",
        ),
        sa.PrimaryKeyConstraint(
            "mailing_id",
            "subject_variant_id",
            "body_variant_id",
            "share_variant_id",
            "sent_hour",
            name=op.f("pk_send_rollups"),
        ),
    )
    op.create_table(
        "visit_rollups",
        sa.Column("landing_variant_id", sa.Integer(), nullable=False),
        sa.Column("visit_hour", sa.DateTime(timezone=True), nullable=False),
        *_counters("visits", "signups", "groups_ticked"),
        sa.PrimaryKeyConstraint("landing_variant_id", "visit_hour", name=op.f("pk_visit_rollups")),
    )
    op.create_table(
        "group_rollups",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_counters("visitors_sent", "contacts_generated", "contacts_received"),
        sa.PrimaryKeyConstraint("group_id", "day", name=op.f("pk_group_rollups")),
    )
    op.create_table(
        "group_flow_rollups",
        sa.Column("source_group_id", sa.Integer(), nullable=False),
        sa.Column("joined_group_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_counters("signups"),
        sa.PrimaryKeyConstraint(
            "source_group_id", "joined_group_id", "day", name=op.f("pk_group_flow_rollups")
        ),
    )
    op.create_table(
        "recruiter_rollups",
        sa.Column("recruiter_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_counters("visits", "friends"),
        sa.PrimaryKeyConstraint("recruiter_id", "day", name=op.f("pk_recruiter_rollups")),
    )
    op.create_table(
        "ladder_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        *_counters("contacts", "recruiters"),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_ladder_rollups")),
    )


def downgrade() -> None:
    op.drop_table("ladder_rollups")
    op.drop_table("recruiter_rollups")
    op.drop_table("group_flow_rollups")
    op.drop_table("group_rollups")
    op.drop_table("visit_rollups")
    op.drop_table("send_rollups")
