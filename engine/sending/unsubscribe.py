"""Unsubscribing from a recruiter email: the signed token names the send, and so the address.

Unsubscribing suppresses the address globally (it is never mailed again), records the send's
``unsubscribed_at`` and credits the ``unsubscribe`` guardrail counter of its variants and its
report rollup, all once per send: a second click, or SendGrid reporting the same unsubscribe,
changes nothing more.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import outcomes, suppressions, tokens
from engine.models import Contact, Recruiter, Send
from engine.reports import rollups
from engine.settings import Settings


def send_for_token(session: so.Session, settings: Settings, token: str) -> Send | None:
    """The send an unsubscribe token names, or ``None`` for a forged, garbled or unknown one.

    Unsubscribe tokens never expire: an old email's link must keep working.
    """
    send_id = tokens.read(settings.secret_key, tokens.UNSUBSCRIBE, token, None)
    return session.get(Send, send_id) if send_id is not None else None


def address_of(session: so.Session, send: Send) -> str:
    """The recipient address of ``send`` (to suppress it; never logged)."""
    return session.execute(
        sa.select(Contact.email)
        .join(Recruiter, Recruiter.contact_id == Contact.id)
        .where(Recruiter.id == send.recruiter_id)
    ).scalar_one()


def unsubscribe(session: so.Session, send: Send, at: datetime) -> bool:
    """Suppress the send's address globally and credit the unsubscribe once per send.

    Returns whether this call recorded the send's unsubscribe (``False`` when already done).
    """
    suppressions.suppress(
        session, address_of(session, send), suppressions.GLOBAL, "unsubscribe", at
    )
    first = session.execute(
        sa.update(Send)
        .where(Send.id == send.id, Send.unsubscribed_at.is_(None))
        .values(unsubscribed_at=at)
        .returning(Send.status, *rollups.SEND_KEY_COLUMNS)
    ).first()
    if first is None:
        return False
    outcomes.credit_sends(session, "unsubscribe", [send])
    key = rollups.send_key(*first)
    if key is not None:  # after the variants' counters: rollups are locked last
        changes = rollups.RollupChanges()
        changes.sends[key]["unsubscribes"] += 1
        changes.apply(session)
    return True
