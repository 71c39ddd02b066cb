"""Builders for webhook tests: sends to attribute to, SendGrid-shaped events, signed posts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from engine.models import (
    Contact,
    Event,
    Experiment,
    InboxBatch,
    Mailing,
    QuarantinedEvent,
    Recruiter,
    Send,
    Suppression,
    Variant,
    WebhookBatch,
)
from engine.settings import Settings
from webhooks import wire
from webhooks.inbox import DrainResult, drain
from webhooks.turn import WriterTurn

T0 = 1_795_000_000  # 2026-11-18T11:06:40Z, in seconds
NOW = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
_ids = itertools.count(1)


@dataclass
class SendInfo:
    id: int
    email: str
    x_message_id: str
    mailing_id: int
    variant_ids: list[int]


@dataclass
class Fixture:
    sends: list[SendInfo]
    subject: Experiment
    body: Experiment
    share: Experiment
    mailing_id: int
    extra: dict[str, Any] = field(default_factory=dict)


def seed_sends(session: so.Session, count: int, *, x_message_id: str = "XMSG0001") -> Fixture:
    """``count`` sends of one mailing request; every send uses arm "a" of each experiment."""
    experiments = []
    for kind, metric in (("subject", "click"), ("body", "open"), ("share", "signup")):
        exp = Experiment(
            key=f"{kind}-{next(_ids)}", name=kind, kind=kind, metric=metric, status="running"
        )
        exp.variants = [Variant(key="a", name="A"), Variant(key="b", name="B")]
        experiments.append(exp)
    mailing = Mailing(key=f"m-{next(_ids)}", asm_group_id=101, scheduled_for=NOW)
    session.add_all([*experiments, mailing])
    session.flush()
    sends = []
    for n in range(count):
        number = next(_ids)
        contact = Contact(email=f"recruiter{number}@example.org", zip_code="10001")
        recruiter = Recruiter(contact=contact, code=f"code{number}")
        session.add(recruiter)
        session.flush()
        send = Send(
            mailing_id=mailing.id,
            recruiter_id=recruiter.id,
            subject_variant_id=experiments[0].variants[0].id,
            body_variant_id=experiments[1].variants[0].id,
            share_variant_id=experiments[2].variants[0].id,
            status="sent",
            x_message_id=x_message_id,
            sent_at=NOW,
        )
        session.add(send)
        session.flush()
        sends.append(
            SendInfo(
                send.id,
                contact.email,
                x_message_id,
                mailing.id,
                [v.variants[0].id for v in experiments],
            )
        )
        del n
    return Fixture(sends, *experiments, mailing_id=mailing.id)


def event(kind: str, send: SendInfo | None, at: float | int | str, **fields: Any) -> dict[str, Any]:
    """A SendGrid event as it arrives, with our custom args as top-level keys."""
    number = next(_ids)
    result: dict[str, Any] = {
        "event": kind,
        "timestamp": at,
        "sg_event_id": f"evt-{number:08d}",
        "category": ["recruiter"],
    }
    if send is not None:
        result.update(
            email=send.email,
            sg_message_id=f"{send.x_message_id}.filterdrecv-7bd4-{number}-0",
            send_id=str(send.id),
            mailing_id=str(send.mailing_id),
            subject_variant=str(send.variant_ids[0]),
            body_variant=str(send.variant_ids[1]),
            share_variant=str(send.variant_ids[2]),
        )
    result.update(fields)
    return {k: v for k, v in result.items() if v is not None}


def post(
    client: FlaskClient,
    key: ec.EllipticCurvePrivateKey,
    events: list[Any] | None = None,
    *,
    body: bytes | None = None,
    timestamp: str = "1795000000",
    headers: dict[str, str] | None = None,
    apply: bool = True,
) -> TestResponse:
    """POST a signed body (built from ``events`` unless ``body`` is given); once the endpoint
    has stored it, apply the inbox as the applier process would (unless ``apply`` is false)."""
    if body is None:
        body = wire.build_body(events or [])
    all_headers = wire.signed_headers(key, body, timestamp)
    all_headers.update(headers or {})
    response = client.post("/webhooks/sendgrid", data=body, headers=all_headers)
    if apply and response.status_code == 200:
        apply_inbox(client.application)
    return response


def apply_inbox(app: Flask, limit: int | None = None) -> DrainResult:
    """Apply the pending webhook bodies of ``app``'s database (all, or ``limit``), as
    ``resistry events apply`` does."""
    return apply_pending(
        app.extensions["resistry.sessions"], app.extensions["resistry.settings"], limit
    )


def apply_pending(
    sessions: so.sessionmaker[so.Session], settings: Settings, limit: int | None = None
) -> DrainResult:
    """Apply the pending webhook bodies (all, or ``limit``), as ``resistry events apply``."""
    turn = WriterTurn(settings.database.url, settings.database.wal_checkpoint_seconds)
    with sessions() as session:
        return drain(session, settings.webhooks, turn, limit=limit)


def send_row(session: so.Session, send: SendInfo) -> Send:
    session.expire_all()
    row = session.get(Send, send.id)
    assert row is not None
    return row


def variant(session: so.Session, variant_id: int) -> Variant:
    session.expire_all()
    row = session.get(Variant, variant_id)
    assert row is not None
    return row


def counts(session: so.Session) -> dict[str, int]:
    """Rows per webhook table: the state that bad requests must leave alone."""
    tables = {
        "inbox": InboxBatch,
        "events": Event,
        "quarantined": QuarantinedEvent,
        "batches": WebhookBatch,
        "suppressions": Suppression,
    }
    return {
        name: session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
        for name, model in tables.items()
    }
