"""Webhook batches keep the report rollups equal to a rebuild from the rows, however many
hourly buckets a batch's sends fall into."""

from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Send
from engine.reports import rollups
from engine.reports.rebuild import rebuild_rollups
from engine.settings import Settings
from tests.engine.reports.rollup_support import Snapshot, rollup_rows, totals
from tests.webhooks.helpers import NOW, T0, event, seed_sends
from webhooks import wire
from webhooks.ingest import ingest_body


def assert_rollups_match_rebuild(session: so.Session) -> Snapshot:
    """The live send rollups equal a rebuild from the rows (the rebuild is rolled back, so
    later batches keep adding to the rows the write points made)."""
    live = rollup_rows(session)
    nested = session.begin_nested()
    rebuild_rollups(session)
    rebuilt = rollup_rows(session)
    nested.rollback()
    assert live["send_rollups"] == rebuilt["send_rollups"]
    return live


def test_a_batch_over_many_buckets_keeps_the_rollups_exact(
    session: so.Session, settings: Settings
) -> None:
    fixture = seed_sends(session, 48)
    sent = []
    for n, send in enumerate(fixture.sends):  # one send per hour: more buckets than a group
        sent_at = NOW - timedelta(hours=n)
        session.execute(sa.update(Send).where(Send.id == send.id).values(sent_at=sent_at))
        subject, body, share = send.variant_ids
        sent.append(
            {
                "id": send.id,
                "mailing_id": send.mailing_id,
                "subject_variant_id": subject,
                "body_variant_id": body,
                "share_variant_id": share,
                "sent_at": sent_at,
            }
        )
    rollups.record_sent(session, sent)  # what the mailer counts when it records the sends
    session.commit()

    first = []
    for n, send in enumerate(fixture.sends):
        first += [event("delivered", send, T0), event("open", send, T0 + 60)]
        first.append(event("click", send, T0 + 2 if n % 3 == 0 else T0 + 3600, url="https://a"))
    ingest_body(session, wire.build_body(first), settings.webhooks, NOW)
    session.commit()
    live = assert_rollups_match_rebuild(session)
    sends = len(fixture.sends)
    assert totals(live, "send_rollups", "delivered") == sends
    assert totals(live, "send_rollups", "human_clicks") == sends - len(range(0, sends, 3))

    # A later batch makes every human click part of a scanner burst (three links in 2 s), and
    # gives the sends whose first click was a scanner's two human clicks: counts move both ways.
    burst = [
        event("click", send, T0 + 3600 + n, url=f"https://b/{n}")
        for send in fixture.sends
        for n in (1, 2)
    ]
    ingest_body(session, wire.build_body(burst), settings.webhooks, NOW)
    session.commit()
    live = assert_rollups_match_rebuild(session)
    assert totals(live, "send_rollups", "human_clicks") == len(range(0, sends, 3))
    assert totals(live, "send_rollups", "scanner_clicks") == sends
