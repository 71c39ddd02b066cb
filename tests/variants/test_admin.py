"""The admin UI with CSRF protection on, as a browser without JavaScript would use it."""

import re

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from engine.app import create_app
from engine.models import Alert, Decision, Experiment, Group, User
from engine.settings import Settings
from tests.variants.staff_support import (
    MJML,
    bearer,
    csrf_token,
    login,
    make_experiment,
    make_group,
    make_user,
)


def post_form(client: FlaskClient, page_url: str, url: str, data: dict) -> object:
    """Submit like a browser: the CSRF token comes from the page that holds the form."""
    token = csrf_token(client.get(page_url).get_data(as_text=True))
    prefix = next((name.split("-csrf")[0] for name in data if name.endswith("csrf")), None)
    field = f"{prefix}-csrf_token" if prefix else "csrf_token"
    data = {k: v for k, v in data.items() if not k.endswith("csrf")}
    return client.post(url, data={**data, field: token})


def error_for(html: str, field_id: str) -> str:
    match = re.search(rf'id="{re.escape(field_id)}-error">([^<]*)<', html)
    return match.group(1) if match else ""


@pytest.fixture
def admin(client: FlaskClient, session: so.Session) -> FlaskClient:
    make_user(session, "ana", "admin")
    session.commit()
    assert login(client, "ana").status_code == 302
    return client


def test_login_logout_and_safe_redirects(client: FlaskClient, session: so.Session) -> None:
    make_user(session, "ana", "admin")
    session.commit()
    assert client.get("/admin/experiments").headers["Location"].startswith("/admin/login")
    wrong = login(client, "ana", "not the password")
    assert wrong.status_code == 401
    assert "Wrong username or password." in wrong.get_data(as_text=True)
    page = client.get("/admin/login?next=https://evil.example/").get_data(as_text=True)
    response = client.post(
        "/admin/login?next=https://evil.example/",
        data={
            "username": "ana",
            "password": "correct horse battery",
            "csrf_token": csrf_token(page),
        },
    )
    assert response.headers["Location"] == "/admin/"
    assert client.get("/admin/experiments").status_code == 200
    post_form(client, "/admin/experiments", "/admin/logout", {})
    page = client.get("/admin/login").get_data(as_text=True)
    split = client.post(  # a newline in the target would split the Location header
        "/admin/login?next=/admin/%0AX-Evil:%201",
        data={
            "username": "ana",
            "password": "correct horse battery",
            "csrf_token": csrf_token(page),
        },
    )
    assert split.status_code == 302 and split.headers["Location"] == "/admin/"
    assert client.post("/admin/logout").status_code == 400  # no CSRF token: refused
    assert client.get("/admin/experiments").status_code == 200
    post_form(client, "/admin/experiments", "/admin/logout", {})
    assert client.get("/admin/experiments").status_code == 302


def test_login_attempts_are_rate_limited(
    settings: Settings, sessions: so.sessionmaker[so.Session]
) -> None:
    limited = settings.replace(admin={"login_rate_limit": "3 per minute"})
    client = create_app({"TESTING": True}, settings=limited, sessions=sessions).test_client()
    answers = [login(client, "nobody", "guess").status_code for _ in range(4)]
    assert answers == [401, 401, 401, 429]
    assert client.get("/admin/login").status_code == 200  # showing the form is not limited


def test_login_without_csrf_token_is_refused(client: FlaskClient, session: so.Session) -> None:
    make_user(session, "ana", "admin")
    session.commit()
    response = client.post(
        "/admin/login", data={"username": "ana", "password": "correct horse battery"}
    )
    assert response.status_code == 400
    assert client.get("/admin/experiments").status_code == 302


def test_decision_forms_need_csrf_and_a_reason(
    admin: FlaskClient, session: so.Session, settings: Settings
) -> None:
    make_experiment(session, settings, variant_keys=("a", "b", "c"))
    session.commit()
    page_url = "/admin/experiments/exp"
    forged = admin.post("/admin/experiments/exp/restart", data={"restart-reason": "x"})
    assert forged.status_code == 400
    no_reason = post_form(
        admin, page_url, "/admin/experiments/exp/variants/c/pause", {"v-c-csrf": 1}
    )
    assert no_reason.status_code == 400
    assert error_for(no_reason.get_data(as_text=True), "v-c-reason") == "say why"
    paused = post_form(
        admin,
        page_url,
        "/admin/experiments/exp/variants/c/pause",
        {"v-c-csrf": 1, "v-c-reason": "off-brand"},
    )
    assert paused.status_code == 302
    won = post_form(
        admin,
        page_url,
        "/admin/experiments/exp/winner",
        {"winner-csrf": 1, "winner-variant": "b", "winner-reason": "clear lift"},
    )
    assert won.status_code == 302
    conflict = post_form(
        admin,
        page_url,
        "/admin/experiments/exp/status",
        {"status-csrf": 1, "status-status": "running", "status-reason": "again"},
    )
    assert conflict.status_code == 409
    assert "can move to" in conflict.get_data(as_text=True)
    restarted = post_form(
        admin,
        page_url,
        "/admin/experiments/exp/restart",
        {"restart-csrf": 1, "restart-reason": "reset"},
    )
    assert restarted.status_code == 302
    rows = session.execute(
        sa.select(Decision.kind, Decision.actor, Decision.reason).order_by(Decision.id)
    ).all()
    assert rows[-3:] == [
        ("pause", "ana", "off-brand"),
        ("promote", "ana", "clear lift"),
        ("restart", "ana", "reset"),
    ]
    history = admin.get(page_url).get_data(as_text=True)
    assert "off-brand" in history and "epoch 2" in history


def test_create_group_experiment_and_variants_through_forms(
    admin: FlaskClient, session: so.Session, settings: Settings
) -> None:
    bad_group = post_form(
        admin, "/admin/groups/new", "/admin/groups/new",
        {"slug": "Flippable!", "name": "Flippable", "website": "nope"},
    )  # fmt: skip
    html = bad_group.get_data(as_text=True)
    assert bad_group.status_code == 422
    assert "lower-case" in error_for(html, "slug")
    assert "http(s) URL" in error_for(html, "website")
    good_group = post_form(
        admin, "/admin/groups/new", "/admin/groups/new",
        {"slug": "flippable", "name": "Flippable", "roles": "Donor, Volunteer", "active": "y"},
    )  # fmt: skip
    assert good_group.headers["Location"] == "/admin/groups/flippable"
    group = session.scalars(sa.select(Group).where(Group.slug == "flippable")).one()
    assert group.roles == ["Donor", "Volunteer"]

    form_page = admin.get("/admin/experiments/new").get_data(as_text=True)
    assert f'value="{settings.experiments.burn_in}"' in form_page  # defaults from config.toml
    defaults = {
        name: str(getattr(settings.experiments, name))
        for name in ("prior_alpha", "prior_beta", "burn_in", "p_best_threshold",
                     "value_remaining_threshold", "floor", "max_trials_per_arm")
    }  # fmt: skip
    created = post_form(
        admin, "/admin/experiments/new", "/admin/experiments/new",
        {"key": "bodies", "name": "Bodies", "kind": "body", "metric": "click", **defaults},
    )  # fmt: skip
    assert created.headers["Location"] == "/admin/experiments/bodies"

    new_variant = "/admin/experiments/bodies/variants/new"
    broken = post_form(
        admin, new_variant, new_variant,
        {"key": "v1", "name": "V1", "mjml": "<mjml><mj-body><mj-section></mj-body></mjml>"},
    )  # fmt: skip
    assert broken.status_code == 422
    assert "line 1" in error_for(broken.get_data(as_text=True), "mjml")
    added = post_form(admin, new_variant, new_variant, {"key": "v1", "name": "V1", "mjml": MJML})
    assert added.status_code == 302
    experiment = session.scalars(sa.select(Experiment).where(Experiment.key == "bodies")).one()
    session.refresh(experiment)
    assert [v.key for v in experiment.variants] == ["v1"]


def test_editing_a_served_variant_in_the_ui_makes_a_new_one(
    admin: FlaskClient, session: so.Session, settings: Settings
) -> None:
    experiment = make_experiment(session, settings)
    experiment.variants[0].trials = 5
    session.commit()
    url = "/admin/experiments/exp/variants/a/edit"
    page = admin.get(url).get_data(as_text=True)
    assert "has served traffic" in page
    response = post_form(admin, url, url, {"name": "A", "subject": "Brand new words"})
    assert response.status_code == 302
    flashed = admin.get("/admin/experiments/exp").get_data(as_text=True)
    assert "a-r2" in flashed and "retired" in flashed


def test_users_page_creates_users_and_shows_tokens_once(
    admin: FlaskClient, session: so.Session
) -> None:
    make_group(session, "group-a")
    session.commit()
    created = post_form(
        admin, "/admin/users", "/admin/users",
        {"username": "mia", "password": "long enough pw", "role": "group_manager",
         "group": "group-a"},
    )  # fmt: skip
    assert created.status_code == 302
    mia = session.scalars(sa.select(User).where(User.username == "mia")).one()
    shown = post_form(admin, "/admin/users", f"/admin/users/{mia.id}/token", {})
    assert shown.status_code == 201
    assert shown.headers["Cache-Control"] == "no-store"
    token = re.search(r'aria-label="API token">([^<]+)<', shown.get_data(as_text=True)).group(1)
    assert admin.get("/api/v1/me", headers=bearer(token)).get_json()["username"] == "mia"
    assert token not in admin.get("/admin/users").get_data(as_text=True)
    duplicate = post_form(
        admin, "/admin/users", "/admin/users",
        {"username": "mia", "password": "long enough pw", "role": "analyst", "group": ""},
    )  # fmt: skip
    assert duplicate.status_code == 422 and "already exists" in duplicate.get_data(as_text=True)


def test_group_manager_lands_on_own_group(client: FlaskClient, session: so.Session) -> None:
    a, _ = make_group(session, "group-a"), make_group(session, "group-b")
    make_user(session, "mia", "group_manager", a)
    session.commit()
    login(client, "mia")
    assert client.get("/admin/").headers["Location"] == "/admin/groups/group-a"
    page = client.get("/admin/groups/group-a").get_data(as_text=True)
    assert "Download contacts (CSV)" in page and "Issue a new token" not in page
    assert client.get("/admin/groups/group-b").status_code == 403


def test_analyst_reads_without_action_forms(
    client: FlaskClient, session: so.Session, settings: Settings
) -> None:
    make_user(session, "ola", "analyst")
    make_experiment(session, settings, kind="body")
    session.commit()
    login(client, "ola")
    page = client.get("/admin/experiments/exp").get_data(as_text=True)
    assert "Counts of the current epoch" in page
    assert "Restart" not in page and "/pause" not in page
    preview = client.get("/admin/experiments/exp/variants/a/preview")
    assert preview.status_code == 200
    assert preview.headers["Content-Security-Policy"] == "sandbox"
    assert "Alexandria" in preview.get_data(as_text=True)  # filled with sample values


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("/admin/experiments", True),
        ("//evil.example/", False),
        ("/\\evil.example/", False),
        ("https://evil.example/", False),
        ("javascript:alert(1)", False),
        ("", False),
    ],
)
def test_login_redirects_only_to_this_site(target: str, allowed: bool) -> None:
    from variants.admin import _safe_next

    assert (_safe_next(target) == target) is allowed


def test_an_alert_that_pauses_sending_is_on_every_page_until_an_admin_resolves_it(
    admin: FlaskClient, session: so.Session
) -> None:
    alert = Alert(kind="account_status_change", message="compliance_suspend", pauses_sending=True)
    session.add(alert)
    session.commit()
    banner = f"Sending is paused by alert #{alert.id}: compliance_suspend"
    assert banner in admin.get("/admin/experiments").get_data(as_text=True)
    listed = admin.get("/admin/alerts").get_data(as_text=True)
    assert "open, pauses sending" in listed and "Resolve" in listed
    response = post_form(admin, "/admin/alerts", f"/admin/alerts/{alert.id}/resolve", {})
    assert response.status_code == 302
    session.refresh(alert)
    assert alert.resolved_at is not None
    assert "Sending is paused" not in admin.get("/admin/experiments").get_data(as_text=True)
    assert "resolved" in admin.get("/admin/alerts").get_data(as_text=True)
