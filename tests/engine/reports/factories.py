"""Rows for report tests, built through the models (the data model is the contract).

Rows made here bypass the write points, so the report rollups are rebuilt from them
(:func:`rebuilt`) before a report reads them: the report tests then check the rebuild's
definitions and the reports together. tests/engine/reports/test_rollups.py checks that the
write points keep the rollups equal to a rebuild.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy.orm as so

from engine.auth import create_user, issue_api_token
from engine.models import (
    AllocationSnapshot,
    Contact,
    Decision,
    Experiment,
    Group,
    Mailing,
    Recruiter,
    Send,
    Signup,
    User,
    Variant,
    Visit,
)
from engine.reports.rebuild import rebuild_rollups

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
_serial = itertools.count(1)


def rebuilt(session: so.Session) -> so.Session:
    """``session`` after recomputing the rollups from the rows made so far."""
    session.flush()
    rebuild_rollups(session)
    return session


def group(session: so.Session, slug: str, **fields: Any) -> Group:
    row = Group(slug=slug, name=fields.pop("name", slug.replace("-", " ").title()), **fields)
    session.add(row)
    session.flush()
    return row


def experiment(
    session: so.Session,
    kind: str = "subject",
    metric: str = "click",
    keys: tuple[str, ...] = ("a", "b"),
    **fields: Any,
) -> Experiment:
    key = fields.pop("key", f"{kind}-{metric}-{next(_serial)}")
    row = Experiment(key=key, name=fields.pop("name", key), kind=kind, metric=metric, **fields)
    row.variants = [
        Variant(key=k, name=k.upper(), is_control=(i == 0), weight=1 / len(keys))
        for i, k in enumerate(keys)
    ]
    row.created_at = T0
    session.add(row)
    session.flush()
    return row


def contact(session: so.Session, at: datetime = T0) -> Contact:
    n = next(_serial)
    row = Contact(email=f"person{n}@example.org", zip_code="10001", created_at=at)
    session.add(row)
    session.flush()
    return row


def recruiter(session: so.Session, code: str | None = None, at: datetime = T0) -> Recruiter:
    row = Recruiter(contact=contact(session, at), code=code or f"r{next(_serial)}", created_at=at)
    session.add(row)
    session.flush()
    return row


def mailing(session: so.Session, at: datetime = T0, key: str | None = None) -> Mailing:
    row = Mailing(
        key=key or f"mailing-{next(_serial)}",
        asm_group_id=101,
        status="sent",
        scheduled_for=at,
        created_at=at,
    )
    session.add(row)
    session.flush()
    return row


def send(
    session: so.Session,
    mailing_row: Mailing,
    *,
    subject: Variant | None = None,
    body: Variant | None = None,
    share: Variant | None = None,
    at: datetime | None = None,
    status: str = "sent",
    recruiter_row: Recruiter | None = None,
    **outcomes: datetime | None,
) -> Send:
    """A send; ``outcomes`` sets columns such as ``delivered_at`` or ``first_click_at``."""
    at = at or mailing_row.scheduled_for
    row = Send(
        mailing_id=mailing_row.id,
        recruiter_id=(recruiter_row or recruiter(session, at=at)).id,
        subject_variant_id=subject.id if subject else None,
        body_variant_id=body.id if body else None,
        share_variant_id=share.id if share else None,
        status=status,
        sent_at=at if status == "sent" else None,
        created_at=at,
        **outcomes,
    )
    session.add(row)
    session.flush()
    return row


def visit(
    session: so.Session,
    at: datetime = T0,
    *,
    landing: Variant | None = None,
    source: Group | None = None,
    recruiter_row: Recruiter | None = None,
    send_row: Send | None = None,
    joins: list[Group] | None = None,
    signup_at: datetime | None = None,
) -> Visit:
    """A visit; with ``joins`` the visitor signs up (a new contact) for those groups."""
    row = Visit(
        visitor_id=f"visitor-{next(_serial)}",
        landing_variant_id=landing.id if landing else None,
        source_group_id=source.id if source else None,
        recruiter_id=recruiter_row.id if recruiter_row else None,
        send_id=send_row.id if send_row else None,
        created_at=at,
    )
    session.add(row)
    session.flush()
    if joins:
        signed_at = signup_at or at + timedelta(minutes=2)
        person = contact(session, signed_at)
        row.contact_id, row.converted_at = person.id, signed_at
        order = [g.slug for g in joins]
        for position, joined in enumerate(joins):
            session.add(
                Signup(
                    contact_id=person.id,
                    group_id=joined.id,
                    visit_id=row.id,
                    consent_text="consent",
                    groups_order=order,
                    position=position,
                    created_at=signed_at,
                )
            )
        session.flush()
    return row


def snapshot(session: so.Session, exp: Experiment, at: datetime, weights: dict[str, float]) -> None:
    """Allocation weights by variant key, as the policy stores them (by variant id)."""
    ids = {v.key: v.id for v in exp.variants}
    session.add(
        AllocationSnapshot(
            experiment_id=exp.id,
            status="running",
            weights={str(ids[k]): w for k, w in weights.items()},
            created_at=at,
        )
    )
    session.flush()


def decision(
    session: so.Session, exp: Experiment, kind: str, at: datetime, variant_key: str | None = None
) -> Decision:
    variant_id = next(v.id for v in exp.variants if v.key == variant_key) if variant_key else None
    row = Decision(
        experiment_id=exp.id,
        variant_id=variant_id,
        kind=kind,
        reason=f"{kind} for the test",
        snapshot={"p_best": {variant_key or "-": 0.97}},
        created_at=at,
    )
    session.add(row)
    session.flush()
    return row


def user(session: so.Session, role: str, group_slug: str | None = None) -> tuple[User, str]:
    """A staff user of ``role`` and its API token."""
    name = f"{role}-{next(_serial)}"
    row = create_user(session, name, "correct horse battery", role, group_slug)
    return row, issue_api_token(row)


def demo_dataset(session: so.Session, seed: int = 7) -> dict[str, Any]:
    """A small, realistic, deterministic world: groups, experiments, a mailing, visits, signups."""
    rng = random.Random(seed)
    groups = [group(session, slug) for slug in ("swing-left", "indivisible", "sister-district")]
    subject = experiment(
        session, "subject", "click", ("plain", "urgent", "friendly"), policy_areas=["voting rights"]
    )
    landing = experiment(session, "landing", "signup", ("hero", "story"), policy_areas=["climate"])
    snapshot(session, subject, T0, {"plain": 1 / 3, "urgent": 1 / 3, "friendly": 1 / 3})
    snapshot(
        session, subject, T0 + timedelta(days=3), {"plain": 0.2, "urgent": 0.6, "friendly": 0.2}
    )
    decision(session, subject, "status", T0)
    recruiters = [recruiter(session, f"code{i:02d}", T0) for i in range(12)]
    click_rates = {"plain": 0.05, "urgent": 0.12, "friendly": 0.08}
    for day in range(6):
        batch = mailing(session, T0 + timedelta(days=day), key=f"recruiters-day-{day}")
        for person in recruiters:
            chosen = rng.choice(subject.variants)
            at = batch.scheduled_for
            clicked = rng.random() < click_rates[chosen.key] * 3
            row = send(
                session,
                batch,
                subject=chosen,
                recruiter_row=person,
                delivered_at=at + timedelta(seconds=30),
                first_open_at=at + timedelta(hours=1) if clicked or rng.random() < 0.3 else None,
                first_click_at=at + timedelta(hours=2) if clicked else None,
            )
            if clicked:
                joins = rng.sample(groups, rng.randint(1, 2)) if rng.random() < 0.5 else None
                v = visit(session, at + timedelta(hours=2), send_row=row, joins=joins)
                if joins:
                    row.converted_at = v.converted_at
        for n in range(10):
            source = groups[n % 3]
            sponsor = recruiters[n % 4] if n % 2 else None
            joins = rng.sample(groups, rng.randint(1, 3)) if rng.random() < 0.4 else None
            visit(
                session,
                T0 + timedelta(days=day, hours=n),
                landing=landing.variants[n % 2],
                source=source,
                recruiter_row=sponsor,
                joins=joins,
            )
    rebuilt(session)
    return {"groups": groups, "subject": subject, "landing": landing, "recruiters": recruiters}
