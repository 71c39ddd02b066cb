"""Unsubscribe (GET confirms, POST acts, one click, no CSRF) and the recruiter's magic page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
import sqlalchemy.orm as so
import time_machine
from flask.testing import FlaskClient

from engine import recruiters, suppressions, tokens
from engine.models import Suppression, Variant
from engine.settings import Settings
from tests.engine.sending import factories


def setup_send(session: so.Session):
    experiments = factories.mail_experiments(session)
    [recruiter] = factories.recruiters(session, 1, prefix="unsub")
    send = factories.sent_send(session, recruiter, experiments)
    session.commit()
    return send, experiments


def unsubscribe_path(settings: Settings, send_id: int) -> str:
    return f"/unsubscribe/{tokens.sign(settings.secret_key, tokens.UNSUBSCRIBE, send_id)}"


def test_get_shows_a_button_and_changes_nothing(
    client: FlaskClient, session: so.Session, settings: Settings
) -> None:
    send, _ = setup_send(session)
    path = unsubscribe_path(settings, send.id)
    response = client.get(path)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<form method="post"' in page and f'action="{path}"' in page
    assert response.headers["Cache-Control"] == "no-store"
    session.expire_all()
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0
    assert send.unsubscribed_at is None


def test_post_unsubscribes_once_without_a_csrf_token(
    client: FlaskClient, session: so.Session, settings: Settings
) -> None:
    send, experiments = setup_send(session)
    path = unsubscribe_path(settings, send.id)
    # RFC 8058: what a mail client posts for one-click unsubscribe
    response = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert "You are unsubscribed" in response.get_data(as_text=True)
    assert client.post(path).status_code == 200  # twice changes nothing more
    session.expire_all()
    assert suppressions.suppressed_emails(session, ["unsub0@example.org"], 999) == {
        "unsub0@example.org"
    }
    assert send.unsubscribed_at is not None
    subject_variant = session.get(Variant, experiments["subject"].variants[0].id)
    assert subject_variant.unsubscribes == 1
    assert session.get(Variant, experiments["subject"].variants[1].id).unsubscribes == 0


def test_forged_or_foreign_tokens_are_a_400_page(
    client: FlaskClient, session: so.Session, settings: Settings
) -> None:
    send, _ = setup_send(session)
    good = tokens.sign(settings.secret_key, tokens.UNSUBSCRIBE, send.id)
    wrong_purpose = tokens.sign(settings.secret_key, tokens.SEND, send.id)
    unknown_send = tokens.sign(settings.secret_key, tokens.UNSUBSCRIBE, 10**9)
    for token in (good[:-2] + "xx", wrong_purpose, unknown_send, "garbage"):
        for method in (client.get, client.post):
            response = method(f"/unsubscribe/{token}")
            assert response.status_code == 400, (token, method)
            assert "This link does not work" in response.get_data(as_text=True)
    session.expire_all()
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0


def test_recruiter_page_shows_counts_never_addresses(
    client: FlaskClient, session: so.Session, settings: Settings
) -> None:
    [alice] = factories.recruiters(session, 1, prefix="page")
    g1, g2 = factories.groups(session, "swing", "indivisible")
    factories.friends_of(
        session, alice, {"friend.one@example.org": [g1, g2], "friend.two@example.org": [g1]}
    )
    session.commit()
    response = client.get(urlsplit(recruiters.magic_link(settings, alice.id)).path)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<dd id="friends-count">2</dd>' in page
    assert '<dd id="groups-count">2</dd>' in page
    assert "@example.org" not in page
    assert f"?r={alice.code}" in page
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_recruiter_page_refuses_a_bad_link(client: FlaskClient, settings: Settings) -> None:
    forged = tokens.sign("not-our-secret", tokens.MAGIC_LINK, 1)
    response = client.get(f"/recruiter/{forged}")
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)


def test_recruiter_page_refuses_an_expired_link(
    client: FlaskClient, session: so.Session, settings: Settings
) -> None:
    [alice] = factories.recruiters(session, 1, prefix="late")
    session.commit()
    signed_at = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    with time_machine.travel(signed_at, tick=False):
        path = urlsplit(recruiters.magic_link(settings, alice.id)).path
        assert client.get(path).status_code == 200
    late = signed_at + timedelta(hours=settings.web.magic_link_hours, seconds=1)
    with time_machine.travel(late, tick=False):
        response = client.get(path)
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
