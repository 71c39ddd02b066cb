"""Two workers with their own connections store overlapping batches at the same moment, and two
appliers apply them at the same moment."""

import random
import threading

import sqlalchemy as sa
import sqlalchemy.orm as so
from cryptography.hazmat.primitives.asymmetric import ec

from engine.app import create_app
from engine.db import session_factory
from engine.models import Event, Variant, WebhookBatch
from engine.settings import Settings
from tests.webhooks.helpers import T0, apply_inbox, event, post, seed_sends
from webhooks import wire


def test_overlapping_concurrent_batches_count_once(
    committed_engine: sa.Engine,
    committed_sessions: so.sessionmaker[so.Session],
    settings: Settings,
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    with committed_sessions.begin() as session:
        fixture = seed_sends(session, 40)
        variant_ids = fixture.sends[0].variant_ids
    events = []
    for n, send in enumerate(fixture.sends):
        events += [
            event("delivered", send, T0),
            event("open", send, T0 + 60),
            event("open", send, T0 + 61),
            event("click", send, T0 + 3600, url="https://example.org/a"),
        ]
        if n % 4 == 0:
            events.append(event("spamreport", send, T0 + 4000))
    keyed = settings.replace(sendgrid={"webhook_public_key": wire.public_key_base64(signing_key)})
    apps = [
        create_app({"TESTING": True}, settings=keyed, sessions=session_factory(committed_engine))
        for _ in range(2)
    ]
    clients = [app.test_client() for app in apps]
    rng = random.Random(7)
    third = len(events) // 3
    batches = [events[: 2 * third], events[third:]]
    responses: list = []
    lock = threading.Lock()

    for round_number in range(3):
        barrier = threading.Barrier(2)

        def worker(index: int, barrier: threading.Barrier, seed: int) -> None:
            batch = list(batches[index])
            random.Random(seed).shuffle(batch)
            barrier.wait()
            response = post(clients[index], signing_key, batch, apply=False)
            barrier.wait()  # both bodies stored: now two appliers at once
            applied = apply_inbox(apps[index], limit=1)
            with lock:
                responses.append((response.status_code, applied))

        threads = [
            threading.Thread(target=worker, args=(i, barrier, round_number * 10 + i))
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        rng.shuffle(batches)

    assert [status for status, _ in responses] == [200] * 6
    assert sum(applied.applied for _, applied in responses) == 6
    assert sum(applied.stored for _, applied in responses) == len(events)
    with committed_sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Event)) == len(events)
        assert session.scalar(sa.select(sa.func.sum(WebhookBatch.stored))) == len(events)
        arms = {
            v.id: v for v in session.scalars(sa.select(Variant).where(Variant.id.in_(variant_ids)))
        }
        subject, body, share = (arms[v] for v in variant_ids)
        assert subject.successes == 40  # one first human click per send (click metric)
        assert body.successes == 40  # one first human open per send (open metric)
        assert share.successes == 0  # signup metric
        assert subject.spam_reports == body.spam_reports == 10
