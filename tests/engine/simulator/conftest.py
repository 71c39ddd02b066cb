"""Fixtures for the simulator: settings without a database, a webhook receiver, a simulator."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sendgrid import SendGridAPIClient

from engine.settings import Settings
from engine.simulator import SimulatorHandle, start_simulator
from tests.conftest import make_settings
from tests.engine.simulator.support import FROZEN_NOW, Post, WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    state = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                status = state.failures.pop(0) if state.failures else 200
                if status == 200:
                    state.posts.append(Post(dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/webhooks/sendgrid"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def sim_settings() -> Settings:
    """Project settings; the simulator needs no database."""
    return make_settings("sqlite://")


StartSimulator = Callable[..., SimulatorHandle]


@pytest.fixture
def start(sim_settings: Settings, tmp_path: Path) -> Iterator[StartSimulator]:
    """Start simulators (stopped after the test): keys in tmp_path, clock frozen, seed 7,
    no background delivery unless asked; ``simulator`` section keys may be overridden."""
    handles: list[SimulatorHandle] = []

    def starter(*, webhook_url: str | None, **options: Any) -> SimulatorHandle:
        overrides = options.pop("simulator", {})
        settings = sim_settings.replace(simulator=overrides) if overrides else sim_settings
        options.setdefault("seed", 7)
        options.setdefault("clock", lambda: FROZEN_NOW)
        options.setdefault("auto_deliver", False)
        options.setdefault("key_dir", tmp_path / "keys")
        handle = start_simulator(settings, webhook_url=webhook_url, **options)
        handles.append(handle)
        return handle

    yield starter
    for handle in handles:
        handle.stop()


@pytest.fixture
def simulator(start: StartSimulator, receiver: WebhookReceiver) -> SimulatorHandle:
    return start(webhook_url=receiver.url)


@pytest.fixture
def sendgrid_client(simulator: SimulatorHandle, sim_settings: Settings) -> SendGridAPIClient:
    return SendGridAPIClient(sim_settings.sendgrid.api_key, host=simulator.url)
