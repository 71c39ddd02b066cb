from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Event
from engine.settings import Settings, WebhookSettings
from tests.webhooks.helpers import NOW, T0, Fixture, event, send_row, variant
from webhooks import wire
from webhooks.clicks import classify_clicks
from webhooks.ingest import ingest_body


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def ingest(session: so.Session, settings: Settings, *events: dict) -> None:
    ingest_body(session, wire.build_body(list(events)), settings.webhooks, NOW)
    session.commit()


def successes(session: so.Session, fixture: Fixture, index: int) -> tuple[int, int, int]:
    """Successes of the send's (subject: clicks, body: opens, share: signups) arms."""
    ids = fixture.sends[index].variant_ids
    return tuple(variant(session, v).successes for v in ids)  # type: ignore[return-value]


def test_outcomes_follow_timestamps_not_arrival(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    ingest(session, settings, event("open", send, T0 + 500), event("delivered", send, T0 + 30))
    ingest(session, settings, event("delivered", send, T0 + 10))  # earlier, arriving later
    ingest(session, settings, event("deferred", send, T0 + 900))  # a late deferral
    ingest(session, settings, event("open", send, T0 + 100))  # an earlier open, later
    row = send_row(session, send)
    assert row.delivered_at == at(T0 + 10)
    assert row.deferred_at == at(T0 + 900)
    assert row.first_open_at == at(T0 + 100)
    assert successes(session, world, 0) == (0, 1, 0)


def test_machine_opens_are_recorded_but_not_credited(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    ingest(session, settings, event("open", send, T0 + 5, sg_machine_open=True))
    row = send_row(session, send)
    assert (row.machine_open_at, row.first_open_at) == (at(T0 + 5), None)
    assert successes(session, world, 0) == (0, 0, 0)
    ingest(session, settings, event("open", send, T0 + 50, sg_machine_open=False))
    assert send_row(session, send).first_open_at == at(T0 + 50)
    assert successes(session, world, 0) == (0, 1, 0)


def test_bounce_kinds(session: so.Session, settings: Settings, world: Fixture) -> None:
    blocked, hard, _ = world.sends
    ingest(
        session,
        settings,
        event("bounce", blocked, T0 + 20, type="blocked"),
        event("bounce", hard, T0 + 20, type="bounce"),
        event("dropped", hard, T0 + 40, reason="Bounced Address"),
    )
    assert (send_row(session, blocked).bounce_type, send_row(session, hard).bounce_type) == (
        "blocked",
        "bounce",
    )
    assert send_row(session, hard).dropped_at == at(T0 + 40)


def test_click_before_its_delivered_event_still_counts(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    ingest(session, settings, event("click", send, T0 + 3600, url="https://a"))
    assert successes(session, world, 0) == (1, 0, 0)
    ingest(session, settings, event("delivered", send, T0))
    row = send_row(session, send)
    assert (row.first_click_at, row.scanner_click_at) == (at(T0 + 3600), None)
    assert successes(session, world, 0) == (1, 0, 0)


def test_click_seconds_after_delivery_is_a_suspected_scanner(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    ingest(
        session,
        settings,
        event("delivered", send, T0),
        event("click", send, T0 + 4, url="https://a"),
    )
    row = send_row(session, send)
    assert (row.first_click_at, row.scanner_click_at) == (None, at(T0 + 4))
    assert successes(session, world, 0) == (0, 0, 0)


def test_late_delivery_reclassifies_and_takes_the_credit_back(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    only_scanner, scanner_then_human, _ = world.sends
    ingest(
        session,
        settings,
        event("click", only_scanner, T0 + 3, url="https://a"),
        event("click", scanner_then_human, T0 + 2, url="https://a"),
        event("click", scanner_then_human, T0 + 7200, url="https://a"),
    )
    assert successes(session, world, 0) == (2, 0, 0)  # both sends share the subject arm
    ingest(
        session,
        settings,
        event("delivered", only_scanner, T0),
        event("delivered", scanner_then_human, T0),
    )
    assert send_row(session, only_scanner).first_click_at is None
    assert send_row(session, scanner_then_human).first_click_at == at(T0 + 7200)
    assert send_row(session, scanner_then_human).scanner_click_at == at(T0 + 2)
    assert successes(session, world, 0) == (1, 0, 0)
    labels = session.scalars(
        sa.select(Event.label).where(Event.event_type == "click").order_by(Event.occurred_at)
    )
    assert list(labels) == ["scanner", "scanner", "human"]


def test_many_links_within_seconds_are_a_scanner_burst(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    burst, two_links, _ = world.sends
    ingest(
        session,
        settings,
        event("delivered", burst, T0),
        event("delivered", two_links, T0),
        *[event("click", burst, T0 + 600 + n, url=f"https://x/{n}") for n in range(3)],
        event("click", two_links, T0 + 600, url="https://x/1"),
        event("click", two_links, T0 + 601, url="https://x/2"),
    )
    assert send_row(session, burst).first_click_at is None
    assert send_row(session, burst).scanner_click_at == at(T0 + 600)
    assert send_row(session, two_links).first_click_at == at(T0 + 600)
    assert successes(session, world, 0) == (1, 0, 0)


def test_burst_completed_by_a_later_batch_reclassifies(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    ingest(
        session,
        settings,
        *[event("click", send, T0 + 600 + n, url=f"https://x/{n}") for n in range(2)],
    )
    assert successes(session, world, 0) == (1, 0, 0)
    ingest(session, settings, event("click", send, T0 + 602, url="https://x/9"))
    assert send_row(session, send).first_click_at is None
    assert successes(session, world, 0) == (0, 0, 0)


def test_guardrail_counters_move_once_per_send(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    ingest(
        session,
        settings,
        event("spamreport", send, T0 + 50),
        event("spamreport", send, T0 + 40),
        event("unsubscribe", send, T0 + 60),
        event("group_unsubscribe", send, T0 + 30, asm_group_id=101),
    )
    row = send_row(session, send)
    assert (row.spam_report_at, row.unsubscribed_at) == (at(T0 + 40), at(T0 + 30))
    for variant_id in send.variant_ids:
        arm = variant(session, variant_id)
        assert (arm.spam_reports, arm.unsubscribes) == (1, 1)


def test_other_sends_are_untouched(session: so.Session, settings: Settings, world: Fixture) -> None:
    ingest(session, settings, event("open", world.sends[0], T0))
    assert send_row(session, world.sends[1]).first_open_at is None


RULES = WebhookSettings(
    scanner_seconds_after_delivery=10, scanner_burst_links=3, scanner_burst_seconds=5
)
D = at(T0)


@pytest.mark.parametrize(
    ("clicks", "delivered", "expected"),
    [
        ([(D + timedelta(seconds=10), "a")], D, [True]),
        ([(D + timedelta(seconds=11), "a")], D, [False]),
        ([(D - timedelta(seconds=1), "a")], D, [False]),
        ([(D + timedelta(seconds=3), "a")], None, [False]),
        (
            [(D + timedelta(seconds=s), u) for s, u in ((100, "a"), (103, "b"), (105, "c"))],
            D,
            [True] * 3,
        ),
        (
            [(D + timedelta(seconds=s), u) for s, u in ((100, "a"), (103, "b"), (106, "c"))],
            D,
            [False] * 3,
        ),
        ([(D + timedelta(seconds=s), "a") for s in (100, 101, 102)], D, [False] * 3),
        (
            [
                (D + timedelta(seconds=s), u)
                for s, u in ((500, "z"), (100, "a"), (102, "b"), (101, "c"))
            ],
            D,
            [False, True, True, True],
        ),
        ([], D, []),
    ],
)
def test_classify_clicks(clicks: list, delivered: datetime | None, expected: list[bool]) -> None:
    assert classify_clicks(clicks, delivered, RULES) == expected


def _click_story(fixture: Fixture) -> list[dict]:
    """Deliveries and clicks of three sends: a scanner click, a burst, a human click."""
    scanner, burst, human = fixture.sends
    return [
        event("delivered", scanner, T0),
        event("click", scanner, T0 + 4, url="https://a"),
        event("click", scanner, T0 + 5000, url="https://a"),
        event("delivered", burst, T0),
        *[event("click", burst, T0 + 900 + n, url=f"https://x/{n}") for n in range(3)],
        event("delivered", human, T0),
        event("click", human, T0 + 3600, url="https://a"),
    ]


def _click_outcomes(session: so.Session, fixture: Fixture) -> list[tuple]:
    session.expire_all()
    sends = [send_row(session, send) for send in fixture.sends]
    labels = session.execute(
        sa.select(Event.send_id, Event.occurred_at, Event.label)
        .where(Event.event_type == "click")
        .order_by(Event.send_id, Event.occurred_at)
    ).all()
    return [(s.first_click_at, s.scanner_click_at) for s in sends] + [tuple(r) for r in labels]


@pytest.mark.parametrize("batches", [1, 3, 9])
def test_clicks_end_the_same_in_one_batch_or_many(
    session: so.Session, settings: Settings, world: Fixture, batches: int
) -> None:
    """New clicks of a send without earlier clicks are judged from the batch alone; a send
    with earlier clicks is judged from the stored ones: both ways end in the same state."""
    story = _click_story(world)
    for start in range(batches):
        ingest(session, settings, *story[start::batches])
    outcome = _click_outcomes(session, world)
    assert outcome[:3] == [
        (at(T0 + 5000), at(T0 + 4)),
        (None, at(T0 + 900)),
        (at(T0 + 3600), None),
    ]
    assert [label for _, _, label in outcome[3:]] == [
        "scanner",
        "human",
        "scanner",
        "scanner",
        "scanner",
        "human",
    ]
    assert successes(session, world, 0)[0] == 2  # scanner's later click and human's click
