"""Signup services: check the form, merge the contact, store one consent per group, recruiters.

A person exists once: the email is normalized (trimmed, syntax-checked by email-validator without
DNS lookups, lower-cased) and ``contacts.email`` is unique. Signing up again merges the newly
ticked groups into the existing contact. Both inserts use ``INSERT … ON CONFLICT DO NOTHING``
(PostgreSQL and SQLite), so two simultaneous submissions of one address cannot create two
contacts or two signups for one group: the loser of the race reads the winner's row.

An existing contact's ZIP is not overwritten: the form is unauthenticated, so anyone could type
anyone's address, and stored data must not change on their say-so.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.dialects import postgresql, sqlite

from engine.models import Contact, Recruiter, Signup
from engine.reports import rollup_visits
from engine.reports.rollups import RollupChanges
from variants.attribution import credit_conversion

# [0-9], not \d: \d also matches full-width and Arabic-Indic digits, which are no US ZIP.
ZIP_PATTERN = re.compile(r"^([0-9]{5})(?:-?([0-9]{4}))?$")
MAX_EMAIL_LENGTH = 320


class SignupInvalid(ValueError):
    """The form has errors: ``errors`` maps each field name to a message for the visitor."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True)
class SignupRequest:
    """A checked signup: normalized email and ZIP, the ids of the ticked groups."""

    email: str
    zip_code: str
    group_ids: tuple[int, ...]


@dataclass(frozen=True)
class SignupResult:
    contact_id: int
    new_contact: bool
    added_group_ids: tuple[int, ...]  # signups created now
    existing_group_ids: tuple[int, ...]  # ticked again: the contact had them already
    converted_visit: bool  # this signup converted (and credited) its visit


def normalize_email(raw: str) -> str:
    """Return the address trimmed, syntax-checked and lower-cased.

    Raises :class:`ValueError` with a message for the visitor when it is not a valid address.
    """
    value = (raw or "").strip()
    if not value:
        raise ValueError("Enter your email address.")
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValueError("That email address is too long.")
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"That doesn't look like an email address: {exc}") from None
    return checked.normalized.lower()


def normalize_zip(raw: str) -> str:
    """Return a US ZIP as ``12345`` or ``12345-6789`` (ZIP+4, with or without the dash).

    Raises :class:`ValueError` with a message for the visitor otherwise.
    """
    value = (raw or "").strip().replace(" ", "")
    match = ZIP_PATTERN.match(value)
    if match is None:
        raise ValueError("Enter a US ZIP code: 5 digits, or ZIP+4 like 12345-6789.")
    five, four = match.groups()
    return f"{five}-{four}" if four else five


def validate_signup(
    email: str, zip_code: str, group_slugs: Sequence[str], active_group_ids: Mapping[str, int]
) -> SignupRequest:
    """Check the form fields against the active groups (slug → id).

    Raises :class:`SignupInvalid` naming every field with a problem.
    """
    errors: dict[str, str] = {}
    normalized_email = normalized_zip = ""
    try:
        normalized_email = normalize_email(email)
    except ValueError as exc:
        errors["email"] = str(exc)
    try:
        normalized_zip = normalize_zip(zip_code)
    except ValueError as exc:
        errors["zip"] = str(exc)
    slugs = list(dict.fromkeys(slug for slug in group_slugs if slug))
    if not slugs:
        errors["groups"] = "Tick at least one group."
    elif any(slug not in active_group_ids for slug in slugs):
        errors["groups"] = "A group you ticked is no longer taking signups. Please choose again."
    if errors:
        raise SignupInvalid(errors)
    return SignupRequest(
        normalized_email, normalized_zip, tuple(active_group_ids[slug] for slug in slugs)
    )


def insert_unless_exists(
    session: so.Session,
    model: type[Any],
    values: Mapping[str, Any],
    conflict_columns: Sequence[str] | None = None,
) -> bool:
    """``INSERT … ON CONFLICT DO NOTHING``; returns whether the row was inserted.

    ``conflict_columns`` names the unique index to yield to (``None``: any unique index).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(model)
    elif dialect == "sqlite":
        statement = sqlite.insert(model)
    else:  # pragma: no cover - the two supported backends
        raise RuntimeError(f"unsupported database {dialect!r}")
    statement = (
        statement.values(**values)
        .on_conflict_do_nothing(index_elements=conflict_columns)
        .returning(model.id)
    )
    return session.execute(statement).first() is not None


def consent_text(template: str, group_name: str) -> str:
    """The consent sentence shown next to a group's box ({group} replaced by its name)."""
    return template.replace("{group}", group_name)


def record_signup(
    session: so.Session,
    request: SignupRequest,
    *,
    group_names: Mapping[int, str],
    groups_order: Sequence[str],
    group_slugs: Mapping[int, str],
    consent_template: str,
    visit_id: int | None,
    now: datetime,
) -> SignupResult:
    """Merge the contact, store a signup per newly ticked group, convert the visit, and count
    them in the report rollups.

    ``groups_order`` is the slugs in the order the boxes were shown; each signup stores it with
    its own position. The visit converts (and credits its sources) only when at least one new
    signup was made, so re-submitting the same groups is not a second conversion.
    """
    new_contact = insert_unless_exists(
        session,
        Contact,
        {"email": request.email, "zip_code": request.zip_code, "first_name": "", "created_at": now},
        ["email"],
    )
    contact_id = session.scalar(sa.select(Contact.id).where(Contact.email == request.email))
    assert contact_id is not None  # inserted above or by the winner of a race
    order = list(groups_order)
    added: list[int] = []
    existing: list[int] = []
    for group_id in request.group_ids:
        slug = group_slugs[group_id]
        inserted = insert_unless_exists(
            session,
            Signup,
            {
                "contact_id": contact_id,
                "group_id": group_id,
                "visit_id": visit_id,
                "consent_text": consent_text(consent_template, group_names[group_id]),
                "groups_order": order,
                "position": order.index(slug) if slug in order else len(order),
                "created_at": now,
            },
            ["contact_id", "group_id"],
        )
        (added if inserted else existing).append(group_id)
    converted = False
    changes = RollupChanges()
    if added and visit_id is not None:
        converted = credit_conversion(session, visit_id, contact_id, now, changes)
    if added:
        visit = rollup_visits.visit_facts(session, visit_id) if visit_id is not None else None
        rollup_visits.record_signups(session, changes, visit=visit, group_ids=added, now=now)
    if new_contact:
        rollup_visits.count_new_people(changes, contacts=1, at=now)
    changes.apply(session)  # last: rollup rows are locked after sends and variants
    return SignupResult(contact_id, new_contact, tuple(added), tuple(existing), converted)


def make_recruiter(session: so.Session, contact_id: int, now: datetime) -> Recruiter:
    """Return the contact's recruiter record, creating it with a random unguessable code.

    Asking again returns the same code (and re-activates a recruiter who had stopped).
    Raises :class:`LookupError` when the contact does not exist.
    """
    if session.get(Contact, contact_id) is None:
        raise LookupError(f"no contact {contact_id}")
    for _attempt in range(5):  # 64 random bits: a code collision is all but impossible
        recruiter = session.scalar(sa.select(Recruiter).where(Recruiter.contact_id == contact_id))
        if recruiter is not None:
            recruiter.active = True
            session.flush()
            return recruiter
        if insert_unless_exists(
            session,
            Recruiter,
            {
                "contact_id": contact_id,
                "code": secrets.token_urlsafe(8),
                "active": True,
                "created_at": now,
            },
        ):
            rollup_visits.record_new_recruiter(session, now)
    raise RuntimeError("could not create a unique recruiter code")


def referral_link(base_url: str, code: str) -> str:
    """The recruiter's personal link: ``<base_url>/?r=<code>``."""
    return f"{base_url.rstrip('/')}/?r={code}"
