"""Recruiters: codes, links, counts (aggregates only) and magic links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
import sqlalchemy.orm as so
import time_machine

from engine import recruiters, tokens
from engine.models import Contact, Recruiter, Visit
from engine.settings import Settings
from tests.engine.sending import factories

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def test_ensure_recruiter_is_idempotent_with_an_unguessable_code(session: so.Session) -> None:
    contact = Contact(email="a@example.org", zip_code="10001")
    session.add(contact)
    session.flush()
    first = recruiters.ensure_recruiter(session, contact)
    again = recruiters.ensure_recruiter(session, contact)
    assert first.id == again.id
    assert len(first.code) >= 10 and first.code.replace("-", "").replace("_", "").isalnum()
    codes = {recruiters.new_referral_code() for _ in range(1000)}
    assert len(codes) == 1000


def test_referral_link_names_the_share_variant_with_a_signed_token(settings: Settings) -> None:
    share = recruiters.share_token(settings, 42)
    link = recruiters.referral_link("https://r.example/", "abc", share_token=share)
    query = parse_qs(urlsplit(link).query)
    assert link.startswith("https://r.example/?")
    assert query["r"] == ["abc"]
    assert tokens.read(settings.secret_key, tokens.SHARE, query["s"][0], None) == 42
    assert tokens.read(settings.secret_key, tokens.SEND, query["s"][0], None) is None
    assert recruiters.referral_link("https://r.example", "abc") == "https://r.example/?r=abc"


def test_counts_are_friends_and_the_distinct_groups_they_joined(session: so.Session) -> None:
    alice, bob, carol = factories.recruiters(session, 3)
    g1, g2, g3 = factories.groups(session, "one", "two", "three")
    factories.friends_of(session, alice, {"f1@example.org": [g1, g2], "f2@example.org": [g1]})
    factories.friends_of(session, bob, {"f3@example.org": [g3]})
    # a visit through the link that did not convert, and the recruiter signing up themself
    session.add(Visit(visitor_id="v-none", recruiter_id=alice.id))
    session.add(Visit(visitor_id="v-self", recruiter_id=alice.id, contact_id=alice.contact_id))
    session.flush()
    counts = recruiters.recruiter_counts(session)
    assert counts[alice.id] == recruiters.RecruiterCounts(friends=2, groups=2)
    assert counts[bob.id] == recruiters.RecruiterCounts(friends=1, groups=1)
    assert carol.id not in counts
    assert recruiters.recruiter_counts(session, [bob.id]) == {
        bob.id: recruiters.RecruiterCounts(1, 1)
    }
    assert recruiters.recruiter_counts(session, []) == {}


def test_magic_link_expires_after_the_configured_hours(
    session: so.Session, settings: Settings
) -> None:
    [alice] = factories.recruiters(session, 1)
    with time_machine.travel(NOW, tick=False):
        link = recruiters.magic_link(settings, alice.id)
    token = link.rsplit("/", 1)[1]
    assert link.startswith(f"{settings.web.base_url}/recruiter/")
    hours = settings.web.magic_link_hours
    with time_machine.travel(NOW + timedelta(hours=hours) - timedelta(minutes=1), tick=False):
        assert recruiters.recruiter_from_magic_token(session, settings, token) == alice
    with time_machine.travel(NOW + timedelta(hours=hours, minutes=1), tick=False):
        assert recruiters.recruiter_from_magic_token(session, settings, token) is None


def test_magic_link_refuses_forged_and_inactive(session: so.Session, settings: Settings) -> None:
    [alice] = factories.recruiters(session, 1)
    token = recruiters.magic_link(settings, alice.id).rsplit("/", 1)[1]
    assert recruiters.recruiter_from_magic_token(session, settings, token + "x") is None
    other_purpose = tokens.sign(settings.secret_key, tokens.SEND, alice.id)
    assert recruiters.recruiter_from_magic_token(session, settings, other_purpose) is None
    session.execute(sa.update(Recruiter).where(Recruiter.id == alice.id).values(active=False))
    session.expire_all()
    assert recruiters.recruiter_from_magic_token(session, settings, token) is None
