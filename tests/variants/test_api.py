import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient

from engine.auth import hash_token
from engine.models import Decision, Experiment, Group, User, Variant
from engine.settings import Settings
from tests.variants.staff_support import (
    CONTENT,
    bearer,
    login,
    make_experiment,
    make_group,
    make_user,
)
from variants.fields import labels, number


@pytest.fixture
def admin_token(session: so.Session) -> str:
    _, token = make_user(session, "ana", "admin")
    session.commit()
    return token


def test_create_experiment_with_variants_and_start_it(
    client: FlaskClient, session: so.Session, admin_token: str
) -> None:
    payload = {
        "key": "subjects",
        "name": "Subject lines",
        "kind": "subject",
        "metric": "click",
        "status": "running",
        "burn_in": 50,
        "variants": [
            {"key": "a", "name": "A", "is_control": True, "content": {"subject": "Hi"}},
            {"key": "b", "name": "B", "content": {"subject": "Hi {{ first_name }}"}},
        ],
    }
    response = client.post("/api/v1/experiments", json=payload, headers=bearer(admin_token))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["status"], body["burn_in"], body["variant_counts"]["live"]) == ("running", 50, 2)
    assert body["decisions"][0]["actor"] == "ana"
    listed = client.get("/api/v1/experiments?status=running", headers=bearer(admin_token))
    assert [e["key"] for e in listed.get_json()["experiments"]] == ["subjects"]
    assert (
        client.get("/api/v1/experiments?status=nope", headers=bearer(admin_token)).status_code
        == 400
    )


def test_invalid_variant_in_create_is_422_and_creates_nothing(
    client: FlaskClient, session: so.Session, admin_token: str
) -> None:
    payload = {
        "key": "subjects",
        "name": "Subject lines",
        "kind": "subject",
        "metric": "click",
        "variants": [{"key": "a", "name": "A", "content": {"subject": "Hi\r\nBcc: x@y.z"}}],
    }
    response = client.post("/api/v1/experiments", json=payload, headers=bearer(admin_token))
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "Unprocessable Entity"
    assert "control characters" in body["fields"]["variants[0].content.subject"]
    assert session.scalar(sa.select(Experiment).where(Experiment.key == "subjects")) is None


@pytest.mark.parametrize("status", [["running"], "bogus", "promoted", None])
def test_create_with_an_undeclarable_status_is_422(
    client: FlaskClient, session: so.Session, admin_token: str, status: object
) -> None:
    payload = {"key": "subjects", "name": "S", "kind": "subject", "metric": "click"}
    response = client.post(
        "/api/v1/experiments", json={**payload, "status": status}, headers=bearer(admin_token)
    )
    assert response.status_code == 422, response.get_json()
    assert "must be one of draft, running" in response.get_json()["fields"]["status"]
    assert session.scalar(sa.select(Experiment).where(Experiment.key == "subjects")) is None


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [({"data": "not json", "content_type": "text/plain"}, 400), ({"json": [1, 2]}, 400)],
)
def test_bad_bodies_are_json_400(
    client: FlaskClient, admin_token: str, kwargs: dict, status: int
) -> None:
    response = client.post("/api/v1/experiments", headers=bearer(admin_token), **kwargs)
    assert response.status_code == status
    assert set(response.get_json()) == {"error", "message"}


def test_unknown_names_are_json_404(client: FlaskClient, admin_token: str) -> None:
    response = client.get("/api/v1/experiments/nope", headers=bearer(admin_token))
    assert response.status_code == 404
    assert response.get_json() == {"error": "Not Found", "message": "no experiment with key 'nope'"}


def test_editing_variants_over_the_api(
    client: FlaskClient, session: so.Session, settings: Settings, admin_token: str
) -> None:
    experiment = make_experiment(session, settings)
    experiment.variants[0].trials = 30
    session.commit()
    url = "/api/v1/experiments/exp/variants"
    in_place = client.patch(
        f"{url}/b", json={"content": {"subject": "Fresh"}}, headers=bearer(admin_token)
    )
    assert in_place.status_code == 200 and in_place.get_json()["key"] == "b"
    replaced = client.patch(
        f"{url}/a", json={"content": {"subject": "Fresh too"}}, headers=bearer(admin_token)
    )
    assert replaced.status_code == 201
    assert (replaced.get_json()["key"], replaced.get_json()["replaces"]) == ("a-r2", "a")
    old = client.get(f"{url}/a", headers=bearer(admin_token)).get_json()
    assert (old["status"], old["trials"]) == ("retired", 30)
    added = client.post(
        url,
        json={"key": "c", "name": "C", "content": CONTENT["subject"]},
        headers=bearer(admin_token),
    )
    assert added.status_code == 201


def test_decisions_over_the_api(
    client: FlaskClient, session: so.Session, settings: Settings, admin_token: str
) -> None:
    make_experiment(session, settings, variant_keys=("a", "b", "c"))
    session.commit()
    base = "/api/v1/experiments/exp"
    headers = bearer(admin_token)
    no_reason = client.post(f"{base}/variants/c/pause", json={}, headers=headers)
    assert no_reason.status_code == 422 and "reason" in no_reason.get_json()["fields"]
    paused = client.post(f"{base}/variants/c/pause", json={"reason": "weak"}, headers=headers)
    assert paused.get_json()["status"] == "paused"
    again = client.post(f"{base}/variants/c/pause", json={"reason": "weak"}, headers=headers)
    assert again.status_code == 409 and again.get_json()["error"] == "Conflict"
    assert (
        client.post(f"{base}/variants/c/resume", json={"reason": "ok"}, headers=headers).status_code
        == 200
    )
    won = client.post(f"{base}/winner", json={"variant": "b", "reason": "clear"}, headers=headers)
    assert won.get_json()["status"] == "promoted"
    restarted = client.post(f"{base}/restart", json={"reason": "new season"}, headers=headers)
    assert (restarted.get_json()["status"], restarted.get_json()["epoch"]) == ("running", 2)
    paused_exp = client.post(
        f"{base}/status", json={"status": "paused", "reason": "holiday"}, headers=headers
    )
    assert paused_exp.get_json()["status"] == "paused"
    kinds = session.scalars(sa.select(Decision.kind).order_by(Decision.id)).all()
    assert kinds == ["status", "pause", "resume", "promote", "restart", "status"]
    actors = set(session.scalars(sa.select(Decision.actor).where(Decision.kind != "status")))
    assert actors == {"ana"}


def test_session_login_reads_but_cannot_write(
    client: FlaskClient, session: so.Session, settings: Settings
) -> None:
    make_user(session, "ana", "admin")
    make_experiment(session, settings)
    session.commit()
    login(client, "ana")
    assert client.get("/api/v1/experiments").status_code == 200
    # Unsafe API methods refuse cookies: the API is CSRF-exempt, so a cookie would be a CSRF hole.
    response = client.post("/api/v1/experiments/exp/restart", json={"reason": "x"})
    assert response.status_code == 401


def test_groups_and_tokens(client: FlaskClient, session: so.Session, admin_token: str) -> None:
    headers = bearer(admin_token)
    created = client.post(
        "/api/v1/groups",
        json={"slug": "flippable", "name": "Flippable", "roles": ["Donor"]},
        headers=headers,
    )
    assert created.status_code == 201 and created.get_json()["signups"] == 0
    duplicate = client.post(
        "/api/v1/groups", json={"slug": "flippable", "name": "F"}, headers=headers
    )
    assert duplicate.status_code == 422
    patched = client.patch("/api/v1/groups/flippable", json={"active": False}, headers=headers)
    assert patched.get_json()["changed"] == ["active"]
    issued = client.post("/api/v1/groups/flippable/token", headers=headers)
    assert issued.status_code == 201
    token = issued.get_json()["token"]
    group = session.scalars(sa.select(Group).where(Group.slug == "flippable")).one()
    assert group.api_token_hash == hash_token(token)
    assert token not in json.dumps(client.get("/api/v1/groups", headers=headers).get_json())


def test_users_tokens_and_deactivation(
    client: FlaskClient, session: so.Session, admin_token: str
) -> None:
    headers = bearer(admin_token)
    make_group(session, "group-a")
    session.commit()
    created = client.post(
        "/api/v1/users",
        json={"username": "mia", "password": "long enough pw", "role": "group_manager",
              "group": "group-a", "api_token": True},
        headers=headers,
    )  # fmt: skip
    assert created.status_code == 201, created.get_json()
    token = created.get_json()["token"]
    me = client.get("/api/v1/me", headers=bearer(token)).get_json()
    assert (me["username"], me["role"], me["group"]) == ("mia", "group_manager", "group-a")
    reissued = client.post("/api/v1/users/mia/token", headers=headers).get_json()["token"]
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401  # old one stops
    assert (
        client.patch("/api/v1/users/mia", json={"active": False}, headers=headers).status_code
        == 200
    )
    assert client.get("/api/v1/me", headers=bearer(reissued)).status_code == 401
    bad = client.post(
        "/api/v1/users",
        json={"username": "x", "password": "short", "role": "admin"},
        headers=headers,
    )
    assert bad.status_code == 422 and "10 characters" in bad.get_json()["fields"]["user"]
    listed = client.get("/api/v1/users", headers=headers).get_json()["users"]
    assert {u["username"] for u in listed} == {"ana", "mia"}
    assert session.scalar(sa.select(User.active).where(User.username == "mia")) is False


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("u5" * 100, "at most 120 characters"),
        ("mia\x1b[31m", "control characters"),
        ("mi\u200ba", "control characters"),  # zero-width space: category Cf
        ("mia\nbcc", "control characters"),
    ],
)
def test_bad_usernames_are_422(
    client: FlaskClient, session: so.Session, admin_token: str, username: str, message: str
) -> None:
    response = client.post(
        "/api/v1/users",
        json={"username": username, "password": "long enough pw", "role": "analyst"},
        headers=bearer(admin_token),
    )
    assert response.status_code == 422, response.get_json()
    assert message in response.get_json()["fields"]["user"]
    assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_openapi_documents_every_api_route(app: Flask, client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    assert document == json.loads(
        (Path(__file__).parents[2] / "variants" / "openapi.json").read_text()
    )
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in ("api", "partner_api"):
            path = rule.rule.removeprefix("/api/v1").replace("<", "{").replace(">", "}")
            served |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == documented
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                assert operation["responses"], f"{method} {path} has no responses"


def test_variant_json_hides_nothing_an_analyst_needs(
    client: FlaskClient, session: so.Session, settings: Settings
) -> None:
    _, token = make_user(session, "ola", "analyst")
    experiment = make_experiment(session, settings)
    experiment.variants[0].trials, experiment.variants[0].successes = 10, 2
    session.commit()
    body = client.get("/api/v1/experiments/exp", headers=bearer(token)).get_json()
    assert body["variants"][0]["trials"] == 10 and body["variants"][0]["successes"] == 2
    assert session.scalar(sa.select(sa.func.count()).select_from(Variant)) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"slug": "bad-group", "name": "Bad", "roles": ["\\ud800"]}', "unpaired surrogate"),
        ('{"slug": "bad-group", "name": "Bad", "roles": ["a\\u0000"]}', "NUL character"),
        ('{"slug": "bad-group", "name": "B", "website": "http://a\\u0000b.org/"}', "NUL character"),
        ('{"slug": "bad-group", "name": "Bad", "\\u0000": 1}', "NUL character"),
    ],
)
def test_text_no_page_could_show_or_database_store_is_refused_and_the_site_stays_up(
    client: FlaskClient, session: so.Session, admin_token: str, body: str, message: str
) -> None:
    response = client.post(
        "/api/v1/groups", data=body, content_type="application/json", headers=bearer(admin_token)
    )
    assert response.status_code == 400 and message in response.get_json()["message"]
    assert session.scalar(sa.select(Group).where(Group.slug == "bad-group")) is None
    assert client.get("/").status_code == 200


def test_a_label_made_of_a_lone_surrogate_is_a_field_error() -> None:
    with pytest.raises(ValueError, match="control characters"):
        labels()(["ok", "\ud800"])
    with pytest.raises(ValueError, match="must be in"):
        number(0, 1e9, low_open=True, high_open=False)(10**400)
