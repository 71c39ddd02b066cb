"""The inbox between the endpoint and the applier: each stored body applied exactly once, in
arrival order, at its receipt time; a database error leaves it pending, a bug sets it aside."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient

from engine import migrate
from engine.db import create_db_engine, session_factory
from engine.models import Event, InboxBatch, WebhookBatch
from engine.settings import Settings
from tests.conftest import make_settings
from tests.webhooks.helpers import (
    NOW,
    T0,
    Fixture,
    apply_inbox,
    counts,
    event,
    post,
    seed_sends,
    send_row,
    variant,
)
from tests.webhooks.test_cli import run
from webhooks import inbox, ingest, wire
from webhooks.turn import WriterTurn


def test_a_stored_body_is_applied_once(  # type: ignore[no-untyped-def]
    webhook_client: FlaskClient, signing_key, world: Fixture, session: so.Session
) -> None:
    send = world.sends[0]
    events = [event("delivered", send, T0), event("open", send, T0 + 60)]
    assert post(webhook_client, signing_key, events, apply=False).status_code == 200
    assert post(webhook_client, signing_key, events, apply=False).status_code == 200  # a retry
    assert send_row(session, send).delivered_at is None  # nothing applied yet

    first = apply_inbox(webhook_client.application)
    assert (first.applied, first.received, first.stored, first.duplicates) == (2, 4, 2, 2)
    again = apply_inbox(webhook_client.application)
    assert (again.applied, again.stored) == (0, 0)
    assert counts(session)["inbox"] == 0 and counts(session)["events"] == 2
    assert send_row(session, send).first_open_at is not None
    assert variant(session, send.variant_ids[1]).successes == 1  # the body arm: open metric


def test_bodies_are_applied_oldest_first_at_their_receipt_time(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    received = [NOW - timedelta(minutes=5), NOW - timedelta(minutes=1)]
    for at, kind in zip(received, ("delivered", "open"), strict=True):
        body = wire.build_body([event(kind, send, T0)])
        inbox.enqueue(session, body, 1, at)
    session.commit()

    turn = WriterTurn(settings.database.url, 0)
    assert inbox.drain(session, settings.webhooks, turn, limit=1).applied == 1
    [stored] = session.scalars(sa.select(Event))
    assert stored.event_type == "delivered" and stored.received_at == received[0]
    assert inbox.drain(session, settings.webhooks, turn).applied == 1
    batches = session.scalars(sa.select(WebhookBatch.received_at).order_by(WebhookBatch.id))
    assert list(batches) == received


@pytest.mark.parametrize("failure", ["quarantine", "driver statement"])
def test_a_database_error_keeps_nothing_and_leaves_the_body_pending(  # type: ignore[no-untyped-def]
    webhook_client: FlaskClient,
    signing_key: ec.EllipticCurvePrivateKey,
    world: Fixture,
    session: so.Session,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    send = world.sends[0]
    events = [event("delivered", send, T0), event("open", send, T0 + 9)]
    assert post(webhook_client, signing_key, events, apply=False).status_code == 200
    before = counts(session)
    if failure == "quarantine":

        def failing_quarantine(*_args: object) -> None:
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

        monkeypatch.setattr(ingest, "_quarantine", failing_quarantine)
    else:
        # The hot path's statements run on the driver's cursor (webhooks.native.Driver): their
        # errors still come out as SQLAlchemy's. The batch record is the last statement.
        broken = {
            "sqlite": "INSERT INTO no_such_table VALUES (?, ?, ?, ?, ?, ?)",
            "postgresql": "INSERT INTO no_such_table VALUES (%s, %s, %s, %s, %s, %s)",
        }
        monkeypatch.setattr(ingest, "_BATCH_INSERT", broken)
    with pytest.raises(sa.exc.DBAPIError):
        apply_inbox(webhook_client.application)
    assert counts(session) == before  # the body still pending, nothing of it kept
    assert send_row(session, send).delivered_at is None
    assert variant(session, send.variant_ids[1]).successes == 0
    monkeypatch.undo()
    assert apply_inbox(webhook_client.application).stored == 2
    assert counts(session)["inbox"] == 0
    assert variant(session, send.variant_ids[1]).successes == 1


def test_a_body_that_fails_otherwise_is_set_aside_and_the_rest_go_on(  # type: ignore[no-untyped-def]
    webhook_client: FlaskClient,
    signing_key: ec.EllipticCurvePrivateKey,
    world: Fixture,
    session: so.Session,
    sessions: so.sessionmaker[so.Session],
    webhook_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = world.sends[:2]
    post(webhook_client, signing_key, [event("delivered", first, T0)], apply=False)
    post(webhook_client, signing_key, [event("delivered", second, T0)], apply=False)
    real_store = ingest.store_batch
    calls = []

    def store_with_a_bug(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("a bug")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(inbox, "store_batch", store_with_a_bug)
    result = apply_inbox(webhook_client.application)
    assert (result.applied, result.set_aside) == (1, 1)
    assert send_row(session, first).delivered_at is None
    assert send_row(session, second).delivered_at is not None
    [kept] = session.scalars(sa.select(InboxBatch))
    assert kept.failed_at is not None and kept.failure == "KeyError: 'a bug'"

    stats = json.loads(run(webhook_settings, sessions, "events", "stats", "--json").output)
    assert stats["inbox"]["set_aside"] == [{"id": kept.id, "failure": "KeyError: 'a bug'"}]
    table = run(webhook_settings, sessions, "events", "stats").output
    assert "KeyError: 'a bug'" in table and "--retry-set-aside" in table
    assert apply_inbox(webhook_client.application).applied == 0  # set aside: not retried

    monkeypatch.undo()
    result = run(webhook_settings, sessions, "events", "apply", "--retry-set-aside")
    assert result.exit_code == 0, result.output
    assert "set-aside bodies pending again: 1" in result.output
    assert "applied 1 webhook body: 1 events, 1 new" in result.output
    assert send_row(session, first).delivered_at is not None
    assert counts(session)["inbox"] == 0


def test_stats_count_what_waits_in_the_inbox(  # type: ignore[no-untyped-def]
    webhook_client: FlaskClient,
    signing_key: ec.EllipticCurvePrivateKey,
    world: Fixture,
    sessions: so.sessionmaker[so.Session],
    webhook_settings: Settings,
) -> None:
    events = [event("delivered", send, T0) for send in world.sends]
    post(webhook_client, signing_key, events, apply=False)
    post(webhook_client, signing_key, events[:1], apply=False)
    stats = json.loads(run(webhook_settings, sessions, "events", "stats", "--json").output)
    assert stats["received"] == 0  # counted once applied
    assert stats["inbox"]["pending"] == 2 and stats["inbox"]["pending_events"] == 4
    assert stats["inbox"]["oldest_pending_at"] is not None
    result = run(webhook_settings, sessions, "events", "apply")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "applied 2 webhook bodies: 4 events, 3 new, 1 duplicates, 0 quarantined"
    )
    stats = json.loads(run(webhook_settings, sessions, "events", "stats", "--json").output)
    assert (stats["received"], stats["unique"], stats["inbox"]["pending"]) == (4, 3, 0)


def test_apply_on_an_unmigrated_database_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    runtime_sessions = so.sessionmaker(bind=sa.create_engine(settings.database.url))
    result = run(settings, runtime_sessions, "events", "apply")
    assert result.exit_code == 1
    assert "is it migrated? Run `resistry db upgrade`" in result.output


def test_the_applier_process_applies_bodies_as_they_arrive_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'applier.sqlite3'}"
    settings = make_settings(url)
    engine = create_db_engine(settings)
    migrate.upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        fixture = seed_sends(session, 2)
    env = dict(os.environ, RESISTRY_DATABASE_URL=url, RESISTRY_SECRET_KEY="k" * 40)
    applier = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "events", "apply", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # The applier yields the CPU to the web workers ([webhooks] applier_nice).
        nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + settings.webhooks.applier_nice)
        deadline = time.monotonic() + 10
        while os.getpriority(os.PRIO_PROCESS, applier.pid) != nice:
            assert time.monotonic() < deadline, "the applier did not lower its priority"
            time.sleep(0.02)
        for send in fixture.sends:  # one body before the applier looks, one while it waits
            with sessions.begin() as session:
                body = wire.build_body([event("delivered", send, T0)])
                inbox.enqueue(session, body, 1, NOW)
            deadline = time.monotonic() + 30
            while counts_of(sessions)["inbox"] and time.monotonic() < deadline:
                time.sleep(0.02)
        state = counts_of(sessions)
        assert (state["inbox"], state["events"], state["batches"]) == (0, 2, 2)
    finally:
        applier.send_signal(signal.SIGTERM)
        output = applier.communicate(timeout=30)[0].decode()
        engine.dispose()
    assert applier.returncode == 0, output
    assert "applied 1 webhook body: 1 events, 1 new" in output
    assert output.rstrip().endswith("applier stopped")


def counts_of(sessions: so.sessionmaker[so.Session]) -> dict[str, int]:
    with sessions() as session:
        return counts(session)
