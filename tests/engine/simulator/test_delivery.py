"""Signed Event Webhook batches posted back over HTTP: format, batching, duplicates, retries."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook

from engine.settings import Settings
from engine.simulator import SimulatorHandle, wire
from tests.engine.simulator.support import FROZEN_NOW, Post, WebhookReceiver, mail


def send(handle: SimulatorHandle, settings: Settings, body: dict) -> str:
    client = SendGridAPIClient(settings.sendgrid.api_key, host=handle.url)
    return client.client.mail.send.post(request_body=body).headers["X-Message-Id"]


def canonical(encoded: bytes) -> bytes:
    """Compact JSON with sorted keys, as SendGrid writes each event."""
    return json.dumps(json.loads(encoded), separators=(",", ":"), sort_keys=True).encode()


def events_of(posts: list[Post]) -> list[dict[str, Any]]:
    return [event for post in posts for event in json.loads(post.body)]


def test_posts_are_signed_and_in_sendgrid_exact_wire_format(
    simulator: SimulatorHandle, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    x_message_id = send(simulator, sim_settings, mail(50))

    delivered = simulator.flush()

    assert delivered == len(events_of(receiver.posts)) > 100
    verifier = EventWebhook(simulator.public_key)
    for post in receiver.posts:
        assert post.headers["Content-Type"] == "application/json"
        timestamp = post.headers[wire.TIMESTAMP_HEADER]
        signature = post.headers[wire.SIGNATURE_HEADER]
        assert verifier.verify_signature(post.body.decode(), signature, timestamp)
        assert post.body.startswith(b"[{") and post.body.endswith(b"}]\r\n")
        pieces = post.body[1:-3].split(b",\r\n")
        assert [canonical(piece) for piece in pieces] == pieces
    for event in events_of(receiver.posts):
        assert isinstance(event["timestamp"], int) and len(event["sg_event_id"]) <= 100
        assert event["category"] == "recruiter-mailing"
        assert event["subject_variant"] == "recruiter-subject/friends-brought"  # custom args on top
        if "sg_message_id" in event:
            assert event["sg_message_id"].split(".")[0] == x_message_id


def test_public_key_file_written_for_the_app_matches_the_signatures(
    start: Any, tmp_path: Any
) -> None:
    handle = start(webhook_url=None, key_dir=tmp_path / "instance")

    assert (tmp_path / "instance" / "webhook_public_key").read_text().strip() == handle.public_key


def test_every_message_gets_processed_and_a_final_fate(
    simulator: SimulatorHandle, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    send(simulator, sim_settings, mail(300))
    simulator.flush()

    by_message: dict[str, set[str]] = {}
    for event in events_of(receiver.posts):
        by_message.setdefault(event["send_id"], set()).add(event["event"])
    assert len(by_message) == 300
    assert all("processed" in kinds for kinds in by_message.values())
    assert all({"delivered", "bounce"} & kinds for kinds in by_message.values())


def test_duplicates_arrive_at_the_configured_rate(
    start: Any, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    handle = start(webhook_url=receiver.url, simulator={"duplicate_rate": 0.1})
    send(handle, sim_settings, mail(1000))
    handle.flush()

    copies = Counter(event["sg_event_id"] for event in events_of(receiver.posts))
    unique = len(copies)
    duplicated = sum(1 for count in copies.values() if count == 2)
    assert max(copies.values()) == 2
    assert unique == handle.stats()["events_generated"]
    assert 0.08 < duplicated / unique < 0.12
    assert duplicated == handle.stats()["duplicates_queued"]


def test_no_duplicates_when_the_rate_is_zero(
    start: Any, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    handle = start(webhook_url=receiver.url, simulator={"duplicate_rate": 0.0})
    send(handle, sim_settings, mail(300))
    handle.flush()

    ids = [event["sg_event_id"] for event in events_of(receiver.posts)]
    assert len(ids) == len(set(ids))


def test_events_arrive_shuffled_even_without_jitter_or_duplicates(
    start: Any, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    handle = start(
        webhook_url=receiver.url, simulator={"jitter_seconds": 0.0, "duplicate_rate": 0.0}
    )
    send(handle, sim_settings, mail(200))
    handle.flush()

    posted = events_of(receiver.posts)
    timestamps = [event["timestamp"] for event in posted]
    assert timestamps != sorted(timestamps)
    position = {(e["send_id"], e["event"]): i for i, e in enumerate(posted)}
    delivered_first = [
        send_id
        for (send_id, kind), index in position.items()
        if kind == "processed" and position.get((send_id, "delivered"), len(posted)) < index
    ]
    assert delivered_first  # some "delivered" events come before their "processed"


def test_batches_respect_the_event_and_byte_limits(
    start: Any, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    handle = start(
        webhook_url=receiver.url, simulator={"max_batch_events": 40, "max_batch_bytes": 8192}
    )
    send(handle, sim_settings, mail(200))

    delivered = handle.flush()

    assert delivered == handle.stats()["events_queued"]
    assert len(receiver.posts) > delivered / 40
    for post in receiver.posts:
        assert len(json.loads(post.body)) <= 40
        assert len(post.body) <= 8192


def test_a_refused_batch_is_retried_whole_until_accepted(
    simulator: SimulatorHandle, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    send(simulator, sim_settings, mail(5))
    queued = simulator.stats()["events_queued"]
    receiver.fail_next(2, status=503)

    assert simulator.flush() == 0
    assert simulator.flush() == 0
    assert simulator.flush() == queued

    stats = simulator.stats()
    assert stats["failed_posts"] == 2 and stats["events_delivered"] == queued
    assert stats["events_pending"] == 0 and len(receiver.posts) == 1


def test_a_batch_is_dropped_after_the_last_attempt(
    start: Any, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    handle = start(webhook_url=receiver.url, simulator={"max_delivery_attempts": 2})
    send(handle, sim_settings, mail(5))
    queued = handle.stats()["events_queued"]
    receiver.fail_next(5, status=500)

    handle.flush()
    handle.flush()

    stats = handle.stats()
    assert stats["events_dropped"] == queued and stats["events_pending"] == 0
    assert handle.flush() == 0


def test_an_unreachable_webhook_counts_as_a_failed_post(start: Any, sim_settings: Settings) -> None:
    handle = start(webhook_url="http://127.0.0.1:9/webhooks/sendgrid")
    send(handle, sim_settings, mail(2))

    assert handle.flush() == 0
    assert handle.stats()["failed_posts"] == 1 and handle.stats()["events_pending"] > 0


def test_retries_wait_for_their_backoff(
    start: Any, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    now = [FROZEN_NOW]
    handle = start(
        webhook_url=receiver.url,
        clock=lambda: now[0],
        simulator={"retry_backoff_seconds": 10.0, "jitter_seconds": 0.0},
        time_scale=1.0,
    )
    send(handle, sim_settings, mail(1))
    now[0] += 3600 * 60  # everything is due
    receiver.fail_next(1)
    handle.deliver_due()

    now[0] += 5
    assert handle.deliver_due() == 0 and receiver.posts == []
    now[0] += 6
    assert handle.deliver_due() > 0


def test_only_due_events_are_posted(
    start: Any, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    now = [FROZEN_NOW]
    handle = start(
        webhook_url=receiver.url,
        clock=lambda: now[0],
        time_scale=1.0,
        simulator={"jitter_seconds": 0.0, "duplicate_rate": 0.0},
    )
    send(handle, sim_settings, mail(300))

    now[0] += 30  # processed and delivered/bounce happen within seconds of the send
    early = handle.deliver_due()
    early_kinds = {event["event"] for event in events_of(receiver.posts)}
    now[0] += 48 * 3600 + 86400
    late = handle.deliver_due()

    assert early_kinds <= {"processed", "delivered", "bounce", "deferred", "click"}
    assert all(e["timestamp"] <= now[0] for e in events_of(receiver.posts))
    assert late > 0 and early + late == handle.stats()["events_queued"]
    assert "open" in {event["event"] for event in events_of(receiver.posts)}


def test_background_thread_delivers_without_being_asked(
    start: Any, sim_settings: Settings, receiver: WebhookReceiver
) -> None:
    handle = start(
        webhook_url=receiver.url,
        auto_deliver=True,
        clock=time.time,
        time_scale=10_000_000.0,  # 48 simulated hours in well under a second
        simulator={"batch_interval_seconds": 0.05, "jitter_seconds": 0.1},
    )
    send(handle, sim_settings, mail(20))
    queued = handle.stats()["events_queued"]

    deadline = time.monotonic() + 10
    while len(events_of(receiver.posts)) < queued and time.monotonic() < deadline:
        time.sleep(0.05)

    assert len(events_of(receiver.posts)) == queued


def test_bearer_token_is_sent_when_configured(
    sim_settings: Settings, receiver: WebhookReceiver, tmp_path: Any
) -> None:
    from engine.simulator import start_simulator

    settings = sim_settings.replace(sendgrid={"webhook_bearer_token": "hook-secret"})
    handle = start_simulator(
        settings, webhook_url=receiver.url, seed=1, key_dir=tmp_path, auto_deliver=False
    )
    try:
        send(handle, settings, mail(1))
        handle.flush()
    finally:
        handle.stop()

    assert receiver.posts[0].headers["Authorization"] == "Bearer hook-secret"


def test_without_a_webhook_events_are_drained_instead(start: Any, sim_settings: Settings) -> None:
    # Without jitter an event is due at its timestamp, so due order is timestamp order.
    handle = start(webhook_url=None, simulator={"jitter_seconds": 0.0})
    send(handle, sim_settings, mail(10))

    assert handle.flush() == 0
    events = handle.drain_events()

    assert len(events) == handle.stats()["events_queued"]
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert handle.drain_events() == []
