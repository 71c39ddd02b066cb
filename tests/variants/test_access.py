"""Who may call what: every /admin and /api/v1 route of the staff side × every kind of caller.

The table must cover every route the ``admin`` and ``api`` blueprints register (checked by
walking ``app.url_map``), so a new route without an entry fails here. CSRF is off in this app so
the role checks themselves are what answers; test_admin.py covers CSRF.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient

from engine.app import create_app
from engine.models import Contact, Signup, utcnow
from engine.settings import Settings
from tests.variants.staff_support import bearer, login, make_experiment, make_group, make_user

CALLERS = ("anonymous", "admin", "analyst", "manager_a", "manager_b")
SECRET_EMAIL = "secret.person@example.org"


def expect(anonymous: int, admin: int, analyst: int, manager_a: int, manager_b: int) -> dict:
    return dict(zip(CALLERS, (anonymous, admin, analyst, manager_a, manager_b), strict=True))


def html(admin: int, analyst: int = 403, manager_a: int = 403, manager_b: int = 403) -> dict:
    """An admin page: anonymous callers are sent to the login page."""
    return expect(302, admin, analyst, manager_a, manager_b)


def api(admin: int, analyst: int = 403, manager_a: int = 403, manager_b: int = 403) -> dict:
    """An API route: anonymous callers get 401."""
    return expect(401, admin, analyst, manager_a, manager_b)


E, V, G = "/admin/experiments/exp", "/admin/experiments/exp/variants/a", "/admin/groups/group-a"
AE, AV = "/api/v1/experiments/exp", "/api/v1/experiments/exp/variants/a"
# (method, rule as registered) -> (path to call, expected status per caller).
# Unsafe requests send empty forms / {}: allowed callers get a validation answer (400/422),
# never a change of state, except where noted.
TABLE: dict[tuple[str, str], tuple[str, dict]] = {
    ("GET", "/admin/login"): ("/admin/login", expect(200, 200, 200, 200, 200)),
    ("POST", "/admin/login"): ("/admin/login", expect(200, 200, 200, 200, 200)),
    ("GET", "/admin/"): ("/admin/", html(302, 302, 302, 302)),
    ("GET", "/admin/users"): ("/admin/users", html(200)),
    ("POST", "/admin/users"): ("/admin/users", html(400)),
    ("POST", "/admin/users/<int:user_id>/token"): ("/admin/users/{target}/token", html(201)),
    ("POST", "/admin/users/<int:user_id>/active"): ("/admin/users/{target}/active", html(302)),
    ("GET", "/admin/experiments"): ("/admin/experiments", html(200, 200)),
    ("GET", "/admin/experiments/new"): ("/admin/experiments/new", html(200)),
    ("POST", "/admin/experiments/new"): ("/admin/experiments/new", html(422)),
    ("GET", "/admin/experiments/<key>"): (E, html(200, 200)),
    ("GET", "/admin/experiments/<key>/edit"): (f"{E}/edit", html(200)),
    ("POST", "/admin/experiments/<key>/edit"): (f"{E}/edit", html(422)),
    ("POST", "/admin/experiments/<key>/status"): (f"{E}/status", html(400)),
    ("POST", "/admin/experiments/<key>/restart"): (f"{E}/restart", html(400)),
    ("POST", "/admin/experiments/<key>/winner"): (f"{E}/winner", html(400)),
    ("GET", "/admin/experiments/<key>/variants/new"): (f"{E}/variants/new", html(200)),
    ("POST", "/admin/experiments/<key>/variants/new"): (f"{E}/variants/new", html(422)),
    ("GET", "/admin/experiments/<key>/variants/<variant_key>/edit"): (f"{V}/edit", html(200)),
    # An empty POST to an edit form re-saves the values shown: nothing changes, 302.
    ("POST", "/admin/experiments/<key>/variants/<variant_key>/edit"): (f"{V}/edit", html(302)),
    ("POST", "/admin/experiments/<key>/variants/<variant_key>/pause"): (f"{V}/pause", html(400)),
    ("POST", "/admin/experiments/<key>/variants/<variant_key>/resume"): (
        f"{V}/resume",
        html(400),
    ),
    ("GET", "/admin/experiments/<key>/variants/<variant_key>/preview"): (
        f"{V}/preview",
        html(200, 200),
    ),
    ("GET", "/admin/groups"): ("/admin/groups", html(200, 200)),
    ("GET", "/admin/groups/new"): ("/admin/groups/new", html(200)),
    ("POST", "/admin/groups/new"): ("/admin/groups/new", html(422)),
    ("GET", "/admin/groups/<slug>"): (G, html(200, 200, 200, 403)),
    ("GET", "/admin/groups/<slug>/edit"): (f"{G}/edit", html(200)),
    ("POST", "/admin/groups/<slug>/edit"): (f"{G}/edit", html(302)),
    ("POST", "/admin/groups/<slug>/token"): (f"{G}/token", html(201)),
    ("GET", "/admin/groups/<slug>/contacts.csv"): (
        f"{G}/contacts.csv",
        html(200, 403, 200, 403),
    ),
    ("GET", "/admin/alerts"): ("/admin/alerts", html(200, 200)),
    ("POST", "/admin/alerts/<int:alert_id>/resolve"): ("/admin/alerts/999999/resolve", html(404)),
    # Last: it ends the session of the caller.
    ("POST", "/admin/logout"): ("/admin/logout", html(302, 302, 302, 302)),
    ("GET", "/api/v1/openapi.json"): ("/api/v1/openapi.json", expect(200, 200, 200, 200, 200)),
    ("GET", "/api/v1/me"): ("/api/v1/me", api(200, 200, 200, 200)),
    ("GET", "/api/v1/experiments"): ("/api/v1/experiments", api(200, 200)),
    ("POST", "/api/v1/experiments"): ("/api/v1/experiments", api(422)),
    ("GET", "/api/v1/experiments/<key>"): (AE, api(200, 200)),
    ("PATCH", "/api/v1/experiments/<key>"): (AE, api(200)),
    ("POST", "/api/v1/experiments/<key>/status"): (f"{AE}/status", api(422)),
    ("POST", "/api/v1/experiments/<key>/restart"): (f"{AE}/restart", api(422)),
    ("POST", "/api/v1/experiments/<key>/winner"): (f"{AE}/winner", api(422)),
    ("POST", "/api/v1/experiments/<key>/variants"): (f"{AE}/variants", api(422)),
    ("GET", "/api/v1/experiments/<key>/variants/<variant_key>"): (AV, api(200, 200)),
    ("PATCH", "/api/v1/experiments/<key>/variants/<variant_key>"): (AV, api(200)),
    ("POST", "/api/v1/experiments/<key>/variants/<variant_key>/pause"): (f"{AV}/pause", api(422)),
    ("POST", "/api/v1/experiments/<key>/variants/<variant_key>/resume"): (
        f"{AV}/resume",
        api(422),
    ),
    ("GET", "/api/v1/groups"): ("/api/v1/groups", api(200, 200)),
    ("POST", "/api/v1/groups"): ("/api/v1/groups", api(422)),
    ("GET", "/api/v1/groups/<slug>"): ("/api/v1/groups/group-a", api(200, 200)),
    ("PATCH", "/api/v1/groups/<slug>"): ("/api/v1/groups/group-a", api(200)),
    ("POST", "/api/v1/groups/<slug>/token"): ("/api/v1/groups/group-a/token", api(201)),
    ("GET", "/api/v1/groups/<slug>/contacts"): (
        "/api/v1/groups/group-a/contacts",
        api(200, 403, 200, 403),
    ),
    ("GET", "/api/v1/users"): ("/api/v1/users", api(200)),
    ("POST", "/api/v1/users"): ("/api/v1/users", api(422)),
    ("PATCH", "/api/v1/users/<username>"): ("/api/v1/users/target", api(422)),
    ("POST", "/api/v1/users/<username>/token"): ("/api/v1/users/target/token", api(201)),
}


def staff_routes(app: Flask) -> set[tuple[str, str]]:
    """Every (method, rule) of the admin and api blueprints."""
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in ("admin", "api")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


@dataclass
class Caller:
    client: FlaskClient
    token: str | None


@pytest.fixture
def access_app(settings: Settings, sessions: so.sessionmaker[so.Session]) -> Flask:
    unlimited = settings.replace(admin={"login_rate_limit": "1000 per minute"})
    return create_app(
        {"TESTING": True, "WTF_CSRF_ENABLED": False}, settings=unlimited, sessions=sessions
    )


@pytest.fixture
def callers(
    access_app: Flask, session: so.Session, settings: Settings
) -> Iterator[dict[str, Caller]]:
    group_a, group_b = make_group(session, "group-a"), make_group(session, "group-b")
    make_experiment(session, settings, kind="body")
    contact = Contact(email=SECRET_EMAIL, zip_code="19104")
    session.add(contact)
    session.flush()
    session.add(
        Signup(contact_id=contact.id, group_id=group_a.id, consent_text="Yes", created_at=utcnow())
    )
    tokens = {
        "admin": make_user(session, "admin-user", "admin")[1],
        "analyst": make_user(session, "analyst-user", "analyst")[1],
        "manager_a": make_user(session, "manager-a", "group_manager", group_a)[1],
        "manager_b": make_user(session, "manager-b", "group_manager", group_b)[1],
    }
    target, _ = make_user(session, "target", "analyst")
    session.commit()
    access_app.config["ACCESS_TARGET_ID"] = target.id
    result = {"anonymous": Caller(access_app.test_client(), None)}
    usernames = {"admin": "admin-user", "analyst": "analyst-user"}
    for name, token in tokens.items():
        client = access_app.test_client()
        assert login(client, usernames.get(name, name.replace("_", "-"))).status_code == 302
        result[name] = Caller(client, token)
    yield result


def test_the_table_covers_every_staff_route(access_app: Flask) -> None:
    assert set(TABLE) == staff_routes(access_app)


def test_every_route_answers_every_caller_as_the_table_says(
    access_app: Flask, callers: dict[str, Caller]
) -> None:
    target = access_app.config["ACCESS_TARGET_ID"]
    failures = []
    for (method, _rule), (path, expected) in TABLE.items():
        path = path.format(target=target)
        for name, caller in callers.items():
            headers = bearer(caller.token) if caller.token and path.startswith("/api/") else {}
            kwargs = {"json": {}} if path.startswith("/api/") and method != "GET" else {}
            response = caller.client.open(path, method=method, headers=headers, **kwargs)
            if response.status_code != expected[name]:
                failures.append(f"{method} {path} as {name}: {response.status_code}")
            body = response.get_data(as_text=True)
            if name in ("analyst", "manager_b") and SECRET_EMAIL in body:
                failures.append(f"{method} {path} as {name} shows a contact's email address")
            if response.status_code >= 500 or "Traceback" in body:
                failures.append(f"{method} {path} as {name}: server error")
    assert failures == []


def test_html_denials_redirect_to_login_and_api_denials_are_json(
    access_app: Flask, callers: dict[str, Caller]
) -> None:
    anonymous = callers["anonymous"].client
    assert anonymous.get("/admin/users").headers["Location"] == "/admin/login?next=/admin/users?"
    denied = anonymous.get("/api/v1/experiments")
    assert denied.get_json()["error"] == "Unauthorized"
    forbidden = callers["analyst"].client.get(
        "/api/v1/groups/group-a/contacts", headers=bearer(callers["analyst"].token or "")
    )
    assert forbidden.status_code == 403 and set(forbidden.get_json()) == {"error", "message"}
    assert callers["analyst"].client.get("/admin/users").status_code == 403
