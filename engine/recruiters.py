"""Recruiters: personal referral codes and links, their counts, and magic links to their page.

A recruiter's link is ``<base_url>/?r=<code>``; when it carries a share text it also names that
variant with a signed token (``&s=<token>``), so a friend's signup credits the text that brought
them. Links inside an email add ``&t=<send token>`` so the click credits the send too.

Counts are aggregates only, never the friends' addresses:

- ``friends``: distinct contacts (other than the recruiter) who signed up on a visit that came
  through the recruiter's link (``Visit.recruiter_id`` with ``Visit.contact_id`` set);
- ``groups``: distinct groups those friends ticked on those visits (``Signup.visit_id``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import tokens
from engine.models import Contact, Recruiter, Send, Signup, Visit
from engine.reports import rollup_visits
from engine.settings import Settings

CODE_BYTES = 8  # 11 URL-safe characters: unguessable, short enough to type


@dataclass(frozen=True)
class RecruiterCounts:
    """What a recruiter brought: friends who signed up and the groups those friends joined."""

    friends: int = 0
    groups: int = 0


def new_referral_code() -> str:
    """A random, unguessable, URL-safe referral code."""
    return secrets.token_urlsafe(CODE_BYTES)


def ensure_recruiter(session: so.Session, contact: Contact) -> Recruiter:
    """Return the contact's recruiter, creating it with a fresh code (idempotent).

    A concurrent creation for the same contact is resolved with a savepoint: the loser reads the
    winner's row. Raises ``sqlalchemy.exc.IntegrityError`` only for an impossible code collision.
    """
    existing = session.scalar(sa.select(Recruiter).where(Recruiter.contact_id == contact.id))
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            recruiter = Recruiter(contact_id=contact.id, code=new_referral_code())
            session.add(recruiter)
    except sa.exc.IntegrityError:
        existing = session.scalar(sa.select(Recruiter).where(Recruiter.contact_id == contact.id))
        if existing is None:
            raise
        return existing
    rollup_visits.record_new_recruiter(session, recruiter.created_at)  # the report's ladder
    return recruiter


def referral_link(
    base_url: str, code: str, *, share_token: str | None = None, send_token: str | None = None
) -> str:
    """The landing-page link of a recruiter: ``/?r=<code>[&s=<share token>][&t=<send token>]``."""
    query = {"r": code}
    if share_token:
        query["s"] = share_token
    if send_token:
        query["t"] = send_token
    return f"{base_url.rstrip('/')}/?{urlencode(query)}"


def share_token(settings: Settings, share_variant_id: int) -> str:
    """The signed ``?s=`` token naming a share-text variant."""
    return tokens.sign(settings.secret_key, tokens.SHARE, share_variant_id)


def recruiter_counts(
    session: so.Session, recruiter_ids: Iterable[int] | None = None
) -> dict[int, RecruiterCounts]:
    """Counts per recruiter id, computed in one aggregate query.

    ``recruiter_ids=None`` counts every recruiter; recruiters who brought nobody are absent from
    the result (read it with ``.get(id, RecruiterCounts())``).
    """
    query = (
        sa.select(
            Visit.recruiter_id,
            sa.func.count(sa.distinct(Visit.contact_id)),
            sa.func.count(sa.distinct(Signup.group_id)),
        )
        .join(Recruiter, Recruiter.id == Visit.recruiter_id)
        .outerjoin(Signup, Signup.visit_id == Visit.id)
        .where(Visit.contact_id.is_not(None), Visit.contact_id != Recruiter.contact_id)
        .group_by(Visit.recruiter_id)
    )
    if recruiter_ids is not None:
        ids = list(recruiter_ids)
        if not ids:
            return {}
        query = query.where(Visit.recruiter_id.in_(ids))
    return {
        recruiter_id: RecruiterCounts(friends=friends, groups=groups)
        for recruiter_id, friends, groups in session.execute(query)
    }


def magic_link(settings: Settings, recruiter_id: int) -> str:
    """The recruiter's passwordless link to their own page (expires after magic_link_hours)."""
    token = tokens.sign(settings.secret_key, tokens.MAGIC_LINK, recruiter_id)
    return f"{settings.web.base_url.rstrip('/')}/recruiter/{token}"


def recruiter_from_magic_token(
    session: so.Session, settings: Settings, token: str
) -> Recruiter | None:
    """The active recruiter a magic-link token names, or ``None`` if the token is forged,
    expired, garbled, or names no active recruiter."""
    recruiter_id = tokens.read(
        settings.secret_key, tokens.MAGIC_LINK, token, settings.web.magic_link_hours * 3600
    )
    if recruiter_id is None:
        return None
    recruiter = session.get(Recruiter, recruiter_id)
    return recruiter if recruiter is not None and recruiter.active else None


def latest_share_variant_id(session: so.Session, recruiter_id: int) -> int | None:
    """The share-text variant of the recruiter's most recent sent email, if any."""
    return session.scalar(
        sa.select(Send.share_variant_id)
        .where(
            Send.recruiter_id == recruiter_id,
            Send.status == "sent",
            Send.share_variant_id.is_not(None),
        )
        .order_by(Send.sent_at.desc(), Send.id.desc())
        .limit(1)
    )
