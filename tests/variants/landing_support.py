"""Builders shared by the visitor-side tests: landing, signup, visibility, partner API."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy.orm as so
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from engine.models import Experiment, Group, Variant

NOW = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
SLUGS = ("swing-left", "indivisible", "sister-district", "flippable")


def add_groups(session: so.Session, slugs: Sequence[str] = SLUGS) -> list[Group]:
    groups = [
        Group(
            slug=slug,
            name=slug.replace("-", " ").title(),
            description=f"About {slug}.",
            roles=["Canvasser", "Phone banker"],
        )
        for slug in slugs
    ]
    session.add_all(groups)
    session.flush()
    return groups


def add_experiment(
    session: so.Session,
    *,
    key: str = "landing-1",
    kind: str = "landing",
    metric: str = "signup",
    status: str = "running",
    arms: int = 2,
    burn_in: int = 0,
) -> Experiment:
    experiment = Experiment(
        key=key, name=key, kind=kind, metric=metric, status=status, burn_in=burn_in, floor=0.0
    )
    for index in range(arms):
        letter = "abcdefgh"[index]
        if kind == "landing":
            content = {
                "headline": f"Headline {letter.upper()}",
                "body": f"<p>Body {letter}</p>",
                "call_to_action": f"Join {letter}",
            }
        else:
            content = {"subject": f"Subject {letter}", "preheader": "", "text": f"Share {letter}"}
        experiment.variants.append(Variant(key=letter, name=letter.upper(), content=content))
    session.add(experiment)
    session.flush()
    return experiment


def form_fields(html: str) -> dict[str, str]:
    """The hidden fields of the signup form (csrf_token, ctx)."""
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))


def headline(response: TestResponse) -> str:
    match = re.search(r'<h1 id="headline">([^<]*)</h1>', response.get_data(as_text=True))
    assert match, "no headline on the page"
    return match.group(1)


def checkbox_order(html: str) -> list[str]:
    return re.findall(r'name="groups" value="([^"]+)"', html)


def sign_up(
    client: FlaskClient,
    *,
    query: str = "",
    email: str = "ada@example.org",
    zip_code: str = "10001",
    groups: Sequence[str] = ("indivisible",),
    **extra: str,
) -> TestResponse:
    """Open the landing page like a visitor, then submit its form."""
    page = client.get("/" + query)
    assert page.status_code == 200
    data: dict[str, object] = {
        **form_fields(page.get_data(as_text=True)),
        "email": email,
        "zip": zip_code,
        "groups": list(groups),
        **extra,
    }
    return client.post("/signup", data=data)
