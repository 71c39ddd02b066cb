"""audience and mail: groups, contacts, signups, visits, recruiters, users, mailings, sends

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSONB on PostgreSQL, JSON elsewhere (as engine.models.base.JSONType).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("zip_code", sa.String(length=10), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.UniqueConstraint("email", name=op.f("uq_contacts_email")),
    )
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "roles",
            JSON,
            nullable=False,
        ),
        sa.Column("website", sa.String(length=500), nullable=False),
        sa.Column("logo_url", sa.String(length=500), nullable=False),
        sa.Column(
            "policy_areas",
            JSON,
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("api_token_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("api_token_hash", name=op.f("uq_groups_api_token_hash")),
        sa.UniqueConstraint("slug", name=op.f("uq_groups_slug")),
    )
    op.create_table(
        "mailings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("asm_group_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "plan",
            JSON,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('planned', 'sending', 'sent', 'failed')", name=op.f("ck_mailings_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailings")),
        sa.UniqueConstraint("key", name=op.f("uq_mailings_key")),
    )
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("email", "scope", name=op.f("uq_suppressions_email_scope")),
    )
    op.create_table(
        "recruiters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_recruiters_contact_id_contacts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recruiters")),
        sa.UniqueConstraint("code", name=op.f("uq_recruiters_code")),
        sa.UniqueConstraint("contact_id", name=op.f("uq_recruiters_contact_id")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=120), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("api_token_hash", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "settings",
            JSON,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role != 'group_manager' OR group_id IS NOT NULL", name=op.f("ck_users_manager_group")
        ),
        sa.CheckConstraint(
            "role IN ('admin', 'analyst', 'group_manager')", name=op.f("ck_users_role")
        ),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], name=op.f("fk_users_group_id_groups")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("api_token_hash", name=op.f("uq_users_api_token_hash")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=200), nullable=False),
        sa.Column("variant_id", sa.Integer(), nullable=False),
        sa.Column("converted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_assignments_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_assignments_group_id_groups")
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"], ["variants.id"], name=op.f("fk_assignments_variant_id_variants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
        sa.UniqueConstraint(
            "experiment_id",
            "group_id",
            "unit",
            name=op.f("uq_assignments_experiment_id_group_id_unit"),
        ),
    )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assignments_variant_id"), ["variant_id"], unique=False)

    op.create_table(
        "sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailing_id", sa.Integer(), nullable=False),
        sa.Column("recruiter_id", sa.Integer(), nullable=False),
        sa.Column("subject_variant_id", sa.Integer(), nullable=True),
        sa.Column("body_variant_id", sa.Integer(), nullable=True),
        sa.Column("share_variant_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("x_message_id", sa.String(length=64), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bounce_type", sa.String(length=16), nullable=True),
        sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deferred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_open_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("machine_open_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_click_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scanner_click_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("spam_report_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("converted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('planned', 'sending', 'sent', 'failed')", name=op.f("ck_sends_status")
        ),
        sa.ForeignKeyConstraint(
            ["body_variant_id"], ["variants.id"], name=op.f("fk_sends_body_variant_id_variants")
        ),
        sa.ForeignKeyConstraint(
            ["mailing_id"], ["mailings.id"], name=op.f("fk_sends_mailing_id_mailings")
        ),
        sa.ForeignKeyConstraint(
            ["recruiter_id"], ["recruiters.id"], name=op.f("fk_sends_recruiter_id_recruiters")
        ),
        sa.ForeignKeyConstraint(
            ["share_variant_id"], ["variants.id"], name=op.f("fk_sends_share_variant_id_variants")
        ),
        sa.ForeignKeyConstraint(
            ["subject_variant_id"],
            ["variants.id"],
            name=op.f("fk_sends_subject_variant_id_variants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sends")),
        sa.UniqueConstraint(
            "mailing_id", "recruiter_id", name=op.f("uq_sends_mailing_id_recruiter_id")
        ),
    )
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sends_body_variant_id"), ["body_variant_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sends_mailing_id"), ["mailing_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sends_recruiter_id"), ["recruiter_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sends_sent_at"), ["sent_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sends_share_variant_id"), ["share_variant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_sends_subject_variant_id"), ["subject_variant_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sends_x_message_id"), ["x_message_id"], unique=False)

    op.create_table(
        "visits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visitor_id", sa.String(length=36), nullable=False),
        sa.Column("landing_variant_id", sa.Integer(), nullable=True),
        sa.Column("source_group_id", sa.Integer(), nullable=True),
        sa.Column("recruiter_id", sa.Integer(), nullable=True),
        sa.Column("send_id", sa.Integer(), nullable=True),
        sa.Column("share_variant_id", sa.Integer(), nullable=True),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("converted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_visits_contact_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["landing_variant_id"],
            ["variants.id"],
            name=op.f("fk_visits_landing_variant_id_variants"),
        ),
        sa.ForeignKeyConstraint(
            ["recruiter_id"], ["recruiters.id"], name=op.f("fk_visits_recruiter_id_recruiters")
        ),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"], name=op.f("fk_visits_send_id_sends")),
        sa.ForeignKeyConstraint(
            ["share_variant_id"], ["variants.id"], name=op.f("fk_visits_share_variant_id_variants")
        ),
        sa.ForeignKeyConstraint(
            ["source_group_id"], ["groups.id"], name=op.f("fk_visits_source_group_id_groups")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
    )
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_visits_landing_variant_id"), ["landing_variant_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_visits_recruiter_id"), ["recruiter_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_visits_send_id"), ["send_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_visits_source_group_id"), ["source_group_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_visits_visitor_id"), ["visitor_id"], unique=False)

    op.create_table(
        "signups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=True),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column(
            "groups_order",
            JSON,
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_signups_contact_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_signups_group_id_groups")
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_signups_visit_id_visits")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signups")),
        sa.UniqueConstraint("contact_id", "group_id", name=op.f("uq_signups_contact_id_group_id")),
    )
    with op.batch_alter_table("signups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signups_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_signups_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_signups_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_signups_visit_id"), ["visit_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signups_visit_id"))
        batch_op.drop_index(batch_op.f("ix_signups_group_id"))
        batch_op.drop_index(batch_op.f("ix_signups_created_at"))
        batch_op.drop_index(batch_op.f("ix_signups_contact_id"))

    op.drop_table("signups")
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visits_visitor_id"))
        batch_op.drop_index(batch_op.f("ix_visits_source_group_id"))
        batch_op.drop_index(batch_op.f("ix_visits_send_id"))
        batch_op.drop_index(batch_op.f("ix_visits_recruiter_id"))
        batch_op.drop_index(batch_op.f("ix_visits_landing_variant_id"))

    op.drop_table("visits")
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sends_x_message_id"))
        batch_op.drop_index(batch_op.f("ix_sends_subject_variant_id"))
        batch_op.drop_index(batch_op.f("ix_sends_share_variant_id"))
        batch_op.drop_index(batch_op.f("ix_sends_sent_at"))
        batch_op.drop_index(batch_op.f("ix_sends_recruiter_id"))
        batch_op.drop_index(batch_op.f("ix_sends_mailing_id"))
        batch_op.drop_index(batch_op.f("ix_sends_body_variant_id"))

    op.drop_table("sends")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assignments_variant_id"))

    op.drop_table("assignments")
    op.drop_table("users")
    op.drop_table("recruiters")
    op.drop_table("suppressions")
    op.drop_table("mailings")
    op.drop_table("groups")
    op.drop_table("contacts")
