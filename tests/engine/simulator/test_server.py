"""Injected failures and slowness, seen by the real client, and the loopback control API."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from python_http_client.exceptions import (
    InternalServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
)
from sendgrid import SendGridAPIClient
from werkzeug.test import Client

from engine.simulator import SimulatorHandle
from engine.simulator.server import SimulatorApp
from tests.engine.simulator.support import FROZEN_NOW, mail


def send(client: SendGridAPIClient, body: dict, **options: Any) -> Any:
    return client.client.mail.send.post(request_body=body, **options)


def control(handle: SimulatorHandle, path: str, body: Any = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    method = "GET" if path == "/_sim/stats" else "POST"
    request = urllib.request.Request(handle.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_injected_429_carries_the_reset_time_then_sending_works_again(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle
) -> None:
    simulator.inject_failure(429, count=1, retry_after=30)

    with pytest.raises(TooManyRequestsError) as caught:
        send(sendgrid_client, mail(2))

    assert caught.value.headers["X-RateLimit-Reset"] == str(int(FROZEN_NOW) + 30)
    assert caught.value.headers["X-RateLimit-Remaining"] == "0"
    assert caught.value.to_dict["errors"][0]["message"] == "too many requests"
    assert send(sendgrid_client, mail(2)).status_code == 202
    assert simulator.stats()["messages_accepted"] == 2  # the refused request sent nothing


def test_injected_500s_fail_exactly_count_requests(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle
) -> None:
    simulator.inject_failure(500, count=2)

    for _ in range(2):
        with pytest.raises(InternalServerError):
            send(sendgrid_client, mail(1))
    assert send(sendgrid_client, mail(1)).status_code == 202

    stats = simulator.stats()
    assert stats["injected_failures"] == 2
    assert stats["requests"] == 3 and stats["accepted_requests"] == 1
    assert len(simulator.requests) == 3  # every payload received is kept for assertions


def test_failures_injected_over_http(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle
) -> None:
    assert control(simulator, "/_sim/fail", {"status": 503, "count": 1}) == (200, {"injected": 1})

    with pytest.raises(ServiceUnavailableError):
        send(sendgrid_client, mail(1))
    assert send(sendgrid_client, mail(1)).status_code == 202


def test_a_slow_answer_times_the_client_out_but_the_mail_is_still_sent(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle
) -> None:
    simulator.inject_slow(0.6, count=1)

    started = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        send(sendgrid_client, mail(1), timeout=0.2)
    assert time.monotonic() - started < 0.55

    # Like the real service: a timeout says nothing about whether the mail went out.
    deadline = time.monotonic() + 5
    while simulator.stats()["accepted_requests"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert simulator.stats()["accepted_requests"] == 1
    started = time.monotonic()
    assert send(sendgrid_client, mail(1), timeout=2).status_code == 202
    assert time.monotonic() - started < 0.3


def test_slow_answers_injected_over_http(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle
) -> None:
    assert control(simulator, "/_sim/slow", {"seconds": 0.3, "count": 1})[0] == 200

    started = time.monotonic()
    assert send(sendgrid_client, mail(1)).status_code == 202
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/_sim/fail", {"status": 404, "count": 1}, "429 or 5xx"),
        ("/_sim/fail", {"count": 1}, "status is required"),
        ("/_sim/fail", {"status": 500, "count": 0}, "count"),
        ("/_sim/fail", {"status": 429, "retry_after": -1}, "retry_after"),
        ("/_sim/slow", {"seconds": "soon"}, "seconds must be a finite number"),
        ("/_sim/slow", {"seconds": 1, "count": 1.5}, "whole number"),
        ("/_sim/slow", [1, 2], "JSON object"),
    ],
)
def test_control_api_refuses_bad_input_with_a_clear_message(
    simulator: SimulatorHandle, path: str, body: Any, message: str
) -> None:
    status, answer = control(simulator, path, body)

    assert status == 400
    assert answer["error"] == "Bad Request" and message in answer["message"]


def test_stats_and_flush_over_http(
    sendgrid_client: SendGridAPIClient, simulator: SimulatorHandle, receiver: Any
) -> None:
    send(sendgrid_client, mail(5))

    status, stats = control(simulator, "/_sim/stats")
    assert status == 200
    assert stats["messages_accepted"] == 5
    assert stats["events_pending"] == stats["events_queued"] >= 10  # processed + delivered/bounce

    status, flushed = control(simulator, "/_sim/flush")
    assert status == 200 and flushed["delivered"] == stats["events_pending"]
    assert sum(post.body.count(b'"sg_event_id"') for post in receiver.posts) == flushed["delivered"]
    assert control(simulator, "/_sim/stats")[1]["events_pending"] == 0


def test_control_api_refuses_callers_from_other_hosts(simulator: SimulatorHandle) -> None:
    app = SimulatorApp(simulator._service)
    response = Client(app).post(
        "/_sim/fail", json={"status": 500, "count": 1}, environ_base={"REMOTE_ADDR": "10.1.2.3"}
    )

    assert response.status_code == 403
    assert response.json["error"] == "Forbidden"
    assert simulator.stats()["injected_failures"] == 0


def test_unknown_paths_and_methods_answer_in_sendgrid_shape(simulator: SimulatorHandle) -> None:
    for method, path, status in [("GET", "/v3/nothing", 404), ("GET", "/v3/mail/send", 405)]:
        request = urllib.request.Request(simulator.url + path, method=method)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        with caught.value as response:
            assert response.code == status
            assert "errors" in json.loads(response.read())


def test_stop_is_prompt_even_with_a_slow_request_pending(start: Any, sim_settings: Any) -> None:
    handle = start(webhook_url=None)
    handle.inject_slow(30, count=1)
    client = SendGridAPIClient(sim_settings.sendgrid.api_key, host=handle.url)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        send(client, mail(1), timeout=0.2)

    started = time.monotonic()
    handle.stop()
    handle.stop()  # a second stop is harmless

    assert time.monotonic() - started < 2
