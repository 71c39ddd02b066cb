"""Mail Send over HTTP with the real sendgrid client: acceptance, SendGrid's limits and errors."""

from __future__ import annotations

import json
import urllib.request

import pytest
from python_http_client.exceptions import BadRequestsError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

from engine.settings import Settings
from engine.simulator import SimulatorHandle
from engine.simulator.mail_send import validate
from tests.engine.simulator.support import mail


def send(client: SendGridAPIClient, body: dict) -> object:
    return client.client.mail.send.post(request_body=body)


def rejected(client: SendGridAPIClient, body: dict) -> list[dict]:
    with pytest.raises(BadRequestsError) as caught:
        send(client, body)
    return caught.value.to_dict["errors"]


def test_accepts_a_valid_request_with_202_and_a_message_id(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle
) -> None:
    response = send(sendgrid_client, mail(3))

    assert response.status_code == 202
    assert response.body == b""
    x_message_id = response.headers["X-Message-Id"]
    assert len(x_message_id) >= 16 and "." not in x_message_id
    [accepted] = simulator.accepted
    assert accepted.x_message_id == x_message_id and accepted.recipients == 3
    assert simulator.requests == [mail(3)]
    assert simulator.stats()["messages_accepted"] == 3


def test_each_request_gets_its_own_message_id(sendgrid_client: SendGridAPIClient) -> None:
    ids = {send(sendgrid_client, mail(1)).headers["X-Message-Id"] for _ in range(5)}
    assert len(ids) == 5


def test_the_mail_helper_of_the_client_is_accepted(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle
) -> None:
    message = Mail(
        from_email="recruit@resistry.example",
        to_emails="friend@example.org",
        subject="Hello",
        html_content='<a href="https://resistry.example/">Join</a>',
    )
    assert sendgrid_client.send(message).status_code == 202
    assert simulator.accepted[0].payload["personalizations"][0]["to"] == [
        {"email": "friend@example.org"}
    ]


def test_1000_personalizations_pass_and_1001_are_refused(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle
) -> None:
    assert send(sendgrid_client, mail(1000)).status_code == 202

    [error] = rejected(sendgrid_client, mail(1001))

    assert error["field"] == "personalizations"
    assert "limited to 1000 personalizations" in error["message"]
    assert "1001" in error["message"]
    assert error["help"].startswith("http://sendgrid.com/docs/")
    assert simulator.stats()["messages_accepted"] == 1000  # nothing of the refused request


def test_more_than_1000_recipients_across_to_and_cc_are_refused(
    sendgrid_client: SendGridAPIClient,
) -> None:
    body = mail(600)
    for index, personalization in enumerate(body["personalizations"]):
        personalization["cc"] = [{"email": f"cc{index}@example.org"}]

    errors = rejected(sendgrid_client, body)

    assert [e["field"] for e in errors] == ["personalizations"]
    assert "limit of 1000 total recipients" in errors[0]["message"]


def test_custom_args_merged_with_message_level_must_stay_under_10000_bytes(
    sendgrid_client: SendGridAPIClient,
) -> None:
    body = mail(2, custom_args={"campaign": "x" * 5000})
    body["personalizations"][1]["custom_args"]["note"] = "y" * 5000

    [error] = rejected(sendgrid_client, body)

    # The first personalization alone is under the limit; merged, the second is over it.
    assert error["field"] == "personalizations.1.custom_args"
    assert "10000 bytes" in error["message"]


def test_custom_args_just_under_the_limit_are_accepted(sendgrid_client: SendGridAPIClient) -> None:
    body = mail(1)
    args = body["personalizations"][0]["custom_args"]
    size = len(json.dumps(args, separators=(",", ":")))
    args["padding"] = "p" * (10_000 - 1 - size - len(',"padding":""'))
    assert len(json.dumps(args, separators=(",", ":"))) == 9_999

    assert send(sendgrid_client, body).status_code == 202


@pytest.mark.parametrize(
    ("missing", "field"),
    [
        ("from", "from.email"),
        ("subject", "subject"),
        ("content", "content"),
        ("personalizations", "personalizations"),
    ],
)
def test_a_missing_required_field_is_named(
    sendgrid_client: SendGridAPIClient, missing: str, field: str
) -> None:
    body = mail(1)
    del body[missing]

    errors = rejected(sendgrid_client, body)

    assert field in [e["field"] for e in errors]
    assert all(set(e) == {"message", "field", "help"} for e in errors)


def test_every_problem_is_reported_at_once() -> None:
    errors = validate({"personalizations": []})
    assert {e["field"] for e in errors} == {"from.email", "personalizations", "subject", "content"}


def test_subject_may_come_from_every_personalization() -> None:
    body = mail(2)
    del body["subject"]
    for personalization in body["personalizations"]:
        personalization["subject"] = "Per person"
    assert validate(body) == []


def test_more_than_10_categories_are_refused(sendgrid_client: SendGridAPIClient) -> None:
    assert (
        send(sendgrid_client, mail(1, categories=[f"c{i}" for i in range(10)])).status_code == 202
    )

    [error] = rejected(sendgrid_client, mail(1, categories=[f"c{i}" for i in range(11)]))

    assert error["field"] == "categories"
    assert "more than 10 categories" in error["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"from": {"email": "not-an-address"}}, "from.email"),
        ({"custom_args": {"send_id": 12}}, "custom_args"),
        ({"content": [{"type": "text/html", "value": ""}]}, "content.0.value"),
        ({"categories": "one"}, "categories"),
    ],
)
def test_ill_typed_fields_are_refused(
    sendgrid_client: SendGridAPIClient, change: dict, field: str
) -> None:
    assert field in [e["field"] for e in rejected(sendgrid_client, mail(1, **change))]


def test_bad_recipient_address_and_duplicates_are_refused() -> None:
    body = mail(1)
    body["personalizations"][0]["to"].append({"email": "broken"})
    body["personalizations"][0]["cc"] = [{"email": "PERSON0@example.org"}]

    fields = [e["field"] for e in validate(body)]

    assert fields == ["personalizations.0.to.1.email", "personalizations.0"]


@pytest.mark.parametrize("header", [None, "Bearer SG.wrong", "SG.simulator-key"])
def test_a_missing_or_wrong_api_key_is_401(
    simulator: SimulatorHandle, sim_settings: Settings, header: str | None
) -> None:
    headers = {"Content-Type": "application/json"} | ({"Authorization": header} if header else {})
    request = urllib.request.Request(
        simulator.url + "/v3/mail/send", data=json.dumps(mail(1)).encode(), headers=headers
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    with caught.value as response:
        assert response.code == 401
        [error] = json.loads(response.read())["errors"]
    assert "authorization grant is invalid" in error["message"]
    assert simulator.stats()["messages_accepted"] == 0


def test_wrong_key_through_the_client(simulator: SimulatorHandle) -> None:
    with pytest.raises(UnauthorizedError):
        send(SendGridAPIClient("SG.other", host=simulator.url), mail(1))


def test_a_body_that_is_not_json_is_400(simulator: SimulatorHandle, sim_settings: Settings) -> None:
    request = urllib.request.Request(
        simulator.url + "/v3/mail/send",
        data=b"{not json",
        headers={"Authorization": f"Bearer {sim_settings.sendgrid.api_key}"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    with caught.value as response:
        assert response.code == 400
        assert "errors" in json.loads(response.read())


def test_sandbox_mode_answers_200_and_sends_nothing(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle
) -> None:
    body = mail(2, mail_settings={"sandbox_mode": {"enable": True}})

    assert send(sendgrid_client, body).status_code == 200
    assert simulator.stats()["messages_accepted"] == 0
    assert simulator.flush() == 0


@pytest.mark.parametrize(
    "change",
    [
        {"personalizations": 5},
        {"personalizations": "abc"},
        {"personalizations": [{"to": "a@example.org"}]},
        {"personalizations": [{"to": [1]}]},
        {"personalizations": [{"to": [{"email": 5}]}]},
        {"personalizations": [{"to": [{"email": "a@example.org"}], "cc": {"email": "b"}}]},
        {"personalizations": [{"to": [{"email": "a@example.org"}], "substitutions": ["x"]}]},
        {"personalizations": [{"to": [{"email": "a@example.org"}], "custom_args": "x"}]},
        {"from": "recruit@resistry.example"},
        {"from": {"email": 5}},
        {"subject": 5},
        {"content": [1]},
        {"content": {"type": "text/html"}},
        {"categories": [1, 2]},
        {"custom_args": ["x"]},
    ],
)
def test_any_odd_shape_is_a_400_never_a_500(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle, change: dict
) -> None:
    errors = rejected(sendgrid_client, mail(1, **change))

    assert errors and all(isinstance(e["message"], str) for e in errors)
    assert simulator.stats()["messages_accepted"] == 0


def test_a_non_object_body_is_a_400() -> None:
    assert validate([1, 2])[0]["field"] is None


def test_the_custom_args_limit_counts_bytes_not_characters() -> None:
    def with_note(characters: int) -> dict:
        body = mail(1)
        body["personalizations"][0]["custom_args"] = {"send_id": "1", "note": "é" * characters}
        return body

    # {"send_id":"1","note":"…"} is 25 bytes around the note; "é" is 2 bytes in UTF-8.
    assert validate(with_note(4987)) == []  # 9,999 bytes, 4,987 characters
    [error] = validate(with_note(4988))  # 10,001 bytes
    assert error["field"] == "personalizations.0.custom_args"
    assert "10001 bytes" in error["message"]
