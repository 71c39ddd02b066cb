"""Every write point keeps the report rollups equal to a rebuild from the rows (both backends).

The scenarios go through the real code paths: the mailer against the SendGrid simulator, its
events through the signed webhook endpoint, landing views and signups through the Flask test
client, the unsubscribe page. A write point that forgot its rollup makes the live rollups differ
from :func:`engine.reports.rebuild.rebuild_rollups`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import outcomes, recruiters
from engine.models import Contact, Experiment, Recruiter, Send
from engine.reports import rollups
from engine.reports.experiment import experiment_report
from engine.reports.funnel import funnel_report
from engine.reports.rebuild import rebuild_rollups
from engine.reports.reciprocity import reciprocity_report
from engine.sending import records
from engine.sending.client import MailClient
from engine.sending.mailing import prepare_mailing, run_recruiter_mailing
from tests.engine.reports.rollup_support import (
    Site,
    assert_rollups_match_rebuild,
    open_page,
    submit,
    totals,
)
from tests.engine.sending import factories as mail
from tests.variants.landing_support import add_experiment, add_groups, form_fields
from tests.webhooks.helpers import SendInfo, event

SENT_AT = datetime(2026, 11, 24, 15, 20, tzinfo=UTC)
DAY1 = datetime(2026, 11, 24, 16, 5, tzinfo=UTC)
DAY2 = datetime(2026, 11, 25, 9, 10, tzinfo=UTC)


def campaign(session: so.Session, recruiters: int) -> dict[str, int]:
    """Groups, a running landing test, subject/body/share tests and recruiters; group ids.

    The recruiters go in in bulk, as the demo loader's do, so the rollups are rebuilt after.
    """
    groups = add_groups(session)
    add_experiment(session)
    mail.mail_experiments(session)
    mail.recruiters(session, recruiters)
    rebuild_rollups(session)
    session.commit()
    return {group.slug: group.id for group in groups}


def codes_by_send(session: so.Session) -> list[tuple[int, str]]:
    return [
        (send_id, code)
        for send_id, code in session.execute(
            sa.select(Send.id, Recruiter.code)
            .join(Recruiter, Recruiter.id == Send.recruiter_id)
            .order_by(Send.id)
        )
    ]


def test_a_campaign_through_every_write_point_keeps_the_rollups_exact(
    site: Site, session: so.Session
) -> None:
    group_ids = campaign(session, 30)
    site.now.append(DAY1)
    report = run_recruiter_mailing(
        session,
        site.settings,
        renderers=mail.renderers(),
        client=MailClient(site.settings.sendgrid, sleep=lambda _: None),
        key="rollups-1",
        rng=np.random.default_rng(3),
        clock=lambda: SENT_AT,
    )
    assert report.sent == 30
    events = site.simulator.drain_events()
    site.post_events(events)
    site.post_events(events[:40])  # SendGrid retries a batch: duplicates change nothing
    (s0, code0), (s1, _), (s2, _) = codes_by_send(session)[:3]

    # Two people follow one email's link (a forward): the send was visited once; one joins two
    # groups, which converts the send.
    amy = site.visitor()
    submit(amy, open_page(amy, site.email_link(code0, s0, "swing-left")), "amy@example.org",
           ["swing-left", "indivisible"])  # fmt: skip
    open_page(site.visitor(), site.email_link(code0, s0))
    # A visitor a group sent twice counts once; ticking one more group on the same form later
    # adds a group, not a second conversion.
    cat = site.visitor()
    first_view = open_page(cat, "/?g=indivisible")
    open_page(cat, f"/?g=indivisible&r={code0}")
    submit(cat, first_view, "cat@example.org", ["indivisible"])
    submit(cat, first_view, "cat@example.org", ["indivisible", "flippable"])
    # An older visit that converts after a newer one moves the contact to the older day.
    dan = site.visitor()
    old_view = open_page(dan, "/?g=sister-district")
    site.now[0] = DAY2
    submit(dan, open_page(dan, f"/?g=sister-district&r={code0}"), "dan@example.org",
           ["sister-district"])  # fmt: skip
    submit(dan, old_view, "dan@example.org", ["swing-left"])
    # Amy becomes a recruiter; a friend joins through her link.
    csrf = form_fields(amy.get("/thanks").get_data(as_text=True))["csrf_token"]
    assert amy.post("/recruit", data={"csrf_token": csrf}).status_code == 303
    amy_code = session.scalar(
        sa.select(Recruiter.code).join(Contact).where(Contact.email == "amy@example.org")
    )
    eve = site.visitor()
    submit(eve, open_page(eve, f"/?r={amy_code}"), "eve@example.org", ["flippable"])
    # One-click unsubscribes, one of them twice.
    for send_id in (s1, s1, s2):
        site.unsubscribe(send_id)

    live = assert_rollups_match_rebuild(session)
    assert totals(live, "send_rollups", "sent") == 30
    for counter in ("delivered", "bounced", "human_opens", "machine_opens", "human_clicks"):
        assert totals(live, "send_rollups", counter) > 0, counter
    assert totals(live, "send_rollups", "unsubscribes") >= 2
    assert [totals(live, "send_rollups", c) for c in ("visited", "signups")] == [1, 1]
    assert totals(live, "send_rollups", "groups_ticked") == 2
    # Visits: amy, her friend, cat twice, dan twice, eve; amy's, cat's first, both of dan's and
    # eve's converted; 2 + 2 + 2 + 1 signup rows.
    visit_counters = ("visits", "signups", "groups_ticked")
    assert [totals(live, "visit_rollups", c) for c in visit_counters] == [7, 5, 7]
    sister = group_ids["sister-district"]
    assert [row[2:] for row in live["group_rollups"] if row[0] == sister] == [
        (1, 1, 0),  # day 1: dan's first visit, and (after the move) his generated contact
        (0, 0, 1),  # day 2: the signup received
    ]
    # The first recruiter's link brought four views (amy's and the forward, which carry the
    # email's ?r=, cat's and dan's second ones) and two friends (amy, dan); amy's brought eve.
    per_recruiter: dict[int, list[int]] = {}
    for recruiter_id, _day, visits, friends in live["recruiter_rollups"]:
        per_recruiter.setdefault(recruiter_id, [0, 0])
        per_recruiter[recruiter_id][0] += visits
        per_recruiter[recruiter_id][1] += friends
    assert sorted(per_recruiter.values()) == [[1, 1], [4, 2]]
    assert totals(live, "ladder_rollups", "contacts") == 30 + 4  # recruiters + amy, cat, dan, eve
    assert totals(live, "ladder_rollups", "recruiters") == 31
    swing = group_ids["swing-left"]
    assert {row[:2]: row[3] for row in live["group_flow_rollups"]} == {
        (swing, swing): 1,
        (swing, group_ids["indivisible"]): 1,
        (group_ids["indivisible"], group_ids["indivisible"]): 1,
        (group_ids["indivisible"], group_ids["flippable"]): 1,
        (sister, sister): 1,
        (sister, swing): 1,
    }

    # The reports read exactly these numbers.
    funnel = funnel_report(session).total.rows[0]
    assert (funnel["sent"], funnel["visits"], funnel["signups"], funnel["groups_ticked"]) == (
        30,
        1,
        1,
        2,
    )
    ledger = {
        row["group"]: row for row in reciprocity_report(session, visibility_floor=1).ledger.rows
    }
    assert (
        ledger["indivisible"]["visitors_sent"],
        ledger["indivisible"]["contacts_generated"],
    ) == (
        1,
        1,
    )


def test_what_a_send_reached_before_the_mailer_recorded_it_counts_with_it(
    site: Site, session: so.Session
) -> None:
    """A scanner or a quick reader can act while the send is still ``sending``: the mailer's
    answer then counts the send with everything it already reached."""
    campaign(session, 3)
    site.now.append(DAY1)
    mailing, _ = prepare_mailing(
        session, site.settings, key="early", now=SENT_AT, rng=np.random.default_rng(1)
    )
    rows = records.planned_rows(session, mailing.id)
    ids = [row.send_id for row in rows]
    records.move(session, ids, from_status="planned", to_status="sending")  # handed over
    session.commit()
    first = rows[0]
    reader = site.visitor()
    submit(reader, open_page(reader, site.email_link(first.code, first.send_id, "flippable")),
           "early@example.org", ["flippable"])  # fmt: skip
    info = SendInfo(first.send_id, first.email, "XEARLY", mailing.id, [0, 0, 0])
    site.post_events([event("delivered", info, 1795000100), event("open", info, 1795000200)])
    assert assert_rollups_match_rebuild(session)["send_rollups"] == []  # nothing is sent yet

    sent = records.mark_sent(session, ids, x_message_id="XEARLY", sent_at=SENT_AT)
    outcomes.add_trials(session, {})
    rollups.record_sent(session, sent)
    session.commit()
    live = assert_rollups_match_rebuild(session)
    counters = ("sent", "delivered", "human_opens", "visited", "signups", "groups_ticked")
    assert [totals(live, "send_rollups", c) for c in counters] == [3, 1, 1, 1, 1, 1]


def test_reports_of_a_landing_experiment_follow_the_write_points(
    site: Site, session: so.Session
) -> None:
    campaign(session, 1)
    site.now.append(DAY1)
    for number in range(6):
        visitor = site.visitor()
        fields = open_page(visitor, "/?g=swing-left")
        if number % 2:
            submit(visitor, fields, f"v{number}@example.org", ["swing-left"])
    live = assert_rollups_match_rebuild(session)
    assert live["send_rollups"] == []  # no mailing in this scenario
    experiment = session.scalar(sa.select(Experiment).where(Experiment.kind == "landing"))
    assert experiment is not None
    rows = experiment_report(session, experiment.id).variants.rows
    assert sum(row["trials"] for row in rows) == 6
    assert sum(row["successes"] for row in rows) == 3


def test_a_recruiter_made_by_the_engine_counts_on_the_ladder(session: so.Session) -> None:
    contact = Contact(email="lee@example.org", zip_code="10001")
    session.add(contact)
    session.flush()
    rebuild_rollups(session)
    recruiters.ensure_recruiter(session, contact)
    recruiters.ensure_recruiter(session, contact)  # idempotent: counted once
    live = assert_rollups_match_rebuild(session)
    assert totals(live, "ladder_rollups", "recruiters") == 1
