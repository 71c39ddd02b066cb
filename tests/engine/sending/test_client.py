"""The real sendgrid client against the simulator over HTTP: retries, waits, rejections."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.sending.client import MailClient, SendGridAuthError
from engine.settings import Settings
from engine.simulator import SimulatorHandle, start_simulator
from tests.conftest import make_settings
from tests.engine.sending.conftest import Recorder


@pytest.fixture
def sim_settings() -> Settings:
    return make_settings("sqlite:///:memory:")


def client_for(settings: Settings, simulator: SimulatorHandle, **sendgrid: Any) -> tuple:
    recorder = Recorder()
    section = {"host": simulator.url, **sendgrid}
    client = MailClient(
        settings.replace(sendgrid=section).sendgrid, sleep=recorder, clock=lambda: 1000.0
    )
    return client, recorder


def request_body(count: int = 2) -> dict[str, Any]:
    return {
        "personalizations": [
            {
                "to": [{"email": f"p{i}@example.org"}],
                "subject": "Hi",
                "custom_args": {"send_id": str(i)},
            }
            for i in range(count)
        ],
        "from": {"email": "recruit@resistry.example"},
        "content": [{"type": "text/html", "value": "<p>hello</p>"}],
    }


def test_timeout_is_set_on_the_client(sim_settings: Settings, simulator: SimulatorHandle) -> None:
    client, _ = client_for(sim_settings, simulator, timeout_seconds=3.5)
    assert client._api.client.timeout == 3.5
    assert client._api.client.mail.send.timeout == 3.5


def test_accepted_returns_the_message_id(
    sim_settings: Settings, simulator: SimulatorHandle
) -> None:
    client, recorder = client_for(sim_settings, simulator)
    result = client.post(request_body())
    assert result.outcome == "accepted"
    assert result.x_message_id == simulator.accepted[0].x_message_id
    assert recorder.waits == []


def test_429_waits_until_the_reset_then_succeeds(
    sim_settings: Settings, simulator: SimulatorHandle
) -> None:
    # The simulator's reset is its clock + 40 s; our clock says 1000, so the reset is far ahead:
    # the wait is bounded by max_rate_limit_wait_seconds.
    client, recorder = client_for(sim_settings, simulator, max_rate_limit_wait_seconds=7.0)
    simulator.inject_failure(429, count=2, retry_after=40)
    result = client.post(request_body())
    assert result.outcome == "accepted"
    assert recorder.waits == [7.0, 7.0]
    assert len(simulator.requests) == 3


def test_429_wait_follows_x_ratelimit_reset(sim_settings: Settings, tmp_path: Path) -> None:
    clock = lambda: 5000.0  # noqa: E731 - the simulator and the client share a frozen clock
    handle = start_simulator(sim_settings, webhook_url=None, seed=1, key_dir=tmp_path, clock=clock)
    try:
        recorder = Recorder()
        section = {"host": handle.url, "max_rate_limit_wait_seconds": 60.0}
        client = MailClient(
            sim_settings.replace(sendgrid=section).sendgrid, sleep=recorder, clock=clock
        )
        handle.inject_failure(429, count=1, retry_after=12)
        assert client.post(request_body()).outcome == "accepted"
        assert recorder.waits == [12.0]
    finally:
        handle.stop()


def test_5xx_retries_with_exponential_backoff_then_succeeds(
    sim_settings: Settings, simulator: SimulatorHandle
) -> None:
    client, recorder = client_for(
        sim_settings, simulator, backoff_seconds=0.5, max_backoff_seconds=1.5, max_retries=5
    )
    simulator.inject_failure(500, count=2)
    simulator.inject_failure(503, count=2)
    result = client.post(request_body())
    assert result.outcome == "accepted"
    assert recorder.waits == [0.5, 1.0, 1.5, 1.5]  # doubling, capped
    assert result.attempts == 5


def test_5xx_until_retries_run_out_is_unavailable(
    sim_settings: Settings, simulator: SimulatorHandle
) -> None:
    client, recorder = client_for(sim_settings, simulator, max_retries=2)
    simulator.inject_failure(502, count=5)
    result = client.post(request_body())
    assert result.outcome == "unavailable"
    assert "502" in result.message
    assert len(recorder.waits) == 2
    assert len(simulator.requests) == 3


def test_timeouts_are_retried(sim_settings: Settings, simulator: SimulatorHandle) -> None:
    client, recorder = client_for(sim_settings, simulator, timeout_seconds=0.2)
    simulator.inject_slow(1.0, count=1)
    result = client.post(request_body())
    assert result.outcome == "accepted"
    assert len(recorder.waits) == 1


def test_400_is_rejected_with_sendgrids_message_and_not_retried(
    sim_settings: Settings, simulator: SimulatorHandle
) -> None:
    client, recorder = client_for(sim_settings, simulator)
    result = client.post(request_body(1001))
    assert result.outcome == "rejected"
    assert result.message.startswith("400: personalizations: The personalization block is limited")
    assert recorder.waits == []
    assert len(simulator.requests) == 1


def test_a_refused_api_key_raises(sim_settings: Settings, simulator: SimulatorHandle) -> None:
    client, _ = client_for(sim_settings, simulator, api_key="SG.wrong")
    with pytest.raises(SendGridAuthError, match="401"):
        client.post(request_body())


def test_bodies_go_out_once_encoded_as_utf8_json_and_arrive_intact(
    sim_settings: Settings, simulator: SimulatorHandle
) -> None:
    body = request_body(2)
    body["personalizations"][0]["to"][0]["name"] = "Zoë 😀"
    body["content"][0]["value"] = '<p>Bonjour · ¡hola! "quoted" \\ </p>'
    seen: list[tuple[str, bytes]] = []

    class Capture(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers["Content-Type"], data))
            self.send_response(202)
            self.send_header("X-Message-Id", "captured")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Capture)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        section = {"host": f"http://127.0.0.1:{server.server_port}"}
        client = MailClient(sim_settings.replace(sendgrid=section).sendgrid)
        assert client.post(body).x_message_id == "captured"
    finally:
        thread.join(timeout=5)
        server.server_close()
    [(content_type, data)] = seen
    assert content_type == "application/json; charset=utf-8"
    assert json.loads(data.decode("utf-8")) == body
    assert "Zoë 😀".encode() in data  # UTF-8 on the wire, not \u escapes

    client, _ = client_for(sim_settings, simulator)  # and SendGrid's side reads the same
    assert client.post(body).outcome == "accepted"
    assert simulator.requests == [body]
