"""Partner groups pull the contacts who chose them, with the consent evidence, and only those.

Contacts come from :class:`~engine.models.Signup` rows of the group: a contact who ticked other
groups but not this one is never included. Pages are ordered by signup id and continue from an
opaque cursor, so a partner stores the last cursor and later asks only for what is new.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Contact, Group, Signup, User

PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
CSV_BATCH = 1000
CSV_COLUMNS = (
    "email", "first_name", "zip_code", "signed_up_at", "consent_text", "position", "groups_shown",
)  # fmt: skip
_CURSOR_PREFIX = "signup:"
# A spreadsheet runs a cell starting with one of these as a formula: prefix it with a quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class CursorError(ValueError):
    """The cursor was not made by this service (garbled or edited)."""


@dataclass(frozen=True)
class GroupContact:
    """One contact who signed up for the group, with what they agreed to and when."""

    signup_id: int
    email: str
    first_name: str
    zip_code: str
    signed_up_at: datetime
    consent_text: str
    position: int
    groups_shown: list[str]

    def as_json(self) -> dict[str, object]:
        return {
            "email": self.email,
            "first_name": self.first_name,
            "zip_code": self.zip_code,
            "signed_up_at": self.signed_up_at.isoformat(),
            "consent_text": self.consent_text,
            "position": self.position,
            "groups_shown": self.groups_shown,
        }


@dataclass(frozen=True)
class ContactPage:
    contacts: list[GroupContact]
    # Where the next pull continues; returned even on the last page, for later pulls.
    next_cursor: str
    has_more: bool


def may_pull_contacts(user: User, group: Group) -> bool:
    """Admins may pull any group; a group manager only their own; analysts never (PII)."""
    if user.role == "admin":
        return True
    return user.role == "group_manager" and user.group_id == group.id


def encode_cursor(signup_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{signup_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The signup id a cursor continues after; raises :class:`CursorError` for a bad cursor."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise CursorError("the cursor is not one this API returned") from None
    prefix, _, number = text.partition(":")
    if prefix + ":" != _CURSOR_PREFIX or not number.isdigit() or len(number) > 18:
        raise CursorError("the cursor is not one this API returned")
    return int(number)


def _contacts_after(
    session: so.Session, group: Group, after_id: int, limit: int
) -> list[GroupContact]:
    rows = session.execute(
        sa.select(Signup, Contact)
        .join(Contact, Contact.id == Signup.contact_id)
        .where(Signup.group_id == group.id, Signup.id > after_id)
        .order_by(Signup.id)
        .limit(limit)
    )
    return [
        GroupContact(
            signup_id=signup.id,
            email=contact.email,
            first_name=contact.first_name,
            zip_code=contact.zip_code,
            signed_up_at=signup.created_at,
            consent_text=signup.consent_text,
            position=signup.position,
            groups_shown=list(signup.groups_order),
        )
        for signup, contact in rows
    ]


def contacts_page(
    session: so.Session, group: Group, since: str | None = None, limit: int = PAGE_SIZE
) -> ContactPage:
    """The next ``limit`` contacts of ``group`` after cursor ``since`` (from the start if None).

    Raises :class:`CursorError` for a bad cursor and ``ValueError`` for a limit outside
    1..:data:`MAX_PAGE_SIZE`.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    after_id = decode_cursor(since) if since else 0
    contacts = _contacts_after(session, group, after_id, limit + 1)
    has_more = len(contacts) > limit
    contacts = contacts[:limit]
    last_id = contacts[-1].signup_id if contacts else after_id
    return ContactPage(contacts=contacts, next_cursor=encode_cursor(last_id), has_more=has_more)


def _safe_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def iter_contacts_csv(session: so.Session, group: Group) -> Iterator[str]:
    """The contacts of ``group`` as CSV text, header first, yielded in batches (streamable)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    after_id = 0
    while True:
        batch = _contacts_after(session, group, after_id, CSV_BATCH)
        for contact in batch:
            row = contact.as_json()
            row["groups_shown"] = " ".join(contact.groups_shown)
            writer.writerow([_safe_cell(row[column]) for column in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(batch) < CSV_BATCH:
            return
        after_id = batch[-1].signup_id
