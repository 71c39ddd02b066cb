"""Builders shared by the staff-side tests (groups, experiments, users, logins)."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy.orm as so
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from engine.auth import issue_api_token
from engine.models import Experiment, Group, User
from engine.settings import Settings
from variants import decisions, experiments, groups

PASSWORD = "correct horse battery"

MJML = """<mjml>
  <mj-body>
    <mj-section>
      <mj-column>
        <mj-text>Hi {{ first_name }}, you brought {{ friends_count }} friends.</mj-text>
        <mj-button href="{{ referral_link }}">Share your link</mj-button>
        <mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""

CONTENT: dict[str, dict[str, str]] = {
    "landing": {
        "headline": "Find your role",
        "body": "<p>Pick the groups <strong>you</strong> care about.</p>",
        "call_to_action": "Sign me up",
    },
    "subject": {"subject": "Not yet active? Find the role that works best for you"},
    "body": {"mjml": MJML},
    "share": {"text": "Join me: {{ referral_link }}"},
}
METRIC = {"landing": "signup", "subject": "click", "body": "click", "share": "signup"}


def make_group(session: so.Session, slug: str = "group-a", name: str | None = None) -> Group:
    return groups.create_group(session, {"slug": slug, "name": name or slug.title()})


def make_experiment(
    session: so.Session,
    settings: Settings,
    key: str = "exp",
    kind: str = "subject",
    variant_keys: tuple[str, ...] = ("a", "b"),
    status: str = "running",
) -> Experiment:
    experiment = experiments.create_experiment(
        session, {"key": key, "name": key.title(), "kind": kind, "metric": METRIC[kind]},
        settings.experiments,
    )  # fmt: skip
    for index, variant_key in enumerate(variant_keys):
        content = dict(CONTENT[kind])
        if kind == "subject":
            content["subject"] = f"{content['subject']} ({variant_key})"
        experiments.add_variant(
            session,
            experiment,
            {"key": variant_key, "name": variant_key.upper(), "is_control": index == 0,
             "content": content},
        )  # fmt: skip
    if status != "draft":
        decisions.set_status(session, experiment, "running", "tester", "start")
        if status != "running":
            decisions.set_status(session, experiment, status, "tester", "test setup")
    return experiment


def make_user(
    session: so.Session, username: str, role: str, group: Group | None = None
) -> tuple[User, str]:
    """A user and its API token. The password hash is cheap (1,000 PBKDF2 rounds) because
    scrypt's 0.3 s per hash would dominate the tests; logging in checks it the same way."""
    user = User(
        username=username,
        password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
        role=role,
        group=group,
    )
    session.add(user)
    session.flush()
    return user, issue_api_token(user)


def csrf_token(html: str) -> str:
    """A CSRF token from any form on the page (one token serves every form of the session)."""
    tag = re.search(r'<input[^>]*name="[\w-]*csrf_token"[^>]*>', html)
    assert tag, "no CSRF token on the page"
    value = re.search(r'value="([^"]+)"', tag.group(0))
    assert value
    return value.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    """Log in through the form (with its CSRF token when CSRF is on)."""
    page = client.get("/admin/login").get_data(as_text=True)
    data = {"username": username, "password": password}
    if 'name="csrf_token"' in page:
        data["csrf_token"] = csrf_token(page)
    return client.post("/admin/login", data=data)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
