import time

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient

from engine.app import create_app
from engine.models import Event, QuarantinedEvent
from engine.settings import Settings
from tests.webhooks.helpers import T0, Fixture, apply_inbox, counts, event, post
from webhooks import web, wire


def test_signed_batch_is_accepted(webhook_client, signing_key, world, session) -> None:  # type: ignore[no-untyped-def]
    send = world.sends[0]
    response = post(webhook_client, signing_key, [event("delivered", send, T0)], apply=False)
    assert response.status_code == 200
    assert response.json == {"received": 1, "queued": True}
    assert counts(session)["inbox"] == 1 and counts(session)["events"] == 0
    applied = apply_inbox(webhook_client.application)
    assert (applied.applied, applied.stored) == (1, 1)
    assert counts(session)["inbox"] == 0 and counts(session)["events"] == 1


@pytest.mark.parametrize(
    "case",
    [
        "wrong key",
        "timestamp changed",
        "body re-serialized",
        "trailing CRLF stripped",
        "bad base64",
        "missing signature",
        "missing timestamp",
        "missing both",
    ],
)
def test_bad_signatures_get_403_and_change_nothing(  # type: ignore[no-untyped-def]
    webhook_client, signing_key, world, session, case: str
) -> None:
    body = wire.build_body([event("delivered", world.sends[0], T0)])
    headers = wire.signed_headers(signing_key, body, "1795000000")
    if case == "wrong key":
        headers = wire.signed_headers(wire.new_private_key(), body, "1795000000")
    elif case == "timestamp changed":
        headers[wire.TIMESTAMP_HEADER] = "1795000001"
    elif case == "body re-serialized":
        body = body.replace(b",", b", ")
    elif case == "trailing CRLF stripped":
        body = body.rstrip(b"\r\n")
    elif case == "bad base64":
        headers[wire.SIGNATURE_HEADER] = "@@not base64@@"
    elif case == "missing signature":
        del headers[wire.SIGNATURE_HEADER]
    elif case == "missing timestamp":
        del headers[wire.TIMESTAMP_HEADER]
    else:
        headers = {"Content-Type": "application/json"}
    before = counts(session)
    response = webhook_client.post("/webhooks/sendgrid", data=body, headers=headers)
    assert response.status_code == 403
    assert response.json["error"] == "Forbidden"
    assert counts(session) == before


def test_without_a_key_every_request_is_refused(client, signing_key, world, session) -> None:  # type: ignore[no-untyped-def]
    # The shared app fixture has no key configured (and no simulator key file in tests).
    response = post(client, signing_key, [event("delivered", world.sends[0], T0)])
    assert response.status_code == 403
    assert counts(session)["events"] == 0


def test_verification_can_be_switched_off_for_development(  # type: ignore[no-untyped-def]
    settings: Settings, sessions, world, session
) -> None:
    app = create_app(
        {"TESTING": True},
        settings=settings.replace(sendgrid={"verify_webhook_signature": False}),
        sessions=sessions,
    )
    body = wire.build_body([event("delivered", world.sends[0], T0)])
    response = app.test_client().post("/webhooks/sendgrid", data=body)
    assert response.status_code == 200
    assert apply_inbox(app).stored == 1
    assert counts(session)["events"] == 1


def test_bearer_token_when_configured(  # type: ignore[no-untyped-def]
    webhook_settings: Settings, sessions, signing_key, world, session
) -> None:
    app = create_app(
        {"TESTING": True},
        settings=webhook_settings.replace(sendgrid={"webhook_bearer_token": "tok-123"}),
        sessions=sessions,
    )
    events = [event("delivered", world.sends[0], T0)]
    client = app.test_client()
    assert post(client, signing_key, events).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert post(client, signing_key, events, headers=wrong).status_code == 401
    assert counts(session)["events"] == 0
    right = {"Authorization": "Bearer tok-123"}
    assert post(client, signing_key, events, headers=right).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"this is not json",
        b'[{"event":"delivered","email":"a@example.org","timestamp":1795000000},\r\n{"ev',
        b'{"event":"delivered","email":"a@example.org","timestamp":1795000000}\r\n',
        b"",
        b'[{"event":"delivered","email":"\xff@example.org","timestamp":1795000000}]\r\n',
        b"null",
    ],
    ids=["not json", "truncated", "object", "empty", "invalid utf-8", "null"],
)
def test_bodies_that_are_not_arrays_get_400_and_change_nothing(  # type: ignore[no-untyped-def]
    webhook_client, signing_key, session, body: bytes
) -> None:
    before = counts(session)
    response = post(webhook_client, signing_key, body=body)
    assert response.status_code == 400
    assert response.json["error"] == "Bad Request"
    assert response.json["message"].startswith("the body")
    assert counts(session) == before


def test_bad_elements_are_quarantined_and_the_batch_accepted(  # type: ignore[no-untyped-def]
    webhook_client, signing_key, world, session
) -> None:
    good = event("delivered", world.sends[0], T0)
    elements = [good, {"event": "open"}, "a string", None, {"email": "x@example.org"}]
    response = post(webhook_client, signing_key, elements, apply=False)
    assert response.status_code == 200
    assert response.json == {"received": 5, "queued": True}
    applied = apply_inbox(webhook_client.application)
    assert (applied.received, applied.stored, applied.quarantined) == (5, 1, 4)
    reasons = session.scalars(sa.select(QuarantinedEvent.reason).order_by(QuarantinedEvent.id))
    assert list(reasons) == [
        "missing 'timestamp'",
        "element is a JSON str, not an object",
        "element is a JSON NoneType, not an object",
        "missing or empty 'event'",
    ]


def test_too_large_body_is_a_json_413_and_changes_nothing(  # type: ignore[no-untyped-def]
    webhook_settings: Settings, sessions, signing_key, session
) -> None:
    app = create_app(
        {"TESTING": True},
        settings=webhook_settings.replace(webhooks={"max_body_bytes": 100_000}),
        sessions=sessions,
    )
    events = [event("delivered", None, T0, email=f"r{n}@example.org") for n in range(10_000)]
    body = wire.build_body(events)
    started = time.perf_counter()
    response = post(app.test_client(), signing_key, body=body)
    assert time.perf_counter() - started < 2
    assert response.status_code == 413
    assert response.json["error"] == "Request Entity Too Large"
    assert counts(session)["events"] == 0


def test_ten_thousand_events_are_accepted_fast(webhook_client, signing_key, session) -> None:  # type: ignore[no-untyped-def]
    events = [event("delivered", None, T0, email=f"r{n}@example.org") for n in range(10_000)]
    body = wire.build_body(events)
    assert len(body) < 4 * 1024 * 1024
    started = time.perf_counter()
    response = post(webhook_client, signing_key, body=body, apply=False)
    assert time.perf_counter() - started < 5
    assert response.status_code == 200
    assert response.json == {"received": 10_000, "queued": True}
    assert apply_inbox(webhook_client.application).stored == 10_000
    assert counts(session)["events"] == 10_000


def test_database_failure_is_a_503_and_nothing_is_kept(  # type: ignore[no-untyped-def]
    webhook_client: FlaskClient,
    signing_key: ec.EllipticCurvePrivateKey,
    world: Fixture,
    session: so.Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = [event("delivered", world.sends[0], T0), event("open", world.sends[0], T0 + 9)]
    before = counts(session)

    def failing_enqueue(*_args: object) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(web, "enqueue", failing_enqueue)
    response = post(webhook_client, signing_key, events)
    assert response.status_code == 503
    assert response.json["error"] == "Service Unavailable"
    assert counts(session) == before
    monkeypatch.undo()
    retried = post(webhook_client, signing_key, events)
    assert retried.json == {"received": 2, "queued": True}
    assert session.scalar(sa.select(sa.func.count()).select_from(Event)) == 2


def test_get_is_not_allowed(webhook_client) -> None:  # type: ignore[no-untyped-def]
    response = webhook_client.get("/webhooks/sendgrid")
    assert response.status_code == 405
    assert response.json["error"] == "Method Not Allowed"
