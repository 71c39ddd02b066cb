"""Test data for the mailer: experiments with realistic variants, recruiters, renderers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Contact, Experiment, Recruiter, Variant
from engine.sending.composer import Renderers
from variants import rendering

BODY_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hi {{ first_name }}, {{ friends_count }} friends joined
{{ groups_count }} groups.</mj-text>
<mj-text>{{ share_text }}</mj-text>
<mj-button href="{{ referral_link }}">Invite friends</mj-button>
<mj-text><a href="{{ recruiter_page_url }}">Your page</a>
<a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>
</mj-column></mj-section></mj-body></mjml>"""

SUBJECTS = {
    "urgent": {"subject": "{{ first_name }}, we need you this week", "preheader": "Two minutes"},
    "friendly": {"subject": "Not yet active? Find the role that works best for you"},
}
BODIES = {"story": {"mjml": BODY_MJML}, "short": {"mjml": BODY_MJML.replace("Hi", "Hello")}}
SHARES = {
    "plain": {"text": "Join me: {{ referral_link }}"},
    "personal": {"text": "I signed up & you can too <3 {{ referral_link }}"},
}


def renderers() -> Renderers:
    """The real variants.rendering functions, as the CLI hands them in."""
    return Renderers(compile_body=rendering.compile_body, render_text=rendering.render_text)


def experiment(
    session: so.Session,
    kind: str,
    variants: Mapping[str, Mapping[str, Any]],
    *,
    key: str | None = None,
    metric: str = "click",
    status: str = "running",
    burn_in: int = 0,
    floor: float = 0.0,
    **fields: Any,
) -> Experiment:
    exp = Experiment(
        key=key or f"recruiter-{kind}",
        name=f"{kind} test",
        kind=kind,
        metric=metric,
        status=status,
        burn_in=burn_in,
        floor=floor,
        **fields,
    )
    exp.variants = [
        Variant(key=vkey, name=vkey.title(), content=dict(content), is_control=i == 0)
        for i, (vkey, content) in enumerate(variants.items())
    ]
    session.add(exp)
    session.flush()
    return exp


def mail_experiments(session: so.Session, **options: Any) -> dict[str, Experiment]:
    """Running subject, body and share experiments with two variants each."""
    return {
        "subject": experiment(session, "subject", SUBJECTS, **options),
        "body": experiment(session, "body", BODIES, **options),
        "share": experiment(session, "share", SHARES, metric="signup", **options),
    }


def recruiters(session: so.Session, count: int, *, prefix: str = "r") -> list[Recruiter]:
    """``count`` active recruiters with contacts ``<prefix><i>@example.org``, bulk inserted."""
    if count == 0:
        return []
    contact_rows = [
        {"email": f"{prefix}{i}@example.org", "zip_code": "10001", "first_name": f"Name{i}"}
        for i in range(count)
    ]
    ids = session.scalars(
        sa.insert(Contact).returning(Contact.id, sort_by_parameter_order=True), contact_rows
    ).all()
    session.execute(
        sa.insert(Recruiter),
        [{"contact_id": cid, "code": f"{prefix}code{i}"} for i, cid in enumerate(ids)],
    )
    session.flush()
    return list(
        session.scalars(
            sa.select(Recruiter).where(Recruiter.contact_id.in_(ids)).order_by(Recruiter.id)
        )
    )


def friends_of(
    session: so.Session, recruiter: Recruiter, groups_by_friend: Mapping[str, list[Any]]
) -> None:
    """Friends who signed up through ``recruiter``'s link, each ticking the given groups."""
    from datetime import UTC, datetime

    from engine.models import Contact, Signup, Visit

    at = datetime(2026, 11, 1, tzinfo=UTC)
    for email, groups in groups_by_friend.items():
        friend = Contact(email=email, zip_code="10001", first_name="Friend")
        session.add(friend)
        session.flush()
        visit = Visit(
            visitor_id=email[:36],
            recruiter_id=recruiter.id,
            contact_id=friend.id,
            converted_at=at,
        )
        session.add(visit)
        session.flush()
        for group in groups:
            session.add(
                Signup(
                    contact_id=friend.id,
                    group_id=group.id,
                    visit_id=visit.id,
                    consent_text="yes",
                    created_at=at,
                )
            )
    session.flush()


def groups(session: so.Session, *slugs: str) -> list[Any]:
    from engine.models import Group

    made = [Group(slug=slug, name=slug.title()) for slug in slugs]
    session.add_all(made)
    session.flush()
    return made


def sent_send(
    session: so.Session,
    recruiter: Recruiter,
    experiments: Mapping[str, Experiment],
    key: str = "m1",
) -> Any:
    """A mailing (``key``) with one sent send to ``recruiter``, first variant of each kind."""
    from datetime import UTC, datetime

    from engine.models import Mailing, Send

    at = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    mailing = session.scalar(sa.select(Mailing).where(Mailing.key == key))
    if mailing is None:
        mailing = Mailing(key=key, asm_group_id=101, scheduled_for=at, status="sent")
        session.add(mailing)
        session.flush()
    send = Send(
        mailing_id=mailing.id,
        recruiter_id=recruiter.id,
        subject_variant_id=experiments["subject"].variants[0].id,
        body_variant_id=experiments["body"].variants[0].id,
        share_variant_id=experiments["share"].variants[0].id,
        status="sent",
        sent_at=at,
    )
    session.add(send)
    session.flush()
    return send
