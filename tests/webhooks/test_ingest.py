import json

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import suppressions
from engine.models import Alert, Event, Suppression, WebhookBatch
from engine.settings import Settings
from tests.webhooks.helpers import NOW, T0, Fixture, event, post, seed_sends, variant
from webhooks import wire
from webhooks.ingest import ingest_body


def ingest(session: so.Session, settings: Settings, events: list) -> dict[str, int]:
    result = ingest_body(session, wire.build_body(events), settings.webhooks, NOW)
    session.commit()
    return result.as_dict()


def stored(session: so.Session) -> list[Event]:
    session.expire_all()
    return list(session.scalars(sa.select(Event).order_by(Event.event_key)))


def test_duplicates_in_a_batch_across_batches_and_retries_count_once(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    opened = event("open", send, T0 + 5)
    delivered = event("delivered", send, T0)
    assert ingest(session, settings, [opened, opened, delivered]) == {
        "received": 3,
        "stored": 2,
        "duplicates": 1,
        "quarantined": 0,
    }
    assert ingest(session, settings, [delivered, opened])["duplicates"] == 2
    assert ingest(session, settings, [opened, delivered])["stored"] == 0
    assert len(stored(session)) == 2
    # The body variant measures opens: one success however often the open came.
    assert variant(session, send.variant_ids[1]).successes == 1
    assert session.scalar(sa.select(sa.func.sum(WebhookBatch.duplicates))) == 5


def test_events_without_an_id_dedupe_on_their_content(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    first = event("open", world.sends[0], T0, sg_event_id=None)
    second = event("open", world.sends[0], T0 + 1, sg_event_id=None)
    assert ingest(session, settings, [first, second, first])["stored"] == 2
    assert ingest(session, settings, [dict(first)])["duplicates"] == 1
    keys = [e.event_key for e in stored(session)]
    assert all(key.startswith("sha256:") for key in keys)


def test_attribution_by_send_id(session: so.Session, settings: Settings, world: Fixture) -> None:
    send = world.sends[1]
    ingest(session, settings, [event("delivered", send, T0)])
    assert [e.send_id for e in stored(session)] == [send.id]


def test_attribution_by_message_id_prefix_and_address(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[2]
    bare = event("open", send, T0, send_id=None, mailing_id=None)
    ingest(session, settings, [bare])
    assert [e.send_id for e in stored(session)] == [send.id]


def test_async_bounce_without_message_id_uses_the_custom_arg(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    ingest(session, settings, [event("bounce", send, T0, sg_message_id=None, type="bounce")])
    assert [e.send_id for e in stored(session)] == [send.id]


def test_send_id_that_disagrees_with_the_message_id_is_not_trusted(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    forged = event("click", send, T0 + 600, sg_message_id="OTHERREQ.filter-1", url="https://a")
    wrong_mailing = event("click", send, T0 + 700, mailing_id="999", sg_message_id=None)
    ingest(session, settings, [forged, wrong_mailing])
    assert [e.send_id for e in stored(session)] == [None, None]
    assert variant(session, send.variant_ids[0]).successes == 0


def test_unattributed_events_are_stored_but_never_counted(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    stranger = event(
        "click", None, T0, email="stranger@example.org", url="https://a", send_id="999999"
    )
    ingest(session, settings, [stranger])
    [row] = stored(session)
    assert row.send_id is None
    assert all(variant(session, v).successes == 0 for v in world.sends[0].variant_ids)


def test_payload_is_stored_losslessly(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    element = event(
        "future_kind",
        world.sends[0],
        str(T0 * 1000),
        novel={"nested": ["Grüße", "✊🏽", 1.5, None, True]},
        category="single",
        big=123456789012345678901234567890,
    )
    body = wire.build_body([element], ascii_only=True)
    ingest_body(session, body, settings.webhooks, NOW)
    session.commit()
    [row] = stored(session)
    assert row.payload == element
    assert row.event_type == "future_kind"
    assert row.occurred_at is not None and row.occurred_at.timestamp() == T0
    assert row.received_at == NOW


def test_suppression_rules(session: so.Session, settings: Settings, world: Fixture) -> None:
    hard, blocked, spam = world.sends
    extra = seed_sends(session, 2, x_message_id="XMSG0002").sends
    ingest(
        session,
        settings,
        [
            event("bounce", hard, T0, type="bounce"),
            event("bounce", blocked, T0, type="blocked"),
            event("spamreport", spam, T0),
            event("unsubscribe", extra[0], T0),
            event("group_unsubscribe", extra[1], T0, asm_group_id=101),
        ],
    )
    rows = {(s.email, s.scope, s.reason) for s in session.scalars(sa.select(Suppression))}
    assert rows == {
        (hard.email, "global", "bounce"),
        (spam.email, "global", "spamreport"),
        (extra[0].email, "global", "unsubscribe"),
        (extra[1].email, "asm:101", "group_unsubscribe"),
    }
    emails = [s.email for s in (*world.sends, *extra)]
    assert suppressions.suppressed_emails(session, emails, 101) == set(emails) - {blocked.email}
    assert suppressions.suppressed_emails(session, emails, 202) == {
        hard.email,
        spam.email,
        extra[0].email,
    }


def test_group_resubscribe_later_timestamp_wins_in_any_arrival_order(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    first, second, _ = world.sends
    # first: unsubscribed, then resubscribed later; the resubscribe arrives first.
    ingest(session, settings, [event("group_resubscribe", first, T0 + 60, asm_group_id=101)])
    ingest(session, settings, [event("group_unsubscribe", first, T0, asm_group_id=101)])
    # second: resubscribed, then unsubscribed again later, in one batch.
    ingest(
        session,
        settings,
        [
            event("group_unsubscribe", second, T0 + 120, asm_group_id=101),
            event("group_resubscribe", second, T0 + 60, asm_group_id=101),
            event("group_unsubscribe", second, T0, asm_group_id=101),
        ],
    )
    assert suppressions.suppressed_emails(session, [first.email, second.email], 101) == {
        second.email
    }


def test_account_status_change_pauses_sending(session: so.Session, settings: Settings) -> None:
    assert not suppressions.sending_paused(session)
    change = {
        "event": "account_status_change",
        "timestamp": T0,
        "type": "compliance_suspend",
        "sg_event_id": "acct-1",
    }
    ingest(session, settings, [change])
    ingest(session, settings, [change])  # a duplicate raises no second alert
    [alert] = session.scalars(sa.select(Alert))
    assert alert.pauses_sending and alert.details["type"] == "compliance_suspend"
    assert suppressions.sending_paused(session)


def test_http_batch_counts_in_the_stats(  # type: ignore[no-untyped-def]
    webhook_client, signing_key, world, session
) -> None:
    from webhooks.report import event_stats

    send = world.sends[0]
    events = [
        event("delivered", send, T0),
        event("open", send, T0 + 100, sg_machine_open=True),
        event("open", send, T0 + 200),
        event("bounce", world.sends[1], T0, type="blocked"),
        event("bounce", world.sends[2], T0, type="bounce"),
        event("click", send, T0 + 3, url="https://a"),
        event("click", send, T0 + 900, url="https://a"),
        event("processed", None, T0, email="nobody@example.org"),
        {"event": "open"},
    ]
    post(webhook_client, signing_key, events)
    post(webhook_client, signing_key, events[:2])
    stats = event_stats(session)
    assert json.loads(json.dumps(stats)) == {
        "received": 11,
        "unique": 8,
        "duplicates": 2,
        "quarantined": 1,
        "by_type": {
            "bounce:blocked": 1,
            "bounce:bounce": 1,
            "click": 2,
            "delivered": 1,
            "open": 2,
            "processed": 1,
        },
        "opens": {"human": 1, "machine": 1},
        "clicks": {"human": 1, "scanner": 1},
        "unattributed": 1,
        "inbox": {"pending": 0, "pending_events": 0, "oldest_pending_at": None, "set_aside": []},
    }
