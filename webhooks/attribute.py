"""Which send an event belongs to: our ``send_id`` custom arg, checked against SendGrid's ids.

The mailer puts ``send_id`` (and ``mailing_id``) in every personalization's custom args, and
stores the request's ``X-Message-Id`` on each send; every ``sg_message_id`` of that request starts
with it. A ``send_id`` is trusted only when it names a send that agrees with the event's message
id prefix and mailing (when both sides have them). Otherwise the prefix plus the recipient address
identify the send (one recipient appears once per request). Events matching no send keep
``send_id = None``: they are stored, and never counted in a variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Contact, Recruiter, Send
from engine.suppressions import chunked
from webhooks import native
from webhooks.apply import lock_sends
from webhooks.native import Driver
from webhooks.parse import ParsedEvent

_CHUNK = 2000
_MAX_MESSAGE_ID = 64  # Send.x_message_id's size: longer prefixes match nothing


def claimed_sends(events: Sequence[ParsedEvent]) -> list[int]:
    """The send ids the events' custom args name, sorted (before the writer's turn)."""
    return sorted({e.send_id_arg for e in events if e.send_id_arg is not None})


def attribute(
    session: so.Session, db: Driver, events: Sequence[ParsedEvent], claimed: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Set ``send_id`` on each event that belongs to one of our sends (in place); ``claimed``
    is :func:`claimed_sends` of the events.

    Returns the locked states of the sends the events claim (see
    :func:`webhooks.apply.lock_sends`), which outcomes then reuse.
    """
    sends = lock_sends(db, claimed)
    dialect = db.name

    unresolved: list[ParsedEvent] = []
    for event in events:
        send = sends.get(event.send_id_arg)  # type: ignore[arg-type]  # None: no send
        if send is not None and _agrees(event, send):
            event.send_id = event.send_id_arg
        else:
            event.send_id = None
            if event.message_prefix and event.email:
                unresolved.append(event)
    if unresolved:
        _attribute_by_message_id(session, unresolved, dialect)
    return sends


def _agrees(event: ParsedEvent, send: dict[str, Any]) -> bool:
    prefix, x_message_id = event.message_prefix, send["x_message_id"]
    if prefix and x_message_id and prefix != x_message_id:
        return False
    mailing_id = event.mailing_id_arg
    return mailing_id is None or mailing_id == send["mailing_id"]


def _attribute_by_message_id(
    session: so.Session, events: Sequence[ParsedEvent], dialect: str
) -> None:
    prefixes = sorted(
        {
            e.message_prefix
            for e in events
            if e.message_prefix and len(e.message_prefix) <= _MAX_MESSAGE_ID
        }
    )
    owners: dict[tuple[str, str], int | None] = {}
    for chunk in chunked(prefixes, _CHUNK):
        statement = (
            sa.select(Send.id, Send.x_message_id, Contact.email)
            .join(Recruiter, Send.recruiter_id == Recruiter.id)
            .join(Contact, Recruiter.contact_id == Contact.id)
            .where(native.is_in(Send.x_message_id, chunk, dialect))
        )
        for send_id, x_message_id, email in session.execute(statement):
            key = (x_message_id, email)
            # Two sends with one request id and address would be a mailer bug: trust neither.
            owners[key] = None if key in owners else send_id
    for event in events:
        event.send_id = owners.get((event.message_prefix or "", event.email or ""))
