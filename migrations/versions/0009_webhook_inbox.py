"""webhook_inbox: verified request bodies waiting to be applied

Revision ID: 0009
Revises: 0008

Why (see webhooks.inbox): the endpoint stores a verified body and answers at once, instead of
holding SendGrid's request while a thousand events are applied; an applier turns each body into
events and outcomes, and deletes it, in one transaction.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("elements", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_inbox")),
    )


def downgrade() -> None:
    op.drop_table("webhook_inbox")
