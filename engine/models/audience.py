"""Who takes part: partner groups, contacts and their signups, visits, recruiters, staff users."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models.base import Base, Timestamped

ROLES = ("admin", "analyst", "group_manager")


class Group(Timestamped, Base):
    """A partner organization visitors can sign up for."""

    __tablename__ = "groups"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    slug: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    description: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    roles: so.Mapped[list[str]] = so.mapped_column(default=list)
    website: so.Mapped[str] = so.mapped_column(sa.String(500), default="")
    logo_url: so.Mapped[str] = so.mapped_column(sa.String(500), default="")
    policy_areas: so.Mapped[list[str]] = so.mapped_column(default=list)
    active: so.Mapped[bool] = so.mapped_column(default=True)
    # SHA-256 of the group's API token (for /api/v1/assign and /api/v1/convert).
    api_token_hash: so.Mapped[str | None] = so.mapped_column(sa.String(64), unique=True)


class Contact(Timestamped, Base):
    """A person, once: email normalized (trimmed, lower-cased) and unique."""

    __tablename__ = "contacts"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    email: so.Mapped[str] = so.mapped_column(sa.String(320), unique=True)
    zip_code: so.Mapped[str] = so.mapped_column(sa.String(10))
    first_name: so.Mapped[str] = so.mapped_column(sa.String(100), default="")

    signups: so.Mapped[list[Signup]] = so.relationship(back_populates="contact")
    recruiter: so.Mapped[Recruiter | None] = so.relationship(back_populates="contact")


class Visit(Timestamped, Base):
    """One landing-page view by a visitor, with what attributed it; a trial of its variant."""

    __tablename__ = "visits"
    # Every landing view inserts a row, and on SQLite each index it touches is one more page
    # written at commit. Attribution is absent from most visits, so its indexes are partial:
    # a visit without a group, recruiter or send touches none of them. The visitor is only
    # looked up together with the group that sent them (the "first visit from a group" rule).
    __table_args__ = (
        sa.Index(
            "ix_visits_source_group_id_visitor_id",
            "source_group_id",
            "visitor_id",
            sqlite_where=sa.text("source_group_id IS NOT NULL"),
            postgresql_where=sa.text("source_group_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_visits_recruiter_id",
            "recruiter_id",
            sqlite_where=sa.text("recruiter_id IS NOT NULL"),
            postgresql_where=sa.text("recruiter_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_visits_send_id",
            "send_id",
            sqlite_where=sa.text("send_id IS NOT NULL"),
            postgresql_where=sa.text("send_id IS NOT NULL"),
        ),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    visitor_id: so.Mapped[str] = so.mapped_column(sa.String(36))
    landing_variant_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("variants.id"), index=True
    )
    source_group_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("groups.id"))
    recruiter_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("recruiters.id"))
    send_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("sends.id"))
    # The share-text variant that carried a recruiter's link, when the link named it.
    share_variant_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("variants.id"))
    # Set when this visit led to a signup.
    contact_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("contacts.id"))
    converted_at: so.Mapped[datetime | None]


class Signup(Base):
    """A contact's consent to hear from one group, with the consent text and the order shown."""

    __tablename__ = "signups"
    __table_args__ = (sa.UniqueConstraint("contact_id", "group_id"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    contact_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("contacts.id"), index=True)
    group_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("groups.id"), index=True)
    visit_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("visits.id"), index=True)
    consent_text: so.Mapped[str] = so.mapped_column(sa.Text)
    # Slugs of the groups in the order their boxes appeared, and this group's position (0-based).
    groups_order: so.Mapped[list[str]] = so.mapped_column(default=list)
    position: so.Mapped[int] = so.mapped_column(default=0)
    created_at: so.Mapped[datetime] = so.mapped_column(index=True)

    contact: so.Mapped[Contact] = so.relationship(back_populates="signups")
    group: so.Mapped[Group] = so.relationship()


class Recruiter(Timestamped, Base):
    """A contact with a personal referral code; friends who sign up through it are credited."""

    __tablename__ = "recruiters"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    contact_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("contacts.id"), unique=True)
    code: so.Mapped[str] = so.mapped_column(sa.String(32), unique=True)
    active: so.Mapped[bool] = so.mapped_column(default=True)

    contact: so.Mapped[Contact] = so.relationship(back_populates="recruiter")


class User(Timestamped, Base):
    """Staff: admin (everything), analyst (aggregates only), group manager (one group)."""

    __tablename__ = "users"
    __table_args__ = (
        sa.CheckConstraint(f"role IN {ROLES}", name="role"),
        sa.CheckConstraint("role != 'group_manager' OR group_id IS NOT NULL", name="manager_group"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    username: so.Mapped[str] = so.mapped_column(sa.String(120), unique=True)
    password_hash: so.Mapped[str] = so.mapped_column(sa.String(256))
    role: so.Mapped[str] = so.mapped_column(sa.String(16))
    group_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("groups.id"))
    # SHA-256 of the user's API token for /api/v1.
    api_token_hash: so.Mapped[str | None] = so.mapped_column(sa.String(64), unique=True)
    active: so.Mapped[bool] = so.mapped_column(default=True)
    settings: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)

    group: so.Mapped[Group | None] = so.relationship()

    # The interface Flask-Login expects of a logged-in user (engine.auth's user loader returns
    # User rows); plain properties, so the models stay free of web imports.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return str(self.id)
