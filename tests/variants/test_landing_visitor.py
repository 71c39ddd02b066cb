"""The visitor cookie, the signup form's CSRF token bound to it, and the signed form context."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask, Response
from flask.testing import FlaskClient
from flask_wtf.csrf import CSRFError
from itsdangerous import BadData, Signer

from engine.models import Contact, Visit
from tests.variants.landing_support import add_experiment, add_groups, form_fields
from variants.landing_visitor import (
    COOKIE_NAME,
    COOKIE_SALT,
    CSRF_SALT,
    FormContextSigner,
    Visitor,
    VisitorCookies,
    _Signer,
    new_visitor,
)

COOKIES = VisitorCookies("test-secret", secure=False, max_age=timedelta(days=31))


def cookie_value(response: Response) -> str:
    cookie = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        cookie.load(header)
    return cookie[COOKIE_NAME].value


def request_with_cookie(app: Flask, value: str, **form: str):  # type: ignore[no-untyped-def]
    return app.test_request_context(
        "/signup", method="POST", data=form, headers={"Cookie": f"{COOKIE_NAME}={value}"}
    )


def test_a_visitor_survives_the_round_trip(app: Flask) -> None:
    visitor = Visitor("0b7e6f1e-1a1b-4c5d-9e8f-123456789abc", 3, 7, 41, (7, 2, None, 9, None))
    response = Response()
    COOKIES.write(response, visitor)
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Max-Age=2678400" in header
    assert "Secure" not in header
    with request_with_cookie(app, cookie_value(response)) as context:
        assert COOKIES.read(context.request) == visitor
    fresh = new_visitor()
    COOKIES.write(response := Response(), fresh)
    with request_with_cookie(app, cookie_value(response)) as context:
        assert COOKIES.read(context.request) == fresh


@pytest.mark.parametrize(
    "payload",
    ["", "only-an-id", "id.1.2.3.4.5.6", "id.1.x.3.4.5.6.7", "x" * 37 + ".1.2.3.4.5.6.7"],
)
def test_malformed_or_forged_cookies_name_nobody(app: Flask, payload: str) -> None:
    signer = COOKIES._cookie
    signed = signer.sign(payload).decode() if payload else ""
    with request_with_cookie(app, signed) as context:
        assert COOKIES.read(context.request) is None
    honest = signer.sign("someone.1.2.3.....").decode()
    other_key = VisitorCookies("another-secret", secure=False, max_age=timedelta(days=1))
    with request_with_cookie(app, honest[:-2] + "xx") as context:
        assert COOKIES.read(context.request) is None
    with request_with_cookie(app, honest) as context:
        assert other_key.read(context.request) is None


def test_the_csrf_token_is_bound_to_the_visitor(app: Flask) -> None:
    ada, bob = new_visitor(), new_visitor()
    response = Response()
    COOKIES.write(response, ada)
    ada_cookie = cookie_value(response)
    with request_with_cookie(app, ada_cookie, csrf_token=COOKIES.csrf_token(ada)) as context:
        COOKIES.check_csrf(context.request, COOKIES.read(context.request))
    cases = {
        "The CSRF token is invalid.": (ada_cookie, COOKIES.csrf_token(bob)),
        "The CSRF token is missing.": (ada_cookie, ""),
        "The visitor cookie is missing.": ("", COOKIES.csrf_token(ada)),
    }
    for reason, (cookie, token) in cases.items():
        with (
            request_with_cookie(app, cookie, csrf_token=token) as context,
            pytest.raises(CSRFError, match=reason),
        ):
            COOKIES.check_csrf(context.request, COOKIES.read(context.request))


@pytest.mark.parametrize(
    ("referrer", "reason"),
    [
        (None, "referrer header is missing"),
        ("https://evil.example/form", "referrer does not match"),
        ("https://resistry.example/?g=indivisible", None),
    ],
)
def test_over_https_the_form_must_come_from_this_host(
    app: Flask, referrer: str | None, reason: str | None
) -> None:
    visitor = new_visitor()
    response = Response()
    COOKIES.write(response, visitor)
    headers = {"Cookie": f"{COOKIE_NAME}={cookie_value(response)}"}
    if referrer:
        headers["Referer"] = referrer
    context = app.test_request_context(
        "https://resistry.example/signup",
        method="POST",
        data={"csrf_token": COOKIES.csrf_token(visitor)},
        headers=headers,
    )
    with context:
        if reason is None:
            COOKIES.check_csrf(context.request, visitor)
        else:
            with pytest.raises(CSRFError, match=reason):
                COOKIES.check_csrf(context.request, visitor)


def test_a_new_visitors_page_writes_no_session(
    session: so.Session, client: FlaskClient, app: Flask
) -> None:
    add_groups(session)
    add_experiment(session)
    response = client.get("/")
    cookies = [header.split("=")[0] for header in response.headers.getlist("Set-Cookie")]
    assert cookies == [COOKIE_NAME]  # no Flask session cookie, no Flask-WTF token in it
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["Vary"] == "Cookie"
    again = client.get("/")  # a reload: the cookie already says everything
    assert again.headers.getlist("Set-Cookie") == []


def test_a_form_from_another_visitor_is_refused_and_stores_nothing(
    session: so.Session, app: Flask
) -> None:
    add_groups(session)
    mallory, ada = app.test_client(), app.test_client()
    stolen = form_fields(mallory.get("/").get_data(as_text=True))
    ada.get("/")
    data = {**stolen, "email": "ada@example.org", "zip": "10001", "groups": ["indivisible"]}
    response = ada.post("/signup", data=data)
    assert response.status_code == 400
    assert "This form expired" in response.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count()).select_from(Contact)) == 0
    # The page it shows again carries a token that works for this visitor.
    fresh = form_fields(response.get_data(as_text=True))
    assert ada.post("/signup", data={**data, **fresh}).status_code == 303


def test_without_the_cookie_the_form_is_refused(session: so.Session, app: Flask) -> None:
    add_groups(session)
    visitor = app.test_client()
    fields = form_fields(visitor.get("/").get_data(as_text=True))
    visitor.delete_cookie(COOKIE_NAME)
    data = {**fields, "email": "ada@example.org", "zip": "10001", "groups": ["indivisible"]}
    assert visitor.post("/signup", data=data).status_code == 400
    assert session.scalar(sa.select(sa.func.count()).select_from(Contact)) == 0


def test_after_a_signup_the_next_page_view_is_a_new_visit(session: so.Session, app: Flask) -> None:
    add_groups(session)
    visitor = app.test_client()
    fields = form_fields(visitor.get("/").get_data(as_text=True))
    data = {**fields, "email": "ada@example.org", "zip": "10001", "groups": ["indivisible"]}
    assert visitor.post("/signup", data=data).status_code == 303
    visitor.get("/")
    visitor.get("/")  # a reload of the new visit
    visitors = session.scalars(sa.select(Visit.visitor_id)).all()
    assert len(visitors) == 2 and len(set(visitors)) == 1  # the same visitor, a second visit


def test_the_form_context_is_signed() -> None:
    signer = FormContextSigner("test-secret", salt="form")
    value = signer.dumps({"v": 12, "l": None, "o": ["swing-left", "indivisible"]})
    assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=")
    assert signer.loads(value) == {"v": 12, "l": None, "o": ["swing-left", "indivisible"]}
    payload, _, signature = value.rpartition(".")
    for forged in (payload + ".AAAA", "eyJ2IjoxfQ." + signature, ""):
        with pytest.raises(BadData):
            signer.loads(forged)
    with pytest.raises(BadData):
        FormContextSigner("another-secret", salt="form").loads(value)


def test_visitor_ids_are_random_version_4_uuids() -> None:
    ids = [new_visitor().id for _ in range(1000)]  # several 4 KiB pools of randomness
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_never_reuses_its_parents_visitor_ids() -> None:
    new_visitor()  # the parent's pool of randomness now holds its next ids
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, new_visitor().id.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        childs = pipe.read().decode()
    os.waitpid(child, 0)
    assert len(childs) == 36 and childs != new_visitor().id


@pytest.mark.parametrize("value", ["", "someone.1.2.3.....", "é" * 40, b"\x00bytes"])
def test_signatures_are_the_ones_itsdangerous_makes(value: str | bytes) -> None:
    for secret, salt in [("test-secret", COOKIE_SALT), ("x" * 200, "form")]:
        ours = _Signer(secret, salt=salt, digest_method=hashlib.sha256)
        theirs = Signer(secret, salt=salt, digest_method=hashlib.sha256)
        assert ours.sign(value) == ours.sign(value) == theirs.sign(value)
        assert theirs.unsign(ours.sign(value)) == (
            value.encode() if isinstance(value, str) else value
        )


def test_the_csrf_token_is_the_documented_hmac() -> None:
    visitor = new_visitor()
    key = hmac.digest(b"test-secret", CSRF_SALT.encode(), "sha256")
    expected = hmac.new(key, visitor.id.encode(), hashlib.sha256).hexdigest()
    assert COOKIES.csrf_token(visitor) == COOKIES.csrf_token(visitor) == expected


def test_a_context_signed_as_json_text_is_the_dumped_context() -> None:
    signer = FormContextSigner("test-secret", salt="form")
    context = {"v": 12, "l": None, "o": ["swing-left", "é-group"]}
    text = json.dumps(context, separators=(",", ":"))
    assert signer.sign_json(text) == signer.dumps(context)
    assert signer.loads(signer.sign_json(text)) == context
