"""The loop on one machine: simulator posts to the real app's webhook over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from sendgrid import SendGridAPIClient
from werkzeug.serving import make_server

from engine.app import create_app
from engine.models import Event
from engine.settings import Settings
from engine.simulator import start_simulator, wire
from tests.engine.simulator.support import mail
from tests.webhooks.helpers import apply_pending


@pytest.fixture
def app_url(
    settings: Settings, committed_sessions: so.sessionmaker[so.Session], tmp_path: Path
) -> Iterator[tuple[str, Settings]]:
    """The real app, served on a free loopback port, trusting the simulator's key."""
    public_key = wire.public_key_base64(wire.load_or_create_key_pair(tmp_path))
    app_settings = settings.replace(sendgrid={"webhook_public_key": public_key})
    app = create_app({"TESTING": True}, settings=app_settings, sessions=committed_sessions)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}", app_settings
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_app_accepts_every_signed_batch_and_dedupes_the_duplicates(
    app_url: tuple[str, Settings],
    committed_sessions: so.sessionmaker[so.Session],
    tmp_path: Path,
) -> None:
    url, settings = app_url
    handle = start_simulator(
        settings.replace(simulator={"duplicate_rate": 0.05, "max_batch_events": 100}),
        webhook_url=url + "/webhooks/sendgrid",
        seed=3,
        key_dir=tmp_path,
        auto_deliver=False,
    )
    try:
        client = SendGridAPIClient(settings.sendgrid.api_key, host=handle.url)
        assert client.client.mail.send.post(request_body=mail(200)).status_code == 202
        delivered = handle.flush()
        stats = handle.stats()
    finally:
        handle.stop()
    apply_pending(committed_sessions, settings)  # as the applier process does

    assert stats["failed_posts"] == 0 and delivered == stats["events_queued"]
    assert stats["duplicates_queued"] > 0
    with committed_sessions() as session:
        stored = session.scalar(sa.select(sa.func.count()).select_from(Event))
    assert stored == stats["events_generated"]  # every event once, duplicates dropped
