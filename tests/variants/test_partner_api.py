import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient

from engine.auth import hash_token
from engine.models import Assignment, Decision, Experiment, Group
from tests.variants.landing_support import NOW, add_experiment, add_groups
from variants.landing_state import runtime_of

TOKEN = "partner-token-of-indivisible"
OTHER_TOKEN = "partner-token-of-flippable"


@pytest.fixture
def partner(session: so.Session, app: Flask) -> Group:
    groups = add_groups(session, ["indivisible", "flippable"])
    groups[0].api_token_hash = hash_token(TOKEN)
    groups[1].api_token_hash = hash_token(OTHER_TOKEN)
    session.flush()
    runtime_of(app).now = lambda: NOW
    return groups[0]


@pytest.fixture
def subject(session: so.Session) -> Experiment:
    return add_experiment(session, key="subj", kind="subject", metric="click", arms=3)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assign(client: FlaskClient, query: str, token: str = TOKEN):  # type: ignore[no-untyped-def]
    return client.get(f"/api/v1/assign?{query}", headers=auth(token))


def test_assignment_is_sticky_and_each_new_unit_is_one_trial(
    client: FlaskClient, partner: Group, subject: Experiment, session: so.Session
) -> None:
    first = assign(client, "experiment=subj&unit=r-1")
    assert first.status_code == 200
    body = first.get_json()
    assert body["new"] is True and body["unit"] == "r-1" and body["experiment"] == "subj"
    assert body["variant"]["content"]["subject"].startswith("Subject ")
    for _ in range(5):
        again = assign(client, "experiment=subj&unit=r-1").get_json()
        assert again["variant"] == body["variant"] and again["new"] is False
    for unit in range(2, 21):
        assert assign(client, f"experiment=subj&unit=r-{unit}").status_code == 200
    session.expire_all()
    assert sum(v.trials for v in subject.variants) == 20
    assert session.scalar(sa.select(sa.func.count()).select_from(Assignment)) == 20


def test_the_same_unit_id_of_two_groups_are_two_units(
    client: FlaskClient, partner: Group, subject: Experiment, session: so.Session
) -> None:
    assign(client, "experiment=subj&unit=42")
    assert assign(client, "experiment=subj&unit=42", OTHER_TOKEN).get_json()["new"] is True
    assert session.scalar(sa.select(sa.func.count()).select_from(Assignment)) == 2


def test_a_promoted_experiment_assigns_its_winner(
    client: FlaskClient, partner: Group, subject: Experiment, session: so.Session
) -> None:
    subject.status = "promoted"
    winner = subject.variants[2]
    session.add(
        Decision(
            experiment=subject, variant_id=winner.id, kind="promote", reason="won", created_at=NOW
        )
    )
    session.flush()
    keys = {
        assign(client, f"experiment=subj&unit=u{n}").get_json()["variant"]["key"] for n in range(10)
    }
    assert keys == {winner.key}


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("unit=1", 400, "'experiment' is required"),
        ("experiment=subj", 400, "'unit' is required"),
        ("experiment=subj&unit=%20", 400, "'unit' is required"),
        (f"experiment=subj&unit={'x' * 201}", 400, "at most 200"),
        ("experiment=nope&unit=1", 404, "no experiment with key 'nope'"),
        ("experiment=landing-1&unit=1", 400, "is a landing experiment"),
        ("experiment=draft&unit=1", 409, "is draft"),
    ],
)
def test_bad_assign_requests_are_clear_4xx(
    client: FlaskClient,
    partner: Group,
    subject: Experiment,
    session: so.Session,
    query: str,
    status: int,
    message: str,
) -> None:
    add_experiment(session, key="landing-1")
    add_experiment(session, key="draft", kind="body", status="draft")
    response = assign(client, query)
    assert response.status_code == status
    assert message in response.get_json()["message"]
    assert set(response.get_json()) == {"error", "message"}


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}]
)
def test_a_group_token_is_required(
    client: FlaskClient, partner: Group, subject: Experiment, headers: dict[str, str]
) -> None:
    assert client.get("/api/v1/assign?experiment=subj&unit=1", headers=headers).status_code == 401
    response = client.post(
        "/api/v1/convert", json={"experiment": "subj", "unit": "1"}, headers=headers
    )
    assert response.status_code == 401 and response.get_json()["error"] == "Unauthorized"


def test_an_inactive_group_token_is_refused(
    client: FlaskClient, partner: Group, subject: Experiment, session: so.Session
) -> None:
    partner.active = False
    session.flush()
    assert assign(client, "experiment=subj&unit=1").status_code == 401


def test_convert_is_idempotent_and_credits_the_metric_once(
    client: FlaskClient, partner: Group, subject: Experiment, session: so.Session
) -> None:
    key = assign(client, "experiment=subj&unit=r-1").get_json()["variant"]["key"]
    first = client.post(
        "/api/v1/convert", json={"experiment": "subj", "unit": "r-1"}, headers=auth()
    )
    again = client.post(
        "/api/v1/convert", json={"experiment": "subj", "unit": "r-1"}, headers=auth()
    )
    assert first.status_code == again.status_code == 200
    assert first.get_json()["first_time"] is True and again.get_json()["first_time"] is False
    session.expire_all()
    assert {v.key: v.successes for v in subject.variants}[key] == 1
    assert sum(v.successes for v in subject.variants) == 1
    row = session.scalars(sa.select(Assignment)).one()
    assert row.converted_at == NOW


def test_integer_unit_ids_are_the_same_unit_as_their_string(
    client: FlaskClient, partner: Group, subject: Experiment
) -> None:
    assign(client, "experiment=subj&unit=7")
    response = client.post(
        "/api/v1/convert", json={"experiment": "subj", "unit": 7}, headers=auth()
    )
    assert response.status_code == 200 and response.get_json()["first_time"] is True


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "JSON object"),
        ({"json": ["subj", "1"]}, 400, "JSON object"),
        ({"data": "experiment=subj&unit=1"}, 400, "JSON object"),
        ({"json": {"experiment": "subj"}}, 400, "'unit' is required"),
        ({"json": {"experiment": "subj", "unit": True}}, 400, "'unit' must be a string"),
        ({"json": {"unit": "1"}}, 400, "'experiment' is required"),
        ({"json": {"experiment": "nope", "unit": "1"}}, 404, "no experiment"),
        ({"json": {"experiment": "subj", "unit": "never"}}, 404, "never assigned"),
        ({"json": {"experiment": "landing-1", "unit": "1"}}, 400, "is a landing experiment"),
        ({"json": {"experiment": "subj", "unit": "u\x00x"}}, 400, "NUL character"),
        ({"json": {"experiment": "subj\x00", "unit": "1"}}, 400, "NUL character"),
        (
            {
                "data": '{"experiment": "subj", "unit": "\\ud800"}',
                "content_type": "application/json",
            },
            400,
            "unpaired surrogate",
        ),
    ],
)
def test_bad_convert_requests_are_clear_4xx(
    client: FlaskClient,
    partner: Group,
    subject: Experiment,
    session: so.Session,
    kwargs: dict[str, object],
    status: int,
    message: str,
) -> None:
    add_experiment(session, key="landing-1")
    response = client.post("/api/v1/convert", headers=auth(), **kwargs)
    assert response.status_code == status
    assert message in response.get_json()["message"]


def test_a_group_cannot_convert_another_groups_unit(
    client: FlaskClient, partner: Group, subject: Experiment, session: so.Session
) -> None:
    assign(client, "experiment=subj&unit=r-1")
    response = client.post(
        "/api/v1/convert", json={"experiment": "subj", "unit": "r-1"}, headers=auth(OTHER_TOKEN)
    )
    assert response.status_code == 404
    session.expire_all()
    assert sum(v.successes for v in subject.variants) == 0


def test_an_experiment_without_live_variants_is_a_409(
    client: FlaskClient, partner: Group, subject: Experiment, session: so.Session
) -> None:
    for variant in subject.variants:
        variant.status = "paused"
    session.flush()
    response = assign(client, "experiment=subj&unit=1")
    assert response.status_code == 409 and "no live variant" in response.get_json()["message"]
