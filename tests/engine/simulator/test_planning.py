"""Events are generated after the 202, in acceptance order, the same whenever that happens."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sendgrid import SendGridAPIClient

from engine.settings import Settings
from engine.simulator import SimulatorHandle, mail_send, planning
from engine.simulator.delivery import WebhookDelivery
from engine.simulator.planning import EventPlanner
from engine.simulator.truth import load_true_rates
from engine.simulator.wire import generate_private_key
from tests.engine.simulator.support import FROZEN_NOW, mail


def send(handle: SimulatorHandle, settings: Settings, body: dict) -> str:
    client = SendGridAPIClient(settings.sendgrid.api_key, host=handle.url)
    response = client.client.mail.send.post(request_body=body)
    assert response.status_code == 202
    return response.headers["X-Message-Id"]


@pytest.fixture
def recipient_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the requests whose recipients (and links) were worked out."""
    calls: list[int] = []
    direct = mail_send.recipients

    def counting(payload: dict[str, Any]) -> list[mail_send.Recipient]:
        calls.append(len(payload["personalizations"]))
        return direct(payload)

    monkeypatch.setattr(planning.mail_send, "recipients", counting)
    return calls


def test_the_answer_does_no_work_per_recipient_and_events_follow_on_the_delivery_side(
    simulator: SimulatorHandle, sim_settings: Settings, recipient_calls: list[int], receiver: Any
) -> None:
    x_message_id = send(simulator, sim_settings, mail(1000))

    assert recipient_calls == []  # validated and counted only
    assert simulator.accepted[0].recipients == 1000
    assert simulator._service.planner.waiting() == 1

    delivered = simulator.flush()

    assert recipient_calls == [1000]
    assert simulator._service.planner.waiting() == 0
    stats = simulator.stats()
    assert delivered == stats["events_delivered"] == stats["events_queued"]  # with duplicates
    assert stats["events_generated"] >= 2000  # processed + delivered or bounced, at least
    assert stats["messages_accepted"] == 1000
    message_ids = {
        event["sg_message_id"].split(".")[0]
        for post in receiver.posts
        for event in json.loads(post.body)
        if "sg_message_id" in event
    }
    assert message_ids == {x_message_id}


def test_events_are_stamped_with_the_time_of_acceptance_not_of_generation(
    start: Any, sim_settings: Settings
) -> None:
    now = [FROZEN_NOW]
    handle = start(webhook_url=None, clock=lambda: now[0], time_scale=1.0)
    send(handle, sim_settings, mail(20))
    now[0] += 7 * 86400  # generated a week later

    events = handle.drain_events()

    processed = [e["timestamp"] for e in events if e["event"] == "processed"]
    assert len(processed) == 20
    assert all(FROZEN_NOW <= t <= FROZEN_NOW + 1 for t in processed)


def test_the_same_requests_give_the_same_events_however_generation_is_timed(
    start: Any, sim_settings: Settings
) -> None:
    eager, lazy = start(webhook_url=None, seed=11), start(webhook_url=None, seed=11)
    for number in range(4):
        body = mail(50, subject=f"request {number}")
        send(eager, sim_settings, body)
        eager.stats()  # generates this request's events before the next arrives
        send(lazy, sim_settings, body)

    assert [a.x_message_id for a in eager.accepted] == [a.x_message_id for a in lazy.accepted]
    assert eager.drain_events() == lazy.drain_events()


def test_the_delivery_thread_gives_way_between_requests(sim_settings: Settings) -> None:
    delivery = WebhookDelivery(
        sim_settings.simulator,
        webhook_url=None,
        private_key=generate_private_key(),
        rng=np.random.default_rng(1),
    )
    planner = EventPlanner(
        truth=load_true_rates(), delivery=delivery, rng=np.random.default_rng(2), time_scale=60.0
    )
    for number in range(3):
        planner.queue(mail(5), f"request{number}", FROZEN_NOW)

    assert planner.plan_waiting(keep_going=lambda: False) == 1  # always makes progress
    assert planner.waiting() == 2
    assert planner.plan_waiting() == 2
    assert planner.waiting() == 0
    assert planner.events_generated() == len(delivery.drain()) - delivery.stats().duplicates_queued


def test_requests_waiting_when_the_simulator_stops_are_dropped(
    start: Any, sim_settings: Settings
) -> None:
    handle = start(webhook_url=None)
    send(handle, sim_settings, mail(3))

    handle.stop()

    assert handle._service.planner.waiting() == 0
